"""Bring a loaded image to the model's input: channels, resize, standardization.

The order is fixed: channel conversion, then resize, then standardization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
STANDARDIZE_MODES = ("none", "minmax", "z-score", "grayscale", "tf", "caffe", "torch")

_IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input.

    size: (height, width) of the model input.
    channels: 1 (gray) or 3 (RGB) channels of the model input.
    standardize: one of STANDARDIZE_MODES.
    interpolation: one of INTERPOLATIONS, used for the resize.
    """

    size: tuple[int, int]
    channels: int = 3
    standardize: str = "minmax"
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"preprocessing.size must be [height, width], got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"preprocessing.channels must be 1 or 3, got {self.channels}")
        if self.standardize not in STANDARDIZE_MODES:
            raise ValueError(
                f"preprocessing.standardize must be one of {STANDARDIZE_MODES}, got {self.standardize!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"preprocessing.interpolation must be one of {tuple(INTERPOLATIONS)}, got {self.interpolation!r}"
            )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Preprocessing":
        return cls(
            size=tuple(cfg["size"]),
            channels=cfg["channels"],
            standardize=cfg["standardize"],
            interpolation=cfg["interpolation"],
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.size, self.channels)

    def model_input(self, image: np.ndarray) -> np.ndarray:
        """The float32 (H, W, C) model input for a loaded image."""
        image = convert_channels(image, self.channels)
        height, width = self.size
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[self.interpolation])
        image = image.astype(np.float32)
        if image.ndim == 2:
            image = image[:, :, None]
        return standardize(image, self.standardize)


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Gray (H, W) or RGB (H, W, 3) to the requested channel count (gray stays (H, W))."""
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)


def standardize(image: np.ndarray, mode: str) -> np.ndarray:
    """Standardize a float32 (H, W, C) image; per-image statistics for minmax and z-score."""
    if mode == "none":
        return image
    if mode in ("minmax", "grayscale"):
        lo, hi = float(image.min()), float(image.max())
        scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
        return scaled * 255.0 if mode == "grayscale" else scaled
    if mode == "z-score":
        std = float(image.std())
        return (image - float(image.mean())) / std if std > 0 else np.zeros_like(image)
    if mode == "tf":
        return image / 127.5 - 1.0
    if mode == "caffe":
        bgr = image[..., ::-1] if image.shape[-1] == 3 else image
        return bgr - (_CAFFE_MEAN_BGR if image.shape[-1] == 3 else _CAFFE_MEAN_BGR.mean())
    if mode == "torch":
        mean = _IMAGENET_MEAN_RGB if image.shape[-1] == 3 else _IMAGENET_MEAN_RGB.mean()
        std = _IMAGENET_STD_RGB if image.shape[-1] == 3 else _IMAGENET_STD_RGB.mean()
        return (image / 255.0 - mean) / std
    raise ValueError(f"unknown standardization mode {mode!r}; valid: {STANDARDIZE_MODES}")


def display_image(image: np.ndarray) -> np.ndarray:
    """An 8-bit RGB (H, W, 3) copy of a loaded image for drawing overlays on.

    8-bit images are kept as they are; 16-bit and float images are scaled from
    their own minimum and maximum to 0..255.
    """
    if image.dtype != np.uint8:
        lo, hi = float(image.min()), float(image.max())
        scaled = (image.astype(np.float64) - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros(image.shape)
        image = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    return convert_channels(image, 3)
