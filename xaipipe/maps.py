"""Operations on heatmaps shared by every method: resizing and normalization."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

_RELATIVE_TOLERANCE = 1e-6


def resize_linear(maps: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize (N, *spatial) maps to (N, *shape) by separable (bi/tri)linear interpolation, in float32.

    Pixel centres are aligned as in OpenCV's INTER_LINEAR and ``tf.image.resize``
    (half-pixel offsets), for 2D and 3D maps alike. Each axis is one matrix product with its
    :func:`interpolation_matrix` (BLAS; the shrinking axes first, so the products that enlarge
    come last, on the least data), on one thread (:func:`one_blas_thread`): a 64^3 map from an 8^3 CAM in
    0.1-0.2 ms, against 0.3 ms for the same products compiled in TensorFlow (:func:`resize_linear_ops`).
    """
    if maps.ndim != len(shape) + 1:
        raise ValueError(f"maps of shape {maps.shape} cannot be resized to {shape}")
    out = maps.astype(np.float32, copy=False)
    with one_blas_thread():
        return _resized(out, shape)


def _resized(out: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    # the shrinking axes first, the most enlarged last; among axes enlarged alike, the last axis first: a product
    # along it is one tall, thin matrix product, which OpenBLAS writes 25-35% more slowly than the stacked products
    # along another axis (an 8^3 -> 64^3 map: 1.16-1.26 ms per 5 maps ending on the middle axis, 1.68 on the last)
    last = out.ndim - 1
    for axis in sorted(range(1, out.ndim), key=lambda a: (shape[a - 1] / max(out.shape[a], 1), a != last, a)):
        n_in, n_out = out.shape[axis], shape[axis - 1]
        if n_in == n_out:
            continue
        out = matrix_along_axis(out, axis, _interpolation_matrix(n_in, n_out))
    return out


def matrix_along_axis(array: np.ndarray, axis: int, matrix: np.ndarray) -> np.ndarray:
    """``array`` with each 1D line along ``axis`` (n_in values) replaced by ``matrix`` (n_out, n_in) times it:
    batched matrix products on (before, n_in, after) blocks, no axis moved (a separable resize or blur)."""
    n_out, n_in = matrix.shape
    before, after = int(np.prod(array.shape[:axis])), int(np.prod(array.shape[axis + 1 :]))
    if after == 1:  # the last axis: one product of all rows with the matrix
        product = array.reshape(before, n_in) @ matrix.T
    else:  # (n_out, n_in) @ (before, n_in, after): one product per leading index
        product = np.matmul(matrix, array.reshape(before, n_in, after))
    return product.reshape(*array.shape[:axis], n_out, *array.shape[axis + 1 :])


@functools.cache
def _blas_threads() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread() -> Any:
    """A context in which numpy's BLAS runs on one thread. Its worker threads spin for a while after each call,
    which on a few cores takes them from the model's own threads (TensorFlow's, in the same or another process):
    with them the 3D CNN's forward pass right after an upsampling took 1.5x as long."""
    return _blas_threads().limit(limits=1, user_api="blas")


def _linear_sources(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``n_out`` output positions: its two neighbouring input positions and the weight of the
    second, with half-pixel centres (OpenCV's INTER_LINEAR); clamped at the borders."""
    coords = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(coords).astype(np.intp)
    return lo, np.minimum(lo + 1, n_in - 1), (coords - lo).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """:func:`interpolation_matrix`, made once per pair of sizes (read-only)."""
    matrix = interpolation_matrix(n_in, n_out)
    matrix.flags.writeable = False
    return matrix


def interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float32: linear interpolation along one axis as a matrix (rows sum to 1),
    the same weights as :func:`resize_linear`."""
    lo, hi, w = _linear_sources(n_in, n_out)
    matrix = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, lo), 1 - w)
    np.add.at(matrix, (rows, hi), w)
    return matrix


#: How a method's raw maps are scaled for display and evaluation (``normalize``), see :func:`normalize_maps`.
NORMALIZATIONS = ("minmax", "positive", "absolute", "signed")
#: The normalization whose maps keep their sign: values in [-1, 1], drawn with a diverging colour map.
SIGNED = "signed"
NOT_FINITE = "heatmap holds NaN or infinite values"


def normalize_maps(maps: np.ndarray, mode: str = "minmax") -> np.ndarray:
    """Scale each map of (N, ...) by one of :data:`NORMALIZATIONS`:

    - ``minmax``: (v - min) / (max - min), in [0, 1]; a constant map (all values equal,
      zeros included) becomes zeros. The test for a flat map is relative to the map's
      magnitude, so maps whose values are all tiny (vanishing gradients) still reach
      exactly 1 at their maximum.
    - ``positive``: max(v, 0) / max(v), in [0, 1]: negative evidence is dropped and zero
      stays zero; a map with no positive value becomes zeros.
    - ``absolute``: |v| / max |v|, in [0, 1]; an all-zero map stays zeros.
    - ``signed``: v / max |v|, in [-1, 1], the sign kept; an all-zero map stays zeros.

    Non-finite values are an error, not something to hide. The same as
    :func:`apply_normalization` with the maps' own :func:`normalization_params`, which is how a
    heatmaps file keeps its normalized maps: the raw maps and two numbers per map.
    """
    return apply_normalization(maps, mode, *normalization_params(maps, mode))


def normalization_params(maps: np.ndarray, mode: str = "minmax") -> tuple[np.ndarray, np.ndarray]:
    """(offset, divisor), each (N,) float32, of :func:`normalize_maps` for each map of (N, ...):

    ``minmax``: (min, max - min), the divisor 0 for a flat map; the other modes: (0, the largest
    value of max(v, 0) or |v|, or 1 where that is 0). From each map's minimum and maximum alone
    (max |v| = max(|min|, |max|)); a ValueError where a map holds NaN or infinite values.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {mode!r}")
    maps = np.asarray(maps, dtype=np.float32)
    flat = maps.reshape(len(maps), int(np.prod(maps.shape[1:])))
    if not flat.size:
        zeros = np.zeros(len(flat), np.float32)
        return zeros, zeros if mode == "minmax" else zeros + 1
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):  # NaN propagates to both, infinities to one
        raise ValueError(NOT_FINITE)
    if mode == "minmax":
        span = hi - lo
        flat_maps = span <= _RELATIVE_TOLERANCE * np.maximum(np.abs(lo), np.abs(hi))
        return lo, np.where(flat_maps, np.float32(0), span).astype(np.float32)
    top = np.maximum(hi, np.float32(0)) if mode == "positive" else np.maximum(np.abs(lo), np.abs(hi))
    return np.zeros_like(lo), np.where(top > 0, top, np.float32(1)).astype(np.float32)


def apply_normalization(maps: np.ndarray, mode: str, offset: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    """Maps (N, ...) scaled as ``mode`` says with each map's (offset, divisor) (:func:`normalization_params`), in
    float32: ``minmax`` (v - offset) / divisor, zeros where the divisor is 0 (a flat map); ``positive``
    max(v, 0) / divisor; ``absolute`` |v| / divisor; ``signed`` v / divisor. NaN parameters give NaN maps."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {list(NORMALIZATIONS)}, got {mode!r}")
    maps = np.asarray(maps, dtype=np.float32)
    flat = maps.reshape(len(maps), int(np.prod(maps.shape[1:])))
    offset = np.asarray(offset, np.float32).reshape(-1, 1)
    divisor = np.asarray(divisor, np.float32).reshape(-1, 1)
    if mode == "minmax":
        flat_maps = divisor[:, 0] == 0
        scaled = flat - offset  # one new array, then in place: this runs on every batch of maps
        # a division, not a product with 1 / divisor, whose rounding can leave the maximum at 0.99999994
        np.divide(scaled, np.where(flat_maps[:, None], np.float32(1), divisor), out=scaled)
        scaled[flat_maps] = 0.0
        return scaled.reshape(maps.shape)
    scaled = np.maximum(flat, 0.0) if mode == "positive" else np.abs(flat) if mode == "absolute" else flat.copy()
    np.divide(scaled, divisor, out=scaled)
    return scaled.reshape(maps.shape)


def resize_linear_ops(maps, shape: tuple[int, ...]):
    """:func:`resize_linear` in ``keras.ops``, to run inside a compiled function: (N, *s) -> (N, *shape).

    Volumes are resized by products with the three axes' interpolation matrices
    (:func:`interpolation_matrix`), the same separable trilinear interpolation; on a
    64^3 map it takes about half the time of two bilinear image resizes, in TensorFlow.
    """
    from keras import ops

    spatial = tuple(int(n) for n in maps.shape[1:])
    if spatial == tuple(shape):
        return maps
    if len(shape) == 2:
        return ops.image.resize(maps[..., None], shape, interpolation="bilinear")[..., 0]
    (d, h, w), (_, out_h, out_w) = spatial, shape
    depth, height, width = (ops.convert_to_tensor(interpolation_matrix(n_in, n_out), dtype=maps.dtype)
                            for n_in, n_out in zip(spatial, shape))  # fmt: skip
    # three (batched) matrix products, each contracting the axis it changes in place: no transposes
    x = ops.matmul(ops.reshape(maps, (-1, w)), ops.transpose(width))  # (n d h, W)
    x = ops.matmul(height, ops.reshape(x, (-1, h, out_w)))  # (n d, H, W)
    x = ops.matmul(depth, ops.reshape(x, (-1, d, out_h * out_w)))  # (n, D, H W)
    return ops.reshape(x, (-1, *shape))
