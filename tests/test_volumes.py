import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from xaipipe import writers
from xaipipe.drawing import colorize, display_volume, overlay_frames
from xaipipe.maps import resize_linear
from xaipipe.readers import VOLUME_EXTENSIONS, Volume, is_volume_path, load_volume
from xaipipe.writers import write_gif, write_nifti, write_npy

SPACING = (2.5, 0.7, 0.8)  # z, y, x in mm


def hu_volume() -> np.ndarray:
    """A non-symmetric int16 volume (D, H, W) = (4, 5, 6) of Hounsfield-like values."""
    array = (np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) * 7 - 1000).astype(np.int16)
    array[1, 2, 3] = 1234
    return array


def write_sitk(path, array, spacing_zyx, is_vector=False):
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    sitk.WriteImage(image, str(path))


def test_is_volume_path():
    assert VOLUME_EXTENSIONS == (".nii", ".nii.gz", ".mha", ".mhd", ".npy")
    for name in ["ct.nii", "ct.nii.gz", "CT.NII.GZ", "a/b.Mha", "b.mhd", "x.npy"]:
        assert is_volume_path(name), name
    for name in ["ct.gz", "ct.png", "ct.nii.zip", "nii", ".npy", "x.raw"]:
        assert not is_volume_path(name), name


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.mha", "ct.mhd"])
def test_sitk_round_trip_keeps_values_dtype_axes_and_spacing(tmp_path, name):
    array = hu_volume()
    path = tmp_path / name
    write_sitk(path, array, SPACING)
    if name.endswith(".mhd"):
        assert (tmp_path / "ct.raw").is_file()
    volume = load_volume(path)
    assert isinstance(volume, Volume)
    assert volume.array.dtype == np.int16
    assert volume.array.shape == (4, 5, 6)
    assert volume.array[1, 2, 3] == 1234
    assert volume.array[3, 0, 5] == array[3, 0, 5] == (3 * 30 + 5) * 7 - 1000
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == pytest.approx(SPACING, rel=1e-6)


@pytest.mark.parametrize("name", ["map.nii.gz", "map.nii"])
def test_write_nifti_float_map_round_trip(tmp_path, name):
    array = np.random.default_rng(0).random((3, 4, 7), dtype=np.float32)
    write_nifti(tmp_path / name, array, SPACING)
    volume = load_volume(tmp_path / name)
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == pytest.approx(SPACING, rel=1e-6)
    # SimpleITK itself sees the spacing in (x, y, z) order
    assert sitk.ReadImage(str(tmp_path / name)).GetSpacing() == pytest.approx(SPACING[::-1], rel=1e-6)


def test_write_nifti_rgb_round_trip(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    rgb[2, 1, 4] = (255, 0, 10)
    write_nifti(tmp_path / "rgb.nii.gz", rgb, SPACING)
    image = sitk.ReadImage(str(tmp_path / "rgb.nii.gz"))
    assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetDimension() == 3
    volume = load_volume(tmp_path / "rgb.nii.gz")
    assert volume.array.dtype == np.uint8 and volume.array.shape == (3, 4, 5, 3)
    assert tuple(volume.array[2, 1, 4]) == (255, 0, 10)
    np.testing.assert_array_equal(volume.array, rgb)
    assert volume.spacing == pytest.approx(SPACING, rel=1e-6)


def test_write_nifti_leaves_no_temporary_files(tmp_path):
    out = tmp_path / "sub" / "map.nii.gz"
    write_nifti(out, np.zeros((2, 3, 4), np.float32), (1.0, 1.0, 1.0))
    write_nifti(out, np.ones((2, 3, 4), np.float32), (1.0, 1.0, 1.0))  # overwrite
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.nii.gz"]
    np.testing.assert_array_equal(load_volume(out).array, np.ones((2, 3, 4), np.float32))


def test_write_nifti_interrupted_leaves_no_target(tmp_path, monkeypatch):
    def half_write(image, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.sitk, "WriteImage", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_nifti(tmp_path / "map.nii.gz", np.zeros((2, 3, 4), np.float32), SPACING)
    assert list(tmp_path.iterdir()) == []


def test_write_nifti_failure_keeps_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "map.nii"
    write_nifti(out, np.full((2, 3, 4), 5, np.float32), SPACING)

    def failing(image, filename, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writers.sitk, "WriteImage", failing)
    with pytest.raises(ValueError, match="map.nii"):
        write_nifti(out, np.zeros((2, 3, 4), np.float32), SPACING)
    assert [p.name for p in tmp_path.iterdir()] == ["map.nii"]
    np.testing.assert_array_equal(load_volume(out).array, np.full((2, 3, 4), 5, np.float32))


def test_write_nifti_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="nii.gz or .nii"):
        write_nifti(tmp_path / "map.mha", np.zeros((2, 3, 4), np.float32), SPACING)
    with pytest.raises(ValueError, match="uint8"):
        write_nifti(tmp_path / "rgb.nii", np.zeros((2, 3, 4, 3), np.float32), SPACING)
    with pytest.raises(ValueError, match="shape"):
        write_nifti(tmp_path / "flat.nii", np.zeros((3, 4), np.float32), SPACING)
    with pytest.raises(ValueError, match="spacing"):
        write_nifti(tmp_path / "map.nii", np.zeros((2, 3, 4), np.float32), (1.0, 0.0, 1.0))
    assert list(tmp_path.iterdir()) == []


def test_npy_round_trip(tmp_path):
    array = hu_volume()
    write_npy(tmp_path / "v.npy", array)
    volume = load_volume(tmp_path / "v.npy")
    assert volume.spacing == (1.0, 1.0, 1.0)
    assert volume.array.dtype == np.int16 and volume.array[1, 2, 3] == 1234
    np.testing.assert_array_equal(volume.array, array)

    rgb = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    write_npy(tmp_path / "rgb.npy", rgb)
    np.testing.assert_array_equal(load_volume(tmp_path / "rgb.npy").array, rgb)

    write_npy(tmp_path / "one.npy", array[..., np.newaxis])
    squeezed = load_volume(tmp_path / "one.npy").array
    assert squeezed.shape == (4, 5, 6)
    np.testing.assert_array_equal(squeezed, array)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".part"]


@pytest.mark.parametrize("name", ["flat.npy", "flat.nii.gz", "flat.mha"])
def test_2d_inputs_rejected(tmp_path, name):
    path = tmp_path / name
    image = np.arange(20, dtype=np.int16).reshape(4, 5)
    if name.endswith(".npy"):
        np.save(path, image)
    else:
        sitk.WriteImage(sitk.GetImageFromArray(image), str(path))
    with pytest.raises(ValueError, match="volume expected") as info:
        load_volume(path)
    assert str(path) in str(info.value)


def test_other_component_counts_and_time_series_rejected(tmp_path):
    np.save(tmp_path / "four.npy", np.zeros((2, 3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="four.npy"):
        load_volume(tmp_path / "four.npy")
    series = sitk.JoinSeries([sitk.GetImageFromArray(np.full((2, 3, 4), t, np.float32)) for t in range(5)])
    sitk.WriteImage(series, str(tmp_path / "series.nii.gz"))
    with pytest.raises(ValueError, match="series.nii.gz.*time series.*save the time point to explain"):
        load_volume(tmp_path / "series.nii.gz")


def test_a_sheared_affine_is_named_as_such_not_as_a_damaged_file(tmp_path):
    # a CT with gantry tilt converted without tilt correction: intact, read by nibabel, refused by ITK; it was
    # called "unreadable or truncated volume", which sent the user looking for a damaged file
    nibabel = pytest.importorskip("nibabel")
    affine = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.3, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    image = nibabel.Nifti1Image(np.zeros((6, 7, 8), np.int16), affine)
    image.set_qform(None, code=0)  # the shear lives in the sform alone, as converters write it
    image.to_filename(tmp_path / "tilted.nii.gz")
    assert nibabel.load(tmp_path / "tilted.nii.gz").get_fdata().shape == (6, 7, 8)  # intact
    with pytest.raises(ValueError, match=r"tilted\.nii\.gz: its affine is sheared .* resample it") as info:
        load_volume(tmp_path / "tilted.nii.gz")
    assert "unreadable" not in str(info.value)


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.mha"])
def test_truncated_file_rejected(tmp_path, name):
    array = np.random.default_rng(2).integers(-1000, 2000, (8, 16, 16)).astype(np.int16)
    full = tmp_path / f"full_{name}"
    write_sitk(full, array, SPACING)
    data = full.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated") as info:
        load_volume(path)
    assert str(path) in str(info.value)


def test_garbage_and_unsupported_files_rejected(tmp_path):
    for name in ["junk.nii.gz", "junk.nii", "junk.mha", "junk.npy"]:
        path = tmp_path / name
        path.write_bytes(b"not a volume at all" * 3)
        with pytest.raises(ValueError) as info:
            load_volume(path)
        assert str(path) in str(info.value)
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="a.png"):
        load_volume(tmp_path / "a.png")


def test_mhd_without_raw_rejected(tmp_path):
    write_sitk(tmp_path / "ct.mhd", hu_volume(), SPACING)
    (tmp_path / "ct.raw").unlink()
    with pytest.raises(ValueError, match="ct.mhd"):
        load_volume(tmp_path / "ct.mhd")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.nii.gz"):
        load_volume(tmp_path / "nothere.nii.gz")


def test_gif_frames_and_size(tmp_path):
    frames = np.zeros((5, 12, 20, 3), np.uint8)
    frames[:, :, :, 0] = 255  # pure red in RGB
    frames[4, :, :] = (0, 0, 255)  # last frame pure blue
    out = tmp_path / "v.gif"
    write_gif(out, frames, fps=4.0)
    assert out.read_bytes()[:6] == b"GIF89a"
    assert b"NETSCAPE2.0" in out.read_bytes()
    ok, animation = cv2.imreadanimation(str(out))
    assert ok
    assert len(animation.frames) == 5
    assert all(frame.shape[:2] == (12, 20) for frame in animation.frames)
    assert animation.loop_count == 0  # forever
    assert all(d == 250 for d in animation.durations)
    # OpenCV reads BGR: red is channel 2, blue channel 0
    assert animation.frames[0][5, 5, 2] > 200 and animation.frames[0][5, 5, 0] < 50
    assert animation.frames[4][5, 5, 0] > 200 and animation.frames[4][5, 5, 2] < 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif"]


def test_gif_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="bad.gif"):
        write_gif(tmp_path / "bad.gif", np.zeros((3, 4, 5), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_overlay_frames_alpha_extremes():
    rng = np.random.default_rng(3)
    volume = rng.integers(0, 256, (6, 8, 10, 3), dtype=np.uint8)
    heatmap = rng.random((3, 4, 5)).astype(np.float32)
    same = overlay_frames(volume, heatmap, alpha=0.0)
    assert same.shape == volume.shape and same.dtype == np.uint8
    np.testing.assert_array_equal(same, volume)

    resized = np.clip(resize_linear(heatmap[None], (6, 8, 10))[0], 0, 1)
    expected = np.stack([colorize(resized[z], "viridis") for z in range(6)])
    np.testing.assert_array_equal(overlay_frames(volume, heatmap, overlay=False, colormap="viridis"), expected)

    # each voxel's opacity is alpha * v: alpha = 1 gives the colour only where v = 1
    for alpha in (1.0, 0.5):
        blended = overlay_frames(volume, heatmap, alpha=alpha, colormap="viridis")
        w = (np.float32(alpha) * resized)[..., None]
        mixed = np.round((1 - w) * volume.astype(np.float32) + w * expected.astype(np.float32))
        np.testing.assert_allclose(blended, mixed.astype(np.uint8), atol=1)  # float32 rounding at .5
        assert np.abs(blended.astype(int) - mixed).max() <= 1 and (blended == mixed).mean() > 0.99


def test_overlay_frames_rejects_bad_shapes():
    with pytest.raises(ValueError):
        overlay_frames(np.zeros((2, 3, 4), np.uint8), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError):
        overlay_frames(np.zeros((2, 3, 4, 3), np.uint8), np.zeros((3, 4)))


def test_display_volume_percentile_scaling():
    array = np.arange(1001, dtype=np.int16).reshape(1, 1, 1001) - 1000  # -1000 .. 0 HU
    array = np.repeat(array, 2, axis=0)
    lo, hi = np.percentile(array, [0.5, 99.5])
    assert (lo, hi) == (-995.0, -5.0)
    shown = display_volume(array)
    assert shown.shape == (2, 1, 1001, 3) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown[..., 0], shown[..., 2])
    row = shown[0, 0, :, 0]
    assert row[0] == 0 and row[5] == 0  # at and below the 0.5th percentile
    assert row[995] == 255 and row[1000] == 255  # at and above the 99.5th
    assert row[500] == round((500 - 5) * 255 / 990)  # -500 HU, linear in between
    assert display_volume(np.full((2, 3, 4), 7, np.int16)).max() == 0


def test_display_volume_rgb():
    rgb = np.random.default_rng(4).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(display_volume(rgb), rgb)
    floats = np.zeros((2, 3, 4, 3), np.float32)
    floats[0, 0, 0] = (-1.0, 0.0, 1.0)
    shown = display_volume(floats)
    assert shown.dtype == np.uint8
    assert tuple(shown[0, 0, 0]) == (0, 128, 255)
    assert shown[1, 1, 1, 0] == 128


def test_gif_frames_keep_the_overlays_colours_and_repeated_slices(tmp_path):
    """OpenCV's GIF encoder snapped every pixel to a fixed 3-3-2 palette: a grey ramp came back with 18 colours,
    79 levels off at worst, grey 40 as (36, 36, 0), and an overlay's frames had 4-9 colours of its 217-333 (a
    helper's study). Now one palette chosen from the frames' pixels: a ramp is exact to 3 levels and an overlay
    volume to 12, read back by OpenCV and by Pillow alike; repeated slices stay frames of their own."""
    from PIL import Image, ImageSequence

    from xaipipe.drawing import overlay_frames

    ramp = np.tile(np.arange(256, dtype=np.uint8)[None, None, :, None], (3, 8, 1, 3))
    write_gif(tmp_path / "ramp.gif", ramp, fps=4.0)
    ok, animation = cv2.imreadanimation(str(tmp_path / "ramp.gif"))
    back = np.stack([cv2.cvtColor(f[..., :3], cv2.COLOR_BGR2RGB) for f in animation.frames]).astype(int)
    assert ok and back.shape == ramp.shape and np.abs(back - ramp).max() <= 3
    rng = np.random.default_rng(0)
    volume = np.repeat(np.clip(rng.normal(100, 30, (16, 20, 24)), 0, 255).astype(np.uint8)[..., None], 3, -1)
    z, y, x = np.mgrid[:16, :20, :24]
    frames = overlay_frames(volume, np.exp(-((z - 8) ** 2 + (y - 10) ** 2 + (x - 12) ** 2) / 30.0), True, 0.5, "jet")
    frames[5] = frames[4]  # a repeated slice: Pillow's own writer would merge the two into one frame
    write_gif(tmp_path / "overlay.gif", frames, fps=8.0)
    ok, animation = cv2.imreadanimation(str(tmp_path / "overlay.gif"))
    read_cv2 = np.stack([cv2.cvtColor(f[..., :3], cv2.COLOR_BGR2RGB) for f in animation.frames]).astype(int)
    with Image.open(tmp_path / "overlay.gif") as gif:
        read_pil = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]).astype(int)
    for read in (read_cv2, read_pil):
        assert read.shape == frames.shape
        assert np.abs(read - frames).max() <= 12 and np.abs(read - frames).mean() < 3
    assert list(animation.durations) == [120] * 16 and animation.loop_count == 0
