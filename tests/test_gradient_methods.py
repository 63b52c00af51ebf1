"""Input x Gradient, the noise option (SmoothGrad, SmoothGrad-squared, VarGrad) and RISE, against closed forms,
numpy computations of the same noisy gradients, and Captum."""

import math
import re

import keras
import numpy as np
import pytest

from xaipipe import config as xconfig
from xaipipe import methods
from xaipipe.autodiff import ScoreGradients
from test_methods import cnn
from xaipipe.maps import normalize_maps


def random_inputs(shape, n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def linear_model(shape, n_classes=3, seed=0):
    """Flatten + Dense: scores = flatten(x) @ W + b, with known W."""
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(n_classes, name="out")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(math.prod(shape), n_classes)).astype(np.float32)
    dense.set_weights([weights, rng.normal(size=n_classes).astype(np.float32)])
    return model, weights


def quadratic_model(shape, seed=0, offset=5.0):
    """One score S = x^T A x + b^T x of the flattened input: its gradient is (A + A^T) x + b.
    Returns the model, M = A + A^T and b."""
    n = math.prod(shape)
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 0.05, (n, n)).astype(np.float32)
    b = (offset + rng.normal(0.0, 0.5, n)).astype(np.float32)
    inputs = keras.Input(shape)
    flat = keras.layers.Flatten()(inputs)
    linear = keras.layers.Dense(n, use_bias=False)
    product = keras.layers.Multiply()([flat, linear(flat)])  # x_i (x A)_i: sums to x^T A^T x = x^T A x
    head = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, head(keras.layers.Concatenate()([product, flat])))
    linear.set_weights([a])
    head.set_weights([np.concatenate([np.ones(n, np.float32), b])[:, None]])
    return model, (a + a.T).astype(np.float64), b.astype(np.float64)


def documented_noise(noise, inputs):
    """The noisy copies (B, n, ...) as xaipipe.methods.noise documents them, written here with numpy:
    eps from default_rng(seed).standard_normal((samples, *shape), float32), scaled by sigma * (max - min)."""
    eps = np.random.default_rng(noise["seed"]).standard_normal((noise["samples"], *inputs.shape[1:]), dtype=np.float32)
    ranges = inputs.reshape(len(inputs), -1).max(axis=1) - inputs.reshape(len(inputs), -1).min(axis=1)
    scales = (noise["sigma"] * ranges.astype(np.float64)).astype(np.float32)
    return inputs[:, None] + scales.reshape(-1, 1, *[1] * (inputs.ndim - 1)) * eps[None]


def numpy_statistic(values, kind):
    """The noise statistic over axis 1, by its definition."""
    values = np.asarray(values, np.float64)
    mean = values.mean(axis=1)
    if kind == "smoothgrad":
        return mean
    square = (values**2).mean(axis=1)
    return square if kind == "smoothgrad_sq" else square - mean**2


# ---------------------------------------------------------------- Input x Gradient


@pytest.mark.parametrize("shape", [(4, 5, 3), (3, 4, 5, 2)], ids=["2d", "3d"])
def test_input_x_gradient_of_a_linear_model_is_x_times_w_summed_over_channels(shape):
    model, weights = linear_model(shape)
    x = random_inputs(shape, 2, seed=1)
    classes = np.array([[0, 2], [1, 0]])
    raw, _ = methods.create("ixg", model).explain(x, classes)
    for b, t in np.ndindex(2, 2):
        expected = (x[b] * weights[:, classes[b, t]].reshape(shape)).sum(axis=-1)
        np.testing.assert_allclose(raw[b, t], expected, rtol=1e-5, atol=1e-6)
    assert (raw < 0).any()  # the raw map keeps its sign


# ---------------------------------------------------------------- the noise option on a quadratic model


def test_smoothgrad_converges_to_the_expected_gradient_like_one_over_sqrt_n():
    """With x_k = x + s eps_k, E[dS/dx (x_k)] = M x + b. The error of the mean of n gradients is s M mean(eps),
    whose RMS over the pixels is s sqrt(mean_i (M M^T)_ii / n): checked for n = 4 .. 256, over 4 seeds each."""
    shape = (8, 8, 1)
    model, m, b = quadratic_model(shape)
    x = random_inputs(shape, 1, seed=2)
    expected = (m @ x.reshape(-1) + b).reshape(shape[:-1])
    sigma = 0.1
    s = sigma * float(x.max() - x.min())
    per_copy_sd = s * np.sqrt(np.diag(m @ m.T))
    assert expected.min() > 6 * per_copy_sd.max()  # every gradient positive: |mean| is the mean
    theory = s * np.sqrt(np.mean(np.diag(m @ m.T)))
    ratios = []
    for n in (4, 16, 64, 256):
        errors = []
        for seed in range(4):
            noise = {"samples": n, "sigma": sigma, "seed": seed}
            raw = methods.create("smoothgrad", model, noise=noise).raw_maps(x, np.array([[0]]))[0, 0]
            errors.append(raw - expected)
        rms = float(np.sqrt(np.mean(np.square(errors))))
        ratios.append(rms * np.sqrt(n) / theory)
    assert all(0.7 < r < 1.3 for r in ratios), ratios


@pytest.mark.parametrize("shape", [(5, 6, 1), (3, 4, 4, 1)], ids=["2d", "3d"])
@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_statistics_of_a_quadratic_model_match_numpy(kind, shape):
    model, m, b = quadratic_model(shape, seed=3)
    x = random_inputs(shape, 2, seed=4)
    noise = {"kind": kind, "samples": 12, "sigma": 0.2, "seed": 5}
    copies = documented_noise(noise, x).astype(np.float64)  # (B, n, ...)
    gradients = copies.reshape(2, 12, -1) @ m.T + b  # (B, n, pixels): M x_k + b
    expected = np.abs(numpy_statistic(gradients, kind)).reshape(2, *shape[:-1])  # max over the one channel
    raw = methods.create("saliency", model, noise=noise, chunk_size=5).raw_maps(x, np.zeros((2, 1), np.int32))
    np.testing.assert_allclose(raw[:, 0], expected, rtol=1e-3, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("kind", ["smoothgrad", "vargrad"])
def test_noisy_integrated_gradients_of_a_quadratic_model_match_the_closed_form(kind):
    """For a quadratic S the gradient is linear along the path, so the midpoint rule is exact:
    IG(x_k) = (x_k - x') * (M (x_k + x') / 2 + b), with x' the clean input's baseline ('black': its
    per-channel minimum, the same for every copy); the map sums the statistic over the channels."""
    shape = (4, 4, 2)
    model, m, b = quadratic_model(shape, seed=6)
    x = random_inputs(shape, 2, seed=7)
    noise = {"kind": kind, "samples": 6, "sigma": 0.3, "seed": 1}
    copies = documented_noise(noise, x).astype(np.float64).reshape(2, 6, -1)
    baseline = np.broadcast_to(x.min(axis=(1, 2), keepdims=True), x.shape).reshape(2, 1, -1).astype(np.float64)
    ig = (copies - baseline) * ((copies + baseline) / 2 @ m.T + b)
    expected = numpy_statistic(ig, kind).reshape(2, *shape).sum(axis=-1)
    method = methods.create("ig", model, steps=3, baseline="black", noise=noise, chunk_size=8)
    raw = method.raw_maps(x, np.zeros((2, 1), np.int32))
    np.testing.assert_allclose(raw[:, 0], expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


# ---------------------------------------------------------------- the noise option of every method that takes it


CNN = {}


def shared_cnn(shape=(10, 12, 2)):
    if shape not in CNN:
        CNN[shape] = cnn(shape, seed=5)
    return CNN[shape]


NOISY = [name for name in methods.canonical_names() if "noise" in methods.parameters(name)]


def test_the_gradient_methods_take_noise():
    assert {"saliency", "guidedbackprop", "inputxgradient", "integratedgradients", "smoothgrad", "vargrad"} <= set(
        NOISY
    )
    assert {"gradcam", "gradcam++", "guidedgradcam"} <= set(NOISY)
    assert not {"occlusion", "limepro", "limecon", "rise"} & set(NOISY)


@pytest.mark.parametrize("name", NOISY)
def test_noise_with_sigma_zero_is_the_plain_method_and_with_sigma_changes_the_maps(name):
    """Sigma 0: every copy is the input, so SmoothGrad gives the plain map (and VarGrad, zero, is refused); a
    method that took the option and ignored it (a subclass with its own raw_maps) fails on the noisy maps differing."""
    model = shared_cnn()
    x = random_inputs((10, 12, 2), 2, seed=8)
    classes = np.array([[0, 2], [1, 1]])
    extra = {"steps": 4} if name == "integratedgradients" else {}
    plain = methods.create(name, model, noise=None, **extra).raw_maps(x, classes)
    still = {"kind": "smoothgrad", "samples": 3, "sigma": 0.0}
    smooth = methods.create(name, model, noise=still, chunk_size=4, **extra).raw_maps(x, classes)
    np.testing.assert_allclose(smooth, plain, rtol=1e-5, atol=1e-6 * np.abs(plain).max())
    with pytest.raises(ValueError, match="noise.sigma 0 with kind vargrad"):  # its maps would be all zeros
        methods.create(name, model, noise={**still, "kind": "vargrad"}, **extra)
    noisy = methods.create(name, model, noise={"samples": 3, "sigma": 0.3}, **extra).raw_maps(x, classes)
    assert np.abs(noisy - plain).max() > 1e-3 * np.abs(plain).max()


@pytest.mark.parametrize("name", [n for n in NOISY if methods.takes_layer(n)])
def test_noisy_cam_maps_are_the_statistic_of_the_maps_of_the_copies(name):
    """The CAM methods have no channel reduction: their noisy map is the statistic of the plain maps of
    the copies, computed here by the plain method on the documented copies, one copy at a time."""
    model = shared_cnn()
    x = random_inputs((10, 12, 2), 2, seed=9)
    classes = np.array([[0, 2], [1, 1]])
    noise = {"kind": "smoothgrad_sq", "samples": 5, "sigma": 0.2, "seed": 3}
    plain = methods.create(name, model, noise=None)
    copies = documented_noise(noise, x)
    maps = np.stack([[plain.raw_maps(copies[i, k : k + 1], classes[i : i + 1])[0] for k in range(5)] for i in range(2)])
    expected = numpy_statistic(maps, "smoothgrad_sq")
    raw = methods.create(name, model, noise=noise, chunk_size=3).raw_maps(x, classes)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("shape", [(10, 12, 2), (6, 6, 6, 1)], ids=["2d", "3d"])
@pytest.mark.parametrize("name, guided", [("saliency", False), ("guidedbackprop", True), ("inputxgradient", False)])
def test_noisy_input_gradient_maps_reduce_the_channels_after_the_statistic(name, guided, shape):
    """The statistic of the per-channel attribution (the signed gradient; x_k times it for Input x Gradient)
    from the plain gradients of the documented copies, then max_c |.| (saliency, guided backprop) or sum_c."""
    model = shared_cnn(shape)
    x = random_inputs(shape, 2, seed=10)
    classes = np.array([[0, 1], [2, 0]])
    noise = {"kind": "vargrad", "samples": 6, "sigma": 0.25, "seed": 2}
    copies = documented_noise(noise, x)
    flat = copies.reshape(12, *shape)
    _, gradients, _ = ScoreGradients(model, guided=guided)(flat, np.repeat(classes, 6, axis=0))  # (12, T, ...)
    attribution = gradients * flat[:, None] if name == "inputxgradient" else gradients
    stat = numpy_statistic(attribution.reshape(2, 6, *attribution.shape[1:]), "vargrad")
    expected = stat.sum(axis=-1) if name == "inputxgradient" else np.abs(stat).max(axis=-1)
    raw = methods.create(name, model, noise=noise, chunk_size=7).raw_maps(x, classes)
    np.testing.assert_allclose(raw, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())


def test_a_noisy_map_does_not_depend_on_its_batch_or_the_chunk_size():
    model = shared_cnn()
    x = random_inputs((10, 12, 2), 3, seed=11)
    classes = np.array([[0], [1], [2]])
    noise = {"kind": "smoothgrad", "samples": 8, "sigma": 0.2, "seed": 4}
    together = methods.create("ixg", model, noise=noise, chunk_size=64).raw_maps(x, classes)  # 8 images a call
    alone = methods.create("ixg", model, noise=noise, chunk_size=3).raw_maps(x[1:2], classes[1:2])  # in parts
    np.testing.assert_allclose(alone[0], together[1], rtol=1e-5, atol=1e-7)


def test_smoothgrad_and_vargrad_keys_are_saliency_with_their_noise():
    model = shared_cnn()
    x = random_inputs((10, 12, 2), 2, seed=12)
    classes = np.array([[0], [1]])
    for key, kind in (("SmoothGrad", "smoothgrad"), ("VarGrad", "vargrad")):
        method = methods.create(key, model, noise={"samples": 4})  # the rest from the key's own noise
        assert method.params["noise"] == {"kind": kind, "samples": 4, "sigma": 0.15, "seed": 0}
        same = methods.create("saliency", model, noise={"kind": kind, "samples": 4})
        np.testing.assert_array_equal(method.raw_maps(x, classes), same.raw_maps(x, classes))


def test_the_registry_counts_the_noisy_copies():
    size = (32, 32)
    assert methods.passes_per_sample("saliency", {}, size) == 3
    assert methods.passes_per_sample("saliency", {"noise": {"samples": 10}}, size) == 30
    assert methods.passes_per_sample("smoothgrad", {}, size) == 50 * 3
    assert methods.passes_per_sample("vargrad", {"noise": {"samples": 7}}, size) == 7 * 3
    assert methods.passes_per_sample("ig", {"steps": 5, "noise": {"samples": 4}}, size) == 4 * 5 * 3
    assert methods.passes_per_sample("gradcam", {"noise": {}}, size) == 50 * 3
    assert methods.passes_per_sample("rise", {"num_masks": 123}, size) == 123
    assert methods.model_chunk("saliency", {}, 16) == (16, True)  # a batch per call without noise
    assert methods.model_chunk("saliency", {"noise": {}, "chunk_size": 40}, 16) == (40, True)
    assert methods.model_chunk("rise", {}, 16) == (256, False)


# ---------------------------------------------------------------- bad input


def method_config(entry):
    return {"methods": [entry], "model": {"layer": None}, "score": "logits", "preprocessing": {"size": [32, 32]}}


NOISE_ERRORS = [
    ({"kind": "smooth"}, r"noise\.kind must be one of \['smoothgrad', 'smoothgrad_sq', 'vargrad'\], got 'smooth'"),
    ({"samples": 0}, r"noise\.samples must be a positive integer, got 0"),
    ({"samples": 2.5}, r"noise\.samples must be a positive integer"),
    ({"sigma": -0.1}, r"noise\.sigma must be a number >= 0, got -0\.1"),
    ({"sigma": "big"}, r"noise\.sigma must be a number"),
    ({"seed": 1.5}, r"noise\.seed must be an integer >= 0"),
    ({"seed": -1}, r"noise\.seed must be an integer >= 0, got -1"),  # numpy's generators take none
    ({"sigm": 0.1}, r"noise\.sigm: unknown key 'sigm'; noise takes kind, samples, sigma, seed"),
    ("smoothgrad", r"noise must be null \(off\) or a mapping of kind, samples, sigma, seed"),
]


@pytest.mark.parametrize("noise, message", NOISE_ERRORS)
@pytest.mark.parametrize("key", ["SmoothGrad", "ixg", "ig", "gradcam"])
def test_bad_noise_is_named_by_the_constructors(key, noise, message):
    name = methods.canonical_name(key)
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}: {message}"):
        methods.create(key, shared_cnn(), noise=noise)


@pytest.mark.parametrize("noise, message", NOISE_ERRORS)
def test_bad_noise_is_named_by_the_config_check(noise, message):
    with pytest.raises(ValueError, match=rf"config key methods\[0\] \(vargrad\): {message}"):
        xconfig.method_variants(method_config({"name": "vargrad", "noise": noise}))
    variants = xconfig.method_variants(method_config({"name": "ixg", "noise": {"kind": "vargrad", "sigma": 0.1}}))
    assert variants["inputxgradient"].params["noise"] == {"kind": "vargrad", "sigma": 0.1}


RISE_ERRORS = [
    ({"p": 0.0}, r"p must be a number between 0 and 1 \(both excluded\), got 0\.0"),
    ({"p": 1}, r"p must be a number between 0 and 1 \(both excluded\), got 1"),
    ({"p": -0.5}, r"p must be a number between 0 and 1"),
    ({"p": "half"}, r"p must be a number between 0 and 1"),
    ({"cells": 0}, r"cells must be a positive integer, got 0"),
    ({"num_masks": 0}, r"num_masks must be a positive integer, got 0"),
    ({"num_masks": 10.0}, r"num_masks must be a positive integer"),
    ({"seed": -1}, r"seed must be an integer >= 0, got -1"),  # it failed in the job, with numpy's bare message
    ({"cells": 33}, r"cells 33 exceeds the model input's smallest side (10|32)"),  # cells under a pixel
]


@pytest.mark.parametrize("params, message", RISE_ERRORS)
def test_bad_rise_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=rf"^rise: {message}"):
        methods.create("RISE", shared_cnn(), **params)
    with pytest.raises(ValueError, match=rf"config key methods\[0\] \(rise\): {message}"):
        xconfig.method_variants(method_config({"name": "rise", **params}))


def test_other_parameter_problems_a_user_writes_are_named():
    # a misspelt keyword was a bare TypeError of __init__, without the method's parameters
    with pytest.raises(TypeError, match=r"^RISE takes no parameter 'num_mask'; its parameters: score, num_masks"):
        methods.create("rise", shared_cnn(), num_mask=3)
    with pytest.raises(ValueError, match=r"^EigenCAM: score must be one of"):  # it named no method
        methods.create("eigencam", shared_cnn(), score="prob")
    with pytest.raises(ValueError, match=r"^LimePro: seed must be an integer >= 0, got -1"):
        methods.create("limepro", shared_cnn(), seed=-1)
    # compactness with the grid changed nothing: the maps equalled plain grid LIME's under another name
    with pytest.raises(ValueError, match=r"compactness 5\.0 applies to segmentation 'slic' only"):
        xconfig.method_variants(method_config({"name": "limepro", "compactness": 5}))
    assert xconfig.method_variants(method_config({"name": "limepro", "segmentation": "slic", "compactness": 5}))


# ---------------------------------------------------------------- RISE


def pixel_model(shape, pixels):
    """Score c = the input's value at pixels[c] (channel 0)."""
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(len(pixels), use_bias=False)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    weights = np.zeros((*shape, len(pixels)), np.float32)
    for c, pixel in enumerate(pixels):
        weights[(*pixel, 0, c)] = 1.0
    dense.set_weights([weights.reshape(-1, len(pixels))])
    return model


def upsampling_rows(cells, extent):
    """Weights (shifts, extent, cells) of the RISE grid along one axis, written here with np.interp: the grid
    upsampled linearly (half-pixel centres, clamped) to (cells + 1) * ceil(extent / cells), cropped at a shift."""
    cell = math.ceil(extent / cells)
    up = (cells + 1) * cell
    points = (np.arange(up) + 0.5) * cells / up - 0.5
    full = np.stack([np.interp(points, np.arange(cells), np.eye(cells)[j]) for j in range(cells)], axis=1)
    return np.stack([full[s : s + extent] for s in range(cell)])


def expected_rise_map(shape, pixel, value, cells, p):
    """x_ij E[M(ij) M(kl)] / p for a score x_ij M(ij): with M = sum_g w_g z_g, z_g ~ Bernoulli(p) independent,
    E[M(a) M(b)] = p^2 (sum w(a)) (sum w(b)) + p (1 - p) sum_g w_g(a) w_g(b), averaged over the uniform shifts."""
    rows = [upsampling_rows(cells, n) for n in shape]
    total = np.zeros(shape)
    for shifts in np.ndindex(*[len(r) for r in rows]):
        axes = [r[s] for r, s in zip(rows, shifts, strict=True)]  # (extent, cells) per axis
        at_pixel = [a[i] for a, i in zip(axes, pixel, strict=True)]  # (cells,) per axis
        overlap, mass = 1.0, 1.0
        for axis, (a, w) in enumerate(zip(axes, at_pixel, strict=True)):
            shape_1d = [1] * len(shape)
            shape_1d[axis] = -1
            overlap = overlap * (a @ w).reshape(shape_1d)
            mass = mass * (a.sum(axis=1) * w.sum()).reshape(shape_1d)
        total += p * p * mass + p * (1 - p) * overlap
    return value * total / math.prod(len(r) for r in rows) / p


@pytest.mark.parametrize(
    "shape, pixels, cells",
    [((12, 12, 1), [(5, 8), (7, 4)], 4), ((6, 7, 8, 1), [(2, 5, 3), (3, 3, 4)], 4)],
    ids=["2d", "3d"],
)
def test_rise_on_a_model_reading_one_pixel_lights_that_pixel(shape, pixels, cells):
    """Each class reads one pixel; both maps come from the same masked copies. The map is the Monte-Carlo
    estimate of value * E[M(pixel) M] / p: each mask's term lies in [0, value / p], so its standard deviation is
    at most value / (2 p) and the estimate of N masks is held to 4 such standard errors. The pixels lie inside
    the input: near its border the clamped upsampling gives masks of larger E[M^2], which move the peak."""
    n, p, value = 3000, 0.5, 2.0
    x = np.full((1, *shape), value, np.float32)
    method = methods.create("rise", pixel_model(shape, pixels), num_masks=n, cells=cells, p=p, seed=1, chunk_size=500)
    raw = method.raw_maps(x, np.array([[0, 1]]))[0]
    tolerance = 4 * value / (2 * p) / np.sqrt(n)
    for c, pixel in enumerate(pixels):
        expected = expected_rise_map(shape[:-1], pixel, value, cells, p)
        assert np.unravel_index(np.argmax(expected), shape[:-1]) == pixel  # the test's premise
        assert np.unravel_index(np.argmax(raw[c]), shape[:-1]) == pixel
        assert abs(raw[c][pixel] - expected[pixel]) < tolerance
        assert np.abs(raw[c] - expected).max() < tolerance


def test_rise_maps_do_not_depend_on_the_batch_or_the_chunk_size():
    model = shared_cnn()
    x = random_inputs((10, 12, 2), 3, seed=13)
    classes = np.array([[0, 1], [2, 0], [1, 1]])
    together = methods.create("rise", model, num_masks=60, chunk_size=50).raw_maps(x, classes)
    alone = methods.create("rise", model, num_masks=60, chunk_size=7).raw_maps(x[2:], classes[2:])
    np.testing.assert_allclose(alone[0], together[2], rtol=1e-5, atol=1e-6 * np.abs(together).max())


# ---------------------------------------------------------------- Captum


def twin_networks():
    """The same tiny CNN in Keras (NHWC) and PyTorch (NCHW): conv 3x3 'same' + ReLU, conv 3x3 'valid' + ReLU,
    global average pooling, dense (Keras: with a softmax, explained on its logits; PyTorch: the logits).
    Keras kernels (kh, kw, in, out) are PyTorch's (out, in, kh, kw); Dense kernels (in, out) are Linear's (out, in)."""
    import torch

    rng = np.random.default_rng(21)
    k1, b1 = rng.normal(0, 0.4, (3, 3, 3, 4)), rng.normal(0, 0.1, 4)
    k2, b2 = rng.normal(0, 0.3, (3, 3, 4, 5)), rng.normal(0, 0.1, 5)
    w3, b3 = rng.normal(0, 0.5, (5, 3)), rng.normal(0, 0.1, 3)
    inputs = keras.Input((9, 9, 3))
    conv1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
    conv2 = keras.layers.Conv2D(5, 3, padding="valid", activation="relu")
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(conv2(conv1(inputs)))))
    for layer, weights in ((conv1, (k1, b1)), (conv2, (k2, b2)), (dense, (w3, b3))):
        layer.set_weights([w.astype(np.float32) for w in weights])
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 5, 3), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 3),
    )  # fmt: skip
    with torch.no_grad():
        for module, (kernel, bias) in ((net[0], (k1, b1)), (net[2], (k2, b2))):
            module.weight.copy_(torch.tensor(kernel.transpose(3, 2, 0, 1), dtype=torch.float32))
            module.bias.copy_(torch.tensor(bias, dtype=torch.float32))
        net[6].weight.copy_(torch.tensor(w3.T, dtype=torch.float32))
        net[6].bias.copy_(torch.tensor(b3, dtype=torch.float32))
    return model, net.eval()


@pytest.mark.parametrize("kind", [None, "smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("key", ["inputxgradient", "saliency"])
def test_maps_agree_with_captum_given_the_same_noise(key, kind, monkeypatch):
    """Captum's InputXGradient and Saliency (abs=False: the signed gradient), inside NoiseTunnel for the noisy
    kinds, on a PyTorch twin of the Keras network, reduced over the channels as xaipipe does (sum; max |.|).

    The same noise: NoiseTunnel draws its noise with one call ``torch.normal(0, stdev_expanded)`` of shape
    (B * n, C, H, W), each input's n copies together (it repeats the inputs with ``repeat_interleave``).
    That call is monkeypatched to return the copies' noise as xaipipe documents it, eps_k from
    ``default_rng(seed).standard_normal((n, H, W, C), float32)`` scaled by sigma times each input's
    range, moved to NCHW; Captum's stdevs is 1, and the patch multiplies by the stdev it is given."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("captum")
    from captum.attr import InputXGradient, NoiseTunnel, Saliency

    model, net = twin_networks()
    x = np.random.default_rng(22).uniform(0, 1, (3, 9, 9, 3)).astype(np.float32)
    classes = np.array([[0], [2], [1]])
    n = 10
    noise = None if kind is None else {"kind": kind, "samples": n, "sigma": 0.2, "seed": 7}
    raw = methods.create(key, model, noise=noise, chunk_size=16).raw_maps(x, classes)[:, 0]

    attribution = InputXGradient(net) if key == "inputxgradient" else Saliency(net)
    extra = {} if key == "inputxgradient" else {"abs": False}
    inputs = torch.tensor(x.transpose(0, 3, 1, 2))
    target = torch.tensor(classes[:, 0])
    if kind is None:
        reference = attribution.attribute(inputs, target=target, **extra)
    else:
        copies_noise = documented_noise(noise, x) - x[:, None]  # (B, n, H, W, C)
        drawn = torch.tensor(copies_noise.reshape(-1, 9, 9, 3).transpose(0, 3, 1, 2).copy())
        calls = []

        def same_noise(mean, std, *args, **kwargs):
            calls.append(tuple(std.shape))
            return mean + std * drawn

        monkeypatch.setattr(torch, "normal", same_noise)
        tunnel = NoiseTunnel(attribution)
        reference = tunnel.attribute(inputs, nt_type=kind, nt_samples=n, stdevs=1.0, target=target, **extra)
        assert calls == [(3 * n, 3, 9, 9)]
    reference = reference.detach().numpy().transpose(0, 2, 3, 1)  # (B, H, W, C)
    expected = reference.sum(axis=-1) if key == "inputxgradient" else np.abs(reference).max(axis=-1)
    for ours, theirs in zip(raw, expected, strict=True):
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.999
    assert np.abs(normalize_maps(raw) - normalize_maps(expected)).max() <= 1e-3
    np.testing.assert_allclose(raw, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_rise_maps_do_not_move_with_a_constant_added_to_the_scores():
    """The same classifier with 20 added to every logit: the paper's estimator (1 / (N p)) sum_i f_i M_i adds
    20 * (each pixel's chance coverage / (N p)) to its map, noise that moved the normalized map by up to 0.78
    (r 0.63; a new-user session). The map of the coverage-weighted mean moves by exactly 20."""
    shape = (12, 18, 1)
    rng = np.random.default_rng(4)
    kernel = np.zeros((*shape, 2), np.float32)
    kernel[3:7, 11:16, 0, 1] = 0.1  # class 1 reads a block
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, keras.layers.Softmax()(dense(keras.layers.Flatten()(inputs))))
    x = np.ones((1, *shape), np.float32) + rng.normal(0, 0.01, (1, *shape)).astype(np.float32)
    maps = {}
    for shift in (0.0, 20.0):
        dense.set_weights([kernel.reshape(-1, 2), np.full(2, shift, np.float32)])
        rise = methods.create("rise", model, num_masks=300, cells=4, seed=2)
        maps[shift] = rise.explain(x, np.array([[1]]))
    np.testing.assert_allclose(maps[20.0][0] - maps[0.0][0], 20.0, atol=1e-3)  # raw: the constant, exactly
    np.testing.assert_allclose(maps[20.0][1], maps[0.0][1], atol=1e-3)  # normalized: the same map
    peak = np.unravel_index(np.argmax(maps[0.0][1][0, 0]), shape[:-1])
    assert 3 <= peak[0] < 7 and 11 <= peak[1] < 16  # on the block the class reads
