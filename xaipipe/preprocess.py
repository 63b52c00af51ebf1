"""Bring a loaded image or volume to the model's input.

The order is fixed: the subfunctions (in the order configured), then the
conversion to the model's channel count, then the resize, then the
standardization. 2D images are (H, W) or (H, W, 3); volumes (D, H, W) or (D, H, W, 3).

The input range of each standardization mode (2D images and volumes alike; the
type is the sample's after the subfunctions, before the resize):

- ``none``: the values as stored, as float32 (a 16-bit image gives 0..65535), for
  models trained on raw values.
- ``minmax`` (to 0..1), ``grayscale`` (to 0..255) and ``z-score`` (zero mean, unit
  standard deviation): from each image's own statistics, so any type and range, and
  the same picture stored in 8 or 16 bits gives the same input.
- ``tf`` (0..255 -> -1..1), ``caffe`` (BGR, ImageNet means subtracted from 0..255) and
  ``torch`` (0..255 -> 0..1, ImageNet mean and std), the Keras applications' modes,
  take 0..255 values: uint8 as stored, uint16 scaled by 255/65535 (so 65535 is 255),
  and every other type (float, signed integers, bool) as 0..255 values as given; a
  sample of another type with values outside 0..255 (Hounsfield units, say) is a
  ValueError saying to convert or clip it, or to choose a per-image mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import SimpleITK as sitk

from xaipipe import subfunctions as sf
from xaipipe.channels import check_dims, convert_channels
from xaipipe.geometry import (
    Geometry,
    check_orientation,
    of_image,
    reorient,
    resample_to_spacing,
)
from xaipipe.maps import resize_linear

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
VOLUME_INTERPOLATIONS = ("nearest", "linear")
#: The pixel types OpenCV's linear, cubic, area and Lanczos resize take (its nearest takes int32 too).
_OPENCV_RESIZES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64))
STANDARDIZE_MODES = ("none", "minmax", "z-score", "grayscale", "tf", "caffe", "torch")
FIXED_RANGE_MODES = ("tf", "caffe", "torch")  # modes that take 0..255 values (module docstring)

#: A sample with a side below 1/SMALL_FRACTION of the model input's (or of one pixel) is warned about:
#: the model then sees mostly interpolation.
SMALL_FRACTION = 4


def small_image_warning(shape: tuple[int, ...], size: tuple[int, ...]) -> str | None:
    """Why a sample of spatial ``shape`` is much smaller than the model input ``size``, or None.

    Much smaller: a single pixel (voxel), or any side below a quarter of the model input's.
    """
    shape, size = tuple(int(s) for s in shape[: len(size)]), tuple(int(s) for s in size)
    if all(s == 1 for s in shape) or any(s * SMALL_FRACTION < m for s, m in zip(shape, size, strict=True)):
        return (
            f"{'x'.join(map(str, shape))} is much smaller than the model input {'x'.join(map(str, size))} "
            f"(a side below 1/{SMALL_FRACTION} of it): its map shows mostly the upsampling; check the file"
        )
    return None


#: A sample whose values fill less than this share of the 0..255 that a fixed-range mode (tf, caffe, torch) takes
#: is warned about: the model sees a nearly black image (float data scaled to 0..1, 12-bit data in 16-bit files).
DIM_FRACTION = 1 / 16


def range_warning(image: np.ndarray, mode: str) -> str | None:
    """Why a sample's values fill only a sliver of the 0..255 that ``mode`` takes, or None: 0..1 floats under
    ``tf`` (the model sees -1..-0.99), 12-bit values stored in 16 bits (scaled by 255/65535 to at most 16)."""
    if mode not in FIXED_RANGE_MODES or not image.size or image.dtype == np.uint8:
        return None
    hi = float(image.max()) * input_scale(image, mode)
    if hi <= 0 or hi >= 255 * DIM_FRACTION:
        return None
    stored = f"{image.dtype} values up to {float(image.max()):g}"
    scaled = f" (scaled by 255/65535 to {hi:.3g})" if image.dtype == np.uint16 else ""
    hint = ("12-bit data stored in 16 bits? " if image.dtype == np.uint16 else
            "values scaled to 0..1? " if hi <= 1 else "")  # fmt: skip
    return (
        f"its {stored}{scaled} fill less than 1/{round(1 / DIM_FRACTION)} of the 0..255 that standardize {mode} "
        f"takes: the model sees a nearly black image; {hint}choose standardize minmax or z-score (per image), "
        "or scale the files to the range the model was trained on"
    )


_IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """How an image (2D) or volume (3D) becomes a model input.

    size: (height, width) or (depth, height, width) of the model input; its length
        decides whether samples are 2D images or volumes.
    channels: 1 (gray) or 3 (RGB) channels of the model input.
    standardize: one of STANDARDIZE_MODES (each mode's input range: the module docstring).
    interpolation: one of INTERPOLATIONS (volumes: nearest or linear).
    subfunctions: steps applied before everything else, in order (see xaipipe.subfunctions).
    seed: seed of random subfunctions (a random crop), combined with the sample's position.
    orientation: volumes only: ``none``, or the axis code (``RAS``, ``LPS``, ...) every volume is
        reoriented to before everything else (:func:`xaipipe.geometry.reorient`).
    spacing: volumes only: None, or the voxel size (z, y, x) in mm every volume is resampled to
        (linearly) after the reorientation (:func:`xaipipe.geometry.resample_to_spacing`).
    """

    size: tuple[int, ...]
    channels: int = 3
    standardize: str = "minmax"
    interpolation: str = "area"
    subfunctions: tuple = field(default=())
    seed: int = 0
    orientation: str = "none"
    spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.orientation != "none" or self.spacing is not None:
            if len(self.size) != 3:
                raise ValueError(
                    "preprocessing.orientation and preprocessing.spacing apply to volumes only; leave them at "
                    "none and null for 2D images"
                )
            check_orientation(self.orientation)
        if self.spacing is not None and (
            len(self.spacing) != 3 or not all(isinstance(v, (int, float)) and 0 < v < float("inf") for v in self.spacing)
        ):
            raise ValueError(
                f"preprocessing.spacing must be null or three positive sizes (z, y, x) in mm, got {list(self.spacing)}"
            )
        if len(self.size) not in (2, 3) or min(self.size) < 1:
            raise ValueError(f"preprocessing.size must be [height, width] or [depth, height, width], got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"preprocessing.channels must be 1 or 3, got {self.channels}")
        if self.standardize not in STANDARDIZE_MODES:
            raise ValueError(
                f"preprocessing.standardize must be one of {STANDARDIZE_MODES}, got {self.standardize!r}"
            )
        allowed = VOLUME_INTERPOLATIONS if self.spatial_dims == 3 else tuple(INTERPOLATIONS)
        if self.interpolation not in allowed:
            raise ValueError(
                f"preprocessing.interpolation must be one of {allowed} for {self.spatial_dims}D inputs, "
                f"got {self.interpolation!r}"
            )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Preprocessing":
        steps = []
        for position, entry in enumerate(cfg.get("subfunctions", [])):
            try:
                steps.append(sf.from_config(entry))
            except ValueError as error:
                raise ValueError(f"config key preprocessing.subfunctions[{position}]: {error}") from None
        moves = [k for k, step in enumerate(steps) if isinstance(step, (sf.Crop, sf.Padding))]
        if len(cfg["size"]) == 2 and moves and not cfg.get("preprocess_overlay", True):
            # volumes carry their grid and are placed back; an image would be stretched over the original
            raise ValueError(
                f"config key preprocessing.preprocess_overlay: false draws each map on the untouched 2D image, "
                f"but subfunctions[{moves[0]}] crops or pads it, so the map would be stretched over the whole "
                "image, off the region the model saw; set it true (overlays on the image the model saw)"
            )
        interpolation = cfg.get("interpolation", "auto")
        if interpolation == "auto":
            interpolation = "area" if len(cfg["size"]) == 2 else "linear"
        return cls(
            size=tuple(cfg["size"]),
            channels=cfg["channels"],
            standardize=cfg["standardize"],
            interpolation=interpolation,
            subfunctions=tuple(steps),
            seed=cfg.get("seed", 0),
            orientation=cfg.get("orientation", "none"),
            spacing=None if cfg.get("spacing") is None else tuple(cfg["spacing"]),
        )

    @property
    def spatial_dims(self) -> int:
        return len(self.size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (*self.size, self.channels)

    @property
    def resamples(self) -> bool:
        """Whether volumes are reoriented or resampled for the model (their maps are resampled back)."""
        return self.orientation != "none" or self.spacing is not None

    def model_grid(self, image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, Geometry]:
        """A volume on the model's grid: reoriented and resampled as ``orientation`` and ``spacing`` say
        (the volume itself where neither is set), with that grid's geometry."""
        if not self.resamples:
            return image, geometry
        volume = geometry.image(image)
        if self.orientation != "none":
            volume = reorient(volume, self.orientation)
        if self.spacing is not None:
            volume = resample_to_spacing(volume, self.spacing, self.interpolation)
        return sitk.GetArrayFromImage(volume), of_image(volume)

    def grid_start(self, shape: tuple[int, ...], sample_index: int = 0) -> tuple[int, ...]:
        """Where the subfunctions' result starts in the grid of an input of ``shape`` (crop, padding)."""
        return sf.Pipeline(list(self.subfunctions), self.seed).grid_start(shape, self.spatial_dims, sample_index)

    def apply_subfunctions(self, image: np.ndarray, sample_index: int = 0) -> np.ndarray:
        """The image after the subfunctions (what overlays use with ``preprocess_overlay``)."""
        check_dims(image, self.spatial_dims)
        return sf.Pipeline(list(self.subfunctions), self.seed)(image, self.spatial_dims, sample_index)

    def model_input(self, image: np.ndarray, sample_index: int = 0) -> np.ndarray:
        """The float32 (*size, channels) model input for a loaded image or volume."""
        return self.finish(self.apply_subfunctions(image, sample_index))

    def finish(self, image: np.ndarray, run_resize: bool = True, run_standardize: bool = True) -> np.ndarray:
        """What follows the subfunctions: channel conversion, resize, standardization (float32, with channel axis).

        The standardization's input range follows from the type ``image`` has here,
        before the resize (which may change it): see the module docstring.
        """
        scale = input_scale(image, self.standardize) if run_standardize else 1.0
        image = convert_channels(image, self.channels, self.spatial_dims)
        if run_resize:
            image = resize(image, self.size, self.interpolation)
        if image.ndim == self.spatial_dims:
            image = image[..., None]
        if not run_standardize:
            return image
        with np.errstate(over="ignore", invalid="ignore"):
            values = image.astype(np.float32)
            out = standardize(values * np.float32(scale) if scale != 1.0 else values, self.standardize)
        bad = out.size - int(np.count_nonzero(np.isfinite(out)))
        if bad:
            raise ValueError(
                f"{bad} model input values are not finite after the resize and standardization: the "
                f"{image.dtype} values ({float(image.min()):g}..{float(image.max()):g}) exceed float32; rescale the file"
            )
        return out


def resize(image: np.ndarray, size: tuple[int, ...], interpolation: str) -> np.ndarray:
    """Resize the spatial axes of a 2D image (OpenCV) or a volume (separable linear or nearest)."""
    spatial = image.shape[: len(size)]
    if tuple(spatial) == tuple(size):
        return image
    if len(size) == 2:
        height, width = size
        if image.dtype == bool:
            image = image.astype(np.uint8)
        elif image.dtype not in _OPENCV_RESIZES and interpolation != "nearest":  # a CT in HU (int32), int8, ...
            image = image.astype(np.float64)  # exact for every int32 value; OpenCV's resize refuses the type
        return cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation])
    moved = np.moveaxis(image, -1, 0) if image.ndim == 4 else image[None]
    if interpolation == "nearest":
        index = np.ix_(*[np.minimum((np.arange(n) + 0.5) * (s / n), s - 1).astype(np.intp) for n, s in zip(size, spatial)])
        out = moved[(slice(None), *index)]
    else:
        out = resize_linear(moved.astype(np.float32), tuple(size))
    return np.moveaxis(out, 0, -1) if image.ndim == 4 else out[0]


def input_scale(image: np.ndarray, mode: str) -> float:
    """The factor that brings ``image`` to the 0..255 values that ``mode`` takes (1 for the per-image modes and none).

    uint8: 1; uint16: 255/65535; other types: 1, and a ValueError when a value lies
    outside 0..255 (module docstring).
    """
    if mode not in FIXED_RANGE_MODES or image.dtype == np.uint8:
        return 1.0
    if image.dtype == np.uint16:
        return 255.0 / 65535.0
    if image.size:
        lo, hi = float(image.min()), float(image.max())
        if not (lo >= 0.0 and hi <= 255.0):
            raise ValueError(
                f"preprocessing.standardize {mode} takes 8-bit data, 16-bit data (scaled by 255/65535) or other "
                f"types as 0..255 values; this {image.dtype} sample holds {lo:g}..{hi:g}, outside 0..255: convert "
                "it to 8 or 16 bit, clip it to 0..255 (subfunction clip), or choose minmax, z-score or none"
            )
    return 1.0


def standardize(image: np.ndarray, mode: str) -> np.ndarray:
    """Standardize a float32 (..., C) image; per-image statistics for minmax, grayscale and z-score.

    ``tf``, ``caffe`` and ``torch`` take 0..255 values (:func:`input_scale` brings 16-bit data there).
    """
    if mode == "none":
        return image
    if mode in ("minmax", "grayscale", "z-score"):  # in float64: differences of float32 values may overflow it
        values = image.astype(np.float64)
        if mode == "z-score":
            std = float(values.std())
            return ((values - values.mean()) / std if std > 0 else np.zeros_like(values)).astype(np.float32)
        lo, hi = float(values.min()), float(values.max())
        scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
        return (scaled * 255.0 if mode == "grayscale" else scaled).astype(np.float32)
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
