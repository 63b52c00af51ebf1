"""Draw heatmaps: a colormap, optionally blended over the image."""

from __future__ import annotations

import cv2
import numpy as np

COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "hot": cv2.COLORMAP_HOT,
    "bone": cv2.COLORMAP_BONE,
}


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """An (H, W) map in [0, 1] as an RGB uint8 image."""
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; valid: {', '.join(COLORMAPS)}")
    if heatmap.ndim != 2:
        raise ValueError(f"expected an (H, W) heatmap, got shape {heatmap.shape}")
    if heatmap.size and (heatmap.min() < 0 or heatmap.max() > 1):
        raise ValueError("heatmap values must lie in [0, 1]")
    levels = np.round(heatmap * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def render(
    heatmap: np.ndarray, image: np.ndarray | None, overlay: bool = True, alpha: float = 0.25, colormap: str = "jet"
) -> np.ndarray:
    """The picture of one heatmap at the image's resolution.

    ``overlay`` blends the coloured map over the RGB uint8 ``image`` with weight
    ``alpha`` (out = (1 - alpha) * image + alpha * colour); otherwise the coloured
    map is drawn alone.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if image is not None and image.shape[:2] != heatmap.shape:
        heatmap = cv2.resize(heatmap, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
        heatmap = np.clip(heatmap, 0.0, 1.0)
    colour = colorize(heatmap, colormap)
    if not overlay or image is None:
        return colour
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
