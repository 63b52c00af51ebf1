"""xaipipe: explainable-AI heatmaps for Keras image classifiers.

The package imports nothing heavy at the top level (TensorFlow is imported when a
method or model is first used), so that a Snakefile can import its helpers at
parse time quickly.
"""

__version__ = "0.1.0"

__all__ = ["DataGenerator", "xai_decoder", "__version__"]


def __getattr__(name: str):
    """``xaipipe.DataGenerator`` and ``xaipipe.xai_decoder``, imported on first use.

    Importing a submodule (``xaipipe.resources`` at Snakefile parse time) then loads
    neither OpenCV nor the decoder.
    """
    if name == "DataGenerator":
        from xaipipe.datagen import DataGenerator

        return DataGenerator
    if name == "xai_decoder":
        from xaipipe.decoder import xai_decoder

        return xai_decoder
    raise AttributeError(f"module 'xaipipe' has no attribute {name!r}")
