"""Per-map evaluation metrics that need no model: localization, complexity, agreement.

Pure numpy, for 2D maps ``(H, W)`` and 3D maps ``(D, H, W)`` alike; one map (and one mask)
per call. Every function checks its input and raises ``ValueError`` naming what is wrong:
a map that is not 2D or 3D, a map with NaN or infinite values, shapes that differ, an
empty mask. A degenerate map for which a metric is undefined (an all-zero map for
``sparseness``) gives NaN, as ``spearman`` does for a constant map. The pipeline's evaluation
(:mod:`xaipipe.evaluate`) scores a blank map where these functions give NaN or a tie's hit:
pointing game 0, relevance mass 0, sparseness 0 and complexity ln n (README, "Evaluation"), so
its files differ from these functions' values on such maps.

Localization (a map against a ground-truth mask of the same shape; ``resize_mask`` brings a
mask read at another resolution to the map's shape):
    ``pointing_game``, ``relevance_mass``, ``relevance_rank``, ``roc_auc``
Complexity:
    ``sparseness`` (Gini index), ``complexity`` (entropy)
Agreement between two maps:
    ``spearman``, ``ssim``

Maps may be signed (a method's ``normalize: signed`` gives values in [-1, 1], negative for
evidence against the class); each function states what it does with negative values,
following Quantus (Hedström et al. 2023) where it defines it: the localization metrics rank
by the value itself (the most positive first; relevance mass counts positive relevance
only), the complexity metrics take magnitudes, ``ssim`` needs the maps' ``data_range``
(2 for signed maps).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = [
    "complexity",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "resize_mask",
    "roc_auc",
    "sparseness",
    "spearman",
    "ssim",
]


# --- input checks -----------------------------------------------------------------------


def _check_map(heatmap, name: str = "map") -> np.ndarray:
    """``heatmap`` as a float64 array, 2D or 3D, finite, non-empty; ValueError otherwise."""
    array = np.asarray(heatmap)
    if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a 2D (H, W) or 3D (D, H, W) map, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name}: the map is empty (shape {array.shape})")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        kind = "NaN" if np.isnan(array).any() else "infinite"
        raise ValueError(f"{name}: {int(bad.sum())} {kind} value(s) in the map")
    return array


def _check_mask(mask, shape: tuple[int, ...], allow_empty: bool = False) -> np.ndarray:
    """``mask`` as a boolean array of ``shape`` (non-zero = inside); ValueError otherwise."""
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise ValueError(
            f"mask: shape {array.shape} differs from the map's {tuple(shape)} (resize it with resize_mask)"
        )
    if array.dtype != bool:
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"mask: expected a boolean or numeric array, got dtype {array.dtype}")
        if np.isnan(array).any():
            raise ValueError("mask: NaN value(s) in the mask")
        array = array != 0
    if not allow_empty and not array.any():
        raise ValueError("mask: the mask is empty (no voxel inside the region)")
    return array


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _check_map(a, "map a"), _check_map(b, "map b")
    if a.shape != b.shape:
        raise ValueError(f"maps a and b: shapes differ, {a.shape} and {b.shape}")
    return a, b


# --- masks ------------------------------------------------------------------------------


def resize_mask(mask, shape: tuple[int, ...]) -> np.ndarray:
    """``mask`` (2D or 3D, non-zero = inside) resized to ``shape`` by nearest neighbour.

    Output voxel ``i`` along an axis of input length ``n`` and output length ``m`` takes
    input voxel ``floor((i + 0.5) * n / m)``: the input voxel under the output voxel's
    centre (pixel-centre alignment, as OpenCV's ``INTER_NEAREST_EXACT``). A mask already
    of ``shape`` comes back unchanged (as booleans).
    """
    array = np.asarray(mask)
    shape = tuple(int(s) for s in shape)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(f"mask: expected a non-empty 2D or 3D mask, got shape {array.shape}")
    if len(shape) != array.ndim or min(shape) < 1:
        raise ValueError(f"resize_mask: target shape {shape} does not fit a {array.ndim}D mask")
    if array.dtype != bool:
        if np.issubdtype(array.dtype, np.number) and np.isnan(array).any():
            raise ValueError("mask: NaN value(s) in the mask")
        array = array != 0
    index = tuple(
        np.minimum(((np.arange(m) + 0.5) * n / m).astype(np.int64), n - 1)
        for n, m in zip(array.shape, shape, strict=True)
    )
    return array[np.ix_(*index)]


def _ball_offsets(radius: int, ndim: int) -> list[tuple[int, ...]]:
    """Integer offsets of Euclidean length at most ``radius`` (the origin included)."""
    span = range(-radius, radius + 1)
    return [o for o in itertools.product(span, repeat=ndim) if sum(x * x for x in o) <= radius * radius]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by a Euclidean ball of ``radius`` voxels (nothing wraps around the edges)."""
    if radius == 0:
        return mask
    out = mask.copy()
    for offset in _ball_offsets(radius, mask.ndim):
        target, source = [], []
        for o, n in zip(offset, mask.shape, strict=True):
            if abs(o) >= n:
                break
            target.append(slice(max(o, 0), n + min(o, 0)))
            source.append(slice(max(-o, 0), n - max(o, 0)))
        else:
            out[tuple(target)] |= mask[tuple(source)]
    return out


# --- localization -----------------------------------------------------------------------


def pointing_game(heatmap, mask, tolerance: int = 0) -> bool:
    """Pointing game (Zhang et al. 2018, "Top-down neural attention by excitation backprop").

    A hit when the map's maximum lies inside the mask dilated by ``tolerance``
    pixels/voxels:

        hit = any_{p in argmax(map)} [ dist(p, mask) <= tolerance ]

    with the Euclidean distance between voxel centres (``tolerance=1`` adds the 4 (2D) or
    6 (3D) face neighbours of the mask, not its diagonal ones; ``tolerance=2`` adds those
    too). Ties: when the maximum is reached at several voxels, the map hits if ANY of them
    lies in the (dilated) mask, as Quantus's ``PointingGame`` counts it; a constant map
    therefore always hits. Negative values: the maximum is the most positive value, as in
    Quantus (``abs=False``); negative evidence never points.
    """
    heatmap = _check_map(heatmap)
    mask = _check_mask(mask, heatmap.shape)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance: expected a whole number of pixels/voxels >= 0, got {tolerance!r}")
    peaks = heatmap == heatmap.max()
    return bool((peaks & _dilate(mask, int(tolerance))).any())


def relevance_mass(heatmap, mask) -> float:
    """Relevance mass accuracy (Arras, Osman & Samek 2022, "CLEVR-XAI", Information Fusion 81).

    The share of the map's positive relevance that falls inside the mask:

        mass = sum_{i in mask} max(R_i, 0) / sum_i max(R_i, 0)

    1 when all positive relevance lies in the mask, 0 when none does; NaN when the map
    has no positive relevance at all. Negative values count as no relevance (the paper's
    and Quantus's stated definition, "the sum of overall positive attributions"), so a
    signed map and its ``positive`` normalization give the same mass.
    """
    heatmap = _check_map(heatmap)
    mask = _check_mask(mask, heatmap.shape)
    positive = np.maximum(heatmap, 0.0)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else float("nan")


def relevance_rank(heatmap, mask) -> float:
    """Relevance rank accuracy (Arras, Osman & Samek 2022, "CLEVR-XAI", Information Fusion 81).

    With K the number of voxels in the mask and P_top the K voxels of highest relevance:

        rank = |P_top ∩ mask| / K

    Ties at the K-th value are shared, not broken by voxel order: of the t voxels tied
    at the K-th highest value, s are needed to fill the top K, and each tied mask voxel
    counts s / t (the expected value under a random tie-break). A constant map gives K / n.
    Negative values rank below zero (by value, as Quantus's ``RelevanceRankAccuracy`` with
    ``abs=False``): the top K are the most positive voxels.
    """
    heatmap = _check_map(heatmap)
    mask = _check_mask(mask, heatmap.shape)
    values = heatmap.ravel()
    inside = mask.ravel()
    k = int(inside.sum())
    threshold = np.partition(values, values.size - k)[values.size - k]  # the K-th highest value
    above = values > threshold
    tied = values == threshold
    slots = k - int(above.sum())
    hits = (above & inside).sum() + (tied & inside).sum() * slots / tied.sum()
    return float(hits / k)


def roc_auc(heatmap, mask) -> float:
    """Area under the ROC curve of the map as a voxel classifier of the mask.

    The Mann-Whitney U statistic over the P voxels inside and the N voxels outside the
    mask, ties counted one half (average ranks r_i, 1-based, over all P + N voxels):

        AUC = P(R_in > R_out) + P(R_in = R_out) / 2 = (sum_{i in mask} r_i - P (P + 1) / 2) / (P N)

    1 for a map that ranks every mask voxel above every other, 0 for the reverse, 0.5 for
    a constant map; NaN when the mask covers the whole map (no voxel outside). Negative
    values rank below zero (by value), as for ``relevance_rank``.
    """
    heatmap = _check_map(heatmap)
    mask = _check_mask(mask, heatmap.shape).ravel()
    p = int(mask.sum())
    n = mask.size - p
    if n == 0:
        return float("nan")
    ranks = _rank(heatmap.ravel()) + 1.0  # average ranks, 1-based
    return float((ranks[mask].sum() - p * (p + 1) / 2.0) / (p * n))


# --- complexity -------------------------------------------------------------------------


def sparseness(heatmap) -> float:
    """Sparseness: the Gini index of |map| (Chalasani et al. 2020, "Concise explanations of
    neural networks using adversarial training", ICML; Hurley & Rickard 2009).

    With a_(1) <= ... <= a_(n) the sorted absolute values:

        G = sum_{i=1}^{n} (2 i - n - 1) a_(i) / (n sum_i a_(i))

    0 for a constant map, (n - 1) / n for a one-hot map (a single non-zero voxel), the
    largest value any map of n voxels reaches; NaN for an all-zero map. Negative values
    count by their magnitude (Quantus's ``Sparseness``, ``abs=True``): a signed map is as
    sparse as its ``absolute`` normalization.
    """
    values = np.sort(np.abs(_check_map(heatmap)).ravel())
    n = values.size
    total = values.sum()
    if total == 0:
        return float("nan")
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    return float((weights * values).sum() / (n * total))


def complexity(heatmap) -> float:
    """Complexity: the entropy of the fractional contributions (Bhatt, Weller & Moura 2020,
    "Evaluating and aggregating feature-based model explanations", IJCAI).

        p_i = |m_i| / sum_j |m_j|,   C = -sum_i p_i ln p_i   (0 ln 0 = 0; natural log, nats)

    0 for a one-hot map (the lowest), ln(n) for a constant map of n voxels (the highest);
    NaN for an all-zero map. Negative values count by their magnitude (Quantus's
    ``Complexity``, ``abs=True``).
    """
    values = np.abs(_check_map(heatmap)).ravel()
    total = values.sum()
    if total == 0:
        return float("nan")
    p = values[values > 0] / total
    return float(max(-(p * np.log(p)).sum(), 0.0)) + 0.0  # + 0.0: a one-hot map's -0.0 printed "-0.0" in the tables


# --- agreement --------------------------------------------------------------------------


def _rank(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of a 1D array, ties given their average rank (as in Spearman's rho)."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(first + (counts - 1) / 2.0, counts)
    return ranks


def centred_ranks(heatmap: np.ndarray) -> np.ndarray | None:
    """The map's average ranks minus their mean, scaled to unit norm; None for a constant map.

    The dot product of two such vectors is Spearman's rho of the two maps, so a map
    compared with many others is ranked once (``xaipipe.evaluate``'s agreement).
    """
    r = _rank(np.ravel(heatmap))
    r -= r.mean()
    norm = np.sqrt((r**2).sum())
    return r / norm if norm > 0 else None


def spearman(a, b) -> float:
    """Spearman rank correlation of two maps of the same shape:

        rho = Pearson correlation of the average ranks of a and of b

    NaN where either map is constant. Negative values rank below zero (by value).
    """
    a, b = _check_pair(a, b)
    ra, rb = centred_ranks(a), centred_ranks(b)
    return float(ra @ rb) if ra is not None and rb is not None else float("nan")


def _window_means(x: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``x`` over every full ``size``-wide window (``size``^ndim voxels), all axes."""
    for axis in range(x.ndim):
        c = np.cumsum(x, axis=axis)
        zero = np.zeros_like(np.take(c, [0], axis=axis))
        c = np.concatenate([zero, c], axis=axis)
        n = c.shape[axis]
        x = np.take(c, range(size, n), axis=axis) - np.take(c, range(0, n - size), axis=axis)
    return x / size**x.ndim


def ssim(a, b, data_range: float = 1.0, win_size: int = 7) -> float:
    """Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004, IEEE TIP 13(4)) of two
    2D or 3D maps, for maps whose values span at most ``data_range``: 1 for maps in [0, 1],
    2 for signed maps in [-1, 1] (as scikit-image takes 2 for float images in [-1, 1]).

    Uniform window of ``win_size`` voxels per axis (7 x 7, or 7 x 7 x 7), not Gaussian; in
    each window, with sample (N - 1) variances and covariance:

        SSIM = (2 mu_a mu_b + C1) (2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1) (s_a^2 + s_b^2 + C2)),
        C1 = (0.01 L)^2,  C2 = (0.03 L)^2,  L = data_range

    averaged over every window that lies wholly inside the map. These are the defaults of
    scikit-image's ``structural_similarity`` (``win_size=7``, ``use_sample_covariance=True``,
    ``gaussian_weights=False``), whose mean likewise leaves out the border windows.
    Identical maps give 1. Every axis must hold at least ``win_size`` voxels.
    """
    a, b = _check_pair(a, b)
    whole = isinstance(win_size, (int, np.integer)) and not isinstance(win_size, bool)
    if not whole or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size: expected an odd whole number >= 3, got {win_size!r}")
    if min(a.shape) < win_size:
        raise ValueError(f"maps a and b: shape {a.shape} has an axis shorter than the window ({win_size})")
    if not data_range > 0 or not math.isfinite(data_range):
        raise ValueError(f"data_range: expected a positive number, got {data_range!r}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    count = win_size**a.ndim
    correction = count / (count - 1.0)
    mu_a, mu_b = _window_means(a, win_size), _window_means(b, win_size)
    var_a = (_window_means(a * a, win_size) - mu_a * mu_a) * correction
    var_b = (_window_means(b * b, win_size) - mu_b * mu_b) * correction
    cov = (_window_means(a * b, win_size) - mu_a * mu_b) * correction
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())
