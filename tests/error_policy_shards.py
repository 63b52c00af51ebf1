"""A small shard with a skipped sample and its predictions, for the stage tests (tests/test_camfamily.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xaipipe.preprocess import Preprocessing
from xaipipe.stages import predict_shard, preprocess_shard
from xaipipe.writers import write_png

PRE = Preprocessing(size=(32, 32), channels=1, standardize="tf")


def skipping_shard_files(folder: Path, model) -> tuple[Path, Path, Path]:
    """Five 32 x 32 grey images (the second a truncated PNG, skipped by preprocess), ``model`` saved beside:
    the preprocessed shard, its predictions and the model file."""
    paths = []
    for k in range(5):
        path = folder / f"s{k}.png"
        if k == 1:
            path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        else:
            rng = np.random.default_rng(k)
            image = rng.integers(0, 60, (32, 32)).astype(np.uint8)
            y, x = np.indices((32, 32))
            image[(y - 8 - 4 * k) ** 2 + (x - 10 - 3 * k) ** 2 <= 16] = 220  # a bright disk
            write_png(path, image)
        paths.append(path)
    model_path = folder / "model.keras"
    model.save(model_path)
    pre, pred = folder / "pre.h5", folder / "pred.h5"
    preprocess_shard(paths, [f"s{k}" for k in range(5)], None, None, PRE, pre, on_error="skip")
    predict_shard(pre, model_path, pred, batch_size=2, on_error="skip")
    return pre, pred, model_path
