"""Grad-CAM against its formula on tiny hand-built models."""

import keras
import numpy as np
import pytest

from xaipipe.layers import find_target_layer
from xaipipe.methods import canonical_name, create, valid_keys
from xaipipe.methods.base import target_classes
from xaipipe.methods.gradcam import GradCAM

H, W, K, C = 6, 6, 2, 3
WEIGHTS = np.array([[1.0, -2.0, 0.5], [-1.0, 3.0, 0.25]], np.float32)  # (K features, C classes)
BIAS = np.array([0.1, -0.2, 0.3], np.float32)


def gap_model(scale: float = 1.0) -> keras.Model:
    """input -> 1x1 identity conv 'features' -> GAP -> dense softmax: logits z = mean(A) @ W + b."""
    inputs = keras.Input((H, W, K))
    features = keras.layers.Conv2D(K, 1, use_bias=False, name="features")
    x = features(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(C, activation="softmax", name="out")
    outputs = dense(x)
    model = keras.Model(inputs, outputs)
    features.set_weights([np.eye(K, dtype=np.float32).reshape(1, 1, K, K)])
    dense.set_weights([WEIGHTS * scale, BIAS * scale])
    return model


def inputs(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, H, W, K)).astype(np.float32)


def expected_cam(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ReLU(sum_k alpha_k A^k) with alpha_k = dz/dA^k averaged over positions."""
    return np.maximum(np.einsum("hwk,k->hw", x, weights), 0.0)


def test_logit_gradcam_equals_class_activation_map():
    model, x = gap_model(), inputs()
    classes = np.array([[0], [1], [2]])
    raw, normalized = GradCAM(model).explain(x, classes)
    assert raw.shape == (3, 1, H, W)
    for b, c in enumerate(classes[:, 0]):
        np.testing.assert_allclose(raw[b, 0], expected_cam(x[b], WEIGHTS[:, c] / (H * W)), rtol=1e-4, atol=1e-7)
        assert normalized[b, 0].max() == pytest.approx(1.0) and normalized[b, 0].min() == 0.0


def test_probability_score_uses_the_softmax_gradient():
    model, x = gap_model(), inputs(1)
    logits = x[0].mean(axis=(0, 1)) @ WEIGHTS + BIAS
    p = np.exp(logits - logits.max())
    p /= p.sum()
    c = 1
    alpha = p[c] * (WEIGHTS[:, c] - WEIGHTS @ p) / (H * W)
    raw, _ = GradCAM(model, score="probabilities").explain(x, np.array([[c]]))
    np.testing.assert_allclose(raw[0, 0], expected_cam(x[0], alpha), rtol=1e-4, atol=1e-9)


def test_all_classes_in_one_call_match_one_class_at_a_time():
    model, x = gap_model(), inputs()
    method = GradCAM(model)
    everything, _ = method.explain(x, target_classes(np.zeros((3, C)), "all"))
    assert everything.shape == (3, C, H, W)
    for c in range(C):
        single, _ = method.explain(x, np.full((3, 1), c))
        np.testing.assert_allclose(everything[:, c], single[:, 0], rtol=1e-5, atol=1e-8)


def test_batching_does_not_change_the_maps():
    model, x = gap_model(), inputs(5)
    method = GradCAM(model)
    classes = np.array([[0], [1], [2], [0], [1]])
    together, _ = method.explain(x, classes)
    apart = np.concatenate([method.explain(x[i : i + 1], classes[i : i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-8)


def test_vanishing_gradients_still_normalize_to_one():
    model, x = gap_model(scale=1e-9), inputs(2)
    raw, normalized = GradCAM(model).explain(x, np.array([[0], [1]]))
    assert raw.max() < 1e-8
    assert normalized.reshape(2, -1).max(axis=1).tolist() == pytest.approx([1.0, 1.0])


def test_map_of_a_dead_class_is_zeros_not_nan():
    model, x = gap_model(), np.ones((1, H, W, K), np.float32)
    raw, normalized = GradCAM(model).explain(x, np.array([[0]]))
    assert np.isfinite(normalized).all()
    assert not normalized.any()  # a constant map carries no location


def test_cam_is_upsampled_to_the_input():
    inputs_ = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs_)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs_, keras.layers.Dense(2)(x))
    method = GradCAM(model)
    assert method.target_layer == "max_pooling2d" or method.layer.name.startswith("max_pooling2d")
    raw, _ = method.explain(np.random.default_rng(2).random((2, 16, 16, 1), np.float32), np.array([[0], [1]]))
    assert raw.shape == (2, 1, 16, 16)


def test_the_users_model_is_left_as_it_was():
    model, x = gap_model(), inputs()
    before = model.predict(x, verbose=0)
    GradCAM(model).explain(x, np.array([[0], [1], [2]]))
    np.testing.assert_allclose(model.predict(x, verbose=0), before)
    assert keras.activations.serialize(model.layers[-1].activation) == "softmax"
    np.testing.assert_allclose(before.sum(axis=1), 1.0, rtol=1e-5)


def test_layer_lookup_by_default_and_by_name():
    model = gap_model()
    assert find_target_layer(model).name == "features"
    assert find_target_layer(model, "features").name == "features"
    with pytest.raises(ValueError, match="'nope' not found.*features"):
        find_target_layer(model, "nope")
    with pytest.raises(ValueError, match="no 4D output"):
        find_target_layer(model, "out")


def test_method_keys_resolve_and_unknown_keys_list_the_valid_ones():
    for key in ("gradcam", "GradCAM", "gc"):
        assert canonical_name(key) == "gradcam"
        assert isinstance(create(key, gap_model()), GradCAM)
    with pytest.raises(ValueError, match="valid keys: .*gradcam"):
        canonical_name("gradcamm")
    assert "gc" in valid_keys()


def test_targets():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert target_classes(scores, "argmax").tolist() == [[1], [0]]
    assert target_classes(scores, "all").tolist() == [[0, 1, 2], [0, 1, 2]]
    with pytest.raises(ValueError, match="argmax"):
        target_classes(scores, "max")


def upsample_linear(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres, clamped at the borders (OpenCV's INTER_LINEAR), with np.interp."""
    for axis, n_out in enumerate(shape):
        n_in = a.shape[axis]
        points = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        a = np.apply_along_axis(lambda v: np.interp(points, np.arange(n_in), v), axis, a)
    return a


def test_untrained_resnet50_maps_still_reach_one():
    """Vanishing gradients of an untrained deep network: the normalized maximum is 1, not 0.35; and the raw maps
    are Grad-CAM's, not zeros: recomputed here from the layer's activations and the gradient in closed form."""
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=3)
    x = np.random.default_rng(3).normal(size=(2, 64, 64, 3)).astype(np.float32)
    classes = np.array([[0, 1, 2], [2, 1, 0]])
    method = GradCAM(model)
    raw, normalized = method.explain(x, classes)
    assert np.isfinite(raw).all()
    # the head after the default layer conv5_block3_out is GAP -> Dense(W, b) -> softmax, so the logit is
    # mean(A) @ W + b and its gradient is W[k, c] / (h w) at every position: the Grad-CAM weight of channel k
    assert method.target_layer == "conv5_block3_out"
    assert [layer.name for layer in model.layers[-2:]] == ["avg_pool", "predictions"]
    activations = keras.Model(model.inputs, model.get_layer("conv5_block3_out").output).predict(x, verbose=0)
    dense_weights = model.get_layer("predictions").get_weights()[0].astype(np.float64)
    assert activations.shape == (2, 2, 2, 2048)
    informative = 0
    for b, t in np.ndindex(*classes.shape):
        cam = np.maximum(activations[b].astype(np.float64) @ dense_weights[:, classes[b, t]] / 4, 0.0)
        expected = upsample_linear(cam, (64, 64))
        np.testing.assert_allclose(raw[b, t], expected, rtol=1e-3, atol=1e-5 * max(expected.max(), 1e-30))
        if np.ptp(expected) > 0:
            informative += 1
            assert raw[b, t].var() > 0
            assert normalized[b, t].max() == 1.0 and normalized[b, t].min() == 0.0
    assert informative >= 4, "most maps of this seed are non-constant; all-zero maps must fail this test"


def test_label_targets_name_the_sample_without_label():
    scores = np.zeros((3, 2))
    assert target_classes(scores, "label", np.array([1, 0, 1])).tolist() == [[1], [0], [1]]
    with pytest.raises(ValueError, match="'b.png' has no label"):
        target_classes(scores, "label", np.array([1, -1, 0]), ["a.png", "b.png", "c.png"])
