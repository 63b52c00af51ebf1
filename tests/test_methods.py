"""The XAI methods besides Grad-CAM, against analytic expectations on tiny hand-built models."""

import keras
import numpy as np
import pytest

from xaipipe import methods
from xaipipe.autodiff import ScoreGradients
from xaipipe.layers import find_target_layer, find_target_path, path_name
from xaipipe.methods.base import target_classes
from xaipipe.methods.gradcam import GradCAM
from xaipipe.methods.gradcampp import GradCAMPlusPlus, gradcampp_weights
from xaipipe.methods.guidedbackprop import GuidedBackprop
from xaipipe.methods.integratedgradients import IntegratedGradients
from xaipipe.methods.lime import grid_segments
from xaipipe.methods.occlusion import OcclusionSensitivity
from xaipipe.methods.saliency import SaliencyMap

RNG = np.random.default_rng(7)


def random_inputs(shape, n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def linear_model(shape, n_classes=3, activation=None, seed=0):
    """Flatten + Dense: scores = flatten(x) @ W + b, with known W."""
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(n_classes, activation=activation, name="out")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(int(np.prod(shape)), n_classes)).astype(np.float32)
    bias = rng.normal(size=n_classes).astype(np.float32)
    dense.set_weights([weights, bias])
    return model, weights, bias


# ---------------------------------------------------------------- saliency


@pytest.mark.parametrize("activation", [None, "softmax"])
def test_saliency_of_a_linear_model_is_the_channel_max_of_the_weights(activation):
    shape = (4, 5, 3)
    model, weights, _ = linear_model(shape, activation=activation)
    x = random_inputs(shape, 3)
    classes = np.array([[0], [2], [1]])
    raw, normalized = SaliencyMap(model, score="logits").explain(x, classes)
    assert raw.shape == (3, 1, 4, 5)
    for b, c in enumerate(classes[:, 0]):
        np.testing.assert_allclose(raw[b, 0], np.abs(weights[:, c]).reshape(shape).max(axis=-1), rtol=1e-5)
    assert normalized.min() == 0.0 and normalized.max() == pytest.approx(1.0)


# ---------------------------------------------------------------- integrated gradients


def smooth_model(shape=(6, 6, 2), n_classes=3):
    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, activation="tanh")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="softplus")(x)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))


def logits(model, x):
    return ScoreGradients(model)(x, np.zeros((len(x), 1), np.int32))[2]


@pytest.mark.parametrize("baseline", ["zeros", "black", 0.5])
def test_integrated_gradients_are_complete(baseline):
    model, x = smooth_model(), random_inputs((6, 6, 2), 3)
    method = IntegratedGradients(model, baseline=baseline)
    classes = target_classes(np.zeros((3, 3)), "all")
    raw, _ = method.explain(x, classes)
    if baseline == "zeros":
        reference = np.zeros_like(x)
    elif baseline == "black":
        reference = np.broadcast_to(x.min(axis=(1, 2), keepdims=True), x.shape)
    else:
        reference = np.full_like(x, 0.5)
    expected = logits(model, x) - logits(model, np.ascontiguousarray(reference))  # (B, K)
    totals = raw.reshape(3, 3, -1).sum(axis=-1)
    np.testing.assert_allclose(totals, expected, rtol=0.01, atol=1e-3 * np.abs(expected).max())
    assert (raw < 0).any()  # the raw map keeps the sign


def test_integrated_gradients_do_not_depend_on_the_batch_size():
    model, x = smooth_model(), random_inputs((6, 6, 2), 3)
    classes = np.array([[0], [1], [2]])
    a = IntegratedGradients(model, steps=10, chunk_size=7).raw_maps(x, classes)
    b = IntegratedGradients(model, steps=10, chunk_size=100).raw_maps(x, classes)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_reject_an_unknown_baseline():
    with pytest.raises(ValueError, match="baseline"):
        IntegratedGradients(smooth_model(), baseline="white")


# ---------------------------------------------------------------- occlusion


def left_half_model():
    """Looks only at the left half (columns 0..3) of an 8x8 image."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Cropping2D(((0, 0), (0, 4)))(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


@pytest.mark.parametrize("patch_size, stride", [(2, None), (4, None), (2, 1)])
def test_occluding_an_ignored_region_changes_nothing(patch_size, stride):
    x = random_inputs((8, 8, 1), 2) + 1.0
    method = OcclusionSensitivity(left_half_model(), patch_size=patch_size, stride=stride)
    raw, _ = method.explain(x, np.array([[0, 1], [1, 0]]))
    assert raw.shape == (2, 2, 8, 8)
    right = raw[..., 5:] if stride == 1 else raw[..., 4:]  # with overlap, patches from the left reach column 4
    assert not right.any()
    assert np.abs(raw[..., :4]).max(axis=(-2, -1)).all()  # every map sees the left half


def test_occlusion_is_the_mean_score_drop_over_covering_patches():
    shape = (7, 7, 2)
    model, weights, _ = linear_model(shape, n_classes=2)
    x = random_inputs(shape, 1)
    method = OcclusionSensitivity(model, patch_size=3, stride=2, fill=0.5, chunk_size=5)
    raw = method.raw_maps(x, np.array([[1]]))
    contribution = (x[0] - 0.5) * weights[:, 1].reshape(shape)  # the drop is linear in the occluded values
    total, count = np.zeros((7, 7)), np.zeros((7, 7))
    for i in (0, 2, 4):
        for j in (0, 2, 4):
            total[i : i + 3, j : j + 3] += contribution[i : i + 3, j : j + 3].sum()
            count[i : i + 3, j : j + 3] += 1
    np.testing.assert_allclose(raw[0, 0], total / count, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- Grad-CAM++

H, W, K, C = 6, 6, 2, 3
GAP_WEIGHTS = np.array([[1.0, -2.0, 0.5], [-1.0, 3.0, 0.25]], np.float32)


def gap_model(channels=K, weights=GAP_WEIGHTS):
    inputs = keras.Input((H, W, channels))
    features = keras.layers.Conv2D(channels, 1, use_bias=False, name="features")
    x = keras.layers.GlobalAveragePooling2D()(features(inputs))
    dense = keras.layers.Dense(weights.shape[1], activation="softmax", name="out")
    model = keras.Model(inputs, dense(x))
    features.set_weights([np.eye(channels, dtype=np.float32).reshape(1, 1, channels, channels)])
    dense.set_weights([weights, np.zeros(weights.shape[1], np.float32)])
    return model


def test_gradcampp_matches_the_closed_form_on_a_gap_model():
    # dS^c/dA_ij^k = W_kc / (HW) =: g_k everywhere, so alpha_k = 1 / (2 + g_k sum_ij A_ij^k)
    # and w_k = HW alpha_k ReLU(g_k).
    model, x = gap_model(), random_inputs((H, W, K), 3)
    classes = np.array([[0], [1], [2]])
    raw, _ = GradCAMPlusPlus(model).explain(x, classes)
    for b, c in enumerate(classes[:, 0]):
        g = GAP_WEIGHTS[:, c] / (H * W)
        alpha = 1.0 / (2.0 + g * x[b].sum(axis=(0, 1)))
        w = H * W * alpha * np.maximum(g, 0.0)
        expected = np.maximum(np.einsum("hwk,k->hw", x[b], w), 0.0)
        np.testing.assert_allclose(raw[b, 0], expected, rtol=1e-4, atol=1e-7)


def test_gradcampp_equals_gradcam_up_to_scale_with_one_positive_channel():
    model = gap_model(channels=1, weights=np.array([[2.0, -1.0]], np.float32))
    x = np.abs(random_inputs((H, W, 1), 2))
    classes = np.array([[0], [0]])
    _, plus = GradCAMPlusPlus(model).explain(x, classes)
    _, plain = GradCAM(model).explain(x, classes)
    np.testing.assert_allclose(plus, plain, atol=1e-5)


def test_gradcampp_weights_formula_on_arrays():
    a = np.array([[[1.0, 2.0], [3.0, 0.0]]])[..., None]  # (B=1, 2, 2, K=1); sum A = 6
    g = np.array([[[[0.5, -1.0], [0.0, 2.0]]]])[..., None]  # (B=1, T=1, 2, 2, K=1)
    alpha = [[0.25 / (0.5 + 6 * 0.125), 1 / (2 - 6)], [0.0, 4 / (8 + 6 * 8)]]
    expected = alpha[0][0] * 0.5 + alpha[1][1] * 2.0  # ReLU drops the negative gradient, g = 0 gives alpha 0
    np.testing.assert_allclose(gradcampp_weights(a, g)[0, 0, 0], expected, rtol=1e-6)
    assert np.isfinite(gradcampp_weights(np.zeros_like(a), np.zeros_like(g))).all()


# ---------------------------------------------------------------- guided backpropagation

W1 = np.array([[1.0, 0.5, -1.0], [2.0, 1.0, 0.5], [-1.0, 0.5, 1.0], [0.5, -0.5, -2.0]], np.float32)
W2 = np.array([[2.0], [-3.0], [1.0]], np.float32)
X = np.array([1.0, 1.0, 0.5, 1.0], np.float32).reshape(1, 2, 2, 1)
# hidden pre-activations z = X @ W1 = [2.0, 1.25, -2.0]: units 0 and 1 active, unit 2 not;
# W2 is positive for unit 0, negative for unit 1.
PLAIN = W1[:, 0] * 2.0 + W1[:, 1] * -3.0
GUIDED = W1[:, 0] * 2.0  # unit 1's negative gradient and inactive unit 2 are cut


def relu_model(form):
    inputs = keras.Input((2, 2, 1))
    x = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(3, activation="relu" if form == "activation" else None, use_bias=False, name="h")
    x = hidden(x)
    if form == "ReLU":
        x = keras.layers.ReLU(name="r")(x)
    elif form == "Activation":
        x = keras.layers.Activation("relu", name="r")(x)
    out = keras.layers.Dense(1, use_bias=False, name="out")
    model = keras.Model(inputs, out(x))
    hidden.set_weights([W1])
    out.set_weights([W2])
    return model


@pytest.mark.parametrize("form", ["activation", "ReLU", "Activation"])
def test_guided_gradient_by_hand(form):
    model = relu_model(form)
    _, plain, _ = ScoreGradients(model)(X, np.array([[0]]))
    _, guided, _ = ScoreGradients(model, guided=True)(X, np.array([[0]]))
    np.testing.assert_allclose(plain.reshape(-1), PLAIN, rtol=1e-6)
    np.testing.assert_allclose(guided.reshape(-1), GUIDED, rtol=1e-6)
    raw, _ = GuidedBackprop(model).explain(X, np.array([[0]]))
    np.testing.assert_allclose(raw.reshape(-1), np.abs(GUIDED), rtol=1e-6)


def test_guided_gradient_inside_a_nested_model():
    flat = relu_model("activation")
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, flat.get_layer("h")(inner_in), name="inner")
    inputs = keras.Input((2, 2, 1))
    outer = keras.Model(inputs, flat.get_layer("out")(inner(keras.layers.Flatten()(inputs))))
    _, guided, _ = ScoreGradients(outer, guided=True)(X, np.array([[0]]))
    np.testing.assert_allclose(guided.reshape(-1), GUIDED, rtol=1e-6)


def conv_relu_model():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.ReLU(name="relu")(keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(x))


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("key", ["gb", "ggc"])
def test_guided_methods_leave_the_users_model_unchanged(compiled, key):
    model = conv_relu_model()
    if compiled:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = random_inputs((8, 8, 2), 3)
    probe = keras.Model(model.inputs, [model.get_layer("conv").output, model.get_layer("relu").output])
    before, activations_before = model.predict(x, verbose=0), probe.predict(x, verbose=0)
    weights_before = [w.copy() for w in model.get_weights()]
    config_before = model.get_config()
    raw, _ = methods.create(key, model).explain(x, np.array([[0], [1], [2]]))
    assert np.isfinite(raw).all() and raw.any()
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    for now, then in zip(probe.predict(x, verbose=0), activations_before):
        np.testing.assert_array_equal(now, then)
    for now, then in zip(model.get_weights(), weights_before):
        np.testing.assert_array_equal(now, then)
    assert model.get_config() == config_before
    assert keras.activations.serialize(model.get_layer("conv").activation) == "relu"
    assert keras.activations.serialize(model.get_layer("out").activation) == "softmax"
    assert model.compiled == compiled
    # ordinary gradients after the guided ones are still the ordinary ones
    _, plain, _ = ScoreGradients(model)(x, np.array([[0], [1], [2]]))
    _, guided, _ = ScoreGradients(model, guided=True)(x, np.array([[0], [1], [2]]))
    assert not np.allclose(plain, guided)


@pytest.mark.parametrize("layer", ["conv", "conv2"])
def test_guided_gradcam_is_guided_backprop_times_gradcam(layer):
    # "conv" has a ReLU above it, so its plain and guided gradients differ: one forward pass must serve both
    model = conv_relu_model()
    x = random_inputs((8, 8, 2), 3, seed=4)
    classes = np.array([[0, 1, 2], [2, 0, 1], [1, 1, 0]])
    expected = GuidedBackprop(model).explain(x, classes)[0] * GradCAM(model, layer=layer).explain(x, classes)[0]
    assert expected.any()
    raw, _ = methods.create("ggc", model, layer=layer).explain(x, classes)
    np.testing.assert_allclose(raw, expected, rtol=1e-4, atol=1e-7 * expected.max())
    _, plain, _ = ScoreGradients(model, find_target_path(model, "conv"))(x, classes)
    _, guided, _ = ScoreGradients(model, find_target_path(model, "conv"), guided=True)(x, classes)
    assert not np.allclose(plain, guided)  # the case that would catch a backward pass guided in both places


# ---------------------------------------------------------------- every method, every key


def cnn(shape, n_classes=3):
    keras.utils.set_random_seed(1)
    conv = keras.layers.Conv2D if len(shape) == 3 else keras.layers.Conv3D
    pool = keras.layers.GlobalAveragePooling2D if len(shape) == 3 else keras.layers.GlobalAveragePooling3D
    inputs = keras.Input(shape)
    x = conv(4, 3, padding="same", activation="relu")(inputs)
    x = conv(4, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(pool()(x)))


MODELS = {}


def shared_model(shape):
    if shape not in MODELS:
        MODELS[shape] = cnn(shape)
    return MODELS[shape]


@pytest.mark.parametrize("shape", [(12, 10, 2), (8, 8, 8, 1)], ids=["2d", "3d"])
@pytest.mark.parametrize("key", methods.valid_keys())
def test_every_method_and_key_gives_maps_of_the_input_shape(key, shape):
    model = shared_model(shape)
    layer = {"layer": None} if methods.takes_layer(key) else {}  # only the CAM methods take one
    method = methods.create(key, model, **layer, score="logits")
    assert isinstance(method.params, dict) and "score" in method.params
    assert method.target_layer is None or isinstance(method.target_layer, str)
    x = random_inputs(shape, 2, seed=4)
    for classes in (np.array([[0], [2]]), target_classes(np.zeros((2, 3)), "all")):
        raw, normalized = method.explain(x, classes)
        assert raw.shape == normalized.shape == (2, classes.shape[1], *shape[:-1])
        assert np.isfinite(raw).all()
        assert normalized.min() >= 0.0 and normalized.max() <= 1.0


def test_all_keys_of_the_table_resolve():
    table = {
        "gradcam": ["gradcam", "GradCAM", "gc"],
        "gradcam++": ["gradcam++", "GradCAM++", "GradCAMpp", "gc++"],
        "guidedgradcam": ["GuidedGradCAM", "ggc"],
        "saliency": ["saliency", "SaliencyMap", "sm"],
        "guidedbackprop": ["guidedbackprop", "GuidedBackpropagation", "gb"],
        "integratedgradients": ["IntegratedGradients", "ig"],
        "occlusion": ["OcclusionSensitivity", "os"],
        "limepro": ["LimePro", "lp"],
        "limecon": ["LimeCon", "lc"],
    }
    # every key of the table, plus the canonical names that output paths use
    expected = {k for keys in table.values() for k in keys} | set(table)
    assert sorted(methods.valid_keys()) == sorted(expected)
    for name, keys in table.items():
        for key in keys:
            assert methods.canonical_name(key) == name
            assert methods.method_class(key).name == name


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(ValueError, match="valid keys") as error:
        methods.canonical_name("gradcam+++")
    for key in methods.valid_keys():
        assert key in str(error.value)
    with pytest.raises(ValueError, match="valid keys"):
        methods.create("lime", shared_model((12, 10, 2)))


# ---------------------------------------------------------------- the method contract


def test_only_the_cam_methods_take_a_layer():
    model = shared_model((12, 10, 2))
    assert [name for name in methods.canonical_names() if methods.takes_layer(name)] == [
        "gradcam",
        "gradcam++",
        "guidedgradcam",
    ]
    with pytest.raises(TypeError, match="layer"):
        methods.create("saliency", model, layer="conv2d")
    with pytest.raises(TypeError, match="layer"):
        OcclusionSensitivity(model, layer=None)


def test_the_decoder_gives_its_layer_only_to_the_methods_that_take_one():
    from xaipipe.decoder import _method

    model = conv_relu_model()
    assert _method("gc", model, "conv").target_layer == "conv"
    assert _method("ggc", model, "conv").target_layer == "conv"
    assert _method("sm", model, "conv").target_layer is None  # the seed's layerName, ignored as before
    assert _method("os", model, "conv").params["patch_size"] == methods.defaults("os")["patch_size"]


@pytest.mark.parametrize("key", ["ig", "os", "lp", "lc"])
def test_batch_size_of_a_method_was_renamed_to_chunk_size(key):
    model = shared_model((12, 10, 2))
    with pytest.raises(ValueError, match="'batch_size' was renamed to 'chunk_size'"):
        methods.create(key, model, batch_size=8)
    assert methods.create(key, model, chunk_size=8).chunk_size == 8


def test_the_base_class_owns_score_params_and_the_batch_check():
    model = shared_model((12, 10, 2))
    x = random_inputs((12, 10, 2), 2)
    for key in methods.canonical_names():
        with pytest.raises(ValueError, match="score must be one of"):
            methods.create(key, model, score="softmax")
        method = methods.create(key, model, score="probabilities")
        assert method.score == "probabilities"
        assert list(method.params)[0] == "score" and method.params["score"] == "probabilities"
        for classes in (np.array([0, 1]), np.array([[0], [1], [2]])):
            with pytest.raises(ValueError, match=r"classes must be \(batch, targets\)"):
                method.explain(x, classes)


@pytest.mark.parametrize("shape", [(12, 10, 2), (8, 8, 8, 1)], ids=["2d", "3d"])
@pytest.mark.parametrize("patch_size, stride", [(3, None), (4, 3), (16, None), (5, 2)])
def test_the_registrys_occlusion_passes_count_the_patches(shape, patch_size, stride):
    method = OcclusionSensitivity(shared_model(shape), patch_size=patch_size, stride=stride)
    params = {"patch_size": patch_size, "stride": stride}
    assert methods.passes_per_sample("occlusion", params, shape[:-1]) == len(method.patches)


# ---------------------------------------------------------------- LIME


def test_lime_is_deterministic_for_a_seed():
    model, x = shared_model((12, 10, 2)), random_inputs((12, 10, 2), 2, seed=9)
    classes = np.array([[0], [1]])
    first = methods.create("lp", model, num_samples=200, seed=3).raw_maps(x, classes)
    again = methods.create("lp", model, num_samples=200, seed=3).raw_maps(x, classes)
    other = methods.create("lp", model, num_samples=200, seed=4).raw_maps(x, classes)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_lime_recovers_the_segment_contributions_of_a_linear_model():
    shape = (8, 8, 1)
    model, weights, _ = linear_model(shape, n_classes=2, seed=2)
    x = random_inputs(shape, 1, seed=3)
    labels = grid_segments(shape[:-1], 16)  # a 4 x 4 grid of 2 x 2 cells
    assert labels.max() == 15 and np.bincount(labels.ravel()).tolist() == [4] * 16
    # with fill 0 the score is exactly linear in the kept segments: contribution of s = sum_s W x
    contribution = np.bincount(labels.ravel(), weights=(x[0, ..., 0] * weights[:, 1].reshape(8, 8)).ravel())
    pro = methods.create("lp", model, segments=16, num_features=3).raw_maps(x, np.array([[1]]))[0, 0]
    con = methods.create("lc", model, segments=16, num_features=3).raw_maps(x, np.array([[1]]))[0, 0]
    top_pro, top_con = np.argsort(-contribution)[:3], np.argsort(contribution)[:3]
    assert set(np.unique(labels[pro > 0])) == set(top_pro[contribution[top_pro] > 0])
    assert set(np.unique(labels[con > 0])) == set(top_con[contribution[top_con] < 0])
    for s in top_pro:
        np.testing.assert_allclose(pro[labels == s], contribution[s], rtol=0.05)
    for s in top_con:
        np.testing.assert_allclose(con[labels == s], -contribution[s], rtol=0.05)


def test_grid_segments_in_3d():
    labels = grid_segments((8, 8, 8), 50)
    assert labels.shape == (8, 8, 8) and labels.max() + 1 == 64  # 4 x 4 x 4 cells, nearest to 50


# ---------------------------------------------------------------- nested sub-models


def conv_layers():
    keras.utils.set_random_seed(11)
    return (
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
        keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv_b"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    )


def flat_and_nested(kind):
    conv, conv_b, dense = conv_layers()
    inputs = keras.Input((8, 8, 2))
    flat = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(conv_b(conv(inputs)))))
    if kind == "functional":
        inner_in = keras.Input((8, 8, 2))
        inner = keras.Model(inner_in, conv_b(conv(inner_in)), name="inner_model")
    else:
        inner = keras.Sequential([keras.Input((8, 8, 2)), conv, conv_b], name="inner_model")
    outer_in = keras.Input((8, 8, 2))
    nested = keras.Model(outer_in, dense(keras.layers.GlobalAveragePooling2D()(inner(outer_in))))
    return flat, nested


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_gradcam_on_a_layer_of_a_nested_model_equals_the_flat_model(kind):
    flat, nested = flat_and_nested(kind)
    x = random_inputs((8, 8, 2), 2, seed=12)
    np.testing.assert_allclose(nested.predict(x, verbose=0), flat.predict(x, verbose=0), rtol=1e-5)
    classes = np.array([[0, 1, 2], [2, 1, 0]])
    expected, _ = GradCAM(flat, layer="conv").explain(x, classes)
    for name in ("inner_model/conv", "conv"):
        method = GradCAM(nested, layer=name)
        assert method.target_layer == "inner_model/conv"
        np.testing.assert_allclose(method.explain(x, classes)[0], expected, rtol=1e-4, atol=1e-6)
    plus_flat, _ = GradCAMPlusPlus(flat, layer="conv").explain(x, classes)
    plus_nested, _ = GradCAMPlusPlus(nested, layer="inner_model/conv").explain(x, classes)
    np.testing.assert_allclose(plus_nested, plus_flat, rtol=1e-4, atol=1e-6)
    # by default the last 4D layer of the outer model: the inner model, whose output is conv_b's
    default, _ = GradCAM(nested).explain(x, classes)
    np.testing.assert_allclose(default, GradCAM(flat, layer="conv_b").explain(x, classes)[0], rtol=1e-4, atol=1e-6)
    guided_flat, _ = GuidedBackprop(flat).explain(x, classes)
    np.testing.assert_allclose(GuidedBackprop(nested).explain(x, classes)[0], guided_flat, rtol=1e-4, atol=1e-6)


def test_nested_layer_lookup():
    _, nested = flat_and_nested("functional")
    assert find_target_layer(nested, "inner_model/conv_b").name == "conv_b"
    assert path_name(find_target_path(nested, "conv")) == "inner_model/conv"
    assert path_name(find_target_path(nested)) == "inner_model"
    with pytest.raises(ValueError, match="'inner_model/nope' not found.*inner_model/conv"):
        find_target_layer(nested, "inner_model/nope")
    with pytest.raises(ValueError, match="no 4D output"):
        find_target_layer(nested, "out")
