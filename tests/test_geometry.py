"""Geometry of volumes (issue 16): origin and direction read with every volume, kept in the shard, written
with the maps; reorientation and resampling for the model and back.

Expected affines come from nibabel, which reads NIfTI headers independently of SimpleITK.
"""

from __future__ import annotations

import os

import h5py
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from xaipipe.readers import load_sample, load_volume

NIBABEL_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
#: nibabel's bundled volumes, written by nibabel's authors (a real MRI in big-endian int16; the same anatomy
#: re-oriented and moved; a standard test volume; a NIfTI-2 file).
REAL_VOLUMES = (
    "anatomical.nii",
    "reoriented_anat_moved.nii",
    "standard.nii.gz",
)
LPS = np.diag([-1.0, -1.0, 1.0])  # RAS (NIfTI, nibabel) to LPS (SimpleITK) world coordinates


def _affine_of(geometry) -> np.ndarray:
    """The 4x4 RAS affine of numpy index (i=x, j=y, k=z) that nibabel would report, from xaipipe's geometry."""
    affine = np.eye(4)
    columns = np.asarray(geometry.direction).reshape(3, 3) * np.asarray(geometry.spacing[::-1])
    affine[:3, :3] = LPS @ columns
    affine[:3, 3] = LPS @ np.asarray(geometry.origin)
    return affine


@pytest.mark.parametrize("name", REAL_VOLUMES)
def test_real_volumes_read_with_nibabels_affine(name):
    path = os.path.join(NIBABEL_DATA, name)
    source = nib.load(path)
    array, geometry = load_sample(path, 3)
    assert array.shape == source.shape[:3][::-1]
    np.testing.assert_allclose(_affine_of(geometry), source.affine, atol=1e-4)
    expected = np.asarray(source.dataobj).reshape(source.shape[:3]).T
    np.testing.assert_array_equal(array, expected)


def test_a_nifti_with_nan_voxels_is_refused_not_read_as_zeros(tmp_path):
    """nibabel's resampled_anat_moved.nii (big-endian float32) holds NaN where the resampling left the
    anatomy; SimpleITK reads them as 0. The sample stops naming the file and the count nibabel finds;
    the same file with its NaN set to 0 by the user (nibabel) reads with nibabel's affine."""
    path = os.path.join(NIBABEL_DATA, "resampled_anat_moved.nii")
    source = nib.load(path)
    data = np.asarray(source.dataobj)
    bad = int(np.count_nonzero(~np.isfinite(data)))
    assert bad > 0
    with pytest.raises(ValueError, match=rf"resampled_anat_moved\.nii: {bad} non-finite values .*repair or remove"):
        load_sample(path, 3)
    repaired = tmp_path / "repaired.nii"
    nib.Nifti1Image(np.nan_to_num(data), source.affine, source.header).to_filename(repaired)
    array, geometry = load_sample(repaired, 3)
    np.testing.assert_allclose(_affine_of(geometry), source.affine, atol=1e-4)
    np.testing.assert_array_equal(array, np.nan_to_num(data).T)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("name", ["small.nii", "large.nii.gz"])
def test_nan_and_infinity_are_found_anywhere_in_the_voxels(tmp_path, endian, name):
    """In the first bytes after the header and across the 1 MiB chunks the stream is read in."""
    shape = (4, 4, 4) if name == "small.nii" else (130, 64, 40)  # 1.3 MB of float32: two chunks
    rng = np.random.default_rng(0)
    data = rng.random(shape).astype(endian + "f4")
    flat = data.reshape(-1)
    spots = [0, flat.size - 1] + list(rng.choice(flat.size, 3, replace=False))
    flat[spots] = [np.nan, np.inf, -np.inf, np.nan, np.nan]
    nib.Nifti1Image(data, np.eye(4)).to_filename(tmp_path / name)
    with pytest.raises(ValueError, match=rf"{len(set(spots))} non-finite values \(NaN or infinite\) of {flat.size}"):
        load_sample(tmp_path / name, 3)


def test_nifti2_is_refused_naming_the_file_and_what_to_do():
    with pytest.raises(ValueError, match=r"example_nifti2\.nii\.gz: a NIfTI-2 file.*save it as NIfTI-1"):
        load_sample(os.path.join(NIBABEL_DATA, "example_nifti2.nii.gz"), 3)


def test_oblique_nifti_written_by_nibabel_reads_its_origin_and_direction(tmp_path):
    angle = np.deg2rad(30)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.5, 2.5])
    affine[:3, 3] = [-40.0, 12.5, 7.0]
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), affine), tmp_path / "oblique.nii.gz")
    volume = load_volume(tmp_path / "oblique.nii.gz")
    assert volume.spacing == pytest.approx((2.5, 1.5, 0.8))
    np.testing.assert_allclose(volume.origin, LPS @ affine[:3, 3], atol=1e-5)
    np.testing.assert_allclose(np.reshape(volume.direction, (3, 3)), LPS @ rotation, atol=1e-5)


def test_npy_volume_has_identity_direction_and_zero_origin(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((2, 3, 4), np.float32))
    _, geometry = load_sample(tmp_path / "v.npy", 3)
    assert geometry.origin == (0.0, 0.0, 0.0) and geometry.direction == (1, 0, 0, 0, 1, 0, 0, 0, 1)


def test_singular_direction_stops_naming_the_file(tmp_path):
    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "TransformMatrix = 1 0 0 0 1 0 0 0 0\nOffset = 0 0 0\nElementSpacing = 1 1 1\nDimSize = 4 3 2\n"
        "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
    )
    (tmp_path / "flat.mha").write_bytes(header.encode() + bytes(24))
    with pytest.raises(ValueError, match=r"flat\.mha: its direction .* is not invertible"):
        load_sample(tmp_path / "flat.mha", 3)


# --- LPS voxel order for display (the gallery's volume views) -----------------------------


def _directions():
    """All 48 axis-aligned directions (signed permutations), each also tilted 20 degrees about z (oblique)."""
    import itertools

    angle = np.deg2rad(20)
    tilt = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    for world_of in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            aligned = np.zeros((3, 3))
            for k, w in enumerate(world_of):
                aligned[w, k] = signs[k]
            yield aligned
            yield tilt @ aligned


def test_to_lps_matches_simpleitks_dicomorient():
    """Numpy's permutation and flips give DICOMOrient's LPS array (its own choice of axes) for every signed
    permutation, axis-aligned or oblique, and ``index_to_lps`` follows each voxel."""
    from xaipipe.geometry import index_to_lps, to_lps

    volume = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    for direction in _directions():
        image = sitk.GetImageFromArray(volume)
        image.SetDirection(direction.ravel().tolist())
        expected = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))
        np.testing.assert_array_equal(to_lps(volume, direction.ravel()), expected)
        for index in np.ndindex(volume.shape):
            assert expected[index_to_lps(index, volume.shape, direction.ravel())] == volume[index]


def test_world_to_index_inverts_simpleitks_index_to_point():
    from xaipipe.geometry import Geometry

    oblique = list(_directions())[3]  # z reversed, tilted about z
    geometry = Geometry((2.0, 0.5, 1.5), (10.0, -4.0, 7.0), tuple(oblique.ravel()))
    image = geometry.image(np.zeros((3, 4, 5), np.float32))
    point = image.TransformContinuousIndexToPhysicalPoint((1.25, 2.5, 0.75))  # SimpleITK's (x, y, z) index
    np.testing.assert_allclose(geometry.world_to_index(point), (0.75, 2.5, 1.25), atol=1e-9)


# --- the pipeline: preprocess, a map, render -------------------------------------------


def _render_input_maps(tmp_path, paths, preprocessing, fmt="nii.gz", preprocess_overlay=True):
    """Preprocess ``paths`` with the pipeline's stage, take each model input (min-max scaled) as its map (so the map
    peaks where the input is brightest, by construction), and render them with the pipeline's stage."""
    from xaipipe import h5store
    from xaipipe.stages import preprocess_shard, render_shard

    pre, maps_path = tmp_path / "pre.h5", tmp_path / "maps.h5"
    ids = [f"s{k}" for k in range(len(paths))]
    preprocess_shard(paths, ids, None, ["x"], preprocessing, pre, preprocess_overlay=preprocess_overlay)
    with h5store.PreprocessedShard.open(pre) as shard:
        inputs = shard.inputs(slice(None))[..., 0]
    lo = inputs.min(axis=(1, 2, 3), keepdims=True)
    normalized = (inputs - lo) / np.maximum(inputs.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)
    with h5store.heatmaps_writer(maps_path, ids, len(ids), preprocessing.size) as writer:
        rows = np.arange(len(ids), dtype=np.int32)
        writer.write(slice(None), rows, np.zeros(len(ids), np.int32), normalized)
    outs = [tmp_path / "out" / f"{k}.{fmt}" for k in range(len(ids))]
    render_shard(pre, maps_path, outs, True, 0.25, "jet")
    return outs


def _preprocessing(size=(8, 8, 8), **kwargs):
    from xaipipe.preprocess import Preprocessing

    return Preprocessing(size=size, channels=1, standardize="minmax", interpolation="linear", **kwargs)


@pytest.mark.parametrize("orientation", ["none", "RAS"])
def test_maps_of_real_volumes_carry_their_sources_affine(tmp_path, orientation):
    paths = [os.path.join(NIBABEL_DATA, name) for name in REAL_VOLUMES]
    outs = _render_input_maps(tmp_path, paths, _preprocessing(orientation=orientation))
    for path, out in zip(paths, outs):
        source, written = nib.load(path), nib.load(out)
        assert written.shape == source.shape[:3], path
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-4, err_msg=path)


def _oblique_blob_volume(path, blob_ijk):
    """An oblique (rotated 30 degrees about z), shifted, anisotropic volume with a bright blob at voxel
    ``blob_ijk`` (nibabel's x, y, z index order), written by nibabel; its RAS affine."""
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 1.0, 2.0])
    affine[:3, 3] = [-30.0, 15.0, 40.0]
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in (28, 24, 20)), indexing="ij"), axis=-1)
    distance2 = (((grid - np.asarray(blob_ijk)) * np.array([1.5, 1.0, 2.0])) ** 2).sum(axis=-1)
    data = (100.0 * np.exp(-distance2 / (2 * 2.5**2)) + 5.0).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), path)
    return affine


def test_reoriented_and_resampled_map_peaks_at_the_blobs_world_position(tmp_path):
    blob = (18, 8, 12)
    affine = _oblique_blob_volume(tmp_path / "oblique.nii.gz", blob)
    # a model input fine enough (about 1.25 mm) that the resize to it and back moves the peak by less than a voxel
    preprocessing = _preprocessing((32, 20, 32), orientation="RAS", spacing=(1.25, 1.25, 1.25))
    for overlay in (True, False):
        folder = tmp_path / str(overlay)
        (out,) = _render_input_maps(folder, [tmp_path / "oblique.nii.gz"], preprocessing, preprocess_overlay=overlay)
        written = nib.load(out)
        np.testing.assert_allclose(written.affine, affine, atol=1e-4)  # the source's grid
        assert written.shape == (28, 24, 20)
        data = np.asarray(written.dataobj)
        peak = np.unravel_index(np.argmax(data), data.shape)
        peak_world, blob_world = (written.affine @ [*peak, 1])[:3], (affine @ [*blob, 1])[:3]
        assert np.linalg.norm(peak_world - blob_world) <= 2.0  # one voxel: the largest spacing, 2 mm
    with h5py.File(tmp_path / "True" / "pre.h5") as f:  # the model saw the volume in RAS at 1.25 mm
        ras_columns = LPS @ f["map_grid_direction"][0].reshape(3, 3)  # each grid axis' direction in RAS world
        assert np.argmax(np.abs(ras_columns), axis=0).tolist() == [0, 1, 2]  # x mostly R-L, y A-P, z S-I
        assert (np.diag(ras_columns) > 0).all()  # RAS: each axis increases towards R, A, S
        np.testing.assert_allclose(f["map_grid_spacing"][0], 1.25)


def test_orientation_none_writes_the_same_map_bytes_for_an_axis_aligned_volume(tmp_path):
    from xaipipe import drawing, h5store
    from xaipipe.writers import write_nifti

    data = np.zeros((14, 12, 10), np.float32)
    data[3:5, 6:9, 2:4] = 50.0
    straight = tmp_path / "straight.nii"
    write_nifti(straight, data, (2.0, 1.0, 1.5))  # axis-aligned at the origin
    (out,) = _render_input_maps(tmp_path, [straight], _preprocessing())
    with h5store.HeatmapsFile.open(tmp_path / "maps.h5") as maps:
        normalized = maps.normalized(0)
    reference = tmp_path / "reference.nii.gz"  # what render wrote before the geometry: the map with its spacing only
    write_nifti(reference, drawing.map_at(normalized, (14, 12, 10)), (2.0, 1.0, 1.5), value_range=(0.0, 1.0))
    assert out.read_bytes() == reference.read_bytes()


def test_a_crop_moves_the_maps_origin_as_nibabels_slicer_does(tmp_path):
    from xaipipe.subfunctions import Crop

    _oblique_blob_volume(tmp_path / "oblique.nii.gz", (18, 8, 12))
    source = nib.load(tmp_path / "oblique.nii.gz")  # (x, y, z) = (28, 24, 20); numpy (z, y, x) = (20, 24, 28)
    preprocessing = _preprocessing(subfunctions=(Crop((10, 10, 10)),))
    (out,) = _render_input_maps(tmp_path, [tmp_path / "oblique.nii.gz"], preprocessing)
    expected = source.slicer[9:19, 7:17, 5:15]  # the centre window: starts (28-10)//2, (24-10)//2, (20-10)//2
    written = nib.load(out)
    assert written.shape == expected.shape
    np.testing.assert_allclose(written.affine, expected.affine, atol=1e-4)


def test_a_mask_meets_the_maps_on_the_reoriented_models_grid(tmp_path):
    """A mask lies on its volume's grid; with orientation RAS the maps lie on the model's grid, flipped in x and y
    from this LPS-stored volume: the localization metrics see the mask flipped the same way (by hand: np.flip)."""
    import SimpleITK as sitk

    from xaipipe import evaluate, h5store
    from xaipipe.stages import preprocess_shard

    volume = np.random.default_rng(0).random((6, 8, 10)).astype(np.float32)
    mask = np.zeros((6, 8, 10), np.uint8)
    mask[1:3, 0:2, 0:3] = 1  # low z, anterior (low y), patient's right (low x): a corner
    for name, array in (("v.nii.gz", volume), ("m.nii.gz", mask)):
        image = sitk.GetImageFromArray(array)  # identity direction: LPS voxel order
        image.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(image, str(tmp_path / name))
    pre = tmp_path / "pre.h5"
    preprocessing = _preprocessing(size=(6, 8, 10), orientation="RAS")
    preprocess_shard([tmp_path / "v.nii.gz"], ["v"], None, ["x"], preprocessing, pre, preprocess_overlay=False)
    regions = evaluate._mask_regions(
        pre, ["v"], [str(tmp_path / "m.nii.gz")], ["pointing_game"], (6, 8, 10), np.zeros(1, bool), "fail",
        "evaluate:test", h5store.SkipRecord(1),
    )  # fmt: skip
    np.testing.assert_array_equal(regions[0], np.flip(mask, axis=(1, 2)).astype(bool))


@pytest.mark.e2e
def test_pipeline_reorients_resamples_and_puts_the_map_back_on_an_oblique_scan(tmp_path):
    """The real workflow on an oblique, shifted scan with a bright blob, preprocessing.orientation RAS and a
    target spacing: a model whose class score is the mean intensity (Grad-CAM's map is its input there), so the
    map's peak in the output NIfTI, in world coordinates by nibabel's affine, lies within one voxel (2 mm) of the
    blob's, and the map has the scan's own affine and shape."""
    from pipeline_runs import snakemake_ok
    from test_pipeline_inputs import base_config, intensity_model

    from xaipipe.naming import overlay_name

    blob = (18, 8, 12)
    (tmp_path / "scans").mkdir()
    affine = _oblique_blob_volume(tmp_path / "scans" / "oblique.nii.gz", blob)
    intensity_model((32, 20, 32, 1), tmp_path / "model.keras")
    preprocessing = {"size": [32, 20, 32], "channels": 1, "standardize": "minmax", "orientation": "RAS",
                     "spacing": [1.25, 1.25, 1.25]}  # fmt: skip
    config = base_config(
        tmp_path, data={"images": str(tmp_path / "scans")}, preprocessing=preprocessing, methods=["gradcam"],
        evaluation={"metrics": []},
    )  # fmt: skip
    snakemake_ok(tmp_path, config)
    written = nib.load(tmp_path / "results/overlays/gradcam" / overlay_name("oblique.nii.gz", None, ".nii.gz"))
    np.testing.assert_allclose(written.affine, affine, atol=1e-4)
    assert written.shape == (28, 24, 20)
    data = np.asarray(written.dataobj)
    peak = np.unravel_index(np.argmax(data), data.shape)
    assert np.linalg.norm((written.affine @ [*peak, 1])[:3] - (affine @ [*blob, 1])[:3]) <= 2.0


def test_a_nifti_whose_sform_and_qform_disagree_is_named_with_how_far(tmp_path):
    # qform at (10, 20, 30), sform at (40, 50, 60): read by the qform, the maps lay 52 mm off in nibabel, no word
    from xaipipe import h5store
    from xaipipe.preprocess import Preprocessing
    from xaipipe.readers import nifti_form_offset
    from xaipipe.stages import preprocess_shard

    volume = np.zeros((6, 7, 8), np.int16)
    volume[2, 3, 4] = 100
    image = nib.Nifti1Image(volume, np.eye(4))
    q, s = np.diag([0.8, 0.9, 2.0, 1.0]), np.diag([0.8, 0.9, 2.0, 1.0])
    q[:3, 3], s[:3, 3] = (10, 20, 30), (40, 50, 60)
    image.set_qform(q, code=1)
    image.set_sform(s, code=2)
    nib.save(image, tmp_path / "forms.nii.gz")
    loaded = nib.load(tmp_path / "forms.nii.gz")
    corners = np.array([[i, j, k, 1] for i in (0, 5) for j in (0, 6) for k in (0, 7)], float)
    expected = np.linalg.norm(corners @ (loaded.get_qform() - loaded.get_sform()).T, axis=1).max()
    assert nifti_form_offset(tmp_path / "forms.nii.gz") == pytest.approx(expected, abs=1e-4)  # 51.96 mm
    image.set_sform(q, code=2)  # the two agree: no distance to speak of
    nib.save(image, tmp_path / "agree.nii")
    assert nifti_form_offset(tmp_path / "agree.nii") == pytest.approx(0.0, abs=1e-4)
    image.set_sform(None, code=0)
    nib.save(image, tmp_path / "qonly.nii")
    assert nifti_form_offset(tmp_path / "qonly.nii") is None
    pre = Preprocessing(size=(6, 7, 8), channels=1, interpolation="linear")
    paths = [tmp_path / "forms.nii.gz", tmp_path / "agree.nii"]
    preprocess_shard(paths, ["forms", "agree"], None, None, pre, tmp_path / "pre.h5")
    with h5store.PreprocessedShard.open(tmp_path / "pre.h5") as shard:
        (issue,) = shard.issues
    assert issue.sample == "forms" and issue.kind == "warning"
    assert "sform and qform place the volume 52 mm apart; xaipipe reads the qform" in issue.reason
    assert load_volume(tmp_path / "forms.nii.gz").geometry.origin == pytest.approx((-10, -20, 30))  # the qform's, LPS


def test_a_finer_spacing_keeps_the_volumes_values_at_its_far_edge():
    """preprocessing.spacing finer than the scan's: the new grid (round(extent / spacing) voxels from the same
    origin) reaches past the last source voxel, where SimpleITK filled 0 - water in a CT of air at -1000 HU, a
    plane the model saw that no scanner made. The far edge now repeats the border voxels (MONAI's Spacing pads
    with the border too). Closed forms: a constant volume stays constant; a ramp along z is linear inside and
    holds its last value beyond."""
    from xaipipe.geometry import resample_to_spacing

    z = np.arange(16, dtype=np.float32)
    ramp = np.broadcast_to((-1000 + 10 * z)[:, None, None], (16, 5, 6)).astype(np.int16)
    image = sitk.GetImageFromArray(ramp)
    image.SetSpacing((1.0, 1.0, 3.0))
    out = sitk.GetArrayFromImage(resample_to_spacing(image, (1.0, 1.0, 1.0)))
    assert out.shape == (48, 5, 6) and out.dtype == np.int16
    # new voxel k sits at k mm, source voxel j at 3 j mm: inside, -1000 + 10 k / 3; beyond 45 mm, the last value
    expected = np.minimum(-1000 + 10 * np.arange(48) / 3, -1000 + 10 * 15)
    np.testing.assert_allclose(out[:, 2, 3], np.round(expected), atol=1)
    assert (out == out[:, :1, :1]).all()  # constant across each slice, to the edges in y and x too


def test_a_map_on_a_coarser_grid_reaches_the_images_last_voxels_but_a_crop_stays_0_outside():
    """preprocessing.spacing 2 mm over 24 voxels of 1 mm: the model's 12 voxels end half a voxel short of the last
    source voxel's centre, and the NIfTI map's whole plane there was 0 (a helper's study; the model saw that
    region). Where the model's grid covers the image (reoriented, resampled) the outermost voxels now take the
    nearest map value; a map of a crop is still 0 outside the crop."""
    from xaipipe.geometry import Geometry
    from xaipipe.stages import on_overlay_grid

    image = Geometry((1.0, 1.0, 1.0), (5.0, -3.0, 2.0))  # spacing (z, y, x), origin (x, y, z)
    heatmap = np.broadcast_to(np.arange(12, dtype=np.float32) / 11, (4, 6, 12)).copy()  # a ramp along x
    coarse = Geometry((1.0, 1.0, 2.0), (5.0, -3.0, 2.0))  # same origin, 2 mm along x: voxel k at x = 2k mm
    out = on_overlay_grid(heatmap, (coarse, (4, 6, 12)), image, (4, 6, 24), False)
    # image voxel i at x = i mm: map index i / 2, linear between map voxels, the last (23: index 11.5) the edge's
    expected = np.minimum(np.arange(24) / 2, 11) / 11
    np.testing.assert_allclose(out[2, 3], expected, atol=1e-6)
    assert (out[:, :, -1] == 1).all()  # the plane that was 0
    crop = Geometry((1.0, 1.0, 1.0), (5.0 + 8, -3.0, 2.0))  # x voxels 8..15 of the image, as a crop gives
    ones = np.ones((4, 6, 8), np.float32)
    cropped = on_overlay_grid(ones, (crop, (4, 6, 8)), image, (4, 6, 24), False)
    np.testing.assert_array_equal(cropped[2, 3], (np.arange(24) >= 8) & (np.arange(24) < 16))
