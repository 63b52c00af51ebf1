"""Per-map metrics without a model (xaipipe.metrics) against closed forms, hand counts and
brute-force computations written here, in 2D and 3D."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from xaipipe import metrics

SHAPES = {"2d": (12, 10), "3d": (6, 7, 8)}


@pytest.fixture(params=list(SHAPES))
def shape(request):
    return SHAPES[request.param]


def box_mask(shape):
    """A box in the middle of the map: the second quarter to the third, on every axis."""
    mask = np.zeros(shape, bool)
    mask[tuple(slice(n // 4, n // 4 + max(n // 2, 1)) for n in shape)] = True
    return mask


def one_hot(shape, index):
    m = np.zeros(shape)
    m[index] = 1.0
    return m


# --- independent references ---------------------------------------------------------------


def auc_by_pairs(heatmap, mask):
    """P(inside > outside) + P(inside == outside) / 2 over every (inside, outside) pair."""
    inside, outside = heatmap[mask], heatmap[~mask]
    diff = inside[:, None] - outside[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def gini_by_pairs(heatmap):
    """Gini index as the mean absolute difference: sum_ij |a_i - a_j| / (2 n^2 mean a)."""
    a = np.abs(heatmap).ravel()
    return np.abs(a[:, None] - a[None, :]).sum() / (2 * a.size**2 * a.mean())


def ssim_by_windows(a, b, win=7, data_range=1.0):
    """SSIM window by window (Wang et al. 2004, sample statistics), mean over full windows."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for start in itertools.product(*(range(n - win + 1) for n in a.shape)):
        sl = tuple(slice(s, s + win) for s in start)
        x, y = a[sl].ravel(), b[sl].ravel()
        mx, my = x.mean(), y.mean()
        vx, vy = x.var(ddof=1), y.var(ddof=1)
        cxy = ((x - mx) * (y - my)).sum() / (x.size - 1)
        values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


# --- localization ---------------------------------------------------------------------------


def test_map_equal_to_the_mask_gives_mass_rank_and_auc_1(shape):
    mask = box_mask(shape)
    heatmap = mask.astype(float)
    assert metrics.relevance_mass(heatmap, mask) == 1.0
    assert metrics.relevance_rank(heatmap, mask) == 1.0
    assert metrics.roc_auc(heatmap, mask) == 1.0
    assert metrics.pointing_game(heatmap, mask)
    assert metrics.roc_auc(mask, mask) == 1.0  # a boolean map is read as 0 and 1


def test_inverted_map_gives_auc_0_and_mass_0(shape):
    mask = box_mask(shape)
    heatmap = 1.0 - mask
    assert metrics.roc_auc(heatmap, mask) == 0.0
    assert metrics.relevance_mass(heatmap, mask) == 0.0
    assert metrics.relevance_rank(heatmap, mask) == 0.0
    assert not metrics.pointing_game(heatmap, mask)


def test_roc_auc_matches_a_pairwise_count_with_ties(shape):
    rng = np.random.default_rng(0)
    mask = rng.random(shape) < 0.3
    heatmap = np.round(rng.random(shape) + 0.3 * mask, 1)  # few distinct values: many ties
    assert metrics.roc_auc(heatmap, mask) == pytest.approx(auc_by_pairs(heatmap, mask), abs=1e-12)


def test_roc_auc_of_a_constant_map_is_one_half_and_nan_without_outside(shape):
    mask = box_mask(shape)
    assert metrics.roc_auc(np.full(shape, 0.7), mask) == 0.5
    assert math.isnan(metrics.roc_auc(np.random.default_rng(1).random(shape), np.ones(shape, bool)))


def test_relevance_mass_counts_positive_relevance_only(shape):
    mask = box_mask(shape)
    heatmap = np.zeros(shape)
    inside = tuple(np.argwhere(mask)[0])
    outside = tuple(np.argwhere(~mask)[0])
    outside2 = tuple(np.argwhere(~mask)[1])
    heatmap[inside], heatmap[outside], heatmap[outside2] = 3.0, 1.0, -5.0
    assert metrics.relevance_mass(heatmap, mask) == 3.0 / 4.0  # the -5 is left out
    heatmap[inside] = -3.0
    assert metrics.relevance_mass(heatmap, mask) == 0.0
    assert math.isnan(metrics.relevance_mass(-np.ones(shape), mask))  # no positive relevance


def test_relevance_rank_matches_top_k_without_ties(shape):
    rng = np.random.default_rng(2)
    mask = box_mask(shape)
    heatmap = rng.random(shape) + 0.5 * mask
    k = int(mask.sum())
    top = np.argsort(heatmap.ravel())[-k:]
    expected = mask.ravel()[top].sum() / k
    assert metrics.relevance_rank(heatmap, mask) == pytest.approx(expected, abs=1e-12)


def test_relevance_rank_shares_ties_at_the_kth_value():
    # 2 mask voxels; the top value lies outside, then 3 voxels tie for the last slot, 1 in the mask
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = mask[2, 2] = True
    heatmap = np.zeros((3, 3))
    heatmap[1, 1] = 2.0
    heatmap[0, 0] = heatmap[0, 1] = heatmap[0, 2] = 1.0
    assert metrics.relevance_rank(heatmap, mask) == pytest.approx((1 / 3) / 2)
    # a constant map: K / n
    assert metrics.relevance_rank(np.ones((3, 3)), mask) == pytest.approx(2 / 9)
    assert metrics.relevance_rank(np.ones((2, 3, 4)), np.ones((2, 3, 4), bool)) == 1.0


def test_pointing_game_tolerance_counts_a_peak_one_voxel_outside(shape):
    mask = box_mask(shape)
    corner = tuple(n // 4 for n in shape)  # the mask's first voxel
    beside = (corner[0] - 1,) + corner[1:]  # one voxel outside, face neighbour
    diagonal = tuple(c - 1 for c in corner)  # outside, sqrt(ndim) away
    assert not metrics.pointing_game(one_hot(shape, beside), mask)
    assert metrics.pointing_game(one_hot(shape, beside), mask, tolerance=1)
    assert not metrics.pointing_game(one_hot(shape, diagonal), mask, tolerance=1)
    assert metrics.pointing_game(one_hot(shape, diagonal), mask, tolerance=2)
    far = (0,) * len(shape)
    assert not metrics.pointing_game(one_hot(shape, far), mask, tolerance=1)


def test_pointing_game_counts_any_tied_maximum_inside(shape):
    mask = box_mask(shape)
    heatmap = np.zeros(shape)
    heatmap[tuple(np.argwhere(~mask)[0])] = 1.0
    assert not metrics.pointing_game(heatmap, mask)
    heatmap[tuple(np.argwhere(mask)[-1])] = 1.0  # a second maximum, inside
    assert metrics.pointing_game(heatmap, mask)
    assert metrics.pointing_game(np.full(shape, 0.2), mask)  # a constant map: every voxel is the peak


def test_resize_mask_nearest_neighbour():
    mask = np.array([[1, 0], [0, 1]])
    expected = np.array([[1, 1, 0, 0]] * 2 + [[0, 0, 1, 1]] * 2, bool)
    np.testing.assert_array_equal(metrics.resize_mask(mask, (4, 4)), expected)
    np.testing.assert_array_equal(metrics.resize_mask(expected, (2, 2)), mask.astype(bool))
    volume = np.zeros((2, 2, 2), bool)
    volume[1, 0, 1] = True
    big = metrics.resize_mask(volume, (4, 6, 2))
    assert big.shape == (4, 6, 2) and big.sum() == 2 * 3 * 1
    assert big[2:, :3, 1].all()
    # upsampled map and mask at another resolution: the metric sees the resized mask
    assert metrics.roc_auc(expected.astype(float), metrics.resize_mask(mask, (4, 4))) == 1.0


# --- complexity ----------------------------------------------------------------------------


def test_constant_map_has_sparseness_0_and_complexity_log_n(shape):
    heatmap = np.full(shape, -0.4)
    n = int(np.prod(shape))
    assert metrics.sparseness(heatmap) == pytest.approx(0.0, abs=1e-12)
    assert metrics.complexity(heatmap) == pytest.approx(math.log(n), abs=1e-12)


def test_one_hot_map_has_sparseness_n_minus_1_over_n_and_complexity_0(shape):
    n = int(np.prod(shape))
    heatmap = one_hot(shape, (1,) * len(shape)) * -2.5  # |map| is what counts
    assert metrics.sparseness(heatmap) == pytest.approx((n - 1) / n, abs=1e-12)
    assert metrics.complexity(heatmap) == 0.0
    assert f"{metrics.complexity(heatmap):.4f}" == "0.0000"  # not "-0.0000" in the tables


def test_sparseness_matches_the_mean_absolute_difference(shape):
    heatmap = np.random.default_rng(3).normal(size=shape)
    assert metrics.sparseness(heatmap) == pytest.approx(gini_by_pairs(heatmap), abs=1e-12)


def test_complexity_by_hand(shape):
    heatmap = np.zeros(shape)
    heatmap[(0,) * len(shape)] = 1.0
    heatmap[(1,) * len(shape)] = -1.0
    assert metrics.complexity(heatmap) == pytest.approx(math.log(2))
    heatmap[(2,) * len(shape)] = 2.0  # p = 1/4, 1/4, 1/2
    assert metrics.complexity(heatmap) == pytest.approx(1.5 * math.log(2))
    assert metrics.sparseness(heatmap) == pytest.approx(gini_by_pairs(heatmap))


def test_all_zero_map_is_nan_for_sparseness_and_complexity(shape):
    assert math.isnan(metrics.sparseness(np.zeros(shape)))
    assert math.isnan(metrics.complexity(np.zeros(shape)))


# --- agreement -----------------------------------------------------------------------------


def test_spearman_is_scipys(shape):
    from scipy.stats import spearmanr

    rng = np.random.default_rng(4)
    a, b = rng.random(shape), rng.random(shape)
    b.flat[:5] = b.flat[5]  # ties: average ranks
    assert metrics.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    assert metrics.spearman(a, np.exp(3 * a)) == pytest.approx(1.0)
    assert metrics.spearman(a, -a) == pytest.approx(-1.0)


SSIM_SHAPES = {"2d": (11, 9), "3d": (8, 7, 9)}


@pytest.mark.parametrize("dims", list(SSIM_SHAPES))
def test_ssim_matches_a_window_by_window_computation(dims):
    shape = SSIM_SHAPES[dims]
    rng = np.random.default_rng(5)
    a = rng.random(shape)
    b = np.clip(a + 0.2 * rng.normal(size=shape), 0, 1)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(a, b) == pytest.approx(ssim_by_windows(a, b), abs=1e-10)
    assert metrics.ssim(a, 1 - a) == pytest.approx(ssim_by_windows(a, 1 - a), abs=1e-10)
    assert metrics.ssim(a, 1 - a) < 0  # negated structure: negative covariance in every window
    assert metrics.ssim(a, b, win_size=3) == pytest.approx(ssim_by_windows(a, b, win=3), abs=1e-10)


@pytest.mark.parametrize("dims", list(SSIM_SHAPES))
def test_ssim_of_two_constant_maps_in_closed_form(dims):
    shape = SSIM_SHAPES[dims]
    x, y = 0.2, 0.6
    c1 = 0.01**2
    expected = (2 * x * y + c1) / (x * x + y * y + c1)  # zero variances: the structure term is C2 / C2
    assert metrics.ssim(np.full(shape, x), np.full(shape, y)) == pytest.approx(expected, abs=1e-12)


def test_ssim_against_scikit_image_when_installed():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(6)
    a = rng.random((20, 17))
    b = np.clip(a + 0.3 * rng.normal(size=a.shape), 0, 1)
    expected = skimage_metrics.structural_similarity(a, b, data_range=1.0)
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-10)


# --- bad input -----------------------------------------------------------------------------

LOCALIZATION = [metrics.pointing_game, metrics.relevance_mass, metrics.relevance_rank, metrics.roc_auc]
SINGLE = [metrics.sparseness, metrics.complexity]
PAIRS = [metrics.spearman, metrics.ssim]


@pytest.mark.parametrize("metric", LOCALIZATION)
def test_localization_refuses_bad_input(metric):
    heatmap, mask = np.random.default_rng(7).random((8, 8)), box_mask((8, 8))
    with pytest.raises(ValueError, match=r"mask: shape \(8, 9\) differs"):
        metric(heatmap, np.ones((8, 9), bool))
    with pytest.raises(ValueError, match="mask is empty"):
        metric(heatmap, np.zeros((8, 8), bool))
    nan_map = heatmap.copy()
    nan_map[2, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN value"):
        metric(nan_map, mask)
    with pytest.raises(ValueError, match="2D .* or 3D"):
        metric(heatmap.ravel(), mask.ravel())


@pytest.mark.parametrize("metric", SINGLE)
def test_complexity_metrics_refuse_bad_input(metric):
    with pytest.raises(ValueError, match="infinite"):
        metric(np.array([[1.0, np.inf], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        metric(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="2D .* or 3D"):
        metric(np.ones((2, 2, 2, 2)))


@pytest.mark.parametrize("metric", PAIRS)
def test_agreement_metrics_refuse_bad_input(metric):
    a = np.random.default_rng(8).random((8, 8))
    with pytest.raises(ValueError, match=r"shapes differ, \(8, 8\) and \(8, 9\)"):
        metric(a, np.zeros((8, 9)))
    b = a.copy()
    b[0, 0] = np.nan
    with pytest.raises(ValueError, match="map b: 1 NaN"):
        metric(a, b)


def test_pointing_game_and_ssim_refuse_bad_parameters():
    a, mask = np.ones((8, 8)), box_mask((8, 8))
    with pytest.raises(ValueError, match="tolerance"):
        metrics.pointing_game(a, mask, tolerance=-1)
    with pytest.raises(ValueError, match="tolerance"):
        metrics.pointing_game(a, mask, tolerance=1.5)
    with pytest.raises(ValueError, match="shorter than the window"):
        metrics.ssim(np.ones((5, 9)), np.ones((5, 9)))
    with pytest.raises(ValueError, match="win_size"):
        metrics.ssim(a, a, win_size=4)
    with pytest.raises(ValueError, match="data_range"):
        metrics.ssim(a, a, data_range=0)
