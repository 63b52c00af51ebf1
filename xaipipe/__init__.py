"""xaipipe: explainable-AI heatmaps for Keras image classifiers.

The package imports nothing heavy at the top level, so that a Snakefile can
import its helpers at parse time without loading TensorFlow.
"""

__version__ = "0.1.0"
