"""xaipipe: explainable-AI heatmaps for Keras image classifiers.

The package imports nothing heavy at the top level (TensorFlow is imported when a
method or model is first used), so that a Snakefile can import its helpers at
parse time quickly.
"""

__version__ = "0.1.0"

from xaipipe.datagen import DataGenerator  # noqa: E402
from xaipipe.decoder import xai_decoder  # noqa: E402

__all__ = ["DataGenerator", "xai_decoder", "__version__"]
