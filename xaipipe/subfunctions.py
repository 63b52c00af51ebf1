"""Subfunctions: the preprocessing steps applied before the resize, in the order configured.

Each works on 2D images (H, W) / (H, W, C) and on volumes (D, H, W) / (D, H, W, C);
``spatial_dims`` says which of the two an array is (2 or 3), so a trailing channel
axis is never mistaken for a spatial one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xaipipe.channels import convert_channels

PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap", "minimum", "maximum", "mean", "median")


def _spatial(array: np.ndarray, spatial_dims: int) -> tuple[int, ...]:
    return array.shape[:spatial_dims]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _sizes(shape: Any) -> bool:
    """Whether ``shape`` is a list or tuple of whole sizes of at least 1."""
    return (
        isinstance(shape, (list, tuple))
        and len(shape) > 0
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    )


@dataclass(frozen=True)
class Padding:
    """Pad to a square/cube (``shape: square``) or to at least ``shape``, centred, with a numpy pad mode."""

    shape: str | tuple[int, ...] = "square"
    mode: str = "constant"

    def __post_init__(self) -> None:
        if self.mode not in PAD_MODES:
            raise ValueError(f"padding mode must be one of {PAD_MODES}, got {self.mode!r}")
        if self.shape != "square" and not _sizes(self.shape):
            raise ValueError(f"padding shape must be 'square' or a list of whole sizes of at least 1, got {self.shape!r}")

    def _widths(self, current: tuple[int, ...], spatial_dims: int) -> list[tuple[int, int]]:
        if self.shape == "square":
            target = (max(current),) * spatial_dims
        else:
            if len(self.shape) != spatial_dims:
                raise ValueError(f"padding shape {list(self.shape)} does not fit a {spatial_dims}D image")
            target = tuple(max(c, t) for c, t in zip(current, self.shape))
        return [((t - c) // 2, (t - c) - (t - c) // 2) for c, t in zip(current, target)]

    def window(
        self, current: tuple[int, ...], spatial_dims: int, rng: np.random.Generator
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(start, shape) of the result in the grid of an input of spatial shape ``current`` (start <= 0)."""
        widths = self._widths(current, spatial_dims)
        return tuple(-before for before, _ in widths), tuple(c + a + b for c, (a, b) in zip(current, widths))

    def __call__(self, array: np.ndarray, spatial_dims: int, rng: np.random.Generator) -> np.ndarray:
        widths = self._widths(_spatial(array, spatial_dims), spatial_dims)
        widths += [(0, 0)] * (array.ndim - spatial_dims)
        return np.pad(array, widths, mode=self.mode)


@dataclass(frozen=True)
class Crop:
    """Crop to ``shape``: the centre, or a random window drawn from the run's fixed seed."""

    shape: tuple[int, ...]
    mode: str = "center"

    def __post_init__(self) -> None:
        if self.mode not in ("center", "random"):
            raise ValueError(f"crop mode must be 'center' or 'random', got {self.mode!r}")
        if not _sizes(self.shape):
            shape = list(self.shape) if isinstance(self.shape, tuple) else self.shape
            raise ValueError(f"crop shape must be a list of whole sizes of at least 1, got {shape!r}")

    def window(
        self, current: tuple[int, ...], spatial_dims: int, rng: np.random.Generator
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(start, shape) of the result in the grid of an input of spatial shape ``current`` (draws from ``rng``)."""
        if len(self.shape) != spatial_dims:
            raise ValueError(f"crop shape {list(self.shape)} does not fit a {spatial_dims}D image")
        if any(t > c for c, t in zip(current, self.shape)):
            raise ValueError(f"crop shape {list(self.shape)} is larger than the image {list(current)}")
        if self.mode == "center":
            starts = [(c - t) // 2 for c, t in zip(current, self.shape)]
        else:
            starts = [int(rng.integers(0, c - t + 1)) for c, t in zip(current, self.shape)]
        return tuple(starts), tuple(self.shape)

    def __call__(self, array: np.ndarray, spatial_dims: int, rng: np.random.Generator) -> np.ndarray:
        starts, shape = self.window(_spatial(array, spatial_dims), spatial_dims, rng)
        return array[tuple(slice(s, s + t) for s, t in zip(starts, shape))]


@dataclass(frozen=True)
class Clip:
    """Clip intensities to [min, max]; lists give one bound per channel."""

    min: float | list[float] | None = None
    max: float | list[float] | None = None

    def __post_init__(self) -> None:
        for name, value in (("min", self.min), ("max", self.max)):
            values = value if isinstance(value, list) and value else [value]
            if value is not None and not all(_is_number(v) for v in values):
                raise ValueError(f"clip {name} must be a number, a list of numbers or null, got {value!r}")
        if self.min is not None and self.max is not None:
            if isinstance(self.min, list) and isinstance(self.max, list) and len(self.min) != len(self.max):
                raise ValueError(f"clip min {self.min!r} and max {self.max!r} differ in length")
            if np.any(np.asarray(self.min, np.float64) > np.asarray(self.max, np.float64)):
                raise ValueError(f"clip min {self.min!r} is above max {self.max!r}")

    def __call__(self, array: np.ndarray, spatial_dims: int, rng: np.random.Generator) -> np.ndarray:
        channels = array.shape[-1] if array.ndim > spatial_dims else 1
        bounds = []
        for name, value in (("min", self.min), ("max", self.max)):
            if isinstance(value, list) and len(value) != channels:
                raise ValueError(f"clip {name} has {len(value)} values for an image with {channels} channels")
            bounds.append(None if value is None else np.asarray(value, np.float64))
        lo, hi = bounds
        if np.issubdtype(array.dtype, np.integer):  # the result keeps the type: a bound beyond it would wrap around
            info = np.iinfo(array.dtype)
            if lo is not None and np.any(lo > info.max):
                raise ValueError(f"clip min {self.min!r} is above the largest {array.dtype} value {info.max}")
            if hi is not None and np.any(hi < info.min):
                raise ValueError(f"clip max {self.max!r} is below the smallest {array.dtype} value {info.min}")
        clipped = np.clip(array.astype(np.float64), lo, hi)
        return clipped.astype(array.dtype) if np.issubdtype(array.dtype, np.integer) else clipped.astype(np.float32)


@dataclass(frozen=True)
class ColorConstancy:
    """Shades-of-gray colour constancy (Finlayson & Trezzi 2004) with Minkowski norm ``power``.

    Each channel is divided by its p-norm mean and the image is rescaled so the
    channels' mean illuminant becomes neutral gray: I_c * sqrt(3) * n_c^-1 * |n|,
    with n_c = (mean(I_c^p))^(1/p).
    """

    power: float = 6.0

    def __post_init__(self) -> None:
        if not _is_number(self.power) or self.power < 1:
            raise ValueError(f"color_constancy power must be a number of at least 1, got {self.power!r}")

    def __call__(self, array: np.ndarray, spatial_dims: int, rng: np.random.Generator) -> np.ndarray:
        if array.ndim == spatial_dims or array.shape[-1] != 3:
            raise ValueError("color constancy needs an RGB image")
        values = array.astype(np.float64)
        norm = np.power(np.power(values, self.power).reshape(-1, 3).mean(axis=0), 1.0 / self.power)
        gain = np.linalg.norm(norm) / (norm * np.sqrt(3.0)) if np.all(norm > 0) else np.ones(3)
        out = values * gain
        if array.dtype == np.uint8:
            return np.clip(np.round(out), 0, 255).astype(np.uint8)
        if array.dtype == np.uint16:
            return np.clip(np.round(out), 0, 65535).astype(np.uint16)
        return out.astype(np.float32)


@dataclass(frozen=True)
class ChannelConversion:
    """Convert gray to RGB (``channels: 3``) or RGB to gray (``channels: 1``, luminance)."""

    channels: int

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")

    def __call__(self, array: np.ndarray, spatial_dims: int, rng: np.random.Generator) -> np.ndarray:
        return convert_channels(array, self.channels, spatial_dims)


_KINDS: dict[str, type] = {
    "padding": Padding,
    "crop": Crop,
    "clip": Clip,
    "color_constancy": ColorConstancy,
    "channels": ChannelConversion,
}


def from_config(entry: dict[str, Any]) -> Any:
    """A subfunction from its config entry, e.g. ``{name: crop, shape: [128, 128], mode: center}``."""
    entry = dict(entry)
    name = entry.pop("name", None)
    if name not in _KINDS:
        raise ValueError(f"unknown subfunction {name!r}; valid: {', '.join(_KINDS)}")
    for key in ("shape",):
        if isinstance(entry.get(key), list):
            entry[key] = tuple(entry[key])
    try:
        return _KINDS[name](**entry)
    except TypeError as error:
        raise ValueError(f"subfunction {name}: {error}") from None


@dataclass
class Pipeline:
    """Subfunctions applied in order, with one random generator seeded per sample."""

    steps: list = field(default_factory=list)
    seed: int = 0

    def __call__(self, array: np.ndarray, spatial_dims: int, sample_index: int = 0) -> np.ndarray:
        rng = np.random.default_rng([self.seed, sample_index])
        for step in self.steps:
            array = step(array, spatial_dims, rng)
        return array

    def grid_start(self, shape: tuple[int, ...], spatial_dims: int, sample_index: int = 0) -> tuple[int, ...]:
        """The index, in the grid of an input of spatial ``shape``, of voxel 0 of what :meth:`__call__` returns.

        The steps that change the grid (padding, crop) say where their result lies (``window``),
        with the same random draws as when they run; the other steps keep the grid and draw nothing.
        """
        rng = np.random.default_rng([self.seed, sample_index])
        start = np.zeros(spatial_dims, np.int64)
        current = tuple(int(s) for s in shape[:spatial_dims])
        for step in self.steps:
            if hasattr(step, "window"):
                offset, current = step.window(current, spatial_dims, rng)
                start += np.asarray(offset, np.int64)
        return tuple(int(s) for s in start)
