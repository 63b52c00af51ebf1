"""Models and inputs as users have them, each explained right or refused with a message that says why.

Grad-CAM is checked against a computation by hand (a tf.GradientTape on a model that outputs the layer's
activations and the logits, the channel weights the gradients' spatial mean, bilinear upsampling with
half-pixel centres), not against the package's own code.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from xaipipe import methods
from xaipipe.methods.camfamily import CAMFamily

L = keras.layers
SIZE = 32


def hand_gradcam(activations_and_logits: keras.Model, x: np.ndarray, classes: list[int]) -> np.ndarray:
    """ReLU(sum_k mean(dz_c/dA^k) A^k) (B, SIZE, SIZE), upsampled bilinearly with half-pixel centres."""
    with tf.GradientTape() as tape:
        tape.watch(x := tf.constant(x))  # else a layer that no variable precedes is not recorded
        activations, logits = activations_and_logits(x)
        score = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
    gradients = tape.gradient(score, activations).numpy()
    weights = gradients.mean(axis=(1, 2), keepdims=True)
    cams = np.maximum((weights * activations.numpy()).sum(axis=-1), 0)
    return tf.image.resize(cams[..., None], (SIZE, SIZE), method="bilinear").numpy()[..., 0]


def images(n: int = 2, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(0).random((n, SIZE, SIZE, channels)).astype(np.float32)


def classifier():
    """A small CNN whose head is a Dense layer without activation, then a softmax: (model, its logits layer)."""
    inputs = keras.Input((SIZE, SIZE, 3))
    h = L.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(8, 3, activation="relu", name="lastconv")(h)
    logits = L.Dense(3, name="logits")(L.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, L.Activation("softmax")(logits), name="inner")


def test_a_classifier_wrapped_behind_a_preprocessing_layer_is_explained_at_its_last_convolution():
    # Sequential([Input, Rescaling, classifier]): the outer model's last 4D layer is the Rescaling; the maps
    # there were the input's own (Eigen-CAM, Score-CAM) or no gradient at all (Grad-CAM)
    keras.utils.set_random_seed(10)
    inner = classifier()
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), L.Rescaling(2.0, offset=-1.0), inner])
    x, classes = images(), [1, 2]
    for key in ("gradcam", "eigencam", "scorecam"):
        assert methods.create(key, model).target_layer == "inner/lastconv", key
    raw, normalized = methods.create("gradcam", model).explain(x, np.array(classes)[:, None])
    reference = keras.Model(inner.inputs, [inner.get_layer("lastconv").output, inner.get_layer("logits").output])
    expected = hand_gradcam(reference, x * 2 - 1, classes)
    np.testing.assert_allclose(raw[:, 0], expected, rtol=1e-4, atol=1e-4 * expected.max())
    assert normalized.max() == pytest.approx(1.0)


def test_a_head_of_1x1_convolutions_is_passed_over_and_refused_by_name():
    # MobileNet's head: global pooling kept 4D, then a 1x1 convolution as the classifier; a CAM at a 1x1 layer
    # is one value, so its maps were constant, all zeros once normalized
    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = L.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    h = L.Conv2D(16, 3, activation="relu", name="last_spatial_conv")(h)
    h = L.Dropout(0.1)(L.GlobalAveragePooling2D(keepdims=True)(h))
    logits = L.Reshape((3,), name="logits")(L.Conv2D(3, 1, name="conv_preds")(h))
    model = keras.Model(inputs, L.Activation("softmax")(logits))
    x, classes = images(), [0, 1]
    method = methods.create("gradcam", model)
    assert method.target_layer == "last_spatial_conv"
    raw, normalized = method.explain(x, np.array(classes)[:, None])
    reference = keras.Model(inputs, [model.get_layer("last_spatial_conv").output, logits])
    expected = hand_gradcam(reference, x, classes)
    np.testing.assert_allclose(raw[:, 0], expected, rtol=1e-4, atol=1e-4 * expected.max())
    assert normalized.reshape(2, -1).max(axis=1) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match=r"'conv_preds'.* 1x1 output.*last_spatial_conv"):
        methods.create("eigencam", model, layer="conv_preds")


@pytest.mark.parametrize("shifting", [L.ZeroPadding2D(((0, 1), (0, 1))), L.Cropping2D(((1, 0), (1, 0)))])
def test_a_padding_or_cropping_layer_is_not_the_default_layer(shifting):
    # MobileNetV2 on 32x32 inputs: its last stage is 1x1, and the last 4D layer larger than 1x1 was block_13_pad,
    # a ZeroPadding2D ((0, 1), (0, 1)) of a 2x2 map: stretched over the image, the map's content sat in its top
    # left two thirds and the bottom and right strips were 0 (3-4% of the map in 44% of the image)
    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIZE, SIZE, 3))
    h = L.Conv2D(8, 3, strides=4, activation="relu", name="conv")(inputs)  # 8x8
    h = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="last_spatial")(h)  # 4x4
    h = L.Conv2D(8, 3, strides=3, name="to_1x1")(shifting(h))  # 5x5 or 3x3 -> 1x1
    logits = L.Dense(3, name="logits")(L.Flatten()(h))
    model = keras.Model(inputs, L.Activation("softmax")(logits))
    assert model.layers[-5] is shifting and shifting.output.shape[1] > 1  # the last layer of more than 1x1
    method = methods.create("gradcam", model)
    assert method.target_layer == "last_spatial"
    x, classes = images(), [0, 2]
    raw, _ = method.explain(x, np.array(classes)[:, None])
    expected = hand_gradcam(keras.Model(inputs, [model.get_layer("last_spatial").output, logits]), x, classes)
    np.testing.assert_allclose(raw[:, 0], expected, rtol=1e-4, atol=1e-4 * expected.max())


def test_a_layer_that_no_weight_precedes_has_its_gradient():
    # a Rescaling right after the input: TensorFlow's tape watched the variables only, so the gradient at its
    # output was None ("None values not supported")
    keras.utils.set_random_seed(4)
    inputs = keras.Input((SIZE, SIZE, 3))
    rescaled = L.Rescaling(2.0, offset=-1.0, name="resc")(inputs)
    h = L.Conv2D(8, 3, activation="relu")(rescaled)
    logits = L.Dense(3)(L.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, L.Activation("softmax")(logits))
    x, classes = images(), [0, 2]
    expected = hand_gradcam(keras.Model(inputs, [rescaled, logits]), x, classes)
    raw, _ = methods.create("gradcam", model, layer="resc").explain(x, np.array(classes)[:, None])
    np.testing.assert_allclose(raw[:, 0], expected, rtol=1e-4, atol=1e-4 * expected.max())
    # LayerCAM at the same layer: ReLU(ReLU(g) * A) summed over channels, here A = 2x - 1 and g the input's gradient
    with tf.GradientTape() as tape:
        tape.watch(tensor := tf.constant(x * 2 - 1))
        score = tf.reduce_sum(tf.gather(keras.Model(rescaled, logits)(tensor), classes, batch_dims=1))
    g = tape.gradient(score, tensor).numpy()
    layercam = np.maximum((np.maximum(g, 0) * (x * 2 - 1)).sum(axis=-1), 0)
    raw, _ = methods.create("layercam", model, layer="resc").explain(x, np.array(classes)[:, None])
    np.testing.assert_allclose(raw[:, 0], layercam, rtol=1e-4, atol=1e-4 * layercam.max())


def test_a_subclassed_model_is_refused_with_what_to_do():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv, self.dense = L.Conv2D(4, 3, activation="relu"), L.Dense(2, activation="softmax")

        def call(self, x):
            return self.dense(keras.ops.mean(self.conv(x), axis=(1, 2)))

    net = Net()
    net(images(1))
    for key in ("gradcam", "saliency"):
        with pytest.raises(ValueError, match=r"subclassed keras\.Model.*keras\.Model\(inputs, outputs\)"):
            methods.create(key, net)


def test_a_sequential_model_not_built_yet_is_told_to_build_not_called_subclassed():
    # keras.Sequential without keras.Input has no inputs until built: it was refused as "a subclassed keras.Model"
    # with advice to rebuild it as a functional model, where model.build(...) was all it needed
    layers = [L.Conv2D(4, 3, activation="relu", name="c"), L.GlobalAveragePooling2D(), L.Dense(2, activation="softmax")]
    model = keras.Sequential(layers)
    with pytest.raises(ValueError, match=r"not built yet.*model\.build\(\(None, H, W, C\)\)") as error:
        methods.create("gradcam", model)
    assert "subclassed" not in str(error.value)
    model.build((None, SIZE, SIZE, 3))
    x = images(2)
    raw, _ = methods.create("saliency", model).explain(x, np.array([[0], [1]]))
    with tf.GradientTape() as tape:
        tape.watch(tensor := tf.constant(x))
        logits = model.layers[-1].kernel.value  # softmax(h W + b): the logit of class c is (h W + b)_c
        h = keras.ops.mean(model.layers[0](tensor), axis=(1, 2))
        score = tf.reduce_sum(tf.gather(h @ logits + model.layers[-1].bias, [0, 1], batch_dims=1))
    np.testing.assert_allclose(raw[:, 0], np.abs(tape.gradient(score, tensor).numpy()).max(axis=-1), rtol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_an_input_with_nan_or_inf_names_its_sample(bad):
    # TensorFlow's compiled ReLU turns NaN into 0: the maps of a NaN image looked like any other's
    keras.utils.set_random_seed(5)
    model = classifier()
    x = images(3)
    x[1, 5, 7, 0] = bad
    classes = np.zeros((3, 1), np.int32)
    for method in (methods.create("gradcam", model), methods.create("saliency", model)):
        with pytest.raises(ValueError, match=r"sample 'b': its input holds NaN or infinite values"):
            method.explain(x, classes, ids=["a", "b", "c"])
    family = CAMFamily([methods.create("gradcam", model), methods.create("layercam", model)])
    with pytest.raises(ValueError, match=r"sample #1: its input holds NaN"):
        family.explain(x, classes)
    x[1, 5, 7, 0] = 0.5  # the same batch, finite: explained
    assert np.isfinite(methods.create("gradcam", model).explain(x, classes)[1]).all()


def test_inputs_of_another_shape_say_the_shape_the_model_takes():
    model = classifier()
    method = methods.create("gradcam", model)
    with pytest.raises(ValueError, match=r"batch \(batch, 32, 32, 3\).*got shape \(1, 28, 28, 3\)$"):
        method.explain(np.zeros((1, 28, 28, 3), np.float32), np.zeros((1, 1), np.int32))
    with pytest.raises(ValueError, match=r"got shape \(32, 32, 3\); one sample without its batch axis"):
        method.explain(np.zeros((SIZE, SIZE, 3), np.float32), np.zeros((1, 1), np.int32))
