"""Gray and RGB: check an array's layout and convert between channel counts.

Shared by the readers, the preprocessing, its subfunctions and the drawing, and
importing none of them. 2D images are (H, W) or (H, W, C); volumes (D, H, W) or
(D, H, W, C); ``spatial_dims`` says which, so a trailing channel axis is never
mistaken for a spatial one.
"""

from __future__ import annotations

import numpy as np

_LUMINANCE = np.array([0.299, 0.587, 0.114])


def check_dims(image: np.ndarray, spatial_dims: int) -> None:
    """ValueError unless ``image`` is a gray or RGB array of ``spatial_dims`` spatial axes."""
    gray = image.ndim == spatial_dims
    colour = image.ndim == spatial_dims + 1 and image.shape[-1] in (1, 3)
    if not (gray or colour):
        kind = "2D image" if spatial_dims == 2 else "volume"
        raise ValueError(f"expected a {kind} (gray or RGB), got an array of shape {image.shape}")


def convert_channels(image: np.ndarray, channels: int, spatial_dims: int = 2) -> np.ndarray:
    """Gray or RGB (a trailing axis of 3; 1 is squeezed) to ``channels`` (gray keeps no channel axis)."""
    if image.ndim == spatial_dims + 1 and image.shape[-1] == 1:
        image = image[..., 0]
    is_gray = image.ndim == spatial_dims
    if channels == 1:
        if is_gray:
            return image
        gray = image.astype(np.float64) @ _LUMINANCE
        return np.round(gray).astype(image.dtype) if np.issubdtype(image.dtype, np.integer) else gray.astype(np.float32)
    return np.repeat(image[..., None], 3, axis=-1) if is_gray else image
