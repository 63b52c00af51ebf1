"""Which class score is differentiated, and which classes are explained (issue 11, item 7).

The models are linear up to their head, z = flatten(x) @ W + b, so the gradient of
the logit z_c with respect to the input is the column W[:, c] (closed form), and a
softmax or sigmoid in front of it would change it.
"""

import warnings

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from xaipipe import h5store, methods
from xaipipe.autodiff import ScoreGradients, score_source
from xaipipe.methods.base import target_classes
from xaipipe.model import predict_batch

SHAPE = (3, 3, 1)
K = 3
RNG = np.random.default_rng(7)
W = RNG.normal(size=(9, K)).astype(np.float32)
B = np.array([0.3, -0.2, 0.1], np.float32)
X = RNG.normal(size=(2, *SHAPE)).astype(np.float32)


def dense(units=K, activation=None, name="z"):
    layer = keras.layers.Dense(units, activation=activation, name=name)
    layer.build((None, 9))
    layer.set_weights([W[:, :units], B[:units]])
    return layer


class SoftmaxLayer(keras.layers.Layer):
    """A custom layer applying a TensorFlow op: xaipipe cannot see that it squashes."""

    def call(self, x):
        return tf.nn.softmax(x)


def head_model(head):
    """input -> flatten -> the head; ``head`` names how the final softmax/sigmoid is written."""
    inputs = keras.Input(SHAPE)
    flat = keras.layers.Flatten()(inputs)
    if head == "Activation":
        out = keras.layers.Activation("softmax", name="act")(dense()(flat))
    elif head == "Dense(softmax)":
        out = dense(activation="softmax", name="predictions")(flat)
    elif head == "Softmax layer":
        out = keras.layers.Softmax(name="soft")(dense()(flat))
    elif head == "ops.softmax":
        out = keras.ops.softmax(dense()(flat))
    elif head == "ops.sigmoid":
        out = keras.ops.sigmoid(dense()(flat))
    elif head == "Dense(sigmoid)":
        out = dense(activation="sigmoid")(flat)
    elif head == "nested Functional":
        inner_in = keras.Input((9,))
        inner = keras.Model(inner_in, keras.layers.Activation("softmax")(dense()(inner_in)), name="head")
        out = inner(flat)
    elif head == "nested Sequential":
        inner = keras.Sequential([keras.Input((9,)), dense(activation="softmax")], name="head")
        out = inner(flat)
    elif head == "nested twice":
        inner_in = keras.Input((9,))
        deepest = keras.Sequential([keras.Input((9,)), dense(), keras.layers.Softmax()], name="deepest")
        inner = keras.Model(inner_in, deepest(inner_in), name="head")
        out = inner(flat)
    elif head == "softmax, then a linear float32 Activation":  # a mixed-precision head
        out = keras.layers.Activation("linear", dtype="float32", name="cast")(dense(activation="softmax")(flat))
    elif head == "Dense(log_softmax)":
        out = dense(activation="log_softmax")(flat)
    elif head == "Activation(log_softmax)":
        out = keras.layers.Activation("log_softmax")(dense()(flat))
    elif head == "ops.log_softmax":
        out = keras.ops.log_softmax(dense()(flat))
    elif head == "Lambda":
        out = keras.layers.Lambda(lambda t: tf.nn.softmax(t), name="lam")(dense()(flat))
    elif head == "custom layer":
        out = SoftmaxLayer(name="custom_softmax")(dense()(flat))
    else:
        raise AssertionError(head)
    return keras.Model(inputs, out)


SEEN_THROUGH = [
    "Activation",
    "Dense(softmax)",
    "Softmax layer",
    "ops.softmax",
    "ops.sigmoid",
    "Dense(sigmoid)",
    "nested Functional",
    "nested Sequential",
    "nested twice",
    "softmax, then a linear float32 Activation",
    "Dense(log_softmax)",
    "Activation(log_softmax)",
    "ops.log_softmax",
]
LOG_SOFTMAX = ["Dense(log_softmax)", "Activation(log_softmax)", "ops.log_softmax"]


@pytest.mark.parametrize("head", LOG_SOFTMAX)
def test_a_log_softmax_head_gives_probabilities_not_log_probabilities(head):
    """Its output is log p: the predictions and the probabilities score are p = softmax(z), by hand."""
    model = head_model(head)
    z = X.reshape(2, -1) @ W + B
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(predict_batch(model, X), p, rtol=1e-5, atol=1e-6)
    _, _, scores = ScoreGradients(model, score="probabilities")(X, np.array([[0], [1]]))
    np.testing.assert_allclose(scores, p, rtol=1e-5, atol=1e-6)
    assert "exp" in score_source(model, "probabilities").description


@pytest.mark.parametrize("head", SEEN_THROUGH)
def test_logit_gradients_are_the_weight_columns_whatever_the_head(head):
    model = head_model(head)
    classes = np.array([[0, 2], [1, 0]])
    _, gradients, scores = ScoreGradients(model, score="logits")(X, classes)
    expected = W.T[classes].reshape(2, 2, *SHAPE)  # dz_c/dx = W[:, c]
    np.testing.assert_allclose(gradients, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, X.reshape(2, -1) @ W + B, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", ["Dense(softmax)", "Dense(sigmoid)", "nested Sequential"])
def test_logits_taken_off_a_layers_activation_follow_its_new_weights(head):
    """Built before the head's weights change (as the decoder reuses its methods), the gradients and
    scores are the new weights' columns and logits."""
    model = head_model(head)
    gradients_of = ScoreGradients(model, score="logits")
    classes = np.array([[0, 2], [1, 0]])
    gradients_of(X, classes)  # compiled on the old weights
    w2, b2 = -2.0 * W, B + 1.0
    head_layer = model.layers[-1].layers[-1] if head == "nested Sequential" else model.layers[-1]
    head_layer.set_weights([w2, b2])
    _, gradients, scores = gradients_of(X, classes)
    np.testing.assert_allclose(gradients, w2.T[classes].reshape(2, 2, *SHAPE), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, X.reshape(2, -1) @ w2 + b2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", ["nested Functional", "nested Sequential"])
def test_gradcam_on_a_layer_inside_a_nested_head_uses_the_logits(head):
    """The target layer sits in the very sub-model whose softmax is taken off."""
    inputs = keras.Input((4, 4, 1))
    inner_in = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(2, 1, name="conv", kernel_initializer="ones")
    pooled = keras.layers.GlobalAveragePooling2D()(conv(inner_in))
    out_layer = keras.layers.Dense(2, name="out")
    out_layer.build((None, 2))
    out_layer.set_weights([np.array([[1.0, -1.0], [2.0, 0.5]], np.float32), np.zeros(2, np.float32)])
    if head == "nested Functional":
        inner = keras.Model(inner_in, keras.layers.Softmax()(out_layer(pooled)), name="net")
    else:
        inner = keras.Sequential(
            [keras.Input((4, 4, 1)), conv, keras.layers.GlobalAveragePooling2D(), out_layer, keras.layers.Softmax()],
            name="net",
        )
    model = keras.Model(inputs, inner(inputs))
    x = np.abs(RNG.normal(size=(1, 4, 4, 1))).astype(np.float32)
    gradcam = methods.create("gradcam", model, layer="net/conv")
    raw, _ = gradcam.explain(x, np.array([[0]]))
    # logits z0 = mean(A1) + 2 mean(A2) with A1 = A2 = x: Grad-CAM weights (1/16, 2/16), map = ReLU(3 x / 16)
    np.testing.assert_allclose(raw[0, 0], 3 * x[0, ..., 0] / 16, rtol=1e-5)
    assert gradcam.score_source.startswith("logits: input of layer")


@pytest.mark.parametrize("head", ["Lambda", "custom layer"])
def test_a_head_that_cannot_be_seen_through_is_refused_under_logits(head):
    model = head_model(head)
    name = "lam" if head == "Lambda" else "custom_softmax"
    with pytest.raises(ValueError, match=rf"(?s){name}.*score: probabilities"):
        methods.create("saliency", model, score="logits")
    explainer = methods.create("saliency", model, score="probabilities")  # the output as it is: fine
    assert explainer.score_source.startswith("probabilities: output of")


def test_the_score_source_names_the_tensor():
    assert score_source(head_model("Activation"), "logits").description == "logits: input of layer 'act' (softmax)"
    described = score_source(head_model("Dense(softmax)"), "logits").description
    assert described == "logits: layer 'predictions' without its softmax"
    assert score_source(head_model("Activation"), "probabilities").description.startswith("probabilities: output of")
    inputs = keras.Input(SHAPE)
    linear = keras.Model(inputs, dense()(keras.layers.Flatten()(inputs)))
    assert score_source(linear, "logits").description == "logits: output of layer 'z' (no softmax or sigmoid)"


# ------------------------------------------------------------ one-unit sigmoid classifiers


def one_unit_model(activation="sigmoid"):
    inputs = keras.Input(SHAPE)
    return keras.Model(inputs, dense(1, activation=activation)(keras.layers.Flatten()(inputs)))


def test_a_one_unit_sigmoid_model_has_two_classes_minus_z_and_z():
    model = one_unit_model()
    z = X.reshape(2, -1) @ W[:, :1] + B[:1]  # (2, 1)
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(predict_batch(model, X), np.hstack([1 - p, p]), rtol=1e-5)
    _, gradients, scores = ScoreGradients(model)(X, np.array([[0, 1], [1, 0]]))
    np.testing.assert_allclose(scores, np.hstack([-z, z]), rtol=1e-5)
    w = W[:, 0].reshape(SHAPE)
    np.testing.assert_allclose(gradients[0], np.stack([-w, w]), rtol=1e-5)  # class 0: d(-z)/dx
    np.testing.assert_allclose(gradients[1], np.stack([w, -w]), rtol=1e-5)


def test_argmax_of_a_one_unit_sigmoid_model_is_the_predicted_side():
    model = one_unit_model()
    x = np.stack([X[0], -X[0], X[1], -X[1]])
    z = x.reshape(4, -1) @ W[:, 0] + B[0]
    chosen = target_classes(predict_batch(model, x), "argmax")
    np.testing.assert_array_equal(chosen[:, 0], (1 / (1 + np.exp(-z)) > 0.5).astype(int))
    assert set(chosen[:, 0]) == {0, 1}


# ------------------------------------------------------------ the classes to explain


@pytest.mark.parametrize("bad", [[[3], [0]], [[0], [-1]], [[0.5], [1]]])
def test_classes_out_of_range_negative_or_fractional_name_the_sample(bad):
    method = methods.create("saliency", head_model("Activation"))
    with pytest.raises(ValueError, match=r"sample (#0|#1)"):
        method.explain(X, np.array(bad))
    with pytest.raises(ValueError, match=r"sample 'b'"):
        method.explain(X, np.array([[0], [-1]]), ids=["a", "b"])


def test_target_classes_refuse_non_finite_predictions_naming_the_sample():
    scores = np.array([[0.2, 0.8], [np.nan, 0.1]], np.float32)
    with pytest.raises(ValueError, match=r"sample 'second'.*not finite"):
        target_classes(scores, "argmax", ids=["first", "second"])


def test_the_heatmaps_file_records_the_differentiated_tensor(tmp_path):
    from xaipipe.model import sha256_file
    from xaipipe.stages import compute_heatmaps_shard

    model = head_model("Activation")
    model_path = tmp_path / "m.keras"
    model.save(model_path)
    ids = ["a", "b"]
    with h5store.preprocessed_writer(
        tmp_path / "pre.h5", ids, [0, 1], SHAPE, spatial_dims=2, class_names=[], preprocessing={},
        preprocess_overlay=True,
    ) as shard:  # fmt: skip
        for row in range(2):
            shard.write(row, X[row], np.zeros((3, 3, 3), np.uint8), np.ones(2))
    h5store.write_predictions(
        tmp_path / "pred.h5", ids, np.array([0, 1]), predict_batch(model, X), class_names=[],
        model_sha256=sha256_file(model_path),
    )
    out = tmp_path / "maps.h5"
    compute_heatmaps_shard(tmp_path / "pre.h5", tmp_path / "pred.h5", model_path, "saliency", {}, "argmax", 2, out)
    with h5py.File(out) as f:
        assert f.attrs["score_tensor"] == "logits: input of layer 'act' (softmax)"


# ------------------------------------------------------------ xai_decoder's preds


class ArrayGenerator:
    """The seed's DataGenerator interface over arrays: sample names, preprocess_image, sample_loader."""

    def __init__(self, images, names):
        self.images = images
        self.samples = names
        self.image_format = None
        self.batch_size = 2

    def preprocess_image(self, index, run_resize=True, run_aug=True, run_standardize=True):
        return self.images[index]


@pytest.mark.parametrize(
    "preds, message",
    [
        (np.zeros((2, K + 1)), r"shape \(2, 4\).*\(2, 3\)"),
        (np.zeros(2), r"shape \(2,\).*\(2, 3\)"),
        (np.zeros((3, K)), r"shape \(3, 3\).*\(2, 3\)"),
        (np.array([[0.1, 0.2, 0.7], [np.nan, 0.5, 0.5]]), r"sample 'second'.*not finite"),
    ],
)
def test_the_decoder_refuses_bad_preds_naming_the_sample_or_shape(preds, message):
    from xaipipe import xai_decoder

    with pytest.raises(ValueError, match=message):
        xai_decoder(ArrayGenerator(X, ["first", "second"]), head_model("Activation"), preds, method="saliency")


def test_the_decoder_explains_the_predicted_side_of_a_one_unit_sigmoid_model():
    from xaipipe import xai_decoder

    model = one_unit_model()
    x = np.stack([X[0], -X[0]])
    z = x.reshape(2, -1) @ W[:, 0] + B[0]
    p = model.predict_on_batch(x)  # (2, 1), as the seed's model.predict gives them
    gen = ArrayGenerator(x, ["a", "b"])
    _, maps = xai_decoder(gen, model, p, method="IntegratedGradients")
    _, both = xai_decoder(gen, model, None, method="IntegratedGradients")
    assert both.shape[1] == 2  # without preds: both classes, -z and z, whose maps differ
    side = (z > 0).astype(int)
    assert set(side) == {0, 1}
    np.testing.assert_allclose(maps, both[np.arange(2), side], rtol=1e-6)
    assert not np.allclose(maps, both[np.arange(2), 1 - side])
    assert methods.create("saliency", model).n_classes == 2
    # preds as users also hold them: raveled (N,) or thresholded (p > 0.5): the same sides; they were refused
    for other in (p.ravel(), p > 0.5):
        np.testing.assert_allclose(xai_decoder(gen, model, other, method="IntegratedGradients")[1], maps, rtol=1e-6)


def test_the_decoder_says_that_preds_explain_one_finding_of_a_multi_label_model():
    """With a model of several sigmoids, preds picked one finding per image (the highest; of an image without
    findings, too), without a word (a helper's study). It still does, as the seed's decoder does, and says so."""
    import keras

    from xaipipe import xai_decoder

    inputs = keras.Input(X.shape[1:])
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(flat))
    gen = ArrayGenerator(X, ["first", "second"])
    with pytest.warns(UserWarning, match="multi-label.*pass preds=None for a map of every finding"):
        xai_decoder(gen, model, np.array([[1, 1, 0], [0, 0, 0]]), method="saliency")
    softmax = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xai_decoder(gen, softmax, np.eye(3)[[0, 1]], method="saliency")
