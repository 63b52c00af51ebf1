import numpy as np
import pytest

from xaipipe.naming import overlay_name
from xaipipe.drawing import colorize, render


def test_overlay_names_follow_the_seed():
    assert overlay_name("case_01.png") == "case_01.png"
    assert overlay_name("disk/case_01.png") == "disk.case_01.png"
    assert overlay_name("a/b/c.tiff", 2) == "a.b.c.class_2.png"
    assert overlay_name("a\\b.jpg") == "a.b.png"


def test_alpha_blends_image_and_colour_by_each_pixels_value():
    image = np.full((4, 4, 3), 100, np.uint8)
    heat = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    colour = colorize(heat).astype(np.float64)
    np.testing.assert_array_equal(render(heat, image, alpha=0.0), image)
    # opacity alpha * v: full colour only where v = 1, the image itself where v = 0
    np.testing.assert_array_equal(render(heat, image, alpha=1.0)[3, 3], colour[3, 3])
    np.testing.assert_array_equal(render(heat, image, alpha=1.0)[0, 0], image[0, 0])
    w = 0.25 * heat.astype(np.float64)[..., None]
    expected = np.round((1 - w) * 100 + w * colour).astype(np.uint8)
    np.testing.assert_array_equal(render(heat, image, alpha=0.25), expected)


def test_jet_runs_from_blue_to_red():
    ends = colorize(np.array([[0.0, 1.0]], np.float32))
    assert ends[0, 0].argmax() == 2  # blue at 0
    assert ends[0, 1].argmax() == 0  # red at 1


def test_heatmap_alone_and_resized_to_the_image():
    image = np.zeros((8, 6, 3), np.uint8)
    out = render(np.ones((4, 3), np.float32), image, overlay=False)
    assert out.shape == (8, 6, 3)
    np.testing.assert_array_equal(out, colorize(np.ones((8, 6), np.float32)))


def test_bad_render_input_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        render(np.zeros((2, 2), np.float32), np.zeros((2, 2, 3), np.uint8), alpha=1.5)
    with pytest.raises(ValueError, match="colormap"):
        colorize(np.zeros((2, 2), np.float32), "rainbow")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        colorize(np.full((2, 2), 2.0, np.float32))


def test_overlay_names_of_volumes_and_ids_without_extension():
    assert overlay_name("ct/case_7.nii.gz", None, ".nii.gz") == "ct.case_7.nii.gz"
    assert overlay_name("mr/brain.mha", 1, ".gif") == "mr.brain.class_1.gif"
    assert overlay_name("case.01", None, ".png") == "case.01.png"


def _shard_with_two_maps_per_sample(tmp_path, n_samples=3):
    """A preprocessed shard of ``n_samples`` small gray PNGs and a heatmaps file with two maps per sample
    (classes 0 and 1, as ``targets: all`` writes them), random values in [0, 1]."""
    import cv2

    from xaipipe import h5store
    from xaipipe.preprocess import Preprocessing
    from xaipipe.stages import preprocess_shard

    rng = np.random.default_rng(3)
    paths = []
    for k in range(n_samples):
        paths.append(tmp_path / f"s{k}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 256, (12, 16), dtype=np.uint8))
    ids = [f"s{k}.png" for k in range(n_samples)]
    pre, maps_path = tmp_path / "pre.h5", tmp_path / "maps.h5"
    preprocess_shard(paths, ids, None, ["x", "y"], Preprocessing(size=(8, 8), channels=1, standardize="minmax"), pre)
    maps = rng.random((2 * n_samples, 8, 8)).astype(np.float32)
    with h5store.heatmaps_writer(maps_path, ids, 2 * n_samples, (8, 8)) as writer:
        rows = np.repeat(np.arange(n_samples, dtype=np.int32), 2)
        writer.write(slice(None), rows, np.tile(np.array([0, 1], np.int32), n_samples), maps)
    return pre, maps_path


def test_an_archive_holds_the_kept_maps_with_the_bytes_of_the_files(tmp_path):
    import zipfile

    import cv2

    from xaipipe.stages import render_shard

    pre, maps_path = _shard_with_two_maps_per_sample(tmp_path)
    names = [f"s{k}.class_{c}.png" for k in range(3) for c in (0, 1)]
    render_shard(pre, maps_path, [tmp_path / "loose" / n for n in names], True, 0.25, "jet")
    # samples 0 and 2 only (rows of the shard), into one zip file under the files' names
    kept = ["s0.class_0.png", "s0.class_1.png", "s2.class_0.png", "s2.class_1.png"]
    archive = tmp_path / "overlays" / "shard-00000.zip"
    render_shard(pre, maps_path, kept, True, 0.25, "jet", rows=[0, 2], archive=archive)
    with zipfile.ZipFile(archive) as z:
        assert z.namelist() == kept
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED and info.date_time == (1980, 1, 1, 0, 0, 0)
            data = z.read(info)
            assert data == (tmp_path / "loose" / info.filename).read_bytes()
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            np.testing.assert_array_equal(pixels, cv2.imread(str(tmp_path / "loose" / info.filename), cv2.IMREAD_UNCHANGED))
    assert sorted(p.name for p in archive.parent.iterdir()) == ["shard-00000.zip"]  # no temporary file left
    # .npy maps are deflated (they are not compressed already) and read back equal
    npys = [n.replace(".png", ".npy") for n in kept]
    render_shard(pre, maps_path, [tmp_path / "loose" / n for n in npys], True, 0.25, "jet", rows=[0, 2])
    render_shard(pre, maps_path, npys, True, 0.25, "jet", rows=[0, 2], archive=tmp_path / "npy.zip")
    with zipfile.ZipFile(tmp_path / "npy.zip") as z:
        assert z.namelist() == npys
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_DEFLATED
            with z.open(info) as member:
                np.testing.assert_array_equal(np.load(member), np.load(tmp_path / "loose" / info.filename))


def test_a_failed_archive_leaves_no_file_and_a_wrong_count_is_named(tmp_path):
    from xaipipe.stages import render_shard

    pre, maps_path = _shard_with_two_maps_per_sample(tmp_path)
    archive = tmp_path / "overlays" / "shard-00000.zip"
    with pytest.raises(ValueError, match="a member is a file name"):
        render_shard(pre, maps_path, ["s1.class_0.png", "x/s1.class_1.png"], True, 0.25, "jet", [1], archive)
    assert list(archive.parent.iterdir()) == []  # neither the zip nor a part of it
    with pytest.raises(ValueError, match=r"holds 2 maps of the 1 samples to draw; 3 output files were asked for"):
        render_shard(pre, maps_path, ["a.png", "b.png", "c.png"], True, 0.25, "jet", [1], archive)


def test_a_volumes_gif_shows_its_slices_in_one_orientation_whatever_the_storage(tmp_path):
    # the GIF was drawn in the file's voxel order: a lesion on the patient's left showed top-right for an LPS-stored
    # volume, bottom-left (mirrored and upside down) for a RAS-stored one, in another frame for an LPI one
    import cv2

    from xaipipe.writers import write_map

    lps = np.zeros((6, 8, 10), np.uint8)  # (z, y, x) towards superior, posterior, left
    lps[4, 1, 7] = 250  # superior, anterior, on the patient's left
    storages = {
        "LPS": (lps, (1, 0, 0, 0, 1, 0, 0, 0, 1)),
        "RAS": (lps[:, ::-1, ::-1], (-1, 0, 0, 0, -1, 0, 0, 0, 1)),  # x and y stored the other way
        "LPI": (lps[::-1], (1, 0, 0, 0, 1, 0, 0, 0, -1)),  # slices stored superior first
    }
    frames = {}
    for name, (stored, direction) in storages.items():
        stored = np.ascontiguousarray(stored)
        path = tmp_path / f"{name}.gif"
        write_map(path, stored.astype(np.float32) / 250, stored, 3, "gif", overlay=False, colormap="hot",
                  direction=direction)  # fmt: skip
        ok, animation = cv2.imreadanimation(str(path))
        frames[name] = np.stack(animation.frames)[..., :3].astype(int)
    # by hand: frame z (inferior first), row y (anterior at the top), column x (the patient's right on the left)
    brightest = np.unravel_index(frames["LPS"].sum(axis=-1).argmax(), frames["LPS"].shape[:3])
    assert tuple(int(i) for i in brightest) == (4, 1, 7)
    for name in ("RAS", "LPI"):
        np.testing.assert_array_equal(frames[name], frames["LPS"], err_msg=name)
