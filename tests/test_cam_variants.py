"""HiResCAM, XGradCAM, LayerCAM, Score-CAM and Eigen-CAM against closed forms, hand computations and pytorch-grad-cam.

Every expected map is computed here from the model's own weights and activations
(read with a plain ``keras.Model`` and ``predict``), from gradients taken with
``tf.GradientTape`` in the test, with numpy (SVD, softmax), or by pytorch-grad-cam
on a PyTorch copy of the network; the upsampling is written here too
(:func:`resize_half_pixel`), apart from ``xaipipe.maps``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from xaipipe import config as xconfig
from xaipipe import methods

VARIANTS = ["hirescam", "xgradcam", "layercam", "scorecam", "eigencam"]


def resize_half_pixel(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear resize of a (*s) to ``shape``, pixel centres at (i + 0.5) * n_in / n_out - 0.5, clamped at the
    borders (OpenCV's INTER_LINEAR, torch's align_corners=False), one axis at a time with np.interp."""
    out = np.asarray(a, np.float64)
    for axis, n_out in enumerate(shape):
        n_in = out.shape[axis]
        points = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        out = np.apply_along_axis(lambda v, p=points, n=n_in: np.interp(p, np.arange(n), v), axis, out)
    return out


def layers_for(shape):
    if len(shape) == 3:
        return keras.layers.Conv2D, keras.layers.GlobalAveragePooling2D
    return keras.layers.Conv3D, keras.layers.GlobalAveragePooling3D


def read(model: keras.Model, name: str, x: np.ndarray) -> np.ndarray:
    """The output of layer ``name`` for inputs x, from a plain Keras sub-model."""
    return keras.Model(model.inputs, model.get_layer(name).output).predict(x, verbose=0).astype(np.float64)


def random_inputs(shape, n=2, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


ALL_CLASSES = np.array([[0, 1, 2], [0, 1, 2]])

# ---------------------------------------------------------------- closed forms on a GAP model


def gap_model(shape, use_bias):
    """conv 'features' (ReLU, at the input's resolution) -> GAP -> Dense 'out' (softmax): logit_c = sum_k W[k,c]
    mean(A^k) + b_c, so dlogit_c / dA_ij^k = W[k,c] / N everywhere. Class 0's weights are all positive,
    classes 1 and 2 have both signs."""
    keras.utils.set_random_seed(2)
    conv, pool = layers_for(shape)
    inputs = keras.Input(shape)
    x = conv(5, 3, padding="same", activation="relu", name="features")(inputs)
    dense = keras.layers.Dense(3, activation="softmax", use_bias=use_bias, name="out")
    model = keras.Model(inputs, dense(pool()(x)))
    weights = np.random.default_rng(3).normal(size=(5, 3)).astype(np.float32)
    weights[:, 0] = np.abs(weights[:, 0]) + 0.1
    weights[:2, 1], weights[2:, 1] = np.abs(weights[:2, 1]) + 0.1, -np.abs(weights[2:, 1]) - 0.1
    dense.set_weights([weights, np.array([0.3, -0.2, 0.1], np.float32)] if use_bias else [weights])
    return model, weights.astype(np.float64)


@pytest.mark.parametrize("shape, use_bias", [((9, 7, 2), False), ((6, 5, 4, 1), True)], ids=["2d", "3d-bias"])
def test_on_a_gap_model_gradcam_hirescam_and_xgradcam_are_sum_k_w_kc_a_k(shape, use_bias):
    """Grad-CAM, HiResCAM and XGradCAM: ReLU(sum_k W[k,c] A^k / N) (XGradCAM's weights carry S_k / (S_k + 1e-7),
    S_k = sum A^k); LayerCAM: ReLU(sum_k ReLU(W[k,c]) A^k / N), HiResCAM's map for class 0 (all W[k,0] > 0)
    and a different one for the classes with negative weights."""
    model, weights = gap_model(shape, use_bias)
    x = random_inputs(shape, 2, seed=1)
    activations = read(model, "features", x)  # (B, *s, K)
    n = np.prod(shape[:-1])
    expected = np.maximum(np.einsum("b...k,kc->bc...", activations, weights) / n, 0.0)
    sums = activations.reshape(2, -1, 5).sum(axis=1)  # (B, K)
    xgrad_weights = weights[None] * (sums / (sums + 1e-7))[:, :, None]  # (B, K, C)
    expected_xgrad = np.maximum(np.einsum("b...k,bkc->bc...", activations, xgrad_weights) / n, 0.0)
    expected_layer = np.maximum(np.einsum("b...k,kc->bc...", activations, np.maximum(weights, 0.0)) / n, 0.0)
    assert expected.max() > 0 and expected_layer.max() > 0

    maps = {key: methods.create(key, model).explain(x, ALL_CLASSES)[0] for key in ("gc", "hirescam", "xgradcam")}
    layer = methods.create("LayerCAM", model).explain(x, ALL_CLASSES)[0]
    scale = expected.max()
    for key, raw in maps.items():
        assert raw.shape == expected.shape, key
        target = expected_xgrad if key == "xgradcam" else expected
        np.testing.assert_allclose(raw, target, rtol=1e-4, atol=1e-6 * scale, err_msg=key)
    np.testing.assert_allclose(layer, expected_layer, rtol=1e-4, atol=1e-6 * scale)
    np.testing.assert_allclose(layer[:, 0], maps["hirescam"][:, 0], rtol=1e-5, atol=1e-7 * scale)
    assert np.abs(layer[:, 1:] - maps["hirescam"][:, 1:]).max() > 0.05 * scale  # negative weights: they differ


# ---------------------------------------------------------------- where they differ: gradients from a tape


def deep_model(shape):
    """conv 'features' (stride 2, ReLU) -> conv 'after' (ReLU) -> GAP -> Dense 'logits' -> softmax: the
    gradients at 'features' vary over the positions and have both signs."""
    keras.utils.set_random_seed(4)
    conv, pool = layers_for(shape)
    inputs = keras.Input(shape)
    x = conv(4, 3, strides=2, padding="same", activation="relu", name="features")(inputs)
    x = conv(6, 3, padding="same", activation="relu", name="after")(x)
    logits = keras.layers.Dense(3, name="logits")(pool()(x))
    return keras.Model(inputs, keras.layers.Activation("softmax")(logits))


def tape_gradients(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(activations (B, *s, K) of 'features', gradients (B, C, *s, K) of each logit with respect to them)."""
    probe = keras.Model(model.inputs, [model.get_layer("features").output, model.get_layer("logits").output])
    with tf.GradientTape(persistent=True) as tape:
        features, logits = probe(tf.constant(x), training=False)
        targets = [tf.reduce_sum(logits[:, c]) for c in range(logits.shape[-1])]
    grads = np.stack([tape.gradient(t, features).numpy() for t in targets], axis=1).astype(np.float64)
    return features.numpy().astype(np.float64), grads


@pytest.mark.parametrize("shape", [(10, 8, 2), (6, 8, 6, 1)], ids=["2d", "3d"])
def test_after_a_nonlinearity_each_variant_is_its_formula_of_the_taped_gradients(shape):
    model = deep_model(shape)
    x = random_inputs(shape, 2, seed=5)
    a, g = tape_gradients(model, x)
    a_t = a[:, None]  # (B, 1, *s, K)
    spatial_axes = tuple(range(2, g.ndim - 1))
    gradcam_w = g.mean(axis=spatial_axes, keepdims=True)
    xgrad_w = (g * a_t).sum(axis=spatial_axes, keepdims=True) / (a_t.sum(axis=spatial_axes, keepdims=True) + 1e-7)
    low_res = {
        "gradcam": (gradcam_w * a_t).sum(-1),
        "hirescam": (g * a_t).sum(-1),
        "xgradcam": (xgrad_w * a_t).sum(-1),
        "layercam": (np.maximum(g, 0.0) * a_t).sum(-1),
    }
    assert (g < 0).any() and (g > 0).any() and np.ptp(g.mean(axis=spatial_axes)) > 0
    expected = {
        key: np.stack([[resize_half_pixel(np.maximum(m, 0.0), shape[:-1]) for m in row] for row in maps])
        for key, maps in low_res.items()
    }
    for key, want in expected.items():
        got = methods.create(key, model, layer="features").explain(x, ALL_CLASSES)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * want.max(), err_msg=key)
    # the four are different maps here (normalized per map, so that the scale does not count)
    peaks = {
        key: np.maximum(want.max(axis=tuple(range(2, want.ndim)), keepdims=True), 1e-12)
        for key, want in expected.items()
    }
    unit = {key: want / peaks[key] for key, want in expected.items()}
    for first, second in [("gradcam", "hirescam"), ("gradcam", "xgradcam"), ("hirescam", "layercam")]:
        assert np.abs(unit[first] - unit[second]).max() > 0.05, (first, second)


# ---------------------------------------------------------------- Score-CAM by hand


def two_channel_model(shape):
    """conv 'features' with two channels (stride 2, ReLU) -> conv -> GAP -> Dense 'logits' -> softmax."""
    keras.utils.set_random_seed(6)
    conv, pool = layers_for(shape)
    inputs = keras.Input(shape)
    x = conv(2, 3, strides=2, padding="same", activation="relu", name="features")(inputs)
    x = conv(3, 3, padding="same", activation="relu")(x)
    logits = keras.layers.Dense(3, name="logits")(pool()(x))
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits))


@pytest.mark.parametrize("score", ["logits", "probabilities"])
@pytest.mark.parametrize("shape", [(8, 6, 2), (6, 4, 6, 1)], ids=["2d", "3d"])
def test_scorecam_weights_are_the_softmax_of_the_scores_of_the_masked_inputs(shape, score):
    """Mask H^k = min-max normalized upsampled A^k (epsilon 1e-8), scores of x * H^k by model.predict, softmax
    over the two channels; the map ReLU(sum_k w_k A^k) upsampled. chunk_size 3 splits the 2 x 2 copies."""
    model = two_channel_model(shape)
    x = random_inputs(shape, 2, seed=7)
    activations = read(model, "features", x)  # (B, *s, 2)
    head = keras.Model(model.inputs, model.get_layer(score).output)
    weights = np.zeros((2, 3, 2))  # (B, T, K)
    for b in range(2):
        masked = []
        for k in range(2):
            up = resize_half_pixel(activations[b, ..., k], shape[:-1])
            mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
            masked.append(x[b] * mask[..., None])
        scores = head.predict(np.stack(masked).astype(np.float32), verbose=0).astype(np.float64)  # (K, C)
        weights[b] = (np.exp(scores) / np.exp(scores).sum(axis=0)).T
    cams = np.maximum(np.einsum("b...k,btk->bt...", activations, weights), 0.0)
    expected = np.stack([[resize_half_pixel(m, shape[:-1]) for m in row] for row in cams])
    assert np.ptp(weights[..., 0]) > 1e-3  # the weights depend on the class and the sample

    method = methods.create("ScoreCAM", model, layer="features", score=score, chunk_size=3)
    np.testing.assert_allclose(
        method.channel_weights_of(x, activations.astype(np.float32), ALL_CLASSES), weights, rtol=1e-4, atol=1e-6
    )
    raw = method.explain(x, ALL_CLASSES)[0]
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_scorecam_sends_every_masked_copy_in_calls_of_chunk_size_rows():
    """B * K masked copies (K = the layer's channels), chunk_size per model call, as the registry tells the
    workflow (chunk_size rows, no backward pass)."""
    model = deep_model((10, 8, 2))  # 4 channels
    method = methods.create("scorecam", model, layer="features", chunk_size=3)
    calls: list[int] = []
    forward = method._scores._forward

    def counting(inputs, images, codes):
        calls.append(len(images))
        return forward(inputs, images, codes)

    method._scores._forward = counting
    method.explain(random_inputs((10, 8, 2), 2), np.array([[0], [2]]))
    assert calls == [3, 3, 2]  # 2 images x 4 channels
    assert methods.model_chunk("scorecam", {"chunk_size": 3}, 32) == (3, False)


# ---------------------------------------------------------------- Eigen-CAM against numpy's SVD


@pytest.mark.parametrize(
    "shape",
    [(10, 8, 2), (6, 8, 6, 1), (4, 4, 2), (4, 4, 2, 1)],
    ids=["2d", "3d", "2d-fewer-positions-than-channels", "3d-fewer-positions-than-channels"],
)
def test_eigencam_is_the_first_principal_component_of_the_activations(shape):
    """Both ways to the first component: the channels' Gram matrix where positions outnumber channels, the
    positions' where channels do (the 4 channels of 'features' at 2 x 2 positions), as in a network's last layers."""
    model = deep_model(shape)
    x = random_inputs(shape, 3, seed=11 if shape == (4, 4, 2) else 8)  # seeds whose first component stands out
    activations = read(model, "features", x)
    expected = []
    for a in activations:
        flat = a.reshape(-1, a.shape[-1])
        centred = flat - flat.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        assert s[0] > 1.2 * s[1], "the first component must stand out, or float32 may pick another"
        projection = centred @ vt[0]
        total = flat.sum(axis=1)
        if np.corrcoef(projection, total)[0, 1] < 0:
            projection = -projection
        expected.append(resize_half_pixel(np.maximum(projection, 0.0).reshape(a.shape[:-1]), shape[:-1]))
    expected = np.stack(expected)
    raw = methods.create("eigencam", model, layer="features").explain(x, np.array([[0, 1], [2, 0], [1, 1]]))[0]
    for t in range(2):  # the same map for every target class
        np.testing.assert_allclose(raw[:, t], expected, rtol=1e-4, atol=1e-5 * expected.max())


@pytest.mark.parametrize("a, b", [(2.0, 1.0), (-2.0, 1.0), (1.0, -3.0)])
def test_eigencams_sign_follows_the_channel_sum(a, b):
    """A 1x1 conv A = [a x, b x]: the first component is +-(x - mean x) |(a, b)|, whatever the SVD's sign; the
    channel sum (a + b) x picks the sign: ReLU(sign(a + b) (x - mean x)) |(a, b)|."""
    inputs = keras.Input((5, 6, 1))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="features")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(conv(inputs))))
    conv.set_weights([np.array([a, b], np.float32).reshape(1, 1, 1, 2)])
    x = random_inputs((5, 6, 1), 2, seed=9)
    centred = x[..., 0] - x[..., 0].mean(axis=(1, 2), keepdims=True)
    expected = np.maximum(np.sign(a + b) * centred, 0.0) * np.hypot(a, b)
    raw = methods.create("EigenCAM", model).explain(x, np.array([[0], [1]]))[0][:, 0]
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- pytorch-grad-cam


REFERENCE_SHAPE = (10, 12, 3)  # conv1 (3x3, stride 2, no padding): 4 x 5


def keras_twin() -> keras.Model:
    """conv1 (stride 2), conv2, conv3 (each 3x3 and ReLU), global average pooling, a dense softmax layer 'out';
    tests/gradcam_reference.py builds the same network in PyTorch from its weights."""
    keras.utils.set_random_seed(11)
    inputs = keras.Input(REFERENCE_SHAPE)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(x))
    rng = np.random.default_rng(12)
    for name in ("conv1", "conv2", "conv3", "out"):
        kernel, bias = (tuple(w.shape) for w in model.get_layer(name).weights)
        fan_in = np.prod(kernel[:-1])
        model.get_layer(name).set_weights([rng.normal(0, np.sqrt(2 / fan_in), kernel), rng.normal(0, 0.05, bias)])
    return model


@pytest.fixture(scope="module")
def pytorch_grad_cam_maps(tmp_path_factory):
    """(Keras model, inputs, classes, pytorch-grad-cam's maps of every case of gradcam_reference.CASES).

    pytorch-grad-cam runs in a process of its own (tests/gradcam_reference.py says why: torchvision next to
    TensorFlow crashes), so ``pytest.importorskip`` cannot be used here: the test is skipped when that process
    cannot import torch or pytorch_grad_cam (pip install --no-deps grad-cam ttach torchvision scikit-learn
    joblib threadpoolctl cloudpickle narwhals), and only then.
    """
    import gradcam_reference

    for package in ("torch", "pytorch_grad_cam"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed")
    model = keras_twin()
    x = random_inputs(REFERENCE_SHAPE, 3, seed=13)
    classes = np.tile(np.arange(3), (len(x), 1))
    folder = tmp_path_factory.mktemp("gradcam_reference")
    weights = {f"{name}_{part}": w for name in ("conv1", "conv2", "conv3", "out")
               for part, w in zip(("kernel", "bias"), model.get_layer(name).get_weights(), strict=True)}  # fmt: skip
    np.savez(folder / "network.npz", x=x, classes=classes, **weights)
    script = Path(gradcam_reference.__file__)
    result = subprocess.run(
        [sys.executable, str(script), str(folder / "network.npz"), str(folder / "maps.npz")],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if result.returncode == 3:
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stderr[-4000:]
    return model, x, classes, dict(np.load(folder / "maps.npz"))


def unit(maps: np.ndarray) -> np.ndarray:
    """Each map (the last two axes) min-max scaled to [0, 1]; NaN for a constant map."""
    maps = np.asarray(maps, np.float64)
    low, high = maps.min(axis=(-2, -1), keepdims=True), maps.max(axis=(-2, -1), keepdims=True)
    return (maps - low) / np.where(high > low, high - low, np.nan)


@pytest.mark.parametrize(
    "key, layer", [("hirescam", "conv2"), ("xgradcam", "conv2"), ("layercam", "conv2"), ("layercam", "conv1"),
                   ("scorecam", "conv2"), ("eigencam", "conv2")],
)  # fmt: skip
def test_maps_agree_with_pytorch_grad_cam(key, layer, pytorch_grad_cam_maps):
    """The normalized maps of every target class against pytorch-grad-cam's on a PyTorch twin of the network.

    pytorch-grad-cam min-max scales the low-resolution map, resizes it with cv2.resize (INTER_LINEAR, half-pixel
    centres) and min-max scales it again; xaipipe resizes the same way and scales once. A linear resize commutes
    with an affine scaling, so both are the min-max scaling of the same upsampled map (up to pytorch-grad-cam's
    epsilon 1e-7): both sides are min-max scaled here and compared at the input's size (10 x 12 from 4 x 5).
    Score-CAM: pytorch-grad-cam upsamples its masks with ``UpsamplingBilinear2d`` (corners aligned), xaipipe
    with half-pixel centres like every map (its docstring says why); that one known difference is set aside by
    giving pytorch-grad-cam torch's half-pixel bilinear upsampling (``Upsample(mode="bilinear")``) for it.
    Eigen-CAM: pytorch-grad-cam keeps the SVD's sign, xaipipe turns the component to correlate with the channel
    sum; a sample whose two signs differ is compared with pytorch-grad-cam's own pipeline on the negated
    projection (its ``get_2d_projection``, ReLU and ``scale_cam_image``), i.e. up to the sign.
    """
    model, x, classes, reference = pytorch_grad_cam_maps
    ours = unit(methods.create(key, model, layer=layer).explain(x, classes)[0])
    theirs = unit(reference[f"{key}_{layer}"])
    if key == "eigencam":
        assert reference["eigencam_agree"].any(), "one sample at least is compared with EigenCAM's maps unchanged"
    assert ours.shape == theirs.shape == (*classes.shape, *REFERENCE_SHAPE[:-1])
    informative = 0
    for b, t in np.ndindex(*classes.shape):
        if not np.isfinite(ours[b, t]).all():  # a constant map (ReLU of a map <= 0): pytorch-grad-cam's too
            assert np.ptp(reference[f"{key}_{layer}"][b, t]) == 0, (b, t)
            continue
        informative += 1
        r = np.corrcoef(ours[b, t].ravel(), theirs[b, t].ravel())[0, 1]
        assert r >= 0.999, (b, t, r)
        np.testing.assert_allclose(ours[b, t], theirs[b, t], atol=1e-3, err_msg=str((b, t)))
    assert informative >= 6, "most of the 9 maps must be non-constant, or the test says little"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("key", VARIANTS)
def test_a_model_without_a_spatial_layer_names_the_method_and_its_layer_parameter(key):
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    cls = methods.method_class(key).__name__
    with pytest.raises(ValueError, match=rf"^{cls} \({key}\): parameter 'layer' \(None\): .*no layer with a 4D output"):
        methods.create(key, model)
    with pytest.raises(ValueError, match=rf"^{cls} \({key}\): parameter 'layer' \('out'\): layer 'out' not found"):
        methods.create(key, model, layer="out")


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_scorecams_chunk_size_must_be_a_positive_integer_in_python_and_in_the_config(chunk_size):
    model = deep_model((10, 8, 2))
    with pytest.raises(ValueError, match=r"ScoreCAM \(scorecam\): chunk_size must be a positive integer"):
        methods.create("scorecam", model, chunk_size=chunk_size)
    config = {"methods": [{"name": "ScoreCAM", "chunk_size": chunk_size}], "model": {"layer": None}, "score": "logits"}
    with pytest.raises(ValueError, match=r"methods\[0\] \(ScoreCAM\): chunk_size must be a positive integer"):
        xconfig.method_variants(config)
    config["methods"][0]["chunk_size"] = 8
    variant = xconfig.method_variants(config)["scorecam"]
    assert variant.params == {"chunk_size": 8, "layer": None, "score": "logits"}
