"""Read and write images with OpenCV, in RGB order and at their native bit depth."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from xaipipe.atomic import write_bytes_atomic


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load a 2D image as (H, W) gray or (H, W, 3) RGB, uint8 or uint16 as stored.

    An alpha channel is dropped (the colour channels are kept as they are).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"unreadable or truncated image: {path}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        else:
            raise ValueError(f"{path}: unsupported channel count {image.shape[2]}")
    if image.ndim != 2 and image.ndim != 3:
        raise ValueError(f"{path}: expected a 2D image, got shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16):
        if image.dtype == np.float32:
            return image
        raise ValueError(f"{path}: unsupported pixel type {image.dtype}")
    return image


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W) gray or (H, W, 3) RGB image as PNG, atomically."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not encode PNG for {path}")
    write_bytes_atomic(path, encoded.tobytes())
