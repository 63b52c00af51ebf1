"""Faithfulness metrics (xaipipe.faithfulness) against hand calculations and closed forms, in 2D and 3D.

The model is linear, f(x) = sum w * x (a Dense head read as logits), so the score of
any copy is known without the model: removing a set S with replacement 0 leaves
sum over the other pixels of w * x.
"""

import math

import keras
import numpy as np
import pytest

from xaipipe import faithfulness
from xaipipe.faithfulness import DeletionInsertion, area, gaussian_blur, road_curves, road_impute


def linear_model(weights, activation=None):
    """Flatten + Dense(2, no bias): class 0's logit is sum(weights * x), class 1's is 0."""
    shape = weights.shape
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(2, use_bias=False, activation=activation)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    kernel = np.zeros((weights.size, 2), np.float32)
    kernel[:, 0] = weights.ravel()
    dense.set_weights([kernel])
    return model


def reference_curve(x, w, order, steps, fill, reveal=False):
    """The linear model's score at each step, from copies built here pixel by pixel (single channel)."""
    n = order.size
    curve = []
    for t in range(steps + 1):
        k = (t * n) // steps
        chosen = np.zeros(n, bool)
        chosen[order[:k]] = True
        flat = x.ravel().copy()
        fill_flat = np.broadcast_to(fill, x.shape).ravel()
        copy = np.where(chosen, flat, fill_flat) if reveal else np.where(chosen, fill_flat, flat)
        curve.append(float((copy * w.ravel()).sum()))
    return np.array(curve)


def test_tiny_2x2_by_hand():
    # w = [[1, 2], [3, 4]], x = 1: contributions 1, 2, 3, 4 (sum 10); the map orders pixels 0, 2, 3, 1
    w = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)[..., None]
    x = np.ones((1, 2, 2, 1), np.float32)
    m = np.array([[[0.4, 0.1], [0.3, 0.2]]])
    metric = DeletionInsertion(linear_model(w), score="logits", steps=4, replacement=0.0)
    out = metric(x, m, np.array([0]))
    np.testing.assert_allclose(out["deletion"][0], [10, 9, 6, 2, 0], atol=1e-5)
    np.testing.assert_allclose(out["insertion"][0], [0, 1, 4, 8, 10], atol=1e-5)
    # trapezoids with dx = 1/4: (10/2 + 9 + 6 + 2 + 0/2) / 4 and (0 + 1 + 4 + 8 + 10/2) / 4
    np.testing.assert_allclose(out["deletion_area"], [5.5], atol=1e-5)
    np.testing.assert_allclose(out["insertion_area"], [4.5], atol=1e-5)
    # steps = 3 on 4 pixels: k_t = floor(4 t / 3) = 0, 1, 2, 4
    three = DeletionInsertion(linear_model(w), score="logits", steps=3, replacement=0.0)
    np.testing.assert_allclose(three.deletion(x, m, [0])[0], [10, 9, 6, 0], atol=1e-5)
    np.testing.assert_allclose(three.fractions, [0, 1 / 3, 2 / 3, 1])


def test_mean_replacement_by_hand():
    # x = [[1, 2], [3, 4]], channel mean 2.5; w = 1: deleting pixel 3 (value 4) then 2 (value 3)...
    w = np.ones((2, 2, 1), np.float32)
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)[None, ..., None]
    m = x[..., 0]  # most relevant = largest value
    metric = DeletionInsertion(linear_model(w), score="logits", steps=4, replacement="mean")
    out = metric(x, m, [0])
    np.testing.assert_allclose(out["deletion"][0], [10, 8.5, 8, 8.5, 10], atol=1e-5)
    np.testing.assert_allclose(out["insertion"][0], [10, 11.5, 12, 11.5, 10], atol=1e-5)


@pytest.mark.parametrize("spatial", [(6, 5), (4, 3, 5)])
def test_true_order_beats_random_maps(spatial):
    rng = np.random.default_rng(1)
    w = rng.uniform(0.1, 2.0, size=(*spatial, 1)).astype(np.float32)
    x = rng.uniform(0.1, 2.0, size=(2, *spatial, 1)).astype(np.float32)
    model = linear_model(w)
    steps = 10
    metric = DeletionInsertion(model, score="logits", steps=steps, replacement=0.0, chunk_size=7)
    true_maps = (w[None] * x)[..., 0]
    true = metric(x, true_maps, [0, 0])
    for b in range(2):  # the curves against copies built here
        order = np.argsort(-true_maps[b].ravel(), kind="stable")
        np.testing.assert_allclose(true["deletion"][b], reference_curve(x[b], w, order, steps, 0.0), rtol=1e-4)
        np.testing.assert_allclose(
            true["insertion"][b], reference_curve(x[b], w, order, steps, 0.0, reveal=True), rtol=1e-4
        )
    for seed in range(5):
        random_maps = np.random.default_rng(100 + seed).normal(size=true_maps.shape)
        other = metric(x, random_maps, [0, 0])
        # removing the largest contributions first leaves the least score at every step
        assert np.all(true["deletion"] <= other["deletion"] + 1e-4)
        assert np.all(true["insertion"] >= other["insertion"] - 1e-4)
        assert np.all(true["deletion_area"] < other["deletion_area"])
        assert np.all(true["insertion_area"] > other["insertion_area"])


@pytest.mark.parametrize("spatial", [(8, 6), (5, 4, 6)])
def test_blur_replacement_against_numpy_copies(spatial):
    rng = np.random.default_rng(2)
    w = rng.normal(size=(*spatial, 2)).astype(np.float32)
    x = rng.normal(size=(2, *spatial, 2)).astype(np.float32)
    maps = rng.normal(size=x.shape[:-1])
    steps = 5
    out = DeletionInsertion(linear_model(w), score="logits", steps=steps, replacement="blur")(x, maps, [0, 0])
    for b in range(2):
        blurred = gaussian_blur(x[b])
        ranks = np.argsort(np.argsort(-maps[b].ravel(), kind="stable")).reshape(spatial)
        for t in range(steps + 1):
            removed = (ranks < (t * maps[b].size) // steps)[..., None]
            deleted = np.where(removed, blurred, x[b])
            inserted = np.where(removed, x[b], blurred)
            assert out["deletion"][b, t] == pytest.approx(float((deleted * w).sum()), abs=1e-3)
            assert out["insertion"][b, t] == pytest.approx(float((inserted * w).sum()), abs=1e-3)


def tie_priority(n):
    """Where each position stands among its ties, as the module documents it: this seeded permutation."""
    return np.random.default_rng(faithfulness.TIE_SEED).permutation(n)


def test_removal_steps_with_ties_follow_the_seeded_tie_order():
    # maps full of ties (rounded noise, zeros): the step of each pixel from a sort by (-value, tie priority) done here
    rng = np.random.default_rng(10)
    for trial in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 7, size=rng.integers(1, 4)))
        maps = [rng.normal(size=(2, *shape)), np.round(rng.normal(size=(2, *shape))), rng.random((2, *shape)) > 0.7]
        maps = maps[trial % 3].astype(np.float64)
        steps = int(rng.integers(1, 25))
        n = int(np.prod(shape))
        priority = tie_priority(n)
        expected = np.zeros((2, n), np.int64)
        for b in range(2):
            flat = maps[b].ravel()
            order = sorted(range(n), key=lambda p: (-flat[p], priority[p]))
            for t in range(steps, 0, -1):  # the first step whose k_t covers the pixel's rank
                expected[b, order[: (t * n) // steps]] = t
            ranks = faithfulness.relevance_ranks(maps[b : b + 1])[0].ravel()
            np.testing.assert_array_equal(np.argsort(ranks), order)
        np.testing.assert_array_equal(faithfulness.map_removal_steps(maps, steps).reshape(2, n), expected)
    # and a tied map through the model: [[1, 1], [0, 1]] removes the three 1s in tie order, then the 0
    w = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)[..., None]
    out = DeletionInsertion(linear_model(w), score="logits", steps=4, replacement=0.0)(
        np.ones((1, 2, 2, 1), np.float32), np.array([[[1.0, 1.0], [0.0, 1.0]]]), [0]
    )
    ones = sorted([0, 1, 3], key=lambda p: tie_priority(4)[p])
    left = 10.0 - np.cumsum([0.0] + [w.ravel()[p] for p in ones + [2]])
    np.testing.assert_allclose(out["deletion"][0], left, atol=1e-5)


@pytest.mark.parametrize("spatial", [(16, 16), (8, 8, 8)])
def test_a_blank_map_scores_at_chance_not_by_its_pixels_position(spatial):
    # a model that reads the first rows only: deleting in C order (the old tie-break) removed them first and
    # a blank map looked as faithful as a perfect one; in random order the score falls linearly, area 1/2
    w = np.zeros(spatial, np.float32)
    w[:2] = 1.0
    x = np.ones((1, *spatial, 1), np.float32)
    metric = DeletionInsertion(linear_model(w[..., None]), score="logits", steps=16, replacement=0.0)
    out = metric(x, np.zeros((1, *spatial)), [0])
    total = float(w.sum())
    assert out["deletion"][0, 0] == pytest.approx(total)
    # the expectation over random orders is total / 2; a fixed permutation of 256 or 512 pixels is within 0.08
    assert out["deletion_area"][0] / total == pytest.approx(0.5, abs=0.08)
    assert out["insertion_area"][0] / total == pytest.approx(0.5, abs=0.08)
    # the map that names the read rows removes them first, as C order did: 1/16 (2D) and 1/8 (3D) by hand
    perfect = metric(x, w[None], [0])
    assert perfect["deletion_area"][0] / total == pytest.approx(1 / 16 if len(spatial) == 2 else 1 / 8)


def test_blur_matches_scipy_and_keeps_constants():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    for shape in [(40, 30, 3), (20, 24, 16, 1), (3, 2, 1)]:
        image = rng.normal(size=shape)
        sigmas = [n / 20 for n in shape[:-1]]
        expected = ndimage.gaussian_filter(image, sigma=[*sigmas, 0], mode="reflect", truncate=3.0)
        np.testing.assert_allclose(gaussian_blur(image), expected, atol=1e-10)
        np.testing.assert_allclose(gaussian_blur(np.full(shape, 2.5)), 2.5, atol=1e-12)


def test_probabilities_score_is_the_softmax():
    w = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)[..., None]
    x = np.ones((1, 2, 2, 1), np.float32)
    m = np.array([[[4.0, 3.0], [2.0, 1.0]]])
    model = linear_model(w, activation="softmax")
    curve = DeletionInsertion(model, steps=4, replacement=0.0).deletion(x, m, [0])[0]
    logits = np.array([2.5, 1.5, 2.5, 2.0, 0.0])  # remaining sum after removing 1, -1, 0.5, 2
    np.testing.assert_allclose(curve, 1 / (1 + np.exp(-logits)), atol=1e-5)  # softmax over [z, 0]
    logit_curve = DeletionInsertion(model, score="logits", steps=4, replacement=0.0).deletion(x, m, [0])[0]
    np.testing.assert_allclose(logit_curve, logits, atol=1e-5)


def test_one_compiled_call_per_chunk():
    w = np.ones((4, 4, 1), np.float32)
    x = np.random.default_rng(4).normal(size=(3, 4, 4, 1)).astype(np.float32)
    maps = np.random.default_rng(5).normal(size=(3, 4, 4))
    steps, chunk = 5, 4
    metric = DeletionInsertion(linear_model(w), score="logits", steps=steps, replacement="mean", chunk_size=chunk)
    calls = []
    forward = metric._scores._forward
    metric._scores._forward = lambda *args: calls.append(len(args[1])) or forward(*args)
    metric.deletion(x, maps, [0, 0, 0])
    assert len(calls) == math.ceil(3 * (steps + 1) / chunk) == 5  # not 3 * 5 calls
    calls.clear()
    metric(x, maps, [0, 0, 0])  # deletion and insertion together: one pass over 2 * 18 copies
    assert len(calls) == math.ceil(2 * 3 * (steps + 1) / chunk)


def ramp(spatial, channels=2):
    """A linear function of the position, another one per channel."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in spatial], indexing="ij")
    return np.stack(
        [1.5 + sum((c + 1) * (axis + 0.5) * g for axis, g in enumerate(grids)) * (-1) ** c for c in range(channels)],
        axis=-1,
    )


@pytest.mark.parametrize("solver", ["auto", "direct", "cg"])
@pytest.mark.parametrize(
    "spatial, region",
    [((9, 11), (slice(2, 7), slice(3, 9))), ((7, 8, 6), (slice(1, 6), slice(2, 6), slice(1, 5)))],
)
def test_road_imputation_reproduces_a_linear_ramp(spatial, region, solver):
    # a linear function equals the mean of its 2d axis neighbours: the discrete Laplace equation's solution
    image = ramp(spatial)
    mask = np.zeros(spatial, bool)
    mask[region] = True
    mask[tuple(s.start for s in region)] = False  # a kept pixel inside: the region need not be convex
    holed = image.copy()
    holed[mask] = 0.0
    np.testing.assert_allclose(road_impute(holed, mask, solver=solver), image, atol=1e-6)
    # scattered removed pixels, not touching the border, too
    scattered = np.zeros(spatial, bool)
    inner = tuple(slice(1, n - 1) for n in spatial)
    scattered[inner] = np.random.default_rng(6).random(scattered[inner].shape) < 0.6
    np.testing.assert_allclose(road_impute(holed * 0 + image, scattered, solver=solver), image, atol=1e-6)


def test_road_imputation_by_hand_and_noise():
    # one removed pixel at a corner of [[1, 2], [3, 4]]: the mean of its 2 neighbours, 2 and 3
    image = np.array([[1.0, 2.0], [3.0, 4.0]])[..., None]
    mask = np.array([[True, False], [False, False]])
    np.testing.assert_allclose(road_impute(image, mask)[..., 0], [[2.5, 2.0], [3.0, 4.0]])
    # two removed pixels 0 and 1 of a row [a, b] above [3, 4]: a = (b + 3) / 2, b = (a + 4) / 2 -> a = 10/3, b = 11/3
    both = np.array([[True, True], [False, False]])
    np.testing.assert_allclose(road_impute(image, both)[0, :, 0], [10 / 3, 11 / 3], atol=1e-8)
    # every pixel removed: the channel mean
    np.testing.assert_allclose(road_impute(image, np.ones((2, 2), bool)), 2.5)
    # noise only where removed, reproducible from its seed
    big = np.random.default_rng(7).normal(size=(30, 30, 1))
    holes = np.zeros((30, 30), bool)
    holes[5:25, 5:25] = True
    clean = road_impute(big, holes)
    noisy = road_impute(big, holes, noise=0.1, seed=3)
    np.testing.assert_array_equal(noisy[~holes], big[~holes])
    assert np.std(noisy[holes] - clean[holes]) == pytest.approx(0.1, rel=0.15)
    np.testing.assert_array_equal(noisy, road_impute(big, holes, noise=0.1, seed=3))


@pytest.mark.parametrize("spatial", [(5, 4), (3, 4, 3)])
def test_road_curves_against_copies_built_here(spatial):
    rng = np.random.default_rng(8)
    w = rng.normal(size=(*spatial, 1)).astype(np.float32)
    x = rng.normal(size=(2, *spatial, 1)).astype(np.float32)
    maps = rng.normal(size=x.shape[:-1])
    steps = 4
    orders = ("morf", "lerf", "insertion")
    curves = road_curves(
        linear_model(w), x, maps, [0, 0], score="logits", steps=steps, noise=0.0, chunk_size=3, orders=orders
    )
    n = maps[0].size
    for b in range(2):
        for order, sign in (("morf", -1), ("lerf", 1), ("insertion", -1)):
            ranking = np.argsort(sign * maps[b].ravel(), kind="stable")
            for t in range(steps + 1):
                removed = np.zeros(n, bool)
                removed[ranking[: (t * n) // steps]] = True
                if order == "insertion":  # the k_t most relevant kept, every other pixel imputed
                    removed = ~removed
                copy = road_impute(x[b], removed.reshape(spatial))
                assert curves[order][b, t] == pytest.approx(float((copy * w).sum()), abs=1e-4)
        assert curves["morf"][b, 0] == pytest.approx(float((x[b] * w).sum()), abs=1e-4)
        assert curves["insertion"][b, steps] == pytest.approx(float((x[b] * w).sum()), abs=1e-4)
        assert curves["insertion"][b, 0] == pytest.approx(float(x[b].mean() * w.sum()), abs=1e-4)
    # a constant image is its own imputation at every step, in both orders
    flat = np.full((1, *spatial, 1), 0.7, np.float32)
    constant = road_curves(linear_model(w), flat, maps[:1], [0], score="logits", steps=steps, noise=0.0)
    np.testing.assert_allclose(constant["morf"], constant["lerf"], atol=1e-5)
    np.testing.assert_allclose(constant["morf"][0], 0.7 * w.sum(), atol=1e-4)


def test_road_insertion_and_morf_by_hand():
    # x = w = [[1, 2], [3, 4]] (score sum w * x = 30); the map ranks (0,0), (1,0), (1,1), (0,1); 2 neighbours each
    w = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)[..., None]
    x = w[None].copy()
    m = np.array([[[0.4, 0.1], [0.3, 0.2]]])
    model = linear_model(w)
    orders = ("insertion", "morf")
    out = road_curves(model, x, m, [0], score="logits", steps=4, noise=0.0, orders=orders)
    # insertion keeps the first t pixels: t=0 all imputed = mean 2.5 -> 25; t=1 only 1 kept -> all 1 -> 10;
    # t=2 1 and 3 kept: 2a = 1 + c, 2c = 3 + a -> a = 5/3, c = 7/3 -> 1 + 10/3 + 9 + 28/3; t=3 a = (1 + 4) / 2
    np.testing.assert_allclose(out["insertion"][0], [25, 10, 10 + 38 / 3, 1 + 5 + 9 + 16, 30], atol=1e-4)
    # morf removes them: t=1 (0,0) = (2 + 3) / 2; t=2 2a = 2 + b, 2b = a + 4 -> a = 8/3, b = 10/3;
    # t=3 leaves only (0,1) = 2 kept: the three removed take 2 -> 2 * 10; t=4 the mean 2.5 -> 25
    np.testing.assert_allclose(out["morf"][0], [30, 31.5, 8 / 3 + 4 + 10 + 16, 20, 25], atol=1e-4)
    # with noise: the last insertion copy is the image itself (nothing drawn), the first one is noisy
    noisy = road_curves(model, x, m, [0], score="logits", steps=4, noise=0.5, seed=1, orders=("insertion",))
    assert noisy["insertion"][0, -1] == pytest.approx(30, abs=1e-4)
    assert abs(noisy["insertion"][0, 0] - 25) > 1e-3
    again = road_curves(model, x, m, [0], score="logits", steps=4, noise=0.5, seed=1, orders=("insertion",))
    np.testing.assert_array_equal(noisy["insertion"], again["insertion"])


@pytest.mark.parametrize("spatial", [(23, 17), (9, 8, 7), (14, 13, 12)])
def test_road_solvers_agree(spatial):
    # the direct factorization and conjugate gradients (Jacobi, or with a coarse level) solve the same system
    rng = np.random.default_rng(9)
    image = rng.normal(size=(*spatial, 3))
    wide = np.zeros(spatial, bool)  # one wide hole: most removed pixels far from a kept one (the coarse level)
    wide[tuple(slice(1, n - 1) for n in spatial)] = True
    for fraction in (0.05, 0.5, 0.95, None):
        removed = wide if fraction is None else rng.random(spatial) < fraction
        direct = road_impute(image, removed, solver="direct")
        np.testing.assert_allclose(road_impute(image, removed, solver="cg"), direct, atol=1e-6)
        np.testing.assert_array_equal(direct[~removed], image[~removed])
        # each removed pixel is the mean of its axis neighbours (the equations themselves)
        degree = faithfulness._neighbour_sum(np.ones((*spatial, 1)))
        np.testing.assert_allclose((faithfulness._neighbour_sum(direct) / degree)[removed], direct[removed], atol=1e-9)


def test_area_is_the_trapezoid():
    np.testing.assert_allclose(area(np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])), [1.0, 0.5])
    np.testing.assert_allclose(area(np.linspace(0, 1, 11)), 0.5)


def test_bad_parameters_name_themselves():
    w = np.ones((2, 2, 1), np.float32)
    model = linear_model(w)
    x = np.ones((1, 2, 2, 1), np.float32)
    for kwargs, name in [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"replacement": "noise"}, "replacement"),
        ({"replacement": float("nan")}, "replacement"),
        ({"score": "softmax"}, "score"),
        ({"chunk_size": 0}, "chunk_size"),
    ]:
        with pytest.raises(ValueError, match=name):
            DeletionInsertion(model, **kwargs)
    metric = DeletionInsertion(model, score="logits", steps=2)
    with pytest.raises(ValueError, match="maps"):
        metric(x, np.ones((1, 2, 3)), [0])
    with pytest.raises(ValueError, match="maps"):
        metric(x, np.full((1, 2, 2), np.nan), [0])
    with pytest.raises(ValueError, match="classes"):
        metric(x, np.ones((1, 2, 2)), [0, 1])
    with pytest.raises(ValueError, match="inputs"):
        metric(np.ones((1, 3, 3, 1)), np.ones((1, 3, 3)), [0])
    with pytest.raises(ValueError, match="removed_mask"):
        road_impute(np.ones((2, 2, 1)), np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="noise"):
        road_impute(np.ones((2, 2, 1)), np.ones((2, 2), bool), noise=-1)
    with pytest.raises(ValueError, match="steps"):
        road_curves(model, x, np.ones((1, 2, 2)), [0], steps=0)
    with pytest.raises(ValueError, match="orders"):
        road_curves(model, x, np.ones((1, 2, 2)), [0], orders=("random",))
    with pytest.raises(ValueError, match="solver"):
        road_impute(np.ones((2, 2, 1)), np.ones((2, 2), bool), solver="lu")
    with pytest.raises(ValueError, match="solver"):
        road_curves(model, x, np.ones((1, 2, 2)), [0], solver="lu")
    with pytest.raises(ValueError, match="maps"):
        road_curves(model, x, np.ones((2, 2)), [0])
    assert faithfulness.check_replacement(3) == 3.0
