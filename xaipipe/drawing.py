"""Draw heatmaps: the one place that turns a map and an image into what a person sees.

- :func:`display_image` (and :func:`display_volume`, :func:`overlay_base`): an 8-bit
  copy of a loaded image or volume to draw on;
- :func:`resize_map` / :func:`map_at`: a map brought to the image's resolution;
- :func:`colorize`: a colour map; :func:`render`: the blend over a 2D image,
  :func:`overlay_frames` the same slice by slice for a volume, and :func:`draw`
  either one for a map and its image (2D and 3D alike, like MONAI's ``blend_images``).

Maps come in [0, 1], or in [-1, 1] where ``signed`` (a method's ``normalize: signed``,
recorded in its heatmaps file): a signed map is drawn with the diverging colour map
:data:`SIGNED_COLORMAP` (blue for negative, white at zero, red for positive), whatever
``colormap`` says. In every overlay a pixel's opacity is ``alpha * |v|``, so zero
attribution leaves the image as it is and only evidence is coloured.

The writers (:mod:`xaipipe.writers`), the decoder and the evaluation use these.
"""

from __future__ import annotations

import cv2
import numpy as np

from xaipipe.channels import convert_channels
from xaipipe.maps import resize_linear

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
RESIZE_METHODS = ("linear", "opencv")
#: The colour map of signed maps: matplotlib's ``bwr``, blue (-1) - white (0) - red (1), linear in each half.
SIGNED_COLORMAP = "bwr"


def value_range(signed: bool) -> tuple[float, float]:
    """The values a normalized map holds: [-1, 1] where ``signed``, else [0, 1]."""
    return (-1.0, 1.0) if signed else (0.0, 1.0)


# --- maps at the image's resolution --------------------------------------------------


def resize_map(
    heatmap: np.ndarray, shape: tuple[int, ...], method: str = "linear", clip: bool = True, signed: bool = False
) -> np.ndarray:
    """A (bi/tri)linear resize of a map to ``shape``, clipped to [0, 1] ([-1, 1] where ``signed``);
    the map itself if it has that shape.

    ``method``: ``linear`` is :func:`xaipipe.maps.resize_linear` (2D and 3D, float32);
    ``opencv`` is ``cv2.resize`` with ``INTER_LINEAR`` (2D only, keeps the dtype).
    Both interpolate with half-pixel centres, but they round differently: about
    40 % of the values differ by one float32 step (1.2e-7), which now and then
    moves an 8-bit colour level by one. Each caller keeps the method it has always
    used (``opencv`` for PNGs and the lesion check, ``linear`` elsewhere), so that
    outputs do not change. ``clip=False`` leaves the interpolated values as they are.
    """
    shape = tuple(shape)
    if heatmap.shape == shape:
        return heatmap
    if method == "linear":
        resized = resize_linear(heatmap[None], shape)[0]
    elif method == "opencv":
        resized = cv2.resize(heatmap, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    else:
        raise ValueError(f"unknown resize method {method!r}; valid: {', '.join(RESIZE_METHODS)}")
    return np.clip(resized, *value_range(signed)) if clip else resized


def map_at(heatmap: np.ndarray, shape: tuple[int, ...], signed: bool = False) -> np.ndarray:
    """A [0, 1] map (or [-1, 1] where ``signed``) resized (bi/trilinearly) to ``shape``, still in its range, float32."""
    return resize_map(heatmap, shape, signed=signed).astype(np.float32)


# --- colour and blend ----------------------------------------------------------------


def colorize(heatmap: np.ndarray, colormap: str = "jet", signed: bool = False) -> np.ndarray:
    """An (H, W) map in [0, 1] as an RGB uint8 image; a signed map in [-1, 1] in :data:`SIGNED_COLORMAP`.

    ``bwr`` at v in [-1, 1]: (1 + v, 1 + v, 1) for v < 0, (1, 1 - v, 1 - v) for v >= 0, times 255
    and rounded (matplotlib's ``bwr`` at (v + 1) / 2, computed rather than sampled from a table).
    """
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; valid: {', '.join(COLORMAPS)}")
    if heatmap.ndim != 2:
        raise ValueError(f"expected an (H, W) heatmap, got shape {heatmap.shape}")
    lo, hi = value_range(signed)
    if heatmap.size and (heatmap.min() < lo or heatmap.max() > hi):
        raise ValueError(f"heatmap values must lie in [{lo:g}, {hi:g}]" + (" (a signed map)" if signed else ""))
    if signed:
        v = heatmap.astype(np.float32)[..., None]
        rgb = np.where(v < 0, np.concatenate([1 + v, 1 + v, np.ones_like(v)], -1),
                       np.concatenate([np.ones_like(v), 1 - v, 1 - v], -1))  # fmt: skip
        return np.round(rgb * 255).astype(np.uint8)
    levels = np.round(heatmap * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def render(
    heatmap: np.ndarray,
    image: np.ndarray | None,
    overlay: bool = True,
    alpha: float = 0.25,
    colormap: str = "jet",
    signed: bool = False,
) -> np.ndarray:
    """The picture of one 2D heatmap (in [0, 1], or [-1, 1] where ``signed``) at the image's resolution.

    The map is resized to the image with ``cv2.resize`` (``resize_map(..., "opencv")``).
    ``overlay`` blends the coloured map over the RGB uint8 ``image`` with a per-pixel
    weight ``w = alpha * |v|``: out = (1 - w) * image + w * colour, so a pixel of zero
    attribution keeps the image's colour exactly; otherwise the coloured map is drawn alone.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if image is not None:
        heatmap = resize_map(heatmap, image.shape[:2], "opencv", signed=signed)
    colour = colorize(heatmap, colormap, signed)
    if not overlay or image is None:
        return colour
    weight = (alpha * np.abs(heatmap.astype(np.float32)))[..., None]
    blended = (1.0 - weight) * image.astype(np.float32) + weight * colour.astype(np.float32)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def overlay_frames(
    volume_rgb_uint8: np.ndarray,
    heatmap01: np.ndarray,
    overlay: bool = True,
    alpha: float = 0.25,
    colormap: str = "jet",
    signed: bool = False,
) -> np.ndarray:
    """Draw a 3D heatmap over an RGB uint8 volume, slice by slice: (D, H, W, 3) uint8.

    The (d, h, w) heatmap in [0, 1] ([-1, 1] where ``signed``) is resized trilinearly to
    the volume's (D, H, W) with :func:`map_at`, clipped to its range, and each slice is
    drawn by :func:`render` (blended with weight ``alpha * |v|`` when ``overlay``, else
    the coloured map alone).
    """
    volume = np.asarray(volume_rgb_uint8)
    heatmap = np.asarray(heatmap01)
    if volume.ndim != 4 or volume.shape[3] != 3 or volume.dtype != np.uint8:
        raise ValueError(f"expected a (D, H, W, 3) uint8 RGB volume, got {volume.dtype} of shape {volume.shape}")
    if heatmap.ndim != 3:
        raise ValueError(f"expected a (d, h, w) heatmap, got shape {heatmap.shape}")
    if heatmap.size == 0 or not np.all(np.isfinite(heatmap)):
        raise ValueError("heatmap is empty or holds NaN or infinite values")
    # clipped also where no resize was needed
    resized = np.clip(map_at(heatmap, volume.shape[:3], signed), *value_range(signed))
    slices = [render(resized[z], volume[z], overlay, alpha, colormap, signed) for z in range(volume.shape[0])]
    return np.stack(slices).astype(np.uint8, copy=False)


def draw(
    heatmap: np.ndarray,
    image: np.ndarray,
    spatial_dims: int,
    overlay: bool = True,
    alpha: float = 0.25,
    colormap: str = "jet",
    signed: bool = False,
) -> np.ndarray:
    """A normalized map drawn at the resolution of its 8-bit gray or RGB image (2D) or volume (3D).

    (H, W, 3) uint8 for a 2D image (:func:`render`), (D, H, W, 3) for a volume
    (:func:`overlay_frames`); gray images are repeated to three channels first.
    ``signed``: the map is in [-1, 1] and drawn in :data:`SIGNED_COLORMAP`.
    """
    if spatial_dims == 2:
        return render(heatmap, convert_channels(image, 3), overlay, alpha, colormap, signed)
    return overlay_frames(convert_channels(image, 3, 3), heatmap, overlay, alpha, colormap, signed)


# --- display scaling -----------------------------------------------------------------


def display_image(image: np.ndarray, spatial_dims: int = 2) -> np.ndarray:
    """An 8-bit RGB copy of a loaded image (H, W, 3) or volume (D, H, W, 3) to draw overlays on.

    8-bit images are kept as they are; other 2D images are scaled from their own
    minimum and maximum to 0..255; volumes as :func:`display_volume` does.
    """
    if image.ndim == spatial_dims + 1 and image.shape[-1] == 1:
        image = image[..., 0]
    if spatial_dims == 3:
        return display_volume(image)
    if image.dtype != np.uint8:
        lo, hi = float(image.min()), float(image.max())
        scaled = (image.astype(np.float64) - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros(image.shape)
        image = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    return convert_channels(image, 3)


def overlay_base(image: np.ndarray, spatial_dims: int) -> np.ndarray:
    """The 8-bit image that overlays are drawn on: RGB for 2D, gray or RGB for volumes (smaller to store)."""
    display = display_image(image, spatial_dims)
    gray_source = image.ndim == spatial_dims or image.shape[-1] == 1
    return display[..., 0] if spatial_dims == 3 and gray_source else display


def display_volume(array: np.ndarray) -> np.ndarray:
    """A (D, H, W, 3) uint8 display copy of a loaded volume.

    - Gray (D, H, W), e.g. Hounsfield units: scaled linearly so that the
      volume's own 0.5th percentile maps to 0 and its 99.5th percentile to 255,
      values beyond clipped (a robust window that ignores a few outliers such as
      metal or air); a constant volume becomes 0. NaN voxels become 0.
    - RGB uint8 (D, H, W, 3): kept as it is.
    - Other RGB (D, H, W, 3): scaled from the array's minimum (0) to its maximum (255).

    Gray is repeated to three channels.
    """
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[3] == 3:
        if array.dtype == np.uint8:
            return array.copy()
        lo_hi = (np.nanmin(array), np.nanmax(array)) if array.size else (0, 0)
        return _scale_to_uint8(array, float(lo_hi[0]), float(lo_hi[1]))
    if array.ndim != 3:
        raise ValueError(f"expected a (D, H, W) or (D, H, W, 3) volume, got shape {array.shape}")
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size == 0:
        gray = np.zeros(array.shape, dtype=np.uint8)
    else:
        lo, hi = np.percentile(finite.astype(np.float64), [0.5, 99.5])
        gray = _scale_to_uint8(array, float(lo), float(hi))
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)


def _scale_to_uint8(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``lo`` to 0 and ``hi`` to 255 linearly, clipped and rounded; all zeros when ``hi <= lo``."""
    if not hi > lo:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (array.astype(np.float64) - lo) * (255.0 / (hi - lo))
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
