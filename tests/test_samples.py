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


def test_hidden_folders_hold_no_samples(tmp_path):
    """Jupyter's .ipynb_checkpoints copies inside a class folder were samples of that class (and a .git or
    .Trash folder's images would be too)."""
    _touch_images(tmp_path, ["cat/c0.png", "cat/.ipynb_checkpoints/c0-checkpoint.png", "dog/d0.png",
                             "dog/sub/.cache/d1.png", ".trash/x.png"])  # fmt: skip
    sheet = discover_folder(tmp_path)
    assert sheet.ids == ("cat/c0.png", "dog/d0.png") and sheet.labels == (0, 1)
    assert discover_folder(tmp_path / "cat").ids == ("c0.png",)


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


def test_other_files_beside_the_class_folders_leave_them_classes(tmp_path):
    # a README or the labels' table at the top of the folder turned the class folders off, silently: no labels
    _touch_images(tmp_path, ["red/1.png", "blue/2.png", "blue/3.png"])
    (tmp_path / "README.txt").write_text("my study")
    (tmp_path / "labels.csv").write_text("id,label\n")
    sheet = discover_folder(tmp_path)
    assert sheet.class_names == ("blue", "red") and sheet.labels == (0, 0, 1)


def test_images_both_in_class_folders_and_beside_them_ask_what_is_meant(tmp_path):
    _touch_images(tmp_path, ["red/1.png", "blue/2.png", "stray.png"])
    with pytest.raises(ValueError, match=r"both images in subfolders \(blue, red\) and images beside them "
                                         r"\(stray.png\): set data.class_subfolders to true .* or to false"):
        discover_folder(tmp_path)
    assert discover_folder(tmp_path, class_subfolders=False).ids == ("blue/2.png", "red/1.png", "stray.png")
    # subfolders that hold no images are no classes to ask about
    (tmp_path / "red/1.png").unlink()
    (tmp_path / "blue/2.png").unlink()
    assert discover_folder(tmp_path).ids == ("stray.png",)


def test_a_plain_folder_keeps_the_configured_classes_to_name_and_count_the_outputs(tmp_path):
    # they were dropped: the predictions' columns were p_0, p_1 and a model with 3 outputs passed the check
    _touch_images(tmp_path, ["x.png", "y.png"])
    sheet = discover_folder(tmp_path, classes=["red", "blue"])
    assert sheet.class_names == ("red", "blue") and sheet.labels is None


def test_webp_jpeg2000_netpbm_and_jfif_files_are_samples_and_the_rest_is_named(tmp_path):
    """A folder of .webp, .jfif or .pgm images (MIAS's mammograms) lost them without a word: folder discovery
    read only .png/.jpg/.tif/.bmp. They are samples now; files still not read are counted in a warning."""
    from xaipipe.samples import unread_files, unread_files_warning

    _touch_images(tmp_path, ["a/1.png"])
    for name in ["a/2.webp", "a/3.jfif", "b/4.pgm", "b/5.jp2", "b/6.ppm", "b/7.JPE"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert discover_folder(tmp_path).ids == ("a/1.png", "a/2.webp", "a/3.jfif", "b/4.pgm", "b/5.jp2", "b/6.ppm",
                                             "b/7.JPE")  # fmt: skip
    assert unread_files(tmp_path) == {} and unread_files_warning(tmp_path) is None
    for name in ["a/x.gif", "a/y.gif", "b/z.heic", "b/scan.nrrd", "b/vol.mhd", "b/vol.raw", "labels.csv", "README.md",
                 "a/.DS_Store", ".cache/q.gif", "b/notes.txt", "b/seg.nii.gz.bak"]:  # fmt: skip
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    # vol.mhd is a sample; its .raw is its pixel data; tables, notes and hidden files are no images
    assert unread_files(tmp_path) == {".gif": 2, ".bak": 1, ".heic": 1, ".nrrd": 1}
    warning = unread_files_warning(tmp_path)
    assert warning.startswith(f"5 files under {tmp_path} are not read as samples (2 .gif, 1 .bak, 1 .heic, 1 .nrrd)")
    assert ".webp" in warning and "convert" in warning
