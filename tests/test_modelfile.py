"""The output count read from a saved model file, without loading it, against the loaded model's."""

import keras
import pytest

from xaipipe.modelfile import output_count


def functional(units, head):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(units)(x)
    return keras.Model(inputs, head(x))


@pytest.mark.parametrize(
    "build",
    [
        lambda: functional(3, lambda x: x),
        lambda: functional(5, lambda x: keras.layers.Activation("softmax")(x)),
        lambda: functional(1, lambda x: keras.layers.Dropout(0.1)(keras.layers.Activation("sigmoid")(x))),
        lambda: keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(4),
                                  keras.layers.Softmax()]),
        # a nested model as the last layer
        lambda: keras.Sequential([keras.Input((8, 8, 1)), functional(6, lambda x: x)]),
    ],
)
def test_the_count_read_from_the_file_is_the_loaded_models(tmp_path, build):
    model = build()
    path = tmp_path / "model.keras"
    model.save(path)
    assert output_count(path) == keras.models.load_model(path).output_shape[-1]


def test_unknown_where_the_file_does_not_tell(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x[:, :2])(keras.layers.Dense(4)(inputs)))
    model.save(tmp_path / "lambda.keras")
    assert output_count(tmp_path / "lambda.keras") is None  # a Lambda may change the width
    (tmp_path / "text.keras").write_text("not a model")
    assert output_count(tmp_path / "text.keras") is None
    assert output_count(tmp_path / "missing.keras") is None


# --- the layers and input shape read from the file, against the model Keras loads ---------------------------------


def nested_classifier():
    """A backbone wrapped behind a Rescaling layer, the classifier head outside (a fine-tuning set-up)."""
    backbone = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="c1"), keras.layers.Conv2D(4, 3, name="c2")],
        name="backbone",
    )
    inputs = keras.Input((16, 16, 3))
    x = backbone(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))


def residual_3d():
    inputs = keras.Input((8, 8, 8, 1))
    x = keras.layers.Conv3D(4, 3, padding="same", name="conv_a")(inputs)
    y = keras.layers.Conv3D(4, 3, padding="same", name="conv_b")(x)
    x = keras.layers.MaxPooling3D(name="pool")(keras.layers.Add(name="add")([x, y]))
    x = keras.layers.Conv3D(4, 1, name="one_by_one")(keras.layers.GlobalAveragePooling3D(keepdims=True)(x))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x)))


def shared_conv():
    """One convolution called twice: Keras gives its first call's output."""
    conv = keras.layers.Conv2D(2, 3, padding="same", name="shared")
    inputs = keras.Input((8, 8, 1))
    x = conv(keras.layers.Conv2D(1, 1, name="first")(inputs))
    x = keras.layers.Conv2D(1, 1, name="second")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(conv(x))))


def mlp():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(name="flat"), keras.layers.Dense(2)])


MODELS = {
    "functional": lambda: functional(3, lambda x: keras.layers.Activation("softmax")(x)),
    "nested": nested_classifier,
    "residual_3d": residual_3d,
    "shared": shared_conv,
    "mlp": mlp,
    "mobilenet": lambda: keras.applications.MobileNet(input_shape=(32, 32, 3), weights=None, classes=4, alpha=0.25),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def saved_model(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / f"{request.param}.keras"
    MODELS[request.param]().save(path)
    return path, keras.models.load_model(path)


def test_the_saved_layers_are_the_loaded_models(saved_model):
    from xaipipe.layers import _output_rank, _walk, path_name
    from xaipipe.modelfile import saved_layers

    path, model = saved_model
    saved = saved_layers(path)
    assert saved.input_shape == tuple(model.inputs[0].shape[1:])
    assert saved.complete
    loaded = {
        path_name(p): (tuple(p[-1].output.shape[1:]) if _output_rank(p[-1]) else None) for p in _walk(model.layers)
    }
    assert list(saved.shapes) == list(loaded)  # every layer, in graph order
    output = model.layers[-1].name
    if saved.shapes[output] == (None,):  # the classes are not told (a Reshape before the output): (batch, classes)
        saved.shapes[output] = loaded[output][:1]
        assert len(loaded[output]) == 1
    assert saved.shapes == loaded  # every output shape (None: a layer called twice)


def test_a_layer_is_refused_from_the_file_exactly_where_the_loaded_model_refuses_it(saved_model):
    """layer_problem on the file says what find_target_path says on the loaded model, for every name."""
    from xaipipe.layers import find_target_path
    from xaipipe.modelfile import layer_problem, saved_layers

    path, model = saved_model
    saved = saved_layers(path)
    names = [None, "no_such_layer", *saved.shapes, *{p.split("/")[-1] for p in saved.shapes}]
    for name in names:
        try:
            find_target_path(model, name)
            refused = None
        except ValueError as error:
            refused = str(error)
        problem = layer_problem(saved, name, path)
        assert (problem is None) == (refused is None), (name, problem, refused)
        if problem is not None:
            first = refused.split(";")[0].replace(f"model {model.name!r}", f"model {path}")
            assert problem.startswith(first.split(" to explain")[0]), (problem, refused)


def test_a_misspelt_layer_gets_the_closest_names(saved_model):
    from xaipipe.modelfile import layer_problem, saved_layers

    path, _ = saved_model
    if path.stem != "mobilenet":
        pytest.skip("one model is enough")
    problem = layer_problem(saved_layers(path), "conv_pw_11relu", path)
    assert "did you mean 'conv_pw_11_relu'" in problem and "layers with a 4D output" in problem


def test_custom_layers_and_legacy_files_raise_no_false_alarm(tmp_path):
    """A custom layer may hold layers the file does not show, and a legacy .h5 file does not say which classes
    are Keras's own: a name not seen there is left to the job, which sees the loaded model."""
    from xaipipe.modelfile import layer_problem, saved_layers

    @keras.saving.register_keras_serializable(package="xaipipe_tests")
    class Doubling(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, name="conv")(Doubling(name="double")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten(name="flat")(x)))
    model.save(tmp_path / "custom.keras")
    saved = saved_layers(tmp_path / "custom.keras")
    assert not saved.complete and saved.input_shape == (8, 8, 1)
    assert layer_problem(saved, "inside_double", tmp_path / "custom.keras") is None
    assert "has no 4D output" in layer_problem(saved, "flat", tmp_path / "custom.keras")  # the file tells that
    nested_classifier().save(tmp_path / "legacy.h5")
    legacy = saved_layers(tmp_path / "legacy.h5")
    assert legacy.input_shape == (16, 16, 3) and not legacy.complete
    assert layer_problem(legacy, "backbone/c2", tmp_path / "legacy.h5") is None
    assert layer_problem(legacy, "no_such_layer", tmp_path / "legacy.h5") is None
    assert saved_layers(tmp_path / "missing.keras") is None


@pytest.mark.parametrize(
    ("head", "linear"),
    [
        (lambda x: keras.layers.Dense(3, name="logits")(x), "logits"),
        (lambda x: keras.layers.Activation("linear", name="out")(keras.layers.Dense(3, name="z")(x)), "z"),
        # a mixed-precision head: the softmax, then a float32 cast
        (lambda x: keras.layers.Activation("linear", dtype="float32")(keras.layers.Dense(3, activation="softmax")(x)),
         None),
        (lambda x: keras.layers.Dense(3, activation="softmax")(x), None),
        (lambda x: keras.layers.Activation("softmax")(keras.layers.Dense(3)(x)), None),
        (lambda x: keras.layers.Dense(1, activation="sigmoid")(x), None),
    ],
)
def test_a_head_without_softmax_or_sigmoid_is_told_from_the_file(tmp_path, head, linear):
    """Its outputs are logits, which predictions.tsv would show as probabilities: the run says so."""
    from xaipipe.config import linear_head_warning
    from xaipipe.modelfile import linear_head

    inputs = keras.Input((8, 8, 1))
    keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(inputs))).save(tmp_path / "m.keras")
    assert linear_head(tmp_path / "m.keras") == linear
    warning = linear_head_warning(str(tmp_path / "m.keras"))
    assert (warning is None) == (linear is None)
    if linear:
        assert f"output layer {linear!r} is linear" in warning and "not probabilities" in warning
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="last")])
    sequential.save(tmp_path / "s.keras")
    assert linear_head(tmp_path / "s.keras") == "last"


@pytest.mark.parametrize(
    ("head", "multi"),
    [
        (lambda x: keras.layers.Dense(3, activation="sigmoid", name="findings")(x), "findings"),
        (lambda x: keras.layers.Activation("sigmoid", name="p")(keras.layers.Dense(3)(x)), "p"),
        (lambda x: keras.layers.Activation("linear", dtype="float32")(keras.layers.Dense(4, activation="sigmoid",
                                                                                         name="mp")(x)), "mp"),
        (lambda x: keras.layers.Dense(1, activation="sigmoid")(x), None),  # binary: [1 - p, p], exclusive
        (lambda x: keras.layers.Dense(3, activation="softmax")(x), None),
        (lambda x: keras.layers.Dense(3)(x), None),
    ],
)  # fmt: skip
def test_a_multi_label_head_is_told_from_the_file_and_said(tmp_path, head, multi):
    """A model of several sigmoid outputs (chest X-ray findings) ran as if its classes were exclusive: an image
    with no finding was 'predicted nodule' (the highest of three 0.08s), targets: argmax explained that, and an
    image with two findings was 'misclassified'; nothing said so (a helper's study). The run now says it."""
    from xaipipe.config import multi_label_warning
    from xaipipe.modelfile import multi_label_head

    inputs = keras.Input((8, 8, 1))
    keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(inputs))).save(tmp_path / "m.keras")
    assert multi_label_head(tmp_path / "m.keras") == multi
    warning = multi_label_warning(str(tmp_path / "m.keras"), "argmax")
    assert (warning is None) == (multi is None)
    if multi:
        assert f"output layer {multi!r}: a multi-label model" in warning and "set targets: all" in warning
        assert "set targets: all" not in multi_label_warning(str(tmp_path / "m.keras"), "all")
