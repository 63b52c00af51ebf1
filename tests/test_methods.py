"""The XAI methods besides Grad-CAM, against analytic expectations on tiny hand-built models."""

import itertools

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


def resize_half_pixel(a, shape):
    """Linear resize of a (*s) to shape, pixel centres at (i + 0.5) * n_in / n_out - 0.5 and clamped at the
    borders (OpenCV's INTER_LINEAR), one axis at a time with np.interp: written here, apart from xaipipe.maps."""
    out = np.asarray(a, np.float64)
    for axis, n_out in enumerate(shape):
        n_in = out.shape[axis]
        points = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        out = np.apply_along_axis(lambda v: np.interp(points, np.arange(n_in), v), axis, out)
    return out


def conv3d_valid(x, kernel, stride):
    """A 'valid' 3D convolution (D, H, W, Cin) -> (d, h, w, Cout) with a kernel (k, k, k, Cin, Cout), by loops."""
    k = kernel.shape[0]
    out_shape = [(n - k) // stride + 1 for n in x.shape[:3]]
    out = np.zeros((*out_shape, kernel.shape[-1]))
    for d, h, w in np.ndindex(*out_shape):
        patch = x[d * stride : d * stride + k, h * stride : h * stride + k, w * stride : w * stride + k]
        out[d, h, w] = np.einsum("ijlc,ijlco->o", patch, kernel)
    return out


def conv3d_valid_backward(grad_out, kernel, stride, input_shape):
    """The gradient at the input (D, H, W, Cin) of conv3d_valid, given the gradient at its output."""
    k = kernel.shape[0]
    grad_in = np.zeros(input_shape)
    for d, h, w in np.ndindex(*grad_out.shape[:3]):
        grad_in[d * stride : d * stride + k, h * stride : h * stride + k, w * stride : w * stride + k] += np.einsum(
            "ijlco,o->ijlc", kernel, grad_out[d, h, w]
        )
    return grad_in


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
        # normalize: absolute, |v| / max|v| (saliency maps are non-negative): no pixel is moved to 0
        np.testing.assert_allclose(normalized[b, 0], raw[b, 0] / raw[b, 0].max(), rtol=1e-6)


def test_saliency_in_3d_is_the_channel_max_of_the_weights():
    shape = (3, 4, 5, 2)
    model, weights, _ = linear_model(shape, activation="softmax", seed=4)
    x = random_inputs(shape, 2, seed=5)
    classes = np.array([[0, 2], [1, 0]])
    raw, _ = SaliencyMap(model).explain(x, classes)
    assert raw.shape == (2, 2, 3, 4, 5)
    for b, t in np.ndindex(2, 2):
        expected = np.abs(weights[:, classes[b, t]]).reshape(shape).max(axis=-1)
        np.testing.assert_allclose(raw[b, t], expected, rtol=1e-5)


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


def power_model(shape, power, seed=0):
    """Two scores S_j(x) = (w_j . x + c_j)^power, from Dense and Multiply layers; returns the model, W and c."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    weights = rng.normal(0.0, 3.0 / np.sqrt(n), (n, 2)).astype(np.float32)
    bias = np.array([0.6, -0.4], np.float32)
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(2)
    u = dense(keras.layers.Flatten()(inputs))
    scores = keras.layers.Multiply()([u] * power) if power > 1 else u
    model = keras.Model(inputs, scores)
    dense.set_weights([weights, bias])
    return model, weights.astype(np.float64), bias.astype(np.float64)


def quadrature_error(rule, steps, power, slope):
    """integral_0^1 g - Q(g) for g(a) = power (u0 + a s)^(power-1), the path derivative of (w.x + c)^power, in closed
    form (g is a polynomial of degree power - 1, so each rule's classical error term is exact; it does not depend on u0):
    midpoint h^2 g''/24 and trapezoid -h^2 g''/12 (h = 1/steps) for degree <= 2; Gauss-Legendre with n nodes
    (n!)^4 / ((2n+1) ((2n)!)^3) g^(2n) for degree <= 2n (Abramowitz & Stegun 25.4.30 on [0, 1])."""
    from math import factorial, perm

    degree = power - 1

    def derivative(order):  # the order-th derivative of g, constant when order == degree
        return power * perm(degree, order) * slope**order if order == degree else 0.0

    if rule == "gauss-legendre":
        assert degree <= 2 * steps
        n = steps
        return factorial(n) ** 4 / ((2 * n + 1) * factorial(2 * n) ** 3) * derivative(2 * n)
    assert degree <= 2
    factor = {"midpoint": 1 / 24, "trapezoid": -1 / 12}[rule]
    return factor * derivative(2) / steps**2


@pytest.mark.parametrize(
    ("rule", "steps", "power"),
    [
        ("midpoint", 3, 2),  # linear integrand: exact
        ("trapezoid", 3, 2),
        ("gauss-legendre", 1, 2),
        ("midpoint", 4, 3),  # quadratic integrand: h^2 g''/24
        ("trapezoid", 4, 3),  # -h^2 g''/12
        ("gauss-legendre", 2, 4),  # degree 3 = 2n - 1: exact
        ("gauss-legendre", 3, 6),  # degree 5 = 2n - 1: exact
        ("gauss-legendre", 2, 5),  # degree 4 = 2n: the first error term
        ("gauss-legendre", 1, 3),  # degree 2 = 2n
    ],
)
def test_each_quadrature_rule_gives_the_closed_form_attributions_of_a_power_model(rule, steps, power):
    """S = (w . x + c)^k: along x' + a d the gradient is k w (u0 + a s)^(k-1), u0 = w . x' + c, s = w . d, so
    IG_i = d_i w_i (integral - error) with integral = (S(x) - S(x')) / s and each rule's closed-form error."""
    shape = (3, 4, 2)
    model, weights, bias = power_model(shape, power)
    x = random_inputs(shape, 2, seed=4).astype(np.float64)
    baseline = 0.3
    classes = np.array([[0, 1], [1, 0]])
    # score: the output as it is (a Multiply head is no softmax, but xaipipe cannot know it)
    method = IntegratedGradients(model, score="probabilities", steps=steps, rule=rule, baseline=baseline)
    got = method.attributions(x, classes)
    d = (x - baseline).reshape(2, -1)
    for b, t in np.ndindex(2, 2):
        w, c = weights[:, classes[b, t]], bias[classes[b, t]]
        u0, s = baseline * w.sum() + c, d[b] @ w
        integral = ((u0 + s) ** power - u0**power) / s
        error = quadrature_error(rule, steps, power, s)
        expected = (d[b] * w * (integral - error)).reshape(shape)
        np.testing.assert_allclose(got[b, t], expected, rtol=2e-4, atol=2e-5 * np.abs(expected).max())
        if power > 2 and error != 0:  # the error is there, and larger than float32's
            assert abs(error) > 50 * 2e-4 * abs(integral)


@pytest.mark.parametrize("rule", ["midpoint", "trapezoid", "gauss-legendre"])
def test_integrated_gradients_are_complete_with_each_rule(rule):
    """sum_i IG_i = S(x) - S(x') on a smooth (tanh, softplus) CNN, every target class at once."""
    model, x = smooth_model(), random_inputs((6, 6, 2), 3)
    classes = target_classes(np.zeros((3, 3)), "all")
    raw = IntegratedGradients(model, rule=rule, steps=16).raw_maps(x, classes)
    expected = logits(model, x) - logits(model, np.zeros_like(x))
    totals = raw.reshape(3, 3, -1).sum(axis=-1)
    np.testing.assert_allclose(totals, expected, rtol=0.01, atol=1e-3 * np.abs(expected).max())


def test_the_rule_is_checked_recorded_and_counted():
    with pytest.raises(ValueError, match=r"integratedgradients: rule must be one of \['midpoint', 'trapezoid', "):
        IntegratedGradients(smooth_model(), rule="simpson")
    assert IntegratedGradients(smooth_model(), rule="trapezoid").params["rule"] == "trapezoid"
    # the trapezoid rule's steps + 1 points (both ends) cost one gradient pass more than the others' steps points
    costs = {rule: methods.passes_per_sample("ig", {"steps": 8, "rule": rule}, (8, 8)) for rule in methods.IG_RULES}
    assert costs == {"midpoint": 3 * 8, "trapezoid": 3 * 9, "gauss-legendre": 3 * 8}


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


def pixel_model(shape, weights):
    """One score, sum of weights * x over the whole input (weights of the input's shape)."""
    inputs = keras.Input(shape)
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([np.asarray(weights, np.float32).reshape(-1, 1)])
    return model


def test_occlusion_border_patch_by_hand_in_2d():
    # 5 x 5 image, patch 2, stride 2: starts 0, 2, then 3, moved to touch the border (2 does not divide 5 - 2).
    # The score is x[4, 4] alone, so only the border patch at (3, 3) drops it (by 1); pixel (4, 4) lies in that
    # patch only, (3, 4) and (4, 3) in two patches, (3, 3) in four.
    weights = np.zeros((5, 5, 1))
    weights[4, 4] = 1.0
    method = OcclusionSensitivity(pixel_model((5, 5, 1), weights), patch_size=2, stride=2)
    raw = method.raw_maps(np.ones((1, 5, 5, 1), np.float32), np.array([[0]]))[0, 0]
    expected = np.zeros((5, 5))
    expected[3:, 3:] = [[1 / 4, 1 / 2], [1 / 2, 1.0]]
    np.testing.assert_allclose(raw, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "shape, patch, stride, starts",
    [
        ((7, 8, 2), 3, 3, [[0, 3, 4], [0, 3, 5]]),  # both axes end on a patch moved to the border
        ((6, 5, 8, 1), 3, 2, [[0, 2, 3], [0, 2], [0, 2, 4, 5]]),  # 3D: depth and width do
    ],
    ids=["2d", "3d"],
)
def test_occlusion_with_border_patches_is_the_mean_drop_by_hand(shape, patch, stride, starts):
    model, weights, _ = linear_model(shape, n_classes=2, seed=6)
    x = random_inputs(shape, 2, seed=7)
    classes = np.array([[1, 0], [0, 1]])
    raw = OcclusionSensitivity(model, patch_size=patch, stride=stride, fill=0.5, chunk_size=7).raw_maps(x, classes)
    spatial = shape[:-1]
    for b, t in np.ndindex(2, 2):
        contribution = ((x[b] - 0.5) * weights[:, classes[b, t]].reshape(shape)).sum(axis=-1)  # drop per pixel
        total, count = np.zeros(spatial), np.zeros(spatial)
        for corner in itertools.product(*starts):  # the starts listed by hand above
            box = tuple(slice(c, c + patch) for c in corner)
            total[box] += contribution[box].sum()
            count[box] += 1
        assert count.min() >= 1  # the border patches cover the last rows
        np.testing.assert_allclose(raw[b, t], total / count, rtol=1e-4, atol=1e-5 * np.abs(total).max())


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


def test_gradcampp_in_3d_matches_the_closed_form_with_gradients_that_vary_by_position():
    # input (D, H, W, 2) -> 1x1x1 conv "features" (A = x @ M, 3 channels) -> Flatten -> Dense U (softmax):
    # the logit S^c = sum_pk U[p, k, c] A_pk + b_c, so g = dS^c/dA = U[..., c], different at each voxel and of
    # both signs; alpha = g^2 / (2 g^2 + sum_p A_pk g^3), w_k = sum_p alpha ReLU(g), map = ReLU(sum_k w_k A_k).
    spatial, k_in, k = (3, 4, 5), 2, 3
    rng = np.random.default_rng(8)
    mixing = rng.uniform(0.2, 1.0, (k_in, k)).astype(np.float32)  # positive: A > 0, so denominators are > 0
    readout = rng.normal(0.0, 0.5, (int(np.prod(spatial)) * k, 2)).astype(np.float32)
    inputs = keras.Input((*spatial, k_in))
    features = keras.layers.Conv3D(k, 1, use_bias=False, name="features")
    dense = keras.layers.Dense(2, activation="softmax", name="out")
    model = keras.Model(inputs, dense(keras.layers.Flatten()(features(inputs))))
    features.set_weights([mixing.reshape(1, 1, 1, k_in, k)])
    dense.set_weights([readout, np.array([0.3, -0.3], np.float32)])
    x = np.random.default_rng(9).uniform(0.0, 2.0, (2, *spatial, k_in)).astype(np.float32)
    classes = np.array([[0, 1], [1, 0]])
    raw, normalized = GradCAMPlusPlus(model, layer="features").explain(x, classes)
    assert raw.shape == (2, 2, *spatial)
    for b, t in np.ndindex(2, 2):
        a = x[b].astype(np.float64) @ mixing  # (D, H, W, K)
        g = readout[:, classes[b, t]].reshape(*spatial, k).astype(np.float64)
        alpha = g**2 / (2 * g**2 + a.sum(axis=(0, 1, 2)) * g**3)
        weights = (alpha * np.maximum(g, 0.0)).sum(axis=(0, 1, 2))
        expected = np.maximum(a @ weights, 0.0)
        assert np.ptp(expected) > 0
        np.testing.assert_allclose(raw[b, t], expected, rtol=1e-4, atol=1e-6 * expected.max())
        assert normalized[b, t].max() == 1.0


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


@pytest.mark.parametrize("key", ["gb", "ggc"])
def test_guided_methods_warn_where_the_model_has_no_relu_to_gate(key):
    # LeakyReLU, ELU, swish or GELU everywhere: guided backprop's maps equalled saliency's exactly, without a word
    import warnings

    keras.utils.set_random_seed(6)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.LeakyReLU(0.1)(keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="gelu", name="conv2")(x)
    leaky = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    with pytest.warns(UserWarning, match="has no ReLU.*plain gradient"):
        method = methods.create(key, leaky)
    if key == "gb":
        np.testing.assert_array_equal(method.explain(x, np.array([[0], [1]]))[0],
                                      methods.create("saliency", leaky).explain(x, np.array([[0], [1]]))[0])  # fmt: skip
    nested = keras.Sequential([keras.Input((2, 2, 1)), relu_model("Activation")])  # its ReLU inside a sub-model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        methods.create("gb", nested)
    assert not [w for w in caught if "no ReLU" in str(w.message)]


def test_guided_methods_warn_where_relus_hide_in_a_lambda():
    # one ReLU as a layer, one in a Lambda: the Lambda's stayed ungated (r 0.89 to a fully guided map), without a
    # word, since the model had a ReLU; with its only ReLUs in Lambdas, the warning blamed LeakyReLU, ELU, ...
    import warnings

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.ReLU()(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    x = keras.layers.Lambda(lambda v: keras.ops.relu(v), name="my_relu")(keras.layers.Conv2D(4, 3, padding="same")(x))
    mixed = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.warns(UserWarning, match=r"gates the ReLUs it sees, but it has Lambda or custom layers \(my_relu\)"):
        methods.create("gb", mixed)
    y = keras.layers.Lambda(lambda v: keras.ops.relu(v), name="only")(keras.layers.Conv2D(4, 3)(inputs))
    hidden = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(y)))
    with pytest.warns(UserWarning, match=r"has no ReLU that guided backpropagation can see.*\(only\)"):
        methods.create("ggc", hidden)
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(4, 3, activation="relu")(inputs))))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        methods.create("gb", plain)


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


class Relu3D:
    """input (4, 4, 4, 2) -> Conv3D "conv" (kernel 2, stride 2, ReLU; out 2 x 2 x 2 x 3) -> Flatten -> Dense (5, ReLU)
    -> Dense (3, softmax), fixed weights, with its forward pass and (guided) backward passes written in numpy."""

    shape = (4, 4, 4, 2)

    def __init__(self):
        rng = np.random.default_rng(21)
        self.kernel = rng.normal(0.0, 0.5, (2, 2, 2, 2, 3))
        self.bias = np.array([0.1, -0.2, 0.05])
        self.v1 = rng.normal(0.0, 0.5, (24, 5))
        self.c1 = rng.normal(0.0, 0.1, 5)
        self.v2 = rng.normal(0.0, 1.0, (5, 3))
        inputs = keras.Input(self.shape)
        conv = keras.layers.Conv3D(3, 2, strides=2, activation="relu", name="conv")
        hidden = keras.layers.Dense(5, activation="relu", name="hidden")
        out = keras.layers.Dense(3, activation="softmax", name="out")
        self.model = keras.Model(inputs, out(hidden(keras.layers.Flatten()(conv(inputs)))))
        conv.set_weights([self.kernel.astype(np.float32), self.bias.astype(np.float32)])
        hidden.set_weights([self.v1.astype(np.float32), self.c1.astype(np.float32)])
        out.set_weights([self.v2.astype(np.float32), np.zeros(3, np.float32)])

    def forward(self, x):
        z1 = conv3d_valid(x.astype(np.float64), self.kernel, 2) + self.bias  # (2, 2, 2, 3)
        z2 = np.maximum(z1, 0.0).reshape(-1) @ self.v1 + self.c1
        return z1, z2

    def gradients(self, x, c, guided):
        """(dS_c/dA at "conv", dS_c/dx): at a ReLU the gradient passes where its input is > 0 and, if guided,
        where the incoming gradient is > 0 too."""

        def relu_backward(z, grad):
            return grad * (z > 0) * ((grad > 0) if guided else 1.0)

        z1, z2 = self.forward(x)
        grad_a1 = (self.v1 @ relu_backward(z2, self.v2[:, c])).reshape(z1.shape)
        grad_x = conv3d_valid_backward(relu_backward(z1, grad_a1), self.kernel, 2, x.shape)
        return grad_a1, grad_x

    def gradcam(self, x, c):
        a1 = np.maximum(self.forward(x)[0], 0.0)
        weights = self.gradients(x, c, guided=False)[0].mean(axis=(0, 1, 2))
        return resize_half_pixel(np.maximum(a1 @ weights, 0.0), self.shape[:-1])  # 2 x 2 x 2 -> 4 x 4 x 4


def test_saliency_guided_backprop_and_guided_gradcam_in_3d_against_numpy():
    net = Relu3D()
    x = np.random.default_rng(22).normal(size=(2, *net.shape)).astype(np.float32)
    classes = np.array([[0, 1, 2], [2, 0, 1]])
    saliency, _ = SaliencyMap(net.model).explain(x, classes)
    guided, _ = GuidedBackprop(net.model).explain(x, classes)
    ggc, normalized = methods.create("ggc", net.model, layer="conv").explain(x, classes)
    gradcam, _ = GradCAM(net.model, layer="conv").explain(x, classes)
    informative = 0
    for b, t in np.ndindex(*classes.shape):
        c = classes[b, t]
        plain_x = net.gradients(x[b], c, guided=False)[1]
        guided_x = net.gradients(x[b], c, guided=True)[1]
        assert not np.allclose(plain_x, guided_x)  # the guidance cuts something here
        expected_gb = np.abs(guided_x).max(axis=-1)
        expected_cam = net.gradcam(x[b], c)
        expected_ggc = expected_gb * expected_cam
        informative += np.ptp(expected_ggc) > 0
        for got, expected in [
            (saliency, np.abs(plain_x).max(axis=-1)),
            (guided, expected_gb),
            (gradcam, expected_cam),
            (ggc, expected_ggc),  # guided backprop x Grad-CAM upsampled to the input
        ]:
            np.testing.assert_allclose(got[b, t], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
        assert normalized[b, t].max() == (1.0 if np.ptp(expected_ggc) > 0 else 0.0)
    assert informative >= 4, "most of the expected Guided Grad-CAM maps must be non-constant, or the test says little"


# ---------------------------------------------------------------- every method, every key


def cnn(shape, n_classes=3, seed=1):
    """Two ReLU convolutions, global average pooling and a softmax head, its weights from ``seed``."""
    keras.utils.set_random_seed(seed)
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
        assert not method.signed  # no method's default keeps the sign: [0, 1] unless normalize: signed
        assert normalized.min() >= 0.0 and normalized.max() <= 1.0
    if key in methods.canonical_names():  # asked for, the sign is kept: raw / max |raw|, in [-1, 1]
        raw, signed = methods.create(key, model, **layer, normalize="signed").explain(x, np.array([[0], [2]]))
        top = np.abs(raw).max(axis=tuple(range(2, raw.ndim)), keepdims=True)
        np.testing.assert_allclose(signed, raw / np.where(top > 0, top, 1), rtol=1e-5, atol=1e-7)


def test_all_keys_of_the_table_resolve():
    table = {
        "gradcam": ["gradcam", "GradCAM", "gc"],
        "gradcam++": ["gradcam++", "GradCAM++", "GradCAMpp", "gc++"],
        "guidedgradcam": ["GuidedGradCAM", "ggc"],
        "hirescam": ["hirescam", "HiResCAM"],
        "xgradcam": ["xgradcam", "XGradCAM"],
        "layercam": ["layercam", "LayerCAM"],
        "scorecam": ["scorecam", "ScoreCAM"],
        "eigencam": ["eigencam", "EigenCAM"],
        "saliency": ["saliency", "SaliencyMap", "sm"],
        "guidedbackprop": ["guidedbackprop", "GuidedBackpropagation", "gb"],
        "inputxgradient": ["inputxgradient", "InputXGradient", "ixg"],
        "smoothgrad": ["smoothgrad", "SmoothGrad"],
        "vargrad": ["vargrad", "VarGrad"],
        "integratedgradients": ["IntegratedGradients", "ig"],
        "occlusion": ["OcclusionSensitivity", "os"],
        "limepro": ["LimePro", "lp"],
        "limecon": ["LimeCon", "lc"],
        "rise": ["rise", "RISE"],
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
        "hirescam",
        "xgradcam",
        "layercam",
        "scorecam",
        "eigencam",
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


@pytest.mark.parametrize("key", ["ig", "os", "lp", "lc", "scorecam", "sm", "ixg", "rise", "gc"])
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
            with pytest.raises(ValueError, match=r"classes must be \(batch, targets\)") as caught:
                method.explain(x, classes)
            assert ("classes[:, None]" in str(caught.value)) == (classes.ndim == 1)  # the fix, where it is that


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


def lime_kernel(samples, kernel_width):
    """The `lime` package's image kernel (LimeImageExplainer): sqrt(exp(-d^2 / width^2)), d the cosine
    distance (sklearn's pairwise_distances, metric="cosine") of each binary mask to the first, all-ones, one."""
    z = samples.astype(np.float64)
    ones = np.ones(z.shape[1])
    norms = np.linalg.norm(z, axis=1) * np.linalg.norm(ones)
    similarity = np.divide(z @ ones, norms, out=np.zeros(len(z)), where=norms > 0)  # a zero mask: distance 1
    distance = 1.0 - similarity
    return np.sqrt(np.exp(-(distance**2) / kernel_width**2))


def ridge_by_least_squares(samples, targets, weights, penalty=1.0):
    """sklearn's Ridge(alpha=penalty, fit_intercept=True).fit(samples, targets, sample_weight=weights), as LimeBase
    calls it, written as one least-squares problem: rows sqrt(w_n) [1, z_n] -> sqrt(w_n) y_n, and one row
    sqrt(penalty) e_s -> 0 per coefficient (the intercept is not penalized). Returns the coefficients without it."""
    n, n_features = samples.shape
    design = np.hstack([np.ones((n, 1)), samples.astype(np.float64)]) * np.sqrt(weights)[:, None]
    penalty_rows = np.hstack([np.zeros((n_features, 1)), np.sqrt(penalty) * np.eye(n_features)])
    lhs = np.vstack([design, penalty_rows])
    rhs = np.concatenate([targets * np.sqrt(weights), np.zeros(n_features)])
    return np.linalg.lstsq(lhs, rhs, rcond=None)[0][1:]


def product_and_max_model(shape=(8, 8, 1)):
    """Two non-linear scores of an 8 x 8 image: mean(left half) * mean(top half), and max over the image."""
    inputs = keras.Input(shape)
    left = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 0), (0, 4)))(inputs))
    top = keras.layers.GlobalAveragePooling2D()(keras.layers.Cropping2D(((0, 4), (0, 0)))(inputs))
    product = keras.layers.Multiply()([left, top])
    peak = keras.layers.GlobalMaxPooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Concatenate()([product, peak]))


def product_and_max(images):
    """The scores of product_and_max_model, in numpy: (N, 8, 8) -> (N, 2)."""
    product = images[:, :, :4].mean(axis=(1, 2)) * images[:, :4, :].mean(axis=(1, 2))
    return np.stack([product, images.max(axis=(1, 2))], axis=1)


@pytest.mark.parametrize("kernel_width", [0.25, 0.6])
def test_lime_kernel_and_weighted_ridge_on_a_non_linear_model_match_an_independent_computation(kernel_width):
    # The score is not linear in the kept segments, so the fit depends on which perturbations weigh most:
    # an all-ones or an inverted kernel gives other coefficients (a linear target would be fitted whatever the kernel).
    x = np.random.default_rng(13).uniform(0.5, 1.5, (2, 8, 8, 1)).astype(np.float32)
    classes = np.array([[0, 1], [1, 0]])
    fill = 0.25
    labels = np.arange(8)[:, None] // 2 * 4 + np.arange(8)[None, :] // 2  # 4 x 4 cells of 2 x 2 pixels, by hand
    method = methods.create(
        "lp", product_and_max_model(), score="probabilities", num_samples=300, segments=16, num_features=4,
        kernel_width=kernel_width, seed=5, fill=fill,
    )  # fmt: skip
    np.testing.assert_array_equal(method.labels, labels)
    masks = method.samples  # the perturbations drawn from the seed: the input of the computation
    assert masks.shape == (300, 16) and set(np.unique(masks)) == {0, 1} and masks[0].all()
    weights = lime_kernel(masks, kernel_width)
    assert np.ptp(weights) > 0.1
    coefficients = method.segment_weights(x, classes)  # (B, T, S)
    raw, _ = method.explain(x, classes)
    for b in range(2):
        keep = masks[:, labels]  # (N, 8, 8)
        perturbed = x[b, ..., 0] * keep + fill * (1 - keep)
        scores = product_and_max(perturbed.astype(np.float64))  # (N, 2)
        for t, c in enumerate(classes[b]):
            expected = ridge_by_least_squares(masks, scores[:, c], weights)
            np.testing.assert_allclose(coefficients[b, t], expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())
            top = np.argsort(-expected)[:4]
            shown = np.zeros(16)
            shown[top] = np.maximum(expected[top], 0.0)
            np.testing.assert_allclose(raw[b, t], shown[labels], rtol=1e-3, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(method.sample_weights, weights, rtol=1e-6)


def test_lime_in_3d_fits_a_score_linear_in_the_segments():
    # (4, 4, 4) volume, 8 segments: 2 x 2 x 2 boxes of 2 x 2 x 2 voxels. With fill 0 the score of a linear model is
    # b + sum_s z_s c_s, c_s = sum over the voxels of s of W x: the weighted ridge of it, computed here, is c shrunk
    # a little by the penalty.
    shape = (4, 4, 4, 1)
    model, weights, bias = linear_model(shape, n_classes=2, seed=14)
    x = random_inputs(shape, 1, seed=15)
    d, h, w = np.indices((4, 4, 4))
    labels = d // 2 * 4 + h // 2 * 2 + w // 2
    method = methods.create("lp", model, segments=8, num_features=3, num_samples=400, seed=2)
    np.testing.assert_array_equal(method.labels, labels)
    contribution = np.bincount(labels.ravel(), weights=(x[0, ..., 0] * weights[:, 1].reshape(4, 4, 4)).ravel())
    masks = method.samples
    targets = masks @ contribution + bias[1]  # the score of each perturbation
    expected = ridge_by_least_squares(masks, targets, lime_kernel(masks, 0.25))
    np.testing.assert_allclose(expected, contribution, rtol=0.1, atol=0.02 * np.abs(contribution).max())
    coefficients = method.segment_weights(x, np.array([[1]]))[0, 0]
    np.testing.assert_allclose(coefficients, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())
    for key, sign in (("lp", 1.0), ("lc", -1.0)):
        raw = methods.create(key, model, segments=8, num_features=3, num_samples=400, seed=2).raw_maps(
            x, np.array([[1]])
        )[0, 0]
        signed = sign * expected
        top = np.argsort(-signed)[:3]
        shown = np.zeros(8)
        shown[top] = np.maximum(signed[top], 0.0)
        np.testing.assert_allclose(raw, shown[labels], rtol=1e-3, atol=1e-5 * np.abs(expected).max())


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


def test_an_occlusion_stride_beyond_its_patch_or_a_single_segment_is_refused_in_python_too():
    model = left_half_model()
    with pytest.raises(ValueError, match=r"OcclusionSensitivity: stride 4 is larger than patch_size 2"):
        OcclusionSensitivity(model, patch_size=2, stride=4)
    with pytest.raises(ValueError, match=r"segments 1 makes every map one value"):
        methods.create("limepro", model, segments=1)
    with pytest.raises(ValueError, match=r"cells 1 makes every map one value"):
        methods.create("rise", model, cells=1)
    assert OcclusionSensitivity(model, patch_size=4, stride=2).stride == 2
    with pytest.raises(ValueError, match=r"noise.samples 1 with kind vargrad"):
        methods.create("vargrad", model, noise={"samples": 1})
    with pytest.raises(ValueError, match=r"num_samples 3 is not above segments 8"):
        methods.create("limepro", model, num_samples=3, segments=8)
    # the grid ignores compactness: accepted, the maps were plain grid LIME's under a parameter nobody applied
    with pytest.raises(ValueError, match=r"LimePro: compactness 5 applies to segmentation 'slic' only"):
        methods.create("limepro", model, compactness=5)
    assert methods.create("limepro", model, segmentation="slic", compactness=5).compactness == 5
