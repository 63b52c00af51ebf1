"""Faithfulness of maps to the model: deletion and insertion (Petsiuk et al. 2018, the RISE paper),
and MoRF/LeRF with ROAD's noisy linear imputation (Rong et al. 2022), for 2D images and 3D volumes.

Definitions (inputs x of shape (*spatial, C), a map M of shape (*spatial), target class c):

- The pixels (voxels) are ranked by the map: rank 0 is the most relevant. Ties are broken
  in one fixed random order of the positions (:func:`tie_order`, seeded: the ranking is
  deterministic and the same for every method; position i takes place
  ``default_rng(TIE_SEED).permutation(n)[i]`` among the pixels it ties with, not the
  inverse), not by position: a blank map, all one tie,
  is scored as a map in random order would be (the chance level, as relevance rank and
  ROC AUC count ties). C order removed the image's top rows first, and an all-blank
  variant ranked second of nine on deletion. Signed maps rank
  by value, not magnitude (as Quantus's ``PixelFlipping`` with its default ``abs=False``): the most
  positive first, the most negative last. With n pixels
  and ``steps`` equal fractions, step t (0..steps) removes or reveals the
  k_t = floor(t * n / steps) first pixels of the ranking: step 0 none, step ``steps``
  all. A pixel's channels are removed or revealed together.
- **Deletion**: copy t is x with its k_t most relevant pixels set to the replacement
  image r; **insertion**: copy t is r with the k_t most relevant pixels of x revealed.
  The curve is the target class's score (``probabilities`` by default, or ``logits``)
  at fractions t / steps, and its area is the trapezoid rule over [0, 1]. A faithful
  map gives a low deletion area and a high insertion area.
- Replacement r: ``blur``, x blurred with a Gaussian of standard deviation extent / 20
  along each spatial axis (:data:`BLUR_SIGMA_FRACTION`; channels are not mixed), truncated
  at 3 sigma, borders mirrored (scipy.ndimage's ``reflect``), computed once per image in numpy;
  ``mean``: the image's per-channel mean; a number: that constant.
- **ROAD** (MoRF: most relevant first, LeRF: least relevant first): copy t is x with
  its k_t first pixels of that order replaced by the noisy linear imputation
  (:func:`road_impute`): each removed pixel equals the average of its 4 (2D) or
  6 (3D) axis neighbours inside the image, removed ones included, which is a sparse
  linear system over the removed region (a discrete Laplace equation whose boundary
  values are the kept pixels), plus Gaussian noise of standard deviation ``noise``.
  ROAD's reference code weights 8 neighbours in 2D (1/6 axial, 1/12 diagonal); the
  axis neighbours are used here so that 2D and 3D follow one rule. When every pixel is
  removed (the last step) the system has no boundary and the removed pixels take the
  image's per-channel mean (the constant solution). ROAD's **insertion** order is the
  ROAD version of the insertion curve: copy t keeps the k_t most relevant pixels and
  imputes all others (step 0: the per-channel mean plus noise; step ``steps``: x).
  The system is solved by a sparse direct factorization in 2D and by conjugate
  gradients in 3D, where a direct factorization fills in (:func:`road_impute`).

Deletion and insertion copies are built where the model runs
(:class:`xaipipe.autodiff.PerturbedScores`): each image travels once, with its
replacement and the step at which each of its pixels is removed, and a copy is
described by its image index and its step; all copies of a batch go through the
compiled forward pass ``chunk_size`` at a time, so ceil(B * (steps + 1) / chunk_size)
calls per curve kind, never one call per step. ROAD's copies need a linear solve each
and are built in numpy, then scored by the same compiled forward pass in chunks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from xaipipe.maps import matrix_along_axis, one_blas_thread

if TYPE_CHECKING:  # the checks below run where the workflow parses its config, which must not pay Keras's import
    import keras

    from xaipipe.autodiff import Scores

#: The blur's standard deviation as a fraction of each spatial axis's extent.
BLUR_SIGMA_FRACTION = 1 / 20
#: The blur kernel is cut at this many standard deviations (as scipy.ndimage's ``truncate``).
BLUR_TRUNCATE = 3.0
REPLACEMENTS = ("blur", "mean")
CURVES = ("deletion", "insertion")
ROAD_ORDERS = ("morf", "lerf", "insertion")
#: The orders :func:`road_curves` computes unless told.
ROAD_DEFAULT_ORDERS = ("morf", "lerf")
SCORE_NAMES = ("probabilities", "logits")


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces: checks, ranking, step fractions, areas


def check_steps(steps: Any) -> int:
    """``steps`` as an int >= 1, else ValueError naming it."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return int(steps)


def _check_chunk_size(chunk_size: Any) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    return int(chunk_size)


def _check_score(score: Any) -> str:
    if score not in SCORE_NAMES:
        raise ValueError(f"score must be one of {SCORE_NAMES}, got {score!r}")
    return score


def check_replacement(replacement: Any) -> str | float:
    """``blur``, ``mean`` or a finite number, else ValueError naming ``replacement``."""
    if isinstance(replacement, str):
        if replacement not in REPLACEMENTS:
            raise ValueError(f"replacement must be one of {REPLACEMENTS} or a number, got {replacement!r}")
        return replacement
    if isinstance(replacement, bool) or not isinstance(replacement, (int, float, np.integer, np.floating)):
        raise ValueError(f"replacement must be one of {REPLACEMENTS} or a number, got {replacement!r}")
    if not math.isfinite(float(replacement)):
        raise ValueError(f"replacement must be a finite number, got {replacement!r}")
    return float(replacement)


def check_batch(
    inputs: Any, maps: Any, classes: Any, input_shape: Sequence[int | None] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """inputs (B, *spatial, C) float32, maps (B, *spatial) float64, classes (B,) int; ValueError naming the bad one."""
    inputs = np.asarray(inputs, np.float32)
    if inputs.ndim < 3:
        raise ValueError(f"inputs must be (batch, *spatial, channels), got shape {inputs.shape}")
    if input_shape is not None and (
        len(input_shape) != inputs.ndim - 1
        or any(expected is not None and expected != got for expected, got in zip(input_shape, inputs.shape[1:]))
    ):
        raise ValueError(f"inputs of shape {inputs.shape[1:]} do not fit the model's input {tuple(input_shape)}")
    maps = np.asarray(maps, np.float64)
    if maps.shape != inputs.shape[:-1]:
        raise ValueError(f"maps must have the inputs' batch and spatial shape {inputs.shape[:-1]}, got {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("maps must be finite (leave skipped maps out)")
    classes = np.asarray(classes)
    if classes.shape != (len(inputs),) or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"classes must be integers of shape ({len(inputs)},), got {classes.dtype} {classes.shape}")
    return inputs, maps, classes.astype(np.intp)


def step_counts(n_pixels: int, steps: int) -> np.ndarray:
    """k_t = floor(t * n / steps) for t = 0..steps: how many pixels step t removes or reveals."""
    return (np.arange(steps + 1, dtype=np.int64) * n_pixels) // steps


def fractions(steps: int) -> np.ndarray:
    """The x axis of the curves: t / steps for t = 0..steps."""
    return np.arange(check_steps(steps) + 1, dtype=np.float64) / steps


#: The seed of :func:`tie_order`.
TIE_SEED = 20180514


@functools.lru_cache(maxsize=8)
def tie_order(n_pixels: int) -> np.ndarray:
    """Where each of ``n_pixels`` positions (C order) stands among the pixels it ties with, 0 first: the
    permutation ``numpy.random.default_rng(TIE_SEED).permutation(n_pixels)``, the same for every map of that size."""
    order = np.random.default_rng(TIE_SEED).permutation(n_pixels)
    order.flags.writeable = False
    return order


@functools.lru_cache(maxsize=8)
def _positions_in_tie_order(n_pixels: int) -> np.ndarray:
    positions = np.argsort(tie_order(n_pixels))
    positions.flags.writeable = False
    return positions


def relevance_ranks(maps: np.ndarray, descending: bool = True) -> np.ndarray:
    """Rank (B, *spatial) of each pixel in its map, 0 = first removed (the most relevant where ``descending``);
    tied pixels in :func:`tie_order`."""
    maps = np.asarray(maps, np.float64)
    flat = maps.reshape(len(maps), -1)
    shuffle = _positions_in_tie_order(flat.shape[1])  # a stable sort of the pixels taken in this order keeps it
    keys = (-flat if descending else flat)[:, shuffle]
    order = shuffle[np.argsort(keys, axis=1, kind="stable")]
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None, :], axis=1)
    return ranks.reshape(maps.shape)


def removal_steps(ranks: np.ndarray, steps: int) -> np.ndarray:
    """The first step (1..steps) at which each pixel is removed: the first t with k_t > rank."""
    n_pixels = int(np.prod(ranks.shape[1:]))
    return np.searchsorted(step_counts(n_pixels, steps), ranks, side="right").astype(np.int64)


def map_removal_steps(maps: np.ndarray, steps: int) -> np.ndarray:
    """``removal_steps(relevance_ranks(maps), steps)`` without sorting every pixel: a partition at the k_t.

    Step t removes the k_t first pixels of the ranking, the pixels whose value exceeds
    v_t (the k_t-th largest) and, of those equal to v_t, the first in :func:`tie_order`. A pixel
    whose value is none of the v_t is removed at the first t with v_t below it; for the
    pixels equal to some v_t the rank is counted exactly (the larger values, then the
    place in tie order among the equal ones).
    """
    maps = np.asarray(maps, np.float64)
    flat = maps.reshape(len(maps), -1)
    n = flat.shape[1]
    counts = step_counts(n, steps)
    used = np.flatnonzero(counts > 0)  # the steps that remove anything (k_t >= 1): a suffix of 0..steps
    ties = tie_order(n)
    out = np.empty(flat.shape, np.int64)
    for b, values in enumerate(-flat):  # ascending keys: rank 0 is the smallest key
        thresholds = np.partition(values, counts[used] - 1)[counts[used] - 1]  # v_t, nondecreasing
        out[b] = used[np.minimum(np.searchsorted(thresholds, values, side="right"), len(used) - 1)]
        for value in np.unique(thresholds):
            tied = np.flatnonzero(values == value)
            tied = tied[np.argsort(ties[tied], kind="stable")]  # in tie order
            ranks = np.count_nonzero(values < value) + np.arange(len(tied))
            out[b, tied] = np.searchsorted(counts, ranks, side="right")
    return out.reshape(maps.shape)


def area(curves: np.ndarray) -> np.ndarray:
    """Area (...,) under curves (..., steps + 1) sampled at t / steps: the trapezoid rule over [0, 1]."""
    curves = np.asarray(curves, np.float64)
    steps = curves.shape[-1] - 1
    if steps < 1:
        raise ValueError(f"curves need at least 2 points, got {curves.shape[-1]}")
    return (curves.sum(-1) - 0.5 * (curves[..., 0] + curves[..., -1])) / steps


# ---------------------------------------------------------------------------------------------------------------
# Replacements


def _reflect(index: np.ndarray, extent: int) -> np.ndarray:
    """Indices mirrored into [0, extent) as ``d c b a | a b c d | d c b a`` (scipy.ndimage's ``reflect``)."""
    index = np.mod(index, 2 * extent)
    return np.where(index >= extent, 2 * extent - 1 - index, index)


def _blur_matrix(extent: int, sigma: float) -> np.ndarray:
    """(extent, extent) matrix of the 1D Gaussian blur with mirrored borders: out = matrix @ in."""
    radius = int(BLUR_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((extent, extent))
    rows = np.repeat(np.arange(extent), len(offsets))
    cols = _reflect(np.arange(extent)[:, None] + offsets[None, :], extent).ravel()
    np.add.at(matrix, (rows, cols), np.tile(kernel, extent))
    return matrix


def gaussian_blur(image: np.ndarray, sigmas: Sequence[float] | None = None) -> np.ndarray:
    """``image`` (*spatial, C) blurred along each spatial axis (separable), channels apart.

    ``sigmas``: one per spatial axis; None: extent * :data:`BLUR_SIGMA_FRACTION` per axis.
    """
    image = np.asarray(image, np.float64)
    spatial = image.shape[:-1]
    if sigmas is None:
        sigmas = [extent * BLUR_SIGMA_FRACTION for extent in spatial]
    out = image
    for axis, (extent, sigma) in enumerate(zip(spatial, sigmas)):
        if sigma <= 0:
            continue
        out = matrix_along_axis(out, axis, _blur_matrix(extent, sigma))
    return out


def replacement_images(inputs: np.ndarray, replacement: str | float) -> np.ndarray:
    """The replacement (B, *spatial, C) of each input: blurred, its per-channel mean, or a constant."""
    replacement = check_replacement(replacement)
    inputs = np.asarray(inputs, np.float64)
    if replacement == "blur":  # BLAS products beside the model: on one thread (maps.one_blas_thread)
        with one_blas_thread():
            return np.stack([gaussian_blur(image) for image in inputs])
    if replacement == "mean":
        spatial_axes = tuple(range(1, inputs.ndim - 1))
        return np.broadcast_to(inputs.mean(axis=spatial_axes, keepdims=True), inputs.shape).copy()
    return np.full(inputs.shape, replacement)


# ---------------------------------------------------------------------------------------------------------------
# Deletion and insertion


class DeletionInsertion:
    """Deletion and insertion curves of maps, all perturbed copies in one compiled forward pass, in chunks.

    ``score``: ``probabilities`` (as in the RISE paper) or ``logits``; ``steps``: equal
    fractions of the pixels; ``replacement``: ``blur``, ``mean`` or a number;
    ``chunk_size``: copies per model call.
    """

    def __init__(
        self,
        model: keras.Model,
        score: str = "probabilities",
        steps: int = 20,
        replacement: str | float = "blur",
        chunk_size: int = 256,
    ):
        self.score = _check_score(score)
        self.steps = check_steps(steps)
        self.replacement = check_replacement(replacement)
        self.chunk_size = _check_chunk_size(chunk_size)
        self.input_shape = tuple(model.inputs[0].shape[1:])
        self.channels = int(self.input_shape[-1])
        from xaipipe.autodiff import PerturbedScores

        self._scores = PerturbedScores(model, score, self._perturb)

    @property
    def fractions(self) -> np.ndarray:
        return fractions(self.steps)

    def _perturb(self, packed: Any, images: Any, codes: Any) -> Any:
        """Copies of ``packed`` (B, 3, *spatial, C) = [image, replacement, removal step] per image: code (step t,
        1 for insertion). Each part is picked on the B images, then gathered per copy: no strided slices of copies."""
        from keras import ops

        image = ops.take(packed[:, 0], images, axis=0)
        replacement = ops.take(packed[:, 1], images, axis=0)
        removed_at = ops.take(packed[:, 2], images, axis=0)
        shape = [-1] + [1] * (len(self.input_shape))
        step = ops.reshape(ops.cast(codes[:, 0], "float32"), shape)
        inserting = ops.reshape(codes[:, 1] > 0, shape)
        chosen = removed_at <= step  # pixels among the first k_t of the ranking
        # deletion shows the replacement where chosen, insertion where not: one select, not two blends
        return ops.where(ops.logical_xor(chosen, inserting), replacement, image)

    def curves(
        self, inputs: np.ndarray, maps: np.ndarray, classes: np.ndarray, kinds: Iterable[str] = CURVES
    ) -> dict[str, np.ndarray]:
        """Curves (B, steps + 1) of the target class's score for each of ``kinds`` (deletion, insertion).

        All copies of all kinds go through one compiled forward pass, ``chunk_size`` per call.
        """
        kinds = tuple(kinds)
        unknown = [kind for kind in kinds if kind not in CURVES]
        if unknown or not kinds:
            raise ValueError(f"kinds must be some of {CURVES}, got {kinds!r}")
        inputs, maps, classes = check_batch(inputs, maps, classes, self.input_shape)
        removed_at = map_removal_steps(maps, self.steps)
        replacement = replacement_images(inputs, self.replacement)
        packed = np.stack(
            [inputs, replacement, np.broadcast_to(removed_at[..., None], inputs.shape)], axis=1
        ).astype(np.float32)  # steps <= 2**24 are exact in float32
        batch, points = len(inputs), self.steps + 1
        images = np.repeat(np.arange(batch, dtype=np.int32), points * len(kinds))
        step = np.tile(np.arange(points, dtype=np.int32), batch * len(kinds))
        inserting = np.tile(np.repeat([int(kind == "insertion") for kind in kinds], points), batch).astype(np.int32)
        scores = self._scores(packed, images, np.stack([step, inserting], axis=1), self.chunk_size)
        picked = scores[np.arange(len(images)), np.repeat(classes, points * len(kinds))]
        picked = picked.reshape(batch, len(kinds), points).astype(np.float64)
        return {kind: picked[:, k] for k, kind in enumerate(kinds)}

    def deletion(self, inputs: np.ndarray, maps: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Deletion curves (B, steps + 1): the most relevant pixels replaced first."""
        return self.curves(inputs, maps, classes, ("deletion",))["deletion"]

    def insertion(self, inputs: np.ndarray, maps: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Insertion curves (B, steps + 1): the most relevant pixels revealed first, from the replacement."""
        return self.curves(inputs, maps, classes, ("insertion",))["insertion"]

    def __call__(self, inputs: np.ndarray, maps: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
        """Curves and areas: ``deletion``, ``insertion`` (B, steps + 1), ``deletion_area``, ``insertion_area`` (B,)."""
        curves = self.curves(inputs, maps, classes)
        return {**curves, **{f"{kind}_area": area(curve) for kind, curve in curves.items()}}


# ---------------------------------------------------------------------------------------------------------------
# ROAD: noisy linear imputation, MoRF, LeRF and insertion

#: How :func:`road_impute` solves the system: ``auto`` (``direct`` for 1D and 2D, ``cg`` for 3D), or one of them.
ROAD_SOLVERS = ("auto", "direct", "cg")


def _neighbour_sum(values: np.ndarray) -> np.ndarray:
    """Sum over the 2 * d axis neighbours inside the grid of values (*spatial, C) (zero outside)."""
    total = np.zeros_like(values)
    for axis in range(values.ndim - 1):
        n = values.shape[axis]
        if n < 2:
            continue
        low = [slice(None)] * values.ndim
        high = [slice(None)] * values.ndim
        low[axis], high[axis] = slice(0, n - 1), slice(1, n)
        total[tuple(low)] += values[tuple(high)]
        total[tuple(high)] += values[tuple(low)]
    return total


def _removed_matrix(removed: np.ndarray, degree: np.ndarray) -> Any:
    """The sparse (m, m) matrix of the m removed pixels (C order): degree on the diagonal, -1 per removed neighbour."""
    import scipy.sparse

    m = int(removed.sum())
    index = np.full(removed.shape, -1, np.int64)
    index[removed] = np.arange(m)
    rows, cols = [np.arange(m)], [np.arange(m)]
    for axis in range(removed.ndim):
        n = removed.shape[axis]
        if n < 2:
            continue
        low = [slice(None)] * removed.ndim
        high = [slice(None)] * removed.ndim
        low[axis], high[axis] = slice(0, n - 1), slice(1, n)
        both = removed[tuple(low)] & removed[tuple(high)]  # axis neighbours removed together: a symmetric pair
        first, second = index[tuple(low)][both], index[tuple(high)][both]
        rows += [first, second]
        cols += [second, first]
    values = np.concatenate([degree[removed], -np.ones(sum(len(r) for r in rows[1:]))])
    return scipy.sparse.csc_matrix((values, (np.concatenate(rows), np.concatenate(cols))), shape=(m, m))


#: The side of the cubes (squares) of removed pixels that form the coarse level of the ``cg`` solver.
COARSE_BLOCK = 4


def _preconditioner(matrix: Any, removed: np.ndarray, kept_neighbours: np.ndarray) -> Any:
    """r -> M r for conjugate gradients on ``matrix``: Jacobi, plus a coarse level where the holes are wide.

    The coarse level (additive, so M stays symmetric positive definite) has one unknown per
    :data:`COARSE_BLOCK`-cube of removed pixels, constant over it, and the Galerkin matrix
    P^T A P solved exactly: it removes the smooth error that Jacobi alone needs about
    one iteration per pixel of the hole's width to remove. Where most removed pixels
    touch a kept one (scattered holes) Jacobi converges in a few iterations and the
    coarse level would cost more than it saves.
    """
    import scipy.sparse
    import scipy.sparse.linalg

    diagonal = matrix.diagonal()[:, None]
    if kept_neighbours[removed].mean() > 0.5:
        return lambda r: r / diagonal
    coords = np.nonzero(removed)
    key = np.zeros(len(coords[0]), np.int64)
    for extent, position in zip(removed.shape, coords):
        key = key * (extent // COARSE_BLOCK + 1) + position // COARSE_BLOCK
    aggregate = np.unique(key, return_inverse=True)[1].ravel()
    m = matrix.shape[0]
    p = scipy.sparse.csr_matrix((np.ones(m), (np.arange(m), aggregate)), shape=(m, int(aggregate.max()) + 1))
    coarse = scipy.sparse.linalg.splu(
        (p.T @ (matrix @ p)).tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
    )
    return lambda r: r / diagonal + p @ coarse.solve(np.asarray(p.T @ r))


def _conjugate_gradients(
    matrix: Any, rhs: np.ndarray, start: np.ndarray, precondition: Any, tolerance: float, limit: int
) -> np.ndarray:
    """Solve matrix x = rhs (m, C) by preconditioned conjugate gradients, every column together."""
    x = start.copy()
    residual = rhs - matrix @ x
    z = precondition(residual)
    direction = z.copy()
    rz = (residual * z).sum(0)
    scale = np.maximum(np.sqrt((rhs**2).sum(0)), 1e-30)
    for _ in range(limit):
        if np.all(np.sqrt((residual**2).sum(0)) <= tolerance * scale):
            break
        a_direction = matrix @ direction
        step = rz / np.maximum((direction * a_direction).sum(0), 1e-300)
        x += step * direction
        residual -= step * a_direction
        z = precondition(residual)
        rz_new = (residual * z).sum(0)
        direction = z + (rz_new / np.maximum(rz, 1e-300)) * direction
        rz = rz_new
    return x


def _impute(
    image: np.ndarray, removed: np.ndarray, solver: str, tolerance: float, max_iterations: int | None
) -> np.ndarray:
    """The noise-free imputation (float64) of checked ``image`` and boolean ``removed``."""
    out = image.copy()
    if not removed.any():
        return out
    spatial_axes = tuple(range(image.ndim - 1))
    if removed.all():
        out[...] = image.mean(axis=spatial_axes)
        return out
    kept = (~removed)[..., None].astype(np.float64)
    degree = _neighbour_sum(np.ones(image.shape[:-1] + (1,)))[..., 0]  # in-image neighbours of each pixel
    rhs = _neighbour_sum(image * kept)[removed]  # the kept neighbours' sum at each removed pixel, (m, C)
    matrix = _removed_matrix(removed, degree)
    if solver == "auto":
        solver = "direct" if removed.ndim <= 2 else "cg"
    if solver == "direct":
        import scipy.sparse.linalg

        # symmetric positive definite: a symmetric fill-reducing ordering and no pivoting (SuperLU)
        factors = scipy.sparse.linalg.splu(
            matrix, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
        )
        out[removed] = factors.solve(rhs)  # all channels at once: C right-hand sides
        return out
    matrix = matrix.tocsr()
    precondition = _preconditioner(matrix, removed, _neighbour_sum(kept)[..., 0] > 0)
    start = np.broadcast_to((image * kept).sum(spatial_axes) / kept.sum(), rhs.shape)  # the kept pixels' mean
    limit = max_iterations or 10 * len(rhs) + 100
    out[removed] = _conjugate_gradients(matrix, rhs, start, precondition, tolerance, limit)
    return out


def _check_impute(image: Any, removed_mask: Any, noise: Any, solver: Any) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image, np.float64)
    removed = np.asarray(removed_mask, bool)
    if image.ndim < 2:
        raise ValueError(f"image must be (*spatial, channels), got shape {image.shape}")
    if removed.shape != image.shape[:-1]:
        raise ValueError(f"removed_mask must have the image's spatial shape {image.shape[:-1]}, got {removed.shape}")
    _check_noise(noise)
    if solver not in ROAD_SOLVERS:
        raise ValueError(f"solver must be one of {ROAD_SOLVERS}, got {solver!r}")
    return image, removed


def _check_noise(noise: Any) -> float:
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def road_impute(
    image: np.ndarray,
    removed_mask: np.ndarray,
    noise: float = 0.0,
    seed: int | np.random.Generator = 0,
    tolerance: float = 1e-8,
    max_iterations: int | None = None,
    solver: str = "auto",
) -> np.ndarray:
    """``image`` (*spatial, C) with its ``removed_mask`` (*spatial) pixels imputed by ROAD's noisy linear imputation.

    Each removed pixel solves x_i = mean of its axis neighbours inside the image (4 in
    2D, 6 in 3D; fewer at the border), kept neighbours being fixed: x_i * degree_i - sum
    of its removed neighbours = sum of its kept neighbours, a sparse linear system that
    is symmetric positive definite when at least one pixel is kept. ``solver``:

    - ``direct``: the sparse matrix of the removed pixels, factorized once by scipy's
      SuperLU (symmetric minimum-degree ordering) and solved for all channels at once.
      Exact up to rounding, and fast in 2D, where the factors stay sparse (a 90 % hole
      in a 224 x 224 image: about 0.2 s), but not in 3D, where they fill in (a 50 %
      hole in 64^3: tens of seconds).
    - ``cg``: conjugate gradients on that matrix, all channels together, to the relative
      residual ``tolerance`` (at most ``max_iterations``; None: 10 m + 100), from the
      kept pixels' per-channel mean; preconditioned by Jacobi plus, where the holes are
      wide, a coarse level of 4-pixel cubes (:func:`_preconditioner`), which takes a
      50 % hole of a smooth map in 64^3 from about 0.5 s (Jacobi alone) to about 0.15 s.
    - ``auto`` (the default): ``direct`` for 1D and 2D images, ``cg`` for 3D volumes.

    Every pixel removed: the per-channel mean. Then Gaussian noise of standard deviation
    ``noise`` (``seed``: an int or a numpy Generator) is added to the removed pixels
    only. Returns float64.
    """
    image, removed = _check_impute(image, removed_mask, noise, solver)
    out = _impute(image, removed, solver, tolerance, max_iterations)
    return _add_noise(out, removed, noise, seed)


def _add_noise(out: np.ndarray, removed: np.ndarray, noise: float, seed: int | np.random.Generator) -> np.ndarray:
    if noise > 0 and removed.any():
        rng = np.random.default_rng(seed)
        out[removed] += noise * rng.standard_normal(out[removed].shape)
    return out


def road_curves(
    model: keras.Model,
    inputs: np.ndarray,
    maps: np.ndarray,
    classes: np.ndarray,
    score: str = "probabilities",
    steps: int = 20,
    noise: float = 0.01,
    seed: int = 0,
    chunk_size: int = 256,
    orders: Iterable[str] = ROAD_DEFAULT_ORDERS,
    scores: Scores | None = None,
    solver: str = "auto",
) -> dict[str, np.ndarray]:
    """ROAD curves (B, steps + 1) for each of ``orders``, the target class's score at fractions t / steps.

    - ``morf``: copy t has the k_t most relevant pixels imputed (step 0 is the image);
    - ``lerf``: copy t has the k_t least relevant pixels imputed (step 0 is the image);
    - ``insertion`` (the ROAD version of the insertion curve): copy t keeps the k_t most
      relevant pixels and imputes every other one, so step 0 imputes everything (the
      per-channel mean, plus noise) and step ``steps`` is the image itself.

    Imputation by :func:`road_impute` (``solver``; noise from one Generator seeded with
    ``seed``, drawn in the order image, order, step). Copies are built
    ``chunk_size`` at a time and scored by one compiled forward pass (``scores``: a
    :class:`~xaipipe.autodiff.Scores` of the model to reuse). Areas: :func:`area`.
    """
    _check_score(score)
    steps = check_steps(steps)
    chunk_size = _check_chunk_size(chunk_size)
    noise = _check_noise(noise)
    if solver not in ROAD_SOLVERS:
        raise ValueError(f"solver must be one of {ROAD_SOLVERS}, got {solver!r}")
    orders = tuple(orders)
    if not orders or any(order not in ROAD_ORDERS for order in orders):
        raise ValueError(f"orders must be some of {ROAD_ORDERS}, got {orders!r}")
    inputs, maps, classes = check_batch(inputs, maps, classes, tuple(model.inputs[0].shape[1:]))
    if scores is None:
        from xaipipe.autodiff import Scores

        scores = Scores(model, score)
    rng = np.random.default_rng(seed)
    images = inputs.astype(np.float64)
    ranks = {order: relevance_ranks(maps, descending=order != "lerf") for order in orders}
    counts = step_counts(int(np.prod(maps.shape[1:])), steps)
    jobs = [(b, order, t) for b in range(len(inputs)) for order in orders for t in range(steps + 1)]

    def copy(b: int, order: str, t: int) -> np.ndarray:
        first = ranks[order][b] < counts[t]
        removed = ~first if order == "insertion" else first
        return _add_noise(_impute(images[b], removed, solver, 1e-8, None), removed, noise, rng)

    picked = np.empty(len(jobs))
    for first in range(0, len(jobs), chunk_size):
        chunk = jobs[first : first + chunk_size]
        batch = np.stack([copy(*job) for job in chunk]).astype(np.float32)
        values = scores(batch, batch_size=len(batch))
        picked[first : first + len(chunk)] = values[np.arange(len(chunk)), [classes[b] for b, _, _ in chunk]]
    picked = picked.reshape(len(inputs), len(orders), steps + 1)
    return {order: picked[:, k] for k, order in enumerate(orders)}
