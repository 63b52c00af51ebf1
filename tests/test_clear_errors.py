"""Bad input gets an error that names the file, key or sample at fault and says what to do."""

from __future__ import annotations

import pytest

from xaipipe.model import load_model


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("model.keras", b"hello", "a .keras file is a zip archive"),
        ("model.h5", b"not hdf5", "a .h5 model is an HDF5 file"),
        ("model.png", b"\x89PNG\r\n\x1a\n", "must end in .keras"),
    ],
)
def test_a_file_that_is_not_a_keras_model_is_named_as_such(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        load_model(path)
    message = str(error.value)
    assert str(path) in message and expected in message
    assert "not found" not in message.lower()


def test_a_missing_model_file_is_reported_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "absent.keras")


def sheet(*ids):
    from xaipipe.samples import SampleSheet

    return SampleSheet(tuple(ids))


@pytest.mark.parametrize(
    ("ids", "named"),
    [
        (("a/b.png", "a.b.png"), ("a/b.png", "a.b.png")),
        (("x/case.nii.gz", "x.case.nii"), ("x/case.nii.gz", "x.case.nii")),
    ],
)
def test_ids_that_give_one_output_name_are_both_named(ids, named):
    from xaipipe.config import check_sample_ids

    with pytest.raises(ValueError) as error:
        check_sample_ids(sheet("c.png", *ids))
    assert all(repr(i) in str(error.value) for i in named)
    assert "data.images" in str(error.value)


@pytest.mark.parametrize("sample_id", ["scan{1}.png", "a}/b.png"])
def test_ids_with_braces_are_refused_at_parse_time(sample_id):
    from xaipipe.config import check_sample_ids

    with pytest.raises(ValueError, match="wildcard") as error:
        check_sample_ids(sheet("ok.png", sample_id), "data.samples")
    assert repr(sample_id) in str(error.value) and "data.samples" in str(error.value)


@pytest.mark.parametrize(("sample_id", "plain"), [("./sub/a.png", "sub/a.png"), ("sub//a.png", "sub/a.png"),
                                                ("sub/./a.png", "sub/a.png"), ("x/../sub/a.png", "sub/a.png")])
def test_ids_that_are_no_plain_paths_are_refused(sample_id, plain):
    """A table listing sub/a.png as cat and ./sub/a.png as dog gave one image two rows with two labels."""
    from xaipipe.config import check_sample_ids

    with pytest.raises(ValueError, match="not a plain relative path") as error:
        check_sample_ids(sheet("sub/a.png", sample_id), "data.samples")
    assert f"write it as {plain!r}" in str(error.value) and repr(sample_id) in str(error.value)


@pytest.mark.parametrize("sample_id", ["scan\t1.png", "a\nb.png", "c\rd.png"])
def test_ids_with_a_tab_or_line_break_are_refused(sample_id):
    # a file named with a tab gave a row of 6 fields under predictions.tsv's 5 columns, without a word
    from xaipipe.config import check_sample_ids

    with pytest.raises(ValueError, match="tab or line break.*predictions.tsv") as error:
        check_sample_ids(sheet("ok.png", sample_id))
    assert repr(sample_id) in str(error.value) and "data.images" in str(error.value)


def test_distinct_ids_pass():
    from xaipipe.config import check_sample_ids

    check_sample_ids(sheet("a/b.png", "a/c.png", "a.d.png"))


def test_the_workflow_stops_before_any_job_on_ids_that_collide(tmp_path):
    """A dry run of a user's folder holding a/b.png and a.b.png stops at parse time naming both."""
    import numpy as np

    from pipeline_runs import snakemake
    from xaipipe.writers import write_png

    images = tmp_path / "images"
    for name in ("a/b.png", "a.b.png"):
        write_png(images / name, np.zeros((8, 8), np.uint8))
    (tmp_path / "model.keras").write_bytes(b"")
    config = {"data": {"images": str(images), "class_subfolders": False}, "model": {"path": str(tmp_path / "model.keras")}}
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "'a.b.png' and 'a/b.png'" in output and "same output name" in output, output[-2000:]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "os", "patch_size": 0}, "patch_size must be a positive integer, got 0"),
        ({"name": "os", "patch_size": 100}, "patch_size 100 is larger than the model input [64, 64]"),
        ({"name": "os", "stride": -2}, "stride must be a positive integer, got -2"),
        ({"name": "ig", "steps": 2.5}, "steps must be a positive integer, got 2.5"),
        ({"name": "ig", "baseline": "white"}, "baseline must be 'zeros', 'black' or a number"),
        ({"name": "ig", "rule": "simpson"}, "rule must be one of ['midpoint', 'trapezoid', 'gauss-legendre']"),
        ({"name": "gc", "precision": "int8"}, "precision must be one of ['float32', 'bfloat16', 'float16'], got 'int8'"),
        ({"name": "lp", "kernel_width": 0}, "kernel_width must be a positive number, got 0"),
        ({"name": "lc", "fill": float("nan")}, "fill must be a number, got nan"),
        ({"name": "sm", "score": "logit"}, "score must be one of ['logits', 'probabilities']"),
    ],
)
def test_method_parameters_are_checked_when_the_config_is_read(entry, expected):
    """Out-of-range parameters stop the run at parse time, naming the entry, before any preprocessing."""
    from xaipipe.config import method_specs

    config = {
        "methods": ["gradcam", entry],
        "model": {"layer": None},
        "score": "logits",
        "preprocessing": {"size": [64, 64]},
    }
    with pytest.raises(ValueError) as error:
        method_specs(config)
    assert str(error.value).startswith(f"config key methods[1] ({entry['name']}): ")
    assert expected in str(error.value)


def test_a_model_whose_input_differs_from_preprocessing_names_both(tmp_path):
    """The predictions stage stops before the model runs: model (32, 32, 3), preprocessing (16, 16, 1)."""
    import keras
    import numpy as np

    from xaipipe import h5store
    from xaipipe.preprocess import Preprocessing
    from xaipipe.stages import predict_shard, preprocess_shard
    from xaipipe.writers import write_png

    image = tmp_path / "a.png"
    write_png(image, np.full((20, 20), 7, np.uint8))
    shard = tmp_path / "shard.h5"
    preprocess_shard([image], ["a.png"], None, None, Preprocessing(size=(16, 16), channels=1), shard)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "m.keras")
    with pytest.raises(ValueError) as error:
        predict_shard(shard, tmp_path / "m.keras", tmp_path / "pred.h5", 4)
    message = str(error.value)
    assert "(32, 32, 3)" in message and "(16, 16, 1)" in message and "preprocessing.size: [32, 32]" in message
    assert not (tmp_path / "pred.h5").exists()
    with h5store.PreprocessedShard.open(shard) as opened:
        assert opened.inputs(slice(0, 1)).shape == (1, 16, 16, 1)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"methods": ["gradcam", {"name": "layercam", "layer": "conv_2"}]},
         "config key methods[1] (layercam): parameter 'layer': layer 'conv_2' not found in model {model}; did you "
         "mean 'conv2'"),
        ({"model": {"layer": "flat"}},  # the default layer's own key, not the entry that took it
         "config key model.layer: layer 'flat' of model {model} has no 4D output; layers that do: ['conv1', "
         "'conv2'] (the default layer of methods[0] (gradcam): correct it, or set the method's own `layer`)"),
        ({"model": {"layer": "flat"}, "methods": [{"name": "gradcam", "layer": "flat"}]},
         "config key methods[0] (gradcam): parameter 'layer': layer 'flat' of model {model} has no 4D output"),
        ({"preprocessing": {"size": [32, 32], "channels": 1}},
         "config key model.path: model {model} takes inputs of shape (16, 16, 1), but preprocessing gives "
         "(32, 32, 1)"),
    ],
)
def test_a_model_that_cannot_serve_the_config_stops_before_any_job(tmp_path, change, expected):
    """What the model file itself shows (its layers, its input shape) is checked when the config is read: a dry
    run stops, naming the key and the model, where the jobs would have preprocessed every image first."""
    import keras
    import numpy as np

    from pipeline_runs import snakemake
    from xaipipe.writers import write_png

    for name in ("a/x.png", "b/y.png"):
        write_png(tmp_path / "images" / name, np.zeros((20, 20), np.uint8))
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten(name="flat")(x))
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")
    config = {
        "data": {"images": str(tmp_path / "images")},
        "model": {"path": str(tmp_path / "model.keras")},
        "preprocessing": {"size": [16, 16], "channels": 1},
        "methods": ["gradcam"],
    }
    changed = {key: {**config[key], **value} if isinstance(value, dict) else value for key, value in change.items()}
    result = snakemake(tmp_path, {**config, **changed}, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected.format(model=tmp_path / "model.keras") in output, output[-2000:]
    if "methods" in change:  # once: the same study with the model's own settings passes
        assert snakemake(tmp_path, config, "-n").returncode == 0


def test_a_cam_method_on_a_model_without_a_spatial_layer_stops_before_any_job(tmp_path):
    import keras
    import numpy as np

    from pipeline_runs import snakemake
    from xaipipe.writers import write_png

    for name in ("a/x.png", "b/y.png"):
        write_png(tmp_path / "images" / name, np.zeros((20, 20), np.uint8))
    mlp = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    mlp.save(tmp_path / "mlp.keras")
    config = {
        "data": {"images": str(tmp_path / "images")},
        "model": {"path": str(tmp_path / "mlp.keras")},
        "preprocessing": {"size": [8, 8], "channels": 1},
        "methods": ["saliency", "scorecam"],
    }
    result = snakemake(tmp_path, config, "-n")
    output = result.stdout + result.stderr
    assert "config key methods[1] (scorecam): parameter 'layer': model" in output, output[-2000:]
    assert "has no layer with a 4D output of more than one position" in output
    config["methods"] = ["saliency", "occlusion"]
    assert snakemake(tmp_path, config, "-n").returncode == 0
