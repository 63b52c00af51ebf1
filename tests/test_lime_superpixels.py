"""LIME on SLIC superpixels (``segmentation: slic``) and on the grid (``grid``, the default).

The superpixels are compared with scikit-image's ``slic`` called directly on the input
scaled here with numpy; the maps with a numpy re-computation of LIME (perturbed scores of
a linear model, LIME's kernel, the weighted ridge as one least-squares problem); a batch
with each of its images explained alone.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from skimage.segmentation import slic

from xaipipe import config as xconfig
from xaipipe import h5store, methods
from xaipipe.errors import SampleError
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import compute_heatmaps_shard, predict_shard, preprocess_shard
from xaipipe.writers import write_png

# ---------------------------------------------------------------- helpers, in numpy


def scaled(image):
    """Each channel of ``image`` (*spatial, C) rescaled to [0, 1] on its own."""
    axes = tuple(range(image.ndim - 1))
    low, high = image.min(axis=axes), image.max(axis=axes)
    return (image - low) / (high - low)


def drawn(seed, n, n_segments):
    """LIME's perturbations as documented: n binary vectors from numpy's default_rng(seed), the first all ones."""
    samples = np.random.default_rng(seed).integers(0, 2, (n, n_segments), dtype=np.int8)
    samples[0] = 1
    return samples


def lime_kernel(samples, kernel_width):
    """sqrt(exp(-d^2 / width^2)), d the cosine distance of each binary vector to all ones (1 for all zeros)."""
    z = samples.astype(np.float64)
    norms = np.linalg.norm(z, axis=1) * np.sqrt(z.shape[1])
    similarity = np.divide(z.sum(axis=1), norms, out=np.zeros(len(z)), where=norms > 0)
    return np.sqrt(np.exp(-((1.0 - similarity) ** 2) / kernel_width**2))


def ridge(samples, targets, weights, penalty=1.0):
    """Weighted ridge with an unpenalized intercept as one least-squares problem; the coefficients without it."""
    n, s = samples.shape
    design = np.hstack([np.ones((n, 1)), samples.astype(np.float64)]) * np.sqrt(weights)[:, None]
    lhs = np.vstack([design, np.hstack([np.zeros((s, 1)), np.sqrt(penalty) * np.eye(s)])])
    rhs = np.concatenate([targets * np.sqrt(weights), np.zeros(s)])
    return np.linalg.lstsq(lhs, rhs, rcond=None)[0][1:]


def shown(coefficients, sign, num_features):
    """The values LIME shows per segment: the num_features largest of sign * w, those > 0."""
    signed = sign * coefficients
    top = np.argsort(-signed, kind="stable")[:num_features]
    out = np.zeros_like(signed)
    out[top] = np.maximum(signed[top], 0.0)
    return out


def linear_model(shape, weights, bias):
    """scores = flatten(x) @ weights + bias."""
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(weights.shape[1])
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return model


def quadrants(shape=(24, 24), rows=10, cols=14):
    """Block labels 0..3 of four rectangles split at (rows, cols), off the 2 x 2 grid's split at the middle."""
    blocks = np.zeros(shape, int)
    blocks[:rows, cols:] = 1
    blocks[rows:, :cols] = 2
    blocks[rows:, cols:] = 3
    return blocks


def same_partition(labels, blocks):
    """Whether two label maps split the pixels alike (equal up to the numbering)."""
    pairs = np.unique(np.stack([labels.ravel(), blocks.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(labels)) == len(np.unique(blocks))


# ---------------------------------------------------------------- the superpixels are scikit-image's


def smooth_field(shape, channels, seed):
    """A smooth random image: a few Gaussian blobs per channel, each channel on its own scale and offset."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).reshape(len(shape), -1).T
    out = np.zeros((np.prod(shape), channels))
    for c in range(channels):
        for _ in range(4):
            centre, width = rng.uniform(0, shape), rng.uniform(2, 5)
            out[:, c] += rng.uniform(0.3, 1.0) * np.exp(-(((grid - centre) ** 2).sum(1)) / (2 * width**2))
    scale, offset = np.array([255.0, 2.0, 0.01])[:channels], np.array([0.0, -1.0, 100.0])[:channels]
    return (out * scale + offset).reshape(*shape, channels).astype(np.float32)


@pytest.mark.parametrize(
    "shape, compactness, reference",
    [
        ((20, 22, 3), None, dict(compactness=10.0, channel_axis=-1)),  # RGB: scikit-image converts it to Lab
        ((20, 22, 3), 25.0, dict(compactness=25.0, channel_axis=-1)),
        ((20, 22, 1), None, dict(compactness=0.1, channel_axis=None)),  # gray: 2D intensities
        ((10, 12, 12, 1), None, dict(compactness=0.1, channel_axis=None)),  # a volume: supervoxels
        ((8, 10, 10, 3), None, dict(compactness=0.1, channel_axis=-1, convert2lab=False)),  # 3 channels of a volume
    ],
    ids=["rgb", "rgb-compactness-25", "gray", "volume", "volume-3-channels"],
)
def test_slic_labels_are_scikit_images_on_the_input_scaled_per_channel(shape, compactness, reference):
    x = smooth_field(shape[:-1], shape[-1], seed=3)[None]
    model = linear_model(shape, np.zeros((np.prod(shape), 2)), np.zeros(2))
    method = methods.create("lp", model, segmentation="slic", segments=12, compactness=compactness)
    assert method.params["segmentation"] == "slic" and method.params["compactness"] == reference["compactness"]
    image = scaled(x[0].astype(np.float64))
    if reference["channel_axis"] is None:
        image = image[..., 0]
    expected = slic(image, n_segments=12, start_label=0, **reference)
    labels = method.segment_labels(x)[0]
    assert len(np.unique(expected)) >= 4  # a real segmentation, not one region
    np.testing.assert_array_equal(labels, expected)
    # scaled per channel: a positive scale and an offset per channel change nothing (powers of 2 and float64: exact)
    stretched = (
        x.astype(np.float64) * np.array([0.5, 4.0, 32.0])[: shape[-1]] - np.array([3.0, -7.0, 100.0])[: shape[-1]]
    )
    np.testing.assert_array_equal(method.segment_labels(stretched)[0], expected)


# ---------------------------------------------------------------- the maps light the superpixel that matters


@pytest.mark.parametrize("channels", [1, 3], ids=["gray", "rgb"])
def test_lime_lights_exactly_the_superpixel_that_raises_the_score_and_the_one_that_lowers_it(channels):
    # Four flat blocks with a little noise, split off the middle; the score of class 0 is
    # mean(block 1) - mean(block 2), so with fill 0 it is exactly linear in the kept segments:
    # f(z) = z_1 m_1 - z_2 m_2. LimePro must light block 1 and only it, LimeCon block 2.
    blocks = quadrants()
    rgb = [[0.2, 0.5, 0.3], [0.9, 0.2, 0.4], [0.4, 0.8, 0.9], [0.6, 0.6, 0.1]]
    colours = np.array(rgb if channels == 3 else [[0.1], [0.4], [0.7], [1.0]])
    x = colours[blocks] + np.random.default_rng(1).normal(0, 0.02, (24, 24, channels))
    x = x[None].astype(np.float32)
    raised, lowered = (blocks == 1), (blocks == 2)
    weights = np.zeros((24 * 24 * channels, 2))
    weights[:, 0] = (np.repeat(raised, channels) / (raised.sum() * channels)) - (
        np.repeat(lowered, channels) / (lowered.sum() * channels)
    )
    model = linear_model((24, 24, channels), weights, np.array([0.3, 0.0]))
    params = dict(segmentation="slic", segments=4, num_features=1, num_samples=200, seed=7)
    pro, con = methods.create("lp", model, **params), methods.create("lc", model, **params)
    labels = pro.segment_labels(x)[0]
    assert same_partition(labels, blocks)  # SLIC found the blocks (a 2 x 2 grid would cut them in the middle)
    segment_of = {b: int(np.unique(labels[blocks == b])[0]) for b in range(4)}
    # the expected weights, in numpy: the score of each perturbation, the kernel, the ridge
    samples = drawn(7, 200, 4)
    means = np.array([x[0][labels == s].mean() for s in range(4)])
    targets = samples[:, segment_of[1]] * means[segment_of[1]] - samples[:, segment_of[2]] * means[segment_of[2]] + 0.3
    coefficients = ridge(samples, targets, lime_kernel(samples, 0.25))
    for method, sign, region in ((pro, 1, raised), (con, -1, lowered)):
        raw = method.raw_maps(x, np.array([[0]]))[0, 0]
        assert (raw[region] > 0).all() and (raw[~region] == 0).all()
        np.testing.assert_allclose(raw, shown(coefficients, sign, 1)[labels], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- the grid as before


@pytest.mark.parametrize("shape", [(8, 8, 1), (4, 4, 4, 2)], ids=["2d", "3d"])
def test_grid_maps_equal_a_numpy_recomputation(shape):
    spatial = shape[:-1]
    if len(spatial) == 2:  # 16 cells of 2 x 2 pixels
        labels = np.arange(8)[:, None] // 2 * 4 + np.arange(8)[None, :] // 2
    else:  # 8 boxes of 2 x 2 x 2 voxels
        d, h, w = np.indices(spatial)
        labels = d // 2 * 4 + h // 2 * 2 + w // 2
    n_segments, fill, kernel_width, n = labels.max() + 1, 0.3, 0.4, 150
    rng = np.random.default_rng(5)
    weights, bias = rng.normal(0, 1, (np.prod(shape), 3)), rng.normal(0, 1, 3)
    x = rng.uniform(0, 1, (2, *shape)).astype(np.float32)
    classes = np.array([[0, 2], [1, 0]])
    model = linear_model(shape, weights, bias)
    samples = drawn(2, n, n_segments)
    keep = samples[:, labels][..., None]  # (N, *spatial, 1)
    for key, sign in (("lp", 1), ("lc", -1)):
        params = dict(segments=int(n_segments), num_samples=n, num_features=3, kernel_width=kernel_width, seed=2)
        method = methods.create(key, model, segmentation="grid", fill=fill, chunk_size=64, **params)
        raw = method.raw_maps(x, classes)
        default = methods.create(key, model, fill=fill, chunk_size=64, **params).raw_maps(x, classes)
        np.testing.assert_array_equal(raw, default)  # grid is the default
        assert "compactness" not in method.params  # nor recorded where it plays no part
        for b in range(2):
            perturbed = x[b].astype(np.float64) * keep + fill * (1 - keep)
            scores = perturbed.reshape(n, -1) @ weights + bias
            for t, c in enumerate(classes[b]):
                coefficients = ridge(samples, scores[:, c], lime_kernel(samples, kernel_width))
                expected = shown(coefficients, sign, 3)[labels]
                np.testing.assert_allclose(raw[b, t], expected, rtol=1e-4, atol=1e-5 * np.abs(coefficients).max())


# ---------------------------------------------------------------- a batch as its images alone


def test_a_batch_of_images_with_different_superpixel_counts_equals_each_image_alone():
    x = np.stack([smooth_field((24, 24), 1, seed) / 100 - 1 for seed in range(3)])
    keras.utils.set_random_seed(4)
    inputs = keras.Input((24, 24, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(hidden)))
    classes = np.array([[0, 2], [1, 0], [2, 1]])
    for key in ("lp", "lc"):
        method = methods.create(key, model, segmentation="slic", segments=6, num_samples=90, chunk_size=37, seed=1)
        counts = [len(np.unique(labels)) for labels in method.segment_labels(x)]
        assert len(set(counts)) > 1, counts  # the padding to the batch's largest count is exercised
        raw, normalized = method.explain(x, classes)
        assert (raw > 0).any()
        for b in range(3):
            alone_raw, alone_normalized = method.explain(x[b : b + 1], classes[b : b + 1])
            np.testing.assert_allclose(raw[b], alone_raw[0], rtol=1e-5, atol=1e-6 * np.abs(raw).max())
            np.testing.assert_allclose(normalized[b], alone_normalized[0], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "key, params, message",
    [
        ("lp", {"segmentation": "felzenszwalb"}, r"LimePro: segmentation must be 'grid' \(regular cells\) or 'slic'"),
        ("lc", {"segmentation": None}, r"LimeCon: segmentation must be 'grid' .* got None"),
        ("lp", {"segmentation": "slic", "compactness": 0}, r"LimePro: compactness must be a positive number"),
        ("lc", {"compactness": -2.5}, r"LimeCon: compactness must be a positive number .* got -2.5"),
        ("lc", {"compactness": "high"}, r"LimeCon: compactness must be a positive number"),
    ],
)
def test_bad_segmentation_and_compactness_are_refused_by_the_constructor(key, params, message):
    model = linear_model((8, 8, 1), np.zeros((64, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=message):
        methods.create(key, model, **params)


def workflow_config(methods_list):
    return {
        "methods": methods_list,
        "model": {"layer": None},
        "score": "logits",
        "classes": [],
        "demo": {"build": False},
        "preprocessing": {"size": [32, 32]},
    }


def test_bad_segmentation_and_compactness_stop_the_config_check():
    with pytest.raises(ValueError, match=r"methods\[0\] \(lp\): segmentation must be 'grid' .* got 'slick'"):
        xconfig.method_variants(workflow_config([{"name": "lp", "segmentation": "slick"}]))
    with pytest.raises(
        ValueError, match=r"methods\[1\] \(limecon-compactness-0\): compactness must be a positive number .* got 0"
    ):
        xconfig.method_variants(
            workflow_config(["gc", {"name": "lc", "segmentation": "slic", "sweep": {"compactness": [5, 0]}}])
        )
    variants = xconfig.method_variants(workflow_config([{"name": "lp", "segmentation": "slic", "compactness": 5}]))
    assert variants["limepro"].params == {"segmentation": "slic", "compactness": 5.0, "score": "logits"}


def blocks_png(k):
    """Four flat blocks of 8 bit gray (their order depends on k), a little noise."""
    rng = np.random.default_rng(k)
    image = rng.permutation([30, 100, 170, 240])[quadrants((32, 32), 13, 19)] + rng.integers(-3, 4, (32, 32))
    return image.astype(np.uint8)


def test_an_image_slic_cannot_segment_fails_or_is_skipped_alone(tmp_path):
    # Pure noise: SLIC (compactness 0.1) merges it into one superpixel, where LIME has nothing to fit.
    ids = ["b0", "b1", "noise", "b3"]
    images = [blocks_png(0), blocks_png(1), np.random.default_rng(9).integers(0, 256, (32, 32)), blocks_png(3)]
    paths = []
    for sample, image in zip(ids, images, strict=True):
        paths.append(tmp_path / f"{sample}.png")
        write_png(paths[-1], image.astype(np.uint8))
    model = linear_model((32, 32, 1), np.random.default_rng(0).normal(0, 0.05, (1024, 2)), np.zeros(2))
    model.save(tmp_path / "model.keras")
    pre, pred = tmp_path / "pre.h5", tmp_path / "pred.h5"
    preprocess_shard(paths, ids, None, None, Preprocessing(size=(32, 32), channels=1, standardize="tf"), pre)
    predict_shard(pre, tmp_path / "model.keras", pred, batch_size=4)
    params = {"segmentation": "slic", "segments": 4, "num_samples": 60}

    def heatmaps(out, on_error):
        compute_heatmaps_shard(pre, pred, tmp_path / "model.keras", "lp", params, "argmax", 4, out, on_error=on_error)

    with pytest.raises(SampleError) as caught:
        heatmaps(tmp_path / "fail.h5", "fail")
    assert caught.value.sample_id == "noise" and caught.value.stage == "heatmaps:limepro"
    assert "limepro: segmentation 'slic' finds 1 superpixel" in caught.value.reason
    heatmaps(tmp_path / "skip.h5", "skip")
    with h5store.HeatmapsFile.open(tmp_path / "skip.h5") as maps:
        assert maps.skipped.tolist() == [False, False, True, False]
        assert [(i.sample, i.stage, i.kind) for i in maps.issues] == [("noise", "heatmaps:limepro", "skipped")]
        assert "segmentation 'slic'" in maps.issues[0].reason
        for m in (0, 1, 3):
            assert np.isfinite(maps.raw(m)).all() and (maps.raw(m) > 0).any()
    # the method itself names the sample by its id, or by its row without ids
    method = methods.create("lp", keras.models.load_model(tmp_path / "model.keras"), **params)
    with h5store.PreprocessedShard.open(pre) as shard:
        inputs = next(iter(shard.batches(4)))[1]
    with pytest.raises(ValueError, match=r"sample 'noise': limepro: segmentation 'slic' finds 1 superpixel"):
        method.explain(inputs, np.zeros((4, 1), int), ids=ids)
    with pytest.raises(ValueError, match=r"sample #2: limepro: segmentation 'slic'"):
        method.raw_maps(inputs, np.zeros((4, 1), int))
