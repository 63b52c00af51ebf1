import numpy as np
import pytest

from xaipipe.writers import write_png
from xaipipe.samples import SampleSheet, discover_folder, shard_names, shard_slice


def _touch_images(root, names):
    for name in names:
        write_png(root / name, np.zeros((4, 4), np.uint8))


def test_class_subfolders_give_sorted_ids_and_labels(tmp_path):
    _touch_images(tmp_path, ["b/2.png", "a/1.png", "b/1.bmp", "a/sub/3.tif"])
    sheet = discover_folder(tmp_path)
    assert sheet.ids == ("a/1.png", "a/sub/3.tif", "b/1.bmp", "b/2.png")
    assert sheet.class_names == ("a", "b")
    assert sheet.labels == (0, 0, 1, 1)


def test_plain_folder_has_no_labels_and_ignores_other_files(tmp_path):
    _touch_images(tmp_path, ["x.png", "y.jpg"])
    (tmp_path / "notes.txt").write_text("not an image")
    sheet = discover_folder(tmp_path)
    assert sheet.ids == ("x.png", "y.jpg")
    assert sheet.labels is None and sheet.class_names is None


def test_forced_class_subfolders_reject_loose_images(tmp_path):
    _touch_images(tmp_path, ["a/1.png", "loose.png"])
    with pytest.raises(ValueError, match="loose.png"):
        discover_folder(tmp_path, class_subfolders=True)


def test_missing_and_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no images"):
        discover_folder(tmp_path)


def test_duplicate_ids_are_rejected():
    with pytest.raises(ValueError, match="'a.png' is listed twice"):
        SampleSheet(("a.png", "b.png", "a.png"))


def test_shards_cover_every_sample_once():
    names = shard_names(10, 4)
    assert names == ["00000", "00001", "00002"]
    ids = list(range(10))
    assert [ids[shard_slice(n, 4)] for n in names] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    with pytest.raises(ValueError):
        shard_names(3, 0)


def test_configured_classes_order_the_class_subfolders(tmp_path):
    _touch_images(tmp_path, ["a/1.png", "c/2.png"])
    sheet = discover_folder(tmp_path, classes=["c", "b", "a"])
    assert sheet.class_names == ("c", "b", "a") and sheet.labels == (2, 0)
    with pytest.raises(ValueError, match=r"subfolder 'c'.*not one of the classes.*a, b"):
        discover_folder(tmp_path, classes=["a", "b"])
