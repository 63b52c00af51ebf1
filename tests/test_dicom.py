"""DICOM input (xaipipe.dicom through xaipipe.readers.load_sample) on real files no one here wrote.

pydicom's bundled test files are the real data and pydicom is the independent reference
for their values (``pixel_array * RescaleSlope + RescaleIntercept``). The series are
written here with SimpleITK from numpy volumes, so their values and geometry are known.
"""

from __future__ import annotations

import contextlib
import locale
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from xaipipe import h5store
from xaipipe.naming import overlay_name
from xaipipe.preprocess import Preprocessing
from xaipipe.readers import load_sample
from xaipipe.samples import discover_folder, sample_path, split_series
from xaipipe.stages import preprocess_shard

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")
from pydicom.data import get_testdata_file

UID_A = "1.2.826.0.1.3680043.2.1125.77.1"
UID_B = "1.2.826.0.1.3680043.2.1125.77.2"


def reference(name: str) -> np.ndarray:
    """pydicom's values of a test file: the stored pixels times RescaleSlope plus RescaleIntercept."""
    ds = pydicom.dcmread(get_testdata_file(name))
    return ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


def write_series(folder, volume, spacing_zyx, origin_xyz, uid, skip=(), seed=0, shear=0.0) -> list[str]:
    """Write ``volume`` (D, H, W) int16 as one DICOM file per slice, out of order and under shuffled names.

    Slice k lies at origin + k * spacing_z along z (and k * ``shear`` mm along y: a gantry tilt); the file names
    sort in another order than the positions. Slices in ``skip`` are left out. Returns the file names by slice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    image.SetOrigin(origin_xyz)
    rng = np.random.default_rng(seed)
    depth = volume.shape[0]
    names = [f"IM{n:04d}.dcm" for n in rng.permutation(depth)]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in rng.permutation(depth):  # written out of order too
        if k in skip:
            continue
        plane = image[:, :, int(k)]
        position = image.TransformIndexToPhysicalPoint((0, 0, int(k)))
        for tag, value in [
            ("0008|0060", "CT"),
            ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),  # CT Image Storage
            ("0008|0018", f"{uid}.{k + 1}"),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.77"),
            ("0020|000e", uid),
            ("0020|0013", str(k + 1)),
            ("0020|0032", "\\".join(f"{p:.4f}" for p in (position[0], position[1] + k * shear, position[2]))),
            ("0020|0037", "1\\0\\0\\0\\1\\0"),
        ]:
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / names[k]))
        with kept_locale():
            writer.Execute(plane)
    return names


@contextlib.contextmanager
def kept_locale():
    """GDCM's DICOM writer (inside SimpleITK) sets the process's C locale and leaves it so: every later
    ``read_text()`` of the test session then decodes as ASCII. Restore it (the reading code does not change it:
    test_reading_leaves_the_locale_as_it_was)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def hu_volume(shape=(6, 5, 7), seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 2000, shape).astype(np.int16)


# --- single files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm"])
def test_single_file_values_are_pydicoms_rescaled_pixels(name):
    array, spacing = load_sample(get_testdata_file(name), 2)
    assert spacing is None
    np.testing.assert_array_equal(array, reference(name))


def test_ct_is_in_hounsfield_units_and_standardizes_with_minmax():
    array, _ = load_sample(get_testdata_file("CT_small.dcm"), 2)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert float(ds.RescaleIntercept) == -1024 and array.min() < 0  # air and fat below 0 HU
    assert array.min() == ds.pixel_array.min() - 1024 and array.max() == ds.pixel_array.max() - 1024
    pre = Preprocessing(size=(128, 128), channels=1, standardize="minmax")
    inputs = pre.finish(pre.apply_subfunctions(array, 0))
    expected = (reference("CT_small.dcm") - array.min()) / (array.max() - array.min())
    np.testing.assert_allclose(inputs[..., 0], expected, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["area", "linear", "cubic", "nearest"])
def test_a_ct_smaller_than_the_file_is_resized_in_hounsfield_units(tmp_path, interpolation):
    # a CT with a Rescale Intercept loads as int32, which OpenCV's resize refuses but for nearest: the preprocess
    # job stopped with a bare cv2.error naming no sample, whatever on_error said (the test above kept 128x128)
    import cv2

    pre = Preprocessing(size=(32, 32), channels=1, standardize="none", interpolation=interpolation)
    preprocess_shard([get_testdata_file("CT_small.dcm")], ["ct"], None, None, pre, tmp_path / "pre.h5")
    with h5store.PreprocessedShard.open(tmp_path / "pre.h5") as shard:
        inputs = shard.inputs(slice(0, 1))[0, ..., 0]
    flag = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
    expected = cv2.resize(reference("CT_small.dcm").astype(np.float64), (32, 32), interpolation=flag[interpolation])
    np.testing.assert_allclose(inputs, expected, rtol=1e-6, atol=1e-3)  # HU, in float32
    assert inputs.min() < -500  # air stays air


def test_an_unusable_sample_that_opencv_refuses_is_named_and_skipped(tmp_path, monkeypatch):
    # any error of one sample's preprocessing names the sample and follows on_error, not only ValueErrors
    import cv2

    from xaipipe import preprocess
    from xaipipe.errors import SampleError

    array = np.arange(48 * 40, dtype=np.float32).reshape(48, 40)
    np.save(tmp_path / "a.npy", array)

    def refuse(*args, **kwargs):
        raise cv2.error("OpenCV(5.0) resize.cpp:4000: error: (-215:Assertion failed) func != 0 in function 'resize'")

    monkeypatch.setattr(preprocess.cv2, "resize", refuse)
    pre = Preprocessing(size=(16, 16), channels=1, standardize="none")
    with pytest.raises(SampleError, match=r"a\.npy.*func != 0"):
        preprocess_shard([tmp_path / "a.npy"], ["a.npy"], None, None, pre, tmp_path / "fail.h5")
    preprocess_shard([tmp_path / "a.npy"], ["a.npy"], None, None, pre, tmp_path / "skip.h5", on_error="skip")
    with h5store.PreprocessedShard.open(tmp_path / "skip.h5") as shard:
        assert shard.skipped.tolist() == [True] and "func != 0" in shard.skip_reasons[0]


def test_file_without_extension_read_as_dicom_with_image_format_dcm(tmp_path):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "scan01")
    path = sample_path(tmp_path, "scan01", "dcm")
    assert path == tmp_path / "scan01"
    array, _ = load_sample(path, 2)
    np.testing.assert_array_equal(array, reference("CT_small.dcm"))
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "scan02.dcm")
    assert sample_path(tmp_path, "scan02", "dcm") == tmp_path / "scan02.dcm"  # the format still added where it exists
    assert discover_folder(tmp_path, False).ids == ("scan01", "scan02.dcm")


def test_monochrome1_is_inverted_over_the_stored_range(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    bits, signed = int(ds.BitsStored), int(ds.PixelRepresentation) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    array, _ = load_sample(tmp_path / "mono1.dcm", 2)
    np.testing.assert_array_equal(array, low + high - ds.pixel_array.astype(np.int64))
    # what was darkest (drawn white in MONOCHROME1) is now the brightest
    assert np.unravel_index(array.argmax(), array.shape) == np.unravel_index(ds.pixel_array.argmin(), array.shape)


def test_multi_frame_file_is_a_volume_and_no_2d_sample():
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    array, geometry = load_sample(path, 3)
    np.testing.assert_array_equal(array, reference("rtdose.dcm"))
    assert array.shape == (int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    offsets = np.diff([float(v) for v in ds.GridFrameOffsetVector])
    assert geometry.spacing == pytest.approx((offsets[0], *map(float, ds.PixelSpacing)))
    # the file's own position and orientation, as pydicom reads them (LPS, x y z)
    assert geometry.origin == pytest.approx(tuple(map(float, ds.ImagePositionPatient)), abs=1e-4)
    row, column = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    expected = np.column_stack([row, column, np.cross(row, column)])  # direction columns: x, y, z index axes
    np.testing.assert_allclose(np.reshape(geometry.direction, (3, 3)), expected, atol=1e-4)
    with pytest.raises(ValueError, match=r"rtdose\.dcm: a multi-frame DICOM file of 15 frames"):
        load_sample(path, 2)


def test_rgb_multi_frame_file():
    array, _ = load_sample(get_testdata_file("SC_rgb_rle_2frame.dcm"), 3)
    np.testing.assert_array_equal(array, pydicom.dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm")).pixel_array)


def test_single_frame_file_where_a_volume_is_expected():
    with pytest.raises(ValueError, match=r"CT_small\.dcm: a single-frame DICOM image \(2D\) where a volume"):
        load_sample(get_testdata_file("CT_small.dcm"), 3)


@pytest.mark.parametrize("name", ["rtplan.dcm", "rtstruct.dcm"])
def test_file_without_pixel_data(name):
    assert "PixelData" not in pydicom.dcmread(get_testdata_file(name), force=True)
    with pytest.raises(ValueError, match=rf"{name}: a DICOM file without pixel data .*remove it"):
        load_sample(get_testdata_file(name), 2)


def test_pixel_data_simpleitk_cannot_decode():
    # pydicom's JPEG 2000 file with a sequence delimiter inside its codestream: GDCM refuses it
    name = "JPEG2000-embedded-sequence-delimiter.dcm"
    syntax = str(pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True).file_meta.TransferSyntaxUID)
    with pytest.raises(ValueError, match=rf"{name}: SimpleITK cannot decode .*JPEG 2000.*{syntax}.*gdcmconv"):
        load_sample(get_testdata_file(name), 2)


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "JPEG-lossy.dcm"])
def test_twelve_bit_jpeg_that_simpleitk_decodes_wrongly_is_refused(name):
    """GDCM reads pydicom's 12-bit JPEG files with a warning only, its values cut to 8 bits (a maximum of 264
    where 12 bits hold up to 4095): refused, naming the file and its bits (pydicom's reading of the header)."""
    ds = pydicom.dcmread(get_testdata_file(name), stop_before_pixels=True)
    assert int(ds.BitsStored) == 12
    with pytest.raises(ValueError, match=rf"{name}: 12-bit JPEG extended .*wrong values.*gdcmconv"):
        load_sample(get_testdata_file(name), 2)


@pytest.mark.parametrize("name", ["SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm"])
def test_rle_colour_of_more_than_8_bits_that_simpleitk_decodes_wrongly_is_refused(name):
    # its red, green and blue stripes came back green, blue and red with the bytes mixed, without a word
    with pytest.raises(ValueError, match=rf"{name}: (16|32)-bit colour pixel data compressed as RLE lossless.*gdcmconv"):
        load_sample(get_testdata_file(name), 2)
    array, _ = load_sample(get_testdata_file("SC_rgb_rle.dcm"), 2)  # 8 bits: right
    np.testing.assert_array_equal(array, pydicom.dcmread(get_testdata_file("SC_rgb_rle.dcm")).pixel_array)


def test_an_image_of_another_type_named_dcm_is_said_to_be_one(tmp_path):
    # it was "a DICOM file without pixel data (an RT plan, a structure set, a report, ...)"
    import cv2

    (tmp_path / "scan.dcm").write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    with pytest.raises(ValueError, match=r"scan\.dcm: not a DICOM file but a PNG image named \.dcm; rename it"):
        load_sample(tmp_path / "scan.dcm", 2)


def test_reading_leaves_the_locale_as_it_was(tmp_path):
    write_series(tmp_path / "ct", hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A)
    before = locale.setlocale(locale.LC_ALL)
    load_sample(tmp_path / "ct", 3)
    load_sample(get_testdata_file("CT_small.dcm"), 2)
    assert locale.setlocale(locale.LC_ALL) == before


# --- series --------------------------------------------------------------------------------


def test_series_reads_in_position_order_with_its_spacing(tmp_path):
    volume = hu_volume()
    names = write_series(tmp_path / "ct", volume, (2.5, 0.8, 0.7), (-10.0, 20.0, -30.0), UID_A)
    assert names != sorted(names)  # the file names' order is not the slices'
    array, geometry = load_sample(tmp_path / "ct", 3)
    np.testing.assert_array_equal(array, volume)
    assert geometry.spacing == pytest.approx((2.5, 0.8, 0.7), abs=1e-4)
    assert geometry.origin == pytest.approx((-10.0, 20.0, -30.0), abs=1e-4)  # the first slice's position


def test_series_with_a_missing_slice_names_the_series(tmp_path):
    write_series(tmp_path / "ct", hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A, skip=(3,))
    with pytest.raises(ValueError, match=rf"DICOM series {UID_A} in .*ct: uneven slice spacing, a gap of 4 mm"):
        load_sample(tmp_path / "ct", 3)


def test_a_tilted_or_mixed_series_is_refused_naming_what_to_do(tmp_path):
    # a gantry tilt of 1.5 mm per slice was read onto a rectangular grid: the map's peak 6.2 mm off the lesion
    write_series(tmp_path / "tilt", hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A, shear=1.5)
    with pytest.raises(ValueError, match=rf"{UID_A} in .*tilt: the slices shift by 7.5 mm within their plane .*dcm2niix"
                       ):  # fmt: skip
        load_sample(tmp_path / "tilt", 3)
    # positions rounded by the scanner (0.01 mm per slice, under half a pixel over the series): read
    write_series(tmp_path / "round", hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A, shear=0.01)
    assert load_sample(tmp_path / "round", 3)[0].shape == hu_volume().shape
    # one slice of another orientation, or another pixel spacing: read with the first slice's before
    import pydicom

    odd_slices = (("turned", "ImageOrientationPatient", [0, 1, 0, 1, 0, 0]), ("finer", "PixelSpacing", [0.9, 0.9]))
    for name, key, value in odd_slices:
        names = write_series(tmp_path / name, hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A)
        odd = pydicom.dcmread(tmp_path / name / names[2])  # SimpleITK's writer sets these tags from the image
        setattr(odd, key, value)
        odd.save_as(tmp_path / name / names[2])
        with pytest.raises(ValueError, match=rf"{name}: slice .* has another orientation or pixel spacing"):
            load_sample(tmp_path / name, 3)


def test_series_of_one_slice(tmp_path):
    write_series(tmp_path / "ct", hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A, skip=(0, 1, 2, 3, 4))
    with pytest.raises(ValueError, match=rf"DICOM series {UID_A} in .*ct: a series of one slice"):
        load_sample(tmp_path / "ct", 3)


def test_series_folder_where_a_2d_image_is_expected(tmp_path):
    write_series(tmp_path / "ct", hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A)
    with pytest.raises(ValueError, match=r"ct: a DICOM series folder where a 2D image is expected"):
        load_sample(tmp_path / "ct", 2)


def test_two_series_in_one_folder(tmp_path):
    first, second = hu_volume(seed=1), hu_volume(seed=2)
    write_series(tmp_path / "mixed", first, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A, seed=3)
    for name in write_series(tmp_path / "b", second, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_B, seed=4):
        shutil.move(tmp_path / "b" / name, tmp_path / "mixed" / f"B{name}")
    with pytest.raises(ValueError, match=r"mixed: holds 2 DICOM series, SeriesInstanceUIDs .*") as caught:
        load_sample(tmp_path / "mixed", 3)
    assert UID_A in str(caught.value) and UID_B in str(caught.value)
    for uid, volume in [(UID_A, first), (UID_B, second)]:  # an id naming one series reads that one
        sample_id = f"mixed@{uid}"
        assert split_series(sample_id) == ("mixed", uid)
        path = sample_path(tmp_path, sample_id, "dcm")
        assert path == tmp_path / "mixed"
        np.testing.assert_array_equal(load_sample(path, 3, split_series(sample_id)[1])[0], volume)
    with pytest.raises(ValueError, match=r"no DICOM series with SeriesInstanceUID 1\.2\.3"):
        load_sample(tmp_path / "mixed", 3, "1.2.3")
    # the skip policy leaves such a sample out like any unreadable one, and keeps the others
    pre = Preprocessing(size=(4, 4, 4), channels=1, standardize="minmax", interpolation="linear")
    ids = ["mixed", f"mixed@{UID_B}"]
    preprocess_shard([tmp_path / "mixed"] * 2, ids, None, None, pre, tmp_path / "pre.h5", on_error="skip")
    with h5store.PreprocessedShard.open(tmp_path / "pre.h5") as shard:
        assert shard.skipped.tolist() == [True, False]
        assert UID_A in shard.skip_reasons[0] and UID_B in shard.skip_reasons[0]


def test_split_series_takes_only_a_uid():
    assert split_series("p7/ct@1.2.840.113619.2.55") == ("p7/ct", "1.2.840.113619.2.55")
    assert split_series("p7/scan@2.png") == ("p7/scan@2.png", None)  # a file name with an @
    assert split_series("p7/ct") == ("p7/ct", None)
    assert split_series("ct@1." + "2" * 64) == ("ct@1." + "2" * 64, None)  # longer than a UID may be


def test_output_names_of_series_ids_are_valid_files(tmp_path):
    name = overlay_name(f"p7/mixed@{UID_A}", 1)
    assert name == f"p7.mixed@{UID_A}.class_1.png"
    (tmp_path / name).write_bytes(b"")  # a plain file name: no folder, no character a file system refuses
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_discovery_lists_a_series_folder_as_one_sample(tmp_path):
    write_series(tmp_path / "p1" / "ct", hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_A)
    write_series(tmp_path / "p2", hu_volume(), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0), UID_B)
    shutil.copy(get_testdata_file("rtdose.dcm"), tmp_path / "dose.dcm")  # a multi-frame file: a sample of its own
    sheet = discover_folder(tmp_path, "auto", series_folders=True)
    assert sheet.ids == ("dose.dcm", "p1/ct", "p2") and sheet.labels is None
    # every series folder at the top: none of them is a class
    (tmp_path / "dose.dcm").unlink()
    shutil.rmtree(tmp_path / "p1")
    assert discover_folder(tmp_path, "auto", series_folders=True).ids == ("p2",)
    # 2D: the slices are samples each
    assert len(discover_folder(tmp_path, "auto").ids) == 6


# --- the pipeline ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_pipeline_on_dicom_series(tmp_path):
    """Three DICOM series as volumes, two of them in one folder named by a sample table's ``folder@UID`` ids.

    The model's class 0 score is the mean intensity (test_pipeline_inputs.intensity_model), so
    Grad-CAM's peak lies on the bright blob written into each series.
    """
    from pipeline_runs import snakemake_ok
    from test_pipeline_inputs import base_config, blob, intensity_model

    from xaipipe.readers import load_volume

    shape, spacing = (8, 12, 10), (2.5, 0.8, 0.7)
    centres = {f"mixed@{UID_A}": (2, 3, 3), f"mixed@{UID_B}": (5, 8, 6), "single": (4, 6, 7)}
    for k, (sample_id, centre) in enumerate(centres.items()):
        hu = np.random.default_rng(k).normal(-800, 30, shape).astype(np.int16)
        hu[blob(shape, centre, 2)] = 400
        folder, uid = split_series(sample_id)
        names = write_series(tmp_path / "dicom" / "b", hu, spacing, (0.0, 0.0, 0.0), uid or UID_A, seed=k)
        (tmp_path / "dicom" / folder).mkdir(exist_ok=True)
        for name in names:
            shutil.move(tmp_path / "dicom" / "b" / name, tmp_path / "dicom" / folder / f"{k}{name}")
    # and two real MRI volumes no one here wrote, in the same run: nibabel's (big-endian int16; the same
    # anatomy re-oriented and moved), whose maps must carry the sources' affine as nibabel reads it
    real = ("anatomical.nii", "reoriented_anat_moved.nii")
    nibabel_data = Path(nib.__file__).parent / "tests" / "data"
    for name in real:
        shutil.copy(nibabel_data / name, tmp_path / "dicom" / name)
    (tmp_path / "samples.csv").write_text("SAMPLE\n" + "\n".join([*centres, *real]) + "\n")
    intensity_model((8, 8, 8, 1), tmp_path / "model.keras")
    config = base_config(
        tmp_path,
        data={"images": str(tmp_path / "dicom"), "samples": str(tmp_path / "samples.csv")},
        preprocessing={"size": [8, 8, 8], "channels": 1, "standardize": "minmax"},
        methods=["gradcam"],
        evaluation={"metrics": []},
    )
    snakemake_ok(tmp_path, config)
    for sample_id, centre in centres.items():
        out = load_volume(tmp_path / "results/overlays/gradcam" / overlay_name(sample_id, None, ".nii.gz"))
        assert out.array.shape == shape and out.spacing == pytest.approx(spacing, abs=1e-4)
        peak = np.unravel_index(out.array.argmax(), out.array.shape)
        assert blob(shape, centre, 3)[peak], (sample_id, peak, centre)
        # the series' grid in nibabel's RAS terms, by hand: origin 0, axes x, y, z = -L, -P, S, spacing (x, y, z)
        written = nib.load(tmp_path / "results/overlays/gradcam" / overlay_name(sample_id, None, ".nii.gz"))
        np.testing.assert_allclose(written.affine, np.diag([-spacing[2], -spacing[1], spacing[0], 1.0]), atol=1e-4)
    for name in real:
        source = nib.load(nibabel_data / name)
        written = nib.load(tmp_path / "results/overlays/gradcam" / overlay_name(name, None, ".nii.gz"))
        assert written.shape == source.shape[:3]
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-4)
