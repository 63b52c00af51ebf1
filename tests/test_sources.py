"""Sample tables, subfunctions and loaders, against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xaipipe.preprocess import Preprocessing, resize
from xaipipe.readers import load_sample
from xaipipe.samples import read_csv, read_json, sample_path
from xaipipe.subfunctions import Clip, ColorConstancy, Crop, Padding, Pipeline, from_config
from xaipipe.writers import write_nifti, write_png


def test_csv_with_class_names(tmp_path):
    (tmp_path / "s.csv").write_text("SAMPLE,CLASS\na,cat\nb,dog\nc,cat\n")
    sheet = read_csv(tmp_path / "s.csv", classes=["dog", "cat"])
    assert sheet.ids == ("a", "b", "c") and sheet.class_names == ("dog", "cat") and sheet.labels == (1, 0, 1)


def test_csv_with_indices_and_configured_names(tmp_path):
    (tmp_path / "s.csv").write_text("id,diagnosis\na,2\nb,0\n")
    sheet = read_csv(tmp_path / "s.csv", "id", "diagnosis", classes=["x", "y", "z"])
    assert sheet.labels == (2, 0) and sheet.class_names == ("x", "y", "z")
    sheet = read_csv(tmp_path / "s.csv", "id", "diagnosis")
    assert sheet.labels == (2, 0) and sheet.class_names is None


def test_class_names_that_are_numbers_are_read_as_names_not_indices(tmp_path):
    """Graded classes (G1-G3, BI-RADS 1-5) named by their numbers: label '1' is the class named '1' (index 0),
    not index 1; it had shifted every label by one, each map explaining the next grade."""
    (tmp_path / "s.csv").write_text("SAMPLE,CLASS\na,1\nb,2\nc,1\nd,3\n")
    sheet = read_csv(tmp_path / "s.csv", classes=["1", "2", "3"])
    assert sheet.labels == (0, 1, 0, 2) and sheet.class_names == ("1", "2", "3")
    (tmp_path / "s.json").write_text(json.dumps({"a": "1", "b": 3, "c": "2"}))
    assert read_json(tmp_path / "s.json", classes=["1", "2", "3"]).labels == (0, 2, 1)
    # a number that is no class name would be read as an index into names that are numbers: ambiguous
    (tmp_path / "z.csv").write_text("SAMPLE,CLASS\na,1\nb,0\n")
    message = r"sample 'b' \(row 3\): label '0' is not one of the classes 1, 2, 3 .*read as class names"
    with pytest.raises(ValueError, match=message):
        read_csv(tmp_path / "z.csv", classes=["1", "2", "3"])
    # names that equal their indices read alike either way
    (tmp_path / "b.csv").write_text("SAMPLE,CLASS\na,1\nb,0\n")
    assert read_csv(tmp_path / "b.csv", classes=["0", "1"]).labels == (1, 0)


def test_csv_one_hot_and_no_labels(tmp_path):
    (tmp_path / "s.csv").write_text("SAMPLE,benign,malignant\na,1,0\nb,0,1\n")
    sheet = read_csv(tmp_path / "s.csv", class_columns=["benign", "malignant"])
    assert sheet.labels == (0, 1) and sheet.class_names == ("benign", "malignant")
    (tmp_path / "n.csv").write_text("SAMPLE\na\nb\n")
    assert read_csv(tmp_path / "n.csv").labels is None


def test_a_table_of_ids_alone_keeps_the_configured_class_names(tmp_path):
    # they name the model's outputs, as for a folder without class subfolders; they were dropped, and the
    # predictions, summary and gallery named the classes 0, 1, ... instead
    (tmp_path / "n.csv").write_text("SAMPLE\na\nb\n")
    sheet = read_csv(tmp_path / "n.csv", classes=["disk", "square", "none"])
    assert sheet.labels is None and sheet.class_names == ("disk", "square", "none")
    assert read_csv(tmp_path / "n.csv").class_names is None


def test_a_mask_column_is_no_label_column(tmp_path):
    # ids and masks, no labels (an unlabelled or multi-label study): the mask column was taken as the class column
    # ("label 'masks/m_00.png' is not one of the classes"), and with a dummy column "several columns besides SAMPLE"
    (tmp_path / "m.csv").write_text("SAMPLE,mask\na.png,masks/a.png\nb.png,\n")
    sheet = read_csv(tmp_path / "m.csv", classes=["x", "y"], not_labels=["mask"])
    assert sheet.ids == ("a.png", "b.png") and sheet.labels is None and sheet.class_names == ("x", "y")
    (tmp_path / "l.csv").write_text("SAMPLE,mask,finding\na.png,masks/a.png,y\nb.png,,x\n")
    assert read_csv(tmp_path / "l.csv", classes=["x", "y"], not_labels=["mask"]).labels == (1, 0)
    with pytest.raises(ValueError, match="not one of the classes"):
        read_csv(tmp_path / "m.csv", classes=["x", "y"])  # the column taken as labels where nothing says it is masks


def test_csv_errors_name_the_column_or_row(tmp_path):
    (tmp_path / "s.csv").write_text("SAMPLE,benign,malignant\na,1,1\n")
    with pytest.raises(ValueError, match="several columns"):
        read_csv(tmp_path / "s.csv")
    with pytest.raises(ValueError, match="label column 'CLASS' does not exist"):
        read_csv(tmp_path / "s.csv", class_column="CLASS")
    with pytest.raises(ValueError, match="row 2.*not one-hot"):
        read_csv(tmp_path / "s.csv", class_columns=["benign", "malignant"])
    with pytest.raises(ValueError, match="no id column 'ID'"):
        read_csv(tmp_path / "s.csv", id_column="ID")
    (tmp_path / "d.csv").write_text("SAMPLE,CLASS\na,1\na,0\n")
    with pytest.raises(ValueError, match="d.csv: sample id 'a' is listed twice"):
        read_csv(tmp_path / "d.csv")
    (tmp_path / "e.csv").write_text("SAMPLE,CLASS\n")
    with pytest.raises(ValueError, match="empty"):
        read_csv(tmp_path / "e.csv")


def test_json_names_indices_one_hot_and_duplicates(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"x": "dog", "y": "cat"}))
    sheet = read_json(tmp_path / "a.json", classes=["cat", "dog"])
    assert sheet.labels == (1, 0) and sheet.class_names == ("cat", "dog")
    (tmp_path / "b.json").write_text(json.dumps({"x": [0, 0, 1], "y": [1, 0, 0]}))
    assert read_json(tmp_path / "b.json").labels == (2, 0)
    (tmp_path / "c.json").write_text(json.dumps({"x": 1, "y": 0}))
    assert read_json(tmp_path / "c.json").labels == (1, 0) and read_json(tmp_path / "c.json").class_names is None
    (tmp_path / "d.json").write_text('{"x": 1, "x": 0}')
    with pytest.raises(ValueError, match="'x' is listed twice"):
        read_json(tmp_path / "d.json")


def test_ids_with_or_without_extension():
    assert sample_path("d", "a/b", "png").as_posix() == "d/a/b.png"
    assert sample_path("d", "a/b.png", "png").as_posix() == "d/a/b.png"
    assert sample_path("d", "ct.nii.gz", "nii.gz").as_posix() == "d/ct.nii.gz"
    assert sample_path("d", "case.01", "png").as_posix() == "d/case.01.png"


def test_padding_square_and_to_a_shape():
    image = np.ones((2, 4), np.uint8)
    padded = Padding()(image, 2, np.random.default_rng(0))
    assert padded.shape == (4, 4) and padded[0].sum() == 0 and padded[1:3].sum() == 8
    volume = np.ones((2, 3, 4, 3), np.float32)
    out = Padding((4, 3, 6), "edge")(volume, 3, np.random.default_rng(0))
    assert out.shape == (4, 3, 6, 3) and out.min() == 1.0


def test_crop_center_and_seeded_random():
    image = np.arange(36).reshape(6, 6)
    np.testing.assert_array_equal(Crop((2, 2))(image, 2, np.random.default_rng(0)), [[14, 15], [20, 21]])
    crops = [Pipeline([Crop((3, 3), "random")], seed=5)(image, 2, sample_index=i) for i in range(4)]
    again = [Pipeline([Crop((3, 3), "random")], seed=5)(image, 2, sample_index=i) for i in range(4)]
    assert all((a == b).all() for a, b in zip(crops, again))
    assert len({c.tobytes() for c in crops}) > 1
    volume = np.zeros((8, 8, 8))
    assert Crop((4, 2, 6))(volume, 3, np.random.default_rng(0)).shape == (4, 2, 6)
    with pytest.raises(ValueError, match="larger than the image"):
        Crop((9, 9))(image, 2, np.random.default_rng(0))


def test_clip_global_and_per_channel():
    hu = np.array([-2000, -500, 0, 3000], np.int16)
    np.testing.assert_array_equal(Clip(-1000, 1000)(hu, 1, None), [-1000, -500, 0, 1000])
    rgb = np.array([[[10.0, 100.0, 200.0]]])
    np.testing.assert_array_equal(Clip([20, 0, 0], [255, 50, 255])(rgb, 2, None), [[[20, 50, 200]]])


def test_color_constancy_makes_the_illuminant_gray():
    image = np.zeros((4, 4, 3), np.float32)
    image[...] = (200.0, 100.0, 50.0)  # a reddish cast
    out = ColorConstancy(power=6)(image, 2, None)
    assert np.allclose(out[0, 0, 0], out[0, 0, 1]) and np.allclose(out[0, 0, 1], out[0, 0, 2])
    np.testing.assert_allclose(out[0, 0, 0], np.linalg.norm([200, 100, 50]) / np.sqrt(3), rtol=1e-5)


def test_subfunctions_run_before_resize_and_standardize():
    config = {
        "size": [2, 2], "channels": 1, "standardize": "none", "interpolation": "nearest",
        "subfunctions": [{"name": "crop", "shape": [2, 2]}, {"name": "clip", "max": 10}],
    }  # fmt: skip
    pre = Preprocessing.from_config(config)
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    np.testing.assert_array_equal(pre.model_input(image)[..., 0], [[5, 6], [9, 10]])
    with pytest.raises(ValueError, match=r"subfunctions\[0\]: unknown subfunction 'blur'"):
        Preprocessing.from_config({**config, "subfunctions": [{"name": "blur"}]})
    with pytest.raises(ValueError, match="crop"):
        from_config({"name": "crop", "shape": [2, 2], "size": 3})


def test_volume_resize_linear_and_nearest():
    volume = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    assert resize(volume, (4, 4, 4), "linear").shape == (4, 4, 4)
    nearest = resize(volume, (4, 4, 4), "nearest")
    assert set(np.unique(nearest)) == set(range(8)) and nearest[0, 0, 0] == 0 and nearest[3, 3, 3] == 7
    with pytest.raises(ValueError, match="nearest or linear|'nearest', 'linear'"):
        Preprocessing(size=(4, 4, 4), interpolation="area")


def test_load_sample_refuses_the_wrong_kind(tmp_path):
    write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 5, 6), np.float32), (1.0, 1.0, 1.0))
    write_png(tmp_path / "i.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="v.nii.gz: a volume where a 2D image is expected"):
        load_sample(tmp_path / "v.nii.gz", 2)
    with pytest.raises(ValueError, match="i.png: a 2D image where a volume is expected"):
        load_sample(tmp_path / "i.png", 3)
    volume, geometry = load_sample(tmp_path / "v.nii.gz", 3)
    assert volume.shape == (4, 5, 6) and geometry.spacing == (1.0, 1.0, 1.0)
    np.save(tmp_path / "a.npy", np.ones((3, 3, 3, 3, 3)))
    with pytest.raises(ValueError, match="a.npy"):
        load_sample(tmp_path / "a.npy", 2)


def test_gray_image_for_rgb_model_and_rgba_for_gray_model(tmp_path):
    import cv2

    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 200
    bgra[..., 3] = 255
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    image, _ = load_sample(tmp_path / "rgba.png", 2)
    gray_input = Preprocessing(size=(4, 4), channels=1, standardize="none").model_input(image)
    assert gray_input.shape == (4, 4, 1) and gray_input[0, 0, 0] == round(0.299 * 200)
    write_png(tmp_path / "g.png", np.full((4, 4), 90, np.uint8))
    rgb_input = Preprocessing(size=(4, 4), channels=3, standardize="none").model_input(load_sample(tmp_path / "g.png", 2)[0])
    assert rgb_input.shape == (4, 4, 3) and (rgb_input == 90).all()


def test_auto_interpolation_suits_the_input_kind():
    base = {"channels": 1, "standardize": "none"}
    assert Preprocessing.from_config({**base, "size": [8, 8], "interpolation": "auto"}).interpolation == "area"
    assert Preprocessing.from_config({**base, "size": [8, 8, 8], "interpolation": "auto"}).interpolation == "linear"
    with pytest.raises(ValueError, match="interpolation must be one of"):
        Preprocessing.from_config({**base, "size": [8, 8, 8], "interpolation": "area"})


# --- class order comes from the config, the subfolders or the one-hot columns, never from the labels present


def test_csv_class_names_without_configured_classes_are_refused(tmp_path):
    # the example: labels cover two of three classes; sorting them made 'normal' class 1
    (tmp_path / "s.csv").write_text("SAMPLE,CLASS\na,normal\nb,benign\nc,normal\n")
    with pytest.raises(ValueError, match=r"s\.csv.*\['benign', 'normal'\].*set `classes`.*output order"):
        read_csv(tmp_path / "s.csv")
    sheet = read_csv(tmp_path / "s.csv", classes=["benign", "malignant", "normal"])
    assert sheet.labels == (2, 0, 2) and sheet.class_names == ("benign", "malignant", "normal")


def test_csv_label_outside_the_classes_names_the_sample_row_and_label(tmp_path):
    (tmp_path / "s.csv").write_text("SAMPLE,CLASS\na,benign\nb,malignent\n")
    with pytest.raises(ValueError, match=r"s\.csv.*sample 'b' \(row 3\).*'malignent'.*benign, malignant, normal"):
        read_csv(tmp_path / "s.csv", classes=["benign", "malignant", "normal"])
    (tmp_path / "i.csv").write_text("SAMPLE,CLASS\na,0\nb,3\n")
    with pytest.raises(ValueError, match=r"sample 'b' \(row 3\).*'3'"):
        read_csv(tmp_path / "i.csv", classes=["benign", "malignant", "normal"])


def test_json_misspelled_label_is_an_error_with_or_without_classes(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"x": "cat", "y": "dgo"}))
    with pytest.raises(ValueError, match=r"a\.json.*\['cat', 'dgo'\].*set `classes`"):
        read_json(tmp_path / "a.json")
    with pytest.raises(ValueError, match=r"a\.json.*sample 'y'.*'dgo'"):
        read_json(tmp_path / "a.json", classes=["cat", "dog"])


def test_integer_labels_without_classes_keep_their_indices_and_leave_the_names_unknown(tmp_path):
    (tmp_path / "s.csv").write_text("SAMPLE,CLASS\na,2\nb,0\n")
    sheet = read_csv(tmp_path / "s.csv")
    assert sheet.labels == (2, 0) and sheet.class_names is None
    (tmp_path / "n.csv").write_text("SAMPLE,CLASS\na,-1\n")
    with pytest.raises(ValueError, match=r"sample 'a' \(row 2\).*'-1'"):
        read_csv(tmp_path / "n.csv")


def test_one_hot_columns_and_configured_classes_must_agree(tmp_path):
    (tmp_path / "s.csv").write_text("SAMPLE,malignant,benign\na,1,0\nb,0,1\n")
    sheet = read_csv(tmp_path / "s.csv", class_columns=["malignant", "benign"], classes=["benign", "malignant"])
    assert sheet.labels == (1, 0) and sheet.class_names == ("benign", "malignant")
    with pytest.raises(ValueError, match=r"one-hot columns \['malignant', 'benign'\].*classes"):
        read_csv(tmp_path / "s.csv", class_columns=["malignant", "benign"], classes=["benign", "malignant", "normal"])
    (tmp_path / "w.json").write_text(json.dumps({"x": [0, 1], "y": [0, 0, 1]}))
    with pytest.raises(ValueError, match=r"sample 'y'.*3 entries.*2"):
        read_json(tmp_path / "w.json")


def test_csv_with_a_byte_order_mark_and_short_rows(tmp_path):
    (tmp_path / "s.csv").write_bytes("\ufeffSAMPLE,CLASS\na,1\nb,0\n".encode())
    assert read_csv(tmp_path / "s.csv").ids == ("a", "b")
    (tmp_path / "m.csv").write_text("SAMPLE,CLASS\na,1\nb\n")
    with pytest.raises(ValueError, match=r"sample 'b' \(row 3\).*no label"):
        read_csv(tmp_path / "m.csv")
    (tmp_path / "e.csv").write_text("SAMPLE,CLASS\na,1\n,0\n")
    with pytest.raises(ValueError, match=r"e\.csv row 3: no sample id"):
        read_csv(tmp_path / "e.csv")


@pytest.mark.parametrize(
    "entry, message",
    [  # found by the property tests: each raised ZeroDivisionError or TypeError, or passed silently
        ({"name": "color_constancy", "power": 0}, "power must be a number of at least 1, got 0"),
        ({"name": "color_constancy", "power": "six"}, "power must be a number of at least 1, got 'six'"),
        ({"name": "crop", "shape": [2.5, 3]}, r"crop shape must be a list of whole sizes of at least 1, got \[2.5, 3\]"),
        ({"name": "crop", "shape": 4}, r"crop shape must be a list of whole sizes of at least 1, got 4"),
        ({"name": "padding", "shape": [2.5, 10]}, r"padding shape must be 'square' or a list of whole sizes"),
        ({"name": "channels", "channels": 2}, "channels must be 1 or 3, got 2"),
        ({"name": "clip", "min": "a"}, "clip min must be a number, a list of numbers or null, got 'a'"),
        ({"name": "clip", "min": 10, "max": 5}, "clip min 10 is above max 5"),
    ],
)
def test_invalid_subfunction_parameters_name_the_entry_when_the_config_is_read(entry, message):
    with pytest.raises(ValueError, match=r"preprocessing\.subfunctions\[0\]: .*" + message):
        Preprocessing.from_config({"size": [4, 4], "channels": 3, "standardize": "minmax", "subfunctions": [entry]})


def test_clip_bounds_beyond_an_integer_type_do_not_wrap_around():
    # found by the property tests: Clip(min=300) on uint8 gave 44 (300 wrapped), Clip(max=-1) on uint16 65535
    image = np.array([[1, 200]], np.uint8)
    np.testing.assert_array_equal(Clip(min=-10, max=300)(image, 2, None), [[1, 200]])
    with pytest.raises(ValueError, match="clip min 300 is above the largest uint8 value 255"):
        Clip(min=300)(image, 2, None)
    with pytest.raises(ValueError, match="clip max -1 is below the smallest uint16 value 0"):
        Clip(max=-1)(image.astype(np.uint16), 2, None)


def test_multi_hot_labels_say_they_are_a_multi_label_study(tmp_path):
    """Rows of several 1s (an image with two findings) or none stopped with 'is not one-hot' alone, which does not
    tell a multi-label user what xaipipe takes instead (a helper's study)."""
    (tmp_path / "m.csv").write_text("SAMPLE,effusion,nodule,mass\na,1,1,0\nb,0,0,0\n")
    with pytest.raises(ValueError, match=r"row 2.*\['1', '1', '0'\] is not one-hot.*multi-label study.*targets: all"):
        read_csv(tmp_path / "m.csv", class_columns=["effusion", "nodule", "mass"])
    (tmp_path / "h.csv").write_text("SAMPLE,benign,malignant\na,0.5,0.5\n")  # soft labels: not a multi-label row
    with pytest.raises(ValueError, match="not one-hot") as soft:
        read_csv(tmp_path / "h.csv", class_columns=["benign", "malignant"])
    assert "multi-label" not in str(soft.value)
