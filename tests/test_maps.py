import cv2
import numpy as np
import pytest

from xaipipe.maps import normalize_maps, resize_linear


def test_tiny_maps_still_reach_one():
    maps = np.array([[[0.0, 1e-12], [3e-12, 4e-12]]], np.float32)
    out = normalize_maps(maps)
    assert out.max() == 1.0 and out.min() == 0.0
    np.testing.assert_allclose(out[0], [[0, 0.25], [0.75, 1.0]], rtol=1e-5)


def test_constant_maps_become_zeros_not_nan():
    out = normalize_maps(np.stack([np.zeros((3, 3)), np.full((3, 3), 5.0), np.full((3, 3), -2.0)]))
    assert np.isfinite(out).all() and not out.any()


def test_each_map_is_normalized_on_its_own():
    maps = np.stack([np.array([[0.0, 2.0]]), np.array([[-4.0, 4.0]])])
    np.testing.assert_allclose(normalize_maps(maps), [[[0, 1]], [[0, 1]]])


def test_non_finite_maps_are_an_error():
    with pytest.raises(ValueError, match="NaN"):
        normalize_maps(np.array([[[np.nan, 1.0]]]))


def test_the_four_normalizations_against_hand_computed_maps():
    """minmax (v - min) / (max - min); positive max(v, 0) / max v; absolute |v| / max |v|; signed v / max |v|."""
    maps = np.array([[[-2.0, 0.0], [1.0, 4.0]], [[-3.0, -1.0], [0.0, -6.0]]], np.float32)
    np.testing.assert_allclose(normalize_maps(maps, "minmax")[0], [[0, 1 / 3], [0.5, 1]], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(normalize_maps(maps, "positive"), [[[0, 0], [0.25, 1]], [[0, 0], [0, 0]]])
    np.testing.assert_allclose(normalize_maps(maps, "absolute")[1], [[0.5, 1 / 6], [0, 1]], rtol=0, atol=1e-7)
    signed = [[[-0.5, 0], [0.25, 1]], [[-0.5, -1 / 6], [0, -1]]]
    np.testing.assert_allclose(normalize_maps(maps, "signed"), signed, rtol=0, atol=1e-7)
    for mode in ("positive", "absolute", "signed", "minmax"):
        assert not normalize_maps(np.zeros((1, 3, 3)), mode).any()
    with pytest.raises(ValueError, match="normalize must be one of"):
        normalize_maps(maps, "relu")


@pytest.mark.parametrize("mode", ["minmax", "positive", "absolute", "signed"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_normalization_refuses_a_map_with_nan_or_infinity(mode, bad):
    # minmax finds them through the map's minimum and maximum; -inf would vanish in positive's max(v, 0)
    maps = np.zeros((3, 4, 4), np.float32)
    maps[:, 0, 0] = 1.0
    maps[1, 2, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        normalize_maps(maps, mode)


def test_2d_resize_matches_opencv_linear():
    maps = np.random.default_rng(1).random((3, 7, 5)).astype(np.float32)
    out = resize_linear(maps, (28, 15))
    for m, o in zip(maps, out):
        np.testing.assert_allclose(o, cv2.resize(m, (15, 28), interpolation=cv2.INTER_LINEAR), atol=1e-5)


def test_3d_resize_keeps_constants_and_linear_ramps():
    constant = np.full((1, 2, 3, 4), 0.5, np.float32)
    np.testing.assert_allclose(resize_linear(constant, (8, 6, 4)), 0.5)
    ramp = np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1) * np.ones((1, 4, 2, 2), np.float32)
    out = resize_linear(ramp, (8, 2, 2))
    assert out.shape == (1, 8, 2, 2)
    # interior samples of a linear ramp stay on the ramp (half-pixel centres)
    np.testing.assert_allclose(out[0, 1:7, 0, 0], (np.arange(1, 7) + 0.5) / 2 - 0.5)


def _opencv_trilinear(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """OpenCV's INTER_LINEAR on each depth slice (height, width), then along depth on the (depth, height*width)
    matrix, whose width stays as it is: the separable trilinear interpolation with half-pixel centres."""
    depth, height, width = shape
    slices = np.stack([cv2.resize(s, (width, height), interpolation=cv2.INTER_LINEAR) for s in volume])
    along_depth = cv2.resize(slices.reshape(len(volume), -1), (height * width, depth), interpolation=cv2.INTER_LINEAR)
    return along_depth.reshape(shape)


@pytest.mark.parametrize(
    "source, target",
    [((8, 8, 8), (64, 64, 64)), ((5, 7, 3), (33, 64, 17)), ((40, 9, 30), (16, 27, 30)), ((4, 6, 2), (4, 3, 9))],
)
def test_3d_resize_matches_opencv_slice_by_slice(source, target):
    # enlarging, shrinking and mixed axes: the axes are resized in another order than OpenCV's, on a strided view
    maps = np.random.default_rng(3).random((3, *source))[:, ::-1]
    out = resize_linear(maps, target)
    assert out.dtype == np.float32
    for m, o in zip(maps.astype(np.float32), out):
        np.testing.assert_allclose(o, _opencv_trilinear(m, target), rtol=0, atol=2e-6)


@pytest.mark.parametrize("source, target", [((7, 5), (28, 15)), ((3, 4, 5), (9, 8, 15)), ((4, 4, 4), (4, 8, 2))])
def test_compiled_resize_matches_the_numpy_resize(source, target):
    from xaipipe.maps import resize_linear_ops

    maps = np.random.default_rng(2).random((2, *source)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(resize_linear_ops(maps, target)), resize_linear(maps, target), atol=1e-5)


def test_normalized_maxima_are_exactly_one_whatever_the_rounding():
    # spans whose reciprocal rounds so that (max - min) * (1 / span) would give 0.99999994
    rng = np.random.default_rng(0)
    maps = (rng.random((2000, 5)) * rng.choice([1e-7, 1e-3, 1.0, 3e4], size=(2000, 1))).astype(np.float32)
    normalized = normalize_maps(maps)
    assert (normalized.max(axis=1) == 1.0).all()
    assert (normalized.min(axis=1) == 0.0).all()
