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
