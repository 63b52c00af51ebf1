"""The stages' checks of their inputs: the model's output size against the classes, non-finite samples."""

from __future__ import annotations

import numpy as np
import pytest

from xaipipe.preprocess import Preprocessing
from xaipipe.stages import predict_shard, preprocess_shard
from xaipipe.writers import write_png


def dense_model(n_outputs: int, path) -> None:
    import keras

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(n_outputs, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(path)


def shard(tmp_path, labels, class_names):
    paths = []
    for k in range(len(labels)):
        paths.append(tmp_path / f"s{k}.png")
        write_png(paths[-1], np.full((8, 8), 10 * k, np.uint8))
    out = tmp_path / "pre.h5"
    pre = Preprocessing(size=(8, 8), channels=1, standardize="tf")
    preprocess_shard(paths, [f"s{k}" for k in range(len(labels))], labels, class_names, pre, out)
    return out


def test_a_model_with_more_outputs_than_class_subfolders_is_refused(tmp_path):
    # 3 class subfolders, a model with 4 outputs: the heatmaps of 'all' targets would name the wrong classes
    pre = shard(tmp_path, [0, 1, 2], ["a", "b", "c"])
    dense_model(4, tmp_path / "four.keras")
    with pytest.raises(ValueError, match=r"four\.keras.*4 outputs.*3 classes \(a, b, c\)"):
        predict_shard(pre, tmp_path / "four.keras", tmp_path / "p.h5", batch_size=2)
    assert not (tmp_path / "p.h5").exists()
    dense_model(3, tmp_path / "three.keras")
    predict_shard(pre, tmp_path / "three.keras", tmp_path / "p.h5", batch_size=2)
    assert (tmp_path / "p.h5").exists()


@pytest.mark.parametrize("activation", [None, "hard_sigmoid"])
def test_a_one_unit_model_without_a_sigmoid_is_not_taken_for_two_classes(tmp_path, activation):
    """A Dense(1) head trained with from_logits=True and classes [neg, pos]: it was counted as two classes (as a
    sigmoid model is), then predicted as one score: without labels every sample 'predicted' class 0 and the class
    names were lost; with labels the predictions table crashed with an IndexError."""
    import keras

    inputs = keras.Input((8, 8, 1))
    head = keras.layers.Dense(1, activation=activation)(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, head).save(tmp_path / "one.keras")
    paths = [tmp_path / "s0.png", tmp_path / "s1.png"]
    for k, path in enumerate(paths):
        write_png(path, np.full((8, 8), 10 * k, np.uint8))
    pre = Preprocessing(size=(8, 8), channels=1, standardize="tf")
    for labels, names in (([0, 1], ["neg", "pos"]), (None, ["neg", "pos"]), (None, None)):
        preprocess_shard(paths, ["s0", "s1"], labels, names, pre, tmp_path / "pre.h5")
        if names is None:  # no classes, no labels: one score (class 0), as documented
            predict_shard(tmp_path / "pre.h5", tmp_path / "one.keras", tmp_path / "p.h5", batch_size=2)
            continue
        with pytest.raises(ValueError, match=r"one\.keras has one output without a sigmoid.*Activation\('sigmoid'\)"):
            predict_shard(tmp_path / "pre.h5", tmp_path / "one.keras", tmp_path / "p.h5", batch_size=2)


def test_an_integer_label_beyond_the_model_outputs_is_refused(tmp_path):
    pre = shard(tmp_path, [0, 3], None)  # integer labels, no class names
    dense_model(3, tmp_path / "m.keras")
    with pytest.raises(ValueError, match=r"m\.keras.*3 outputs.*sample 's1'.*label 3"):
        predict_shard(pre, tmp_path / "m.keras", tmp_path / "p.h5", batch_size=2)


@pytest.mark.parametrize(
    "size, shape, bad",
    [
        ((8, 8), (8, 8), (slice(0, 1), slice(0, 3))),  # 2D: a row of 3 values
        ((4, 8, 8), (4, 8, 8), (slice(1, 3), slice(2, 4), slice(0, 5))),  # 3D: a 2x2x5 block
    ],
)
def test_non_finite_sample_values_are_an_error_naming_the_sample_file_and_count(tmp_path, size, shape, bad):
    from xaipipe.errors import SampleError

    good = np.ones(shape, np.float32)
    corrupt = good.copy()
    corrupt[bad] = np.nan
    corrupt.flat[-1] = np.inf  # outside the block
    n_bad = int(np.prod([s.stop - s.start for s in bad])) + 1
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "bad.npy", corrupt)
    interpolation = "linear" if len(size) == 3 else "area"
    pre = Preprocessing(size=size, channels=1, standardize="minmax", interpolation=interpolation)
    paths = [tmp_path / "good.npy", tmp_path / "bad.npy"]
    with pytest.raises(SampleError, match=rf"sample 'case/bad'.*bad\.npy.*{n_bad} non-finite values") as caught:
        preprocess_shard(paths, ["case/good", "case/bad"], None, None, pre, tmp_path / "pre.h5")
    assert caught.value.sample_id == "case/bad" and isinstance(caught.value, ValueError)
    assert not (tmp_path / "pre.h5").exists()


def test_the_configured_classes_of_unlabelled_images_are_checked_against_the_model(tmp_path):
    # images in a plain folder with config classes [red, blue]: a 3-output model ran, its columns p_0, p_1, p_2
    from xaipipe.config import ModelSpec, check_model_files
    from xaipipe.samples import discover_folder

    for name in ("x.png", "y.png"):
        write_png(tmp_path / "images" / name, np.zeros((8, 8), np.uint8))
    sheet = discover_folder(tmp_path / "images", classes=["red", "blue"])
    dense_model(3, tmp_path / "three.keras")
    pre = {"size": [8, 8], "channels": 1}
    spec = ModelSpec("model", str(tmp_path / "three.keras"), str(tmp_path), pre, str(tmp_path), {})
    with pytest.raises(ValueError, match=r"model.path: .*three\.keras has 3 outputs but the samples have 2 classes"):
        check_model_files({"model": spec}, sheet, several=False)
    dense_model(2, tmp_path / "two.keras")
    check_model_files({"model": ModelSpec("model", str(tmp_path / "two.keras"), "", pre, "", {})}, sheet, False)


def test_a_model_file_that_is_not_there_names_its_key(tmp_path):
    # models.mb.path to a file that does not exist: the run printed Snakemake's banner, then a MissingInputException
    # of rule model_checksum naming the file alone (and the layer checks of that model were passed over)
    from xaipipe.config import ModelSpec, check_model_files
    from xaipipe.samples import discover_folder

    write_png(tmp_path / "images" / "x.png", np.zeros((8, 8), np.uint8))
    sheet = discover_folder(tmp_path / "images")
    pre = {"size": [8, 8], "channels": 1}
    dense_model(2, tmp_path / "two.keras")
    specs = {name: ModelSpec(name, str(tmp_path / file), "", pre, "", {}) for name, file in
             [("ma", "two.keras"), ("mb", "nope.keras")]}  # fmt: skip
    with pytest.raises(ValueError, match=r"config key models\.mb\.path: no model file .*nope\.keras"):
        check_model_files(specs, sheet, True)
    with pytest.raises(ValueError, match=r"config key model\.path: no model file .*nope\.keras"):
        check_model_files({"model": specs["mb"]}, sheet, False)
    check_model_files(specs, sheet, True, demo=True)  # the demo's models: built by its jobs


def test_a_bad_default_layer_is_blamed_on_its_own_key_not_on_the_method_that_took_it(tmp_path):
    # models.mb.layer: nope stopped as "config key methods[0] (gradcam): parameter 'layer'": the entry sets no layer
    import keras

    from xaipipe.config import check_model_files, model_specs
    from xaipipe.samples import discover_folder

    write_png(tmp_path / "images" / "x.png", np.zeros((8, 8), np.uint8))
    sheet = discover_folder(tmp_path / "images")
    inputs = keras.Input((8, 8, 1))
    conv = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(conv))).save(
        tmp_path / "m.keras"
    )
    config = {
        "output": str(tmp_path / "out"), "model": {"path": None, "layer": None}, "score": "logits",
        "preprocessing": {"size": [8, 8], "channels": 1, "standardize": "tf"}, "methods": ["gradcam", "saliency"],
        "models": {"ma": {"path": str(tmp_path / "m.keras")},
                   "mb": {"path": str(tmp_path / "m.keras"), "layer": "nope"}},
    }  # fmt: skip
    specs = model_specs(config)
    assert (specs["ma"].variants["gradcam"].layer_key, specs["mb"].variants["gradcam"].layer_key) == (
        "model.layer", "models.mb.layer"
    )
    assert specs["mb"].variants["saliency"].layer_key is None  # takes no layer
    with pytest.raises(ValueError, match=r"^config key models\.mb\.layer: layer 'nope' not found .*\(the default "
                       r"layer of methods\[0\] \(gradcam\) on model 'mb': correct it, or set the method's own"):
        check_model_files(specs, sheet, True)
    config["methods"] = [{"name": "gradcam", "layer": "nope"}]  # the entry's own layer: the entry is at fault
    specs = model_specs(config)
    assert specs["mb"].variants["gradcam"].layer_key is None
    with pytest.raises(ValueError, match=r"^config key methods\[0\] \(gradcam\): parameter 'layer'"):
        check_model_files(specs, sheet, True)


def test_patient_folders_of_volumes_taken_as_classes_are_said(tmp_path):
    """DICOM's usual layout, a folder per patient (pat1/ct/IM*), was read as classes by class_subfolders: auto:
    labels pat1 and pat2, columns p_pat1 and p_pat2, without a word where the model had two outputs. Volumes'
    guessed classes are now said at the start of a run; a count that does not fit says how to turn them off."""
    from xaipipe.config import ModelSpec, check_model_files, folder_classes, folder_classes_warning
    from xaipipe.samples import discover_folder

    for name in ("pat1/ct.npy", "pat2/ct.npy", "pat3/ct.npy"):
        (tmp_path / "images" / name).parent.mkdir(parents=True)
        np.save(tmp_path / "images" / name, np.zeros((4, 4, 4), np.float32))
    sheet = discover_folder(tmp_path / "images", "auto", (), series_folders=True)
    assert sheet.class_names == ("pat1", "pat2", "pat3")
    config = {"demo": {"build": False}, "classes": [], "preprocessing": {"size": [4, 4, 4]},
              "data": {"samples": None, "class_subfolders": "auto", "images": str(tmp_path / "images")}}  # fmt: skip
    assert folder_classes(config, sheet)
    warning = folder_classes_warning(config, sheet)
    assert "(pat1, pat2, pat3) are taken as the classes" in warning and "class_subfolders: false" in warning
    # confirmed classes, or folders set explicitly: nothing to say
    for change in ({"classes": ["pat1", "pat2", "pat3"]}, {"data": {**config["data"], "class_subfolders": True}}):
        changed = {**config, **change}
        assert not folder_classes(changed, sheet) and folder_classes_warning(changed, sheet) is None
    dense_model(2, tmp_path / "two.keras")
    spec = ModelSpec("model", str(tmp_path / "two.keras"), str(tmp_path), {"size": [4, 4], "channels": 1}, "", {})
    with pytest.raises(ValueError, match="2 outputs but the samples have 3 classes.*set data.class_subfolders: false"):
        check_model_files({"model": spec}, sheet, False, guessed=True)
    with pytest.raises(ValueError) as plain:
        check_model_files({"model": spec}, sheet, False)
    assert "class_subfolders" not in str(plain.value)


def test_patient_folders_of_2d_images_taken_as_classes_are_said(tmp_path):
    # patient_01/scan0.png, patient_02/...: with a two-output model, predictions.tsv had columns p_patient_01 and
    # p_patient_02, each patient was a label and targets: label explained output 0 for one, 1 for the other, and the
    # run ended "0 samples skipped, 0 warnings"
    from xaipipe.config import folder_classes_warning
    from xaipipe.samples import discover_folder

    for name in ("patient_02/scan0.png", "patient_02/scan1.png", "patient_01/scan0.png"):
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        write_png(tmp_path / "images" / name, np.zeros((8, 8), np.uint8))
    sheet = discover_folder(tmp_path / "images", "auto", ())
    config = {"demo": {"build": False}, "classes": [], "preprocessing": {"size": [8, 8]},
              "data": {"samples": None, "class_subfolders": "auto", "images": str(tmp_path / "images")}}  # fmt: skip
    warning = folder_classes_warning(config, sheet)
    assert "(patient_01, patient_02) are taken as the classes, in this order for the model's outputs" in warning
    assert folder_classes_warning({**config, "classes": ["patient_01", "patient_02"]}, sheet) is None
    assert folder_classes_warning({**config, "demo": {"build": True}}, sheet) is None  # the demo's own classes


def test_a_one_unit_sigmoid_with_one_class_name_asks_for_both(tmp_path):
    """classes: [abnormal] for a one-unit sigmoid stopped with '1 outputs but the samples have 1 classes', which
    contradicts itself; it now says the sigmoid is two classes and how to name them."""
    from xaipipe.stages import check_model_classes

    with pytest.raises(ValueError) as caught:
        check_model_classes("m.keras", 1, ["abnormal"], [], [], sigmoid=True)
    assert "has 1 output but the samples have 1 class (abnormal)" in str(caught.value)
    assert "[1 - p, p]" in str(caught.value) and "classes: [not_abnormal, abnormal]" in str(caught.value)
