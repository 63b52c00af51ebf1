"""Load Keras models and run them batch by batch."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def set_threads(threads: int | None) -> None:
    """Limit TensorFlow's thread pools (a Snakemake job gets ``threads`` cores)."""
    if not threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:  # already initialized in this process: keep its setting
        pass


def load_model(path: str | os.PathLike):
    """Load a Keras model file (``.keras`` or ``.h5``) for inference."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(f"could not load Keras model {path}: {error}") from error


def predict_batch(model, inputs: np.ndarray) -> np.ndarray:
    """Class scores (B, K) of one batch."""
    return np.asarray(model.predict_on_batch(inputs), dtype=np.float32)
