"""How maps are stored: raw maps and two numbers per map in the heatmaps files, 8-bit NIfTI maps with their scaling.

Each stored map is compared with the float32 map it stands for, computed independently
(each normalization's definition written out with numpy here; nibabel reading the NIfTI
header's scaling).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from xaipipe import drawing, h5store
from xaipipe.maps import normalize_maps, resize_linear

def smooth_maps(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Grad-CAM-like maps: a coarse random grid upsampled bilinearly, of both signs, at an arbitrary scale."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n, *(max(2, s // 32) for s in shape))).astype(np.float32) * 3.7
    return resize_linear(coarse, shape)


def noisy_maps(n: int, shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    """Saliency-like maps: per-pixel noise over a smooth envelope, tiny values (gradients)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, *shape)).astype(np.float32) * (0.2 + np.abs(smooth_maps(n, shape, seed)))) * 1e-3


def write_heatmaps(path, raw: np.ndarray, mode: str) -> None:
    with h5store.heatmaps_writer(
        path, ["a", "b"], len(raw), raw.shape[1:], method="m", method_params={"normalize": mode}
    ) as writer:
        writer.write(slice(0, len(raw)), np.arange(len(raw)) % 2, np.zeros(len(raw)), raw)


def by_definition(raw: np.ndarray, mode: str) -> np.ndarray:
    """Each map normalized as its mode is defined, map by map, in float32."""
    out = []
    for v in raw.astype(np.float32):
        if mode == "minmax":
            out.append((v - v.min()) / (v.max() - v.min()))
        elif mode == "positive":
            out.append(np.maximum(v, 0) / v.max())
        else:
            top = np.abs(v).max()
            out.append((np.abs(v) if mode == "absolute" else v) / top)
    return np.stack(out)


@pytest.mark.parametrize("mode", ["minmax", "signed", "positive", "absolute"])
@pytest.mark.parametrize("make", [smooth_maps, noisy_maps])
def test_normalized_maps_read_back_exactly_from_the_raw_maps_and_two_numbers_per_map(tmp_path, make, mode):
    raw = make(6, (48, 40))
    if mode == "positive":
        raw[0] = np.abs(raw[0])  # one map without negative values, whose minimum stays where it is
    write_heatmaps(tmp_path / "h.h5", raw, mode)
    with h5store.HeatmapsFile.open(tmp_path / "h.h5") as maps:
        f = maps.file
        assert f.attrs["schema_version"] == 3 and "normalized" not in f
        assert f["raw"].dtype == np.float32 and f["raw"].chunks == (1, 48, 40) and f["raw"].compression == "gzip"
        assert f["norm_offset"].shape == f["norm_divisor"].shape == (6,)
        stored_raw = np.stack([maps.raw(m) for m in range(len(maps))])
        stored = np.stack([maps.normalized(m) for m in range(len(maps))])
    np.testing.assert_array_equal(stored_raw, raw)  # the raw maps are exact
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, by_definition(raw, mode))  # and so are the normalized ones, bit for bit
    np.testing.assert_array_equal(stored, normalize_maps(raw, mode))  # as the methods' own normalization makes them


def test_flat_and_skipped_maps_read_back_as_zeros_and_nan(tmp_path):
    with h5store.heatmaps_writer(tmp_path / "h.h5", ["a", "b"], 3, (4, 4), method="m") as writer:
        writer.write(slice(0, 2), np.array([0, 0]), np.array([0, 1]), np.stack([np.full((4, 4), 2.5), np.eye(4)]))
        writer.write_skipped(slice(2, 3), 1)
    with h5store.HeatmapsFile.open(tmp_path / "h.h5") as maps:
        np.testing.assert_array_equal(maps.normalized(0), np.zeros((4, 4)))  # a constant map: zeros (minmax)
        np.testing.assert_array_equal(maps.normalized(1), np.eye(4))
        assert np.isnan(maps.normalized(2)).all() and np.isnan(maps.raw(2)).all()


def test_overlays_drawn_from_stored_maps_are_those_of_the_computed_maps(tmp_path):
    raw = smooth_maps(4, (64, 64), seed=3)
    image = np.random.default_rng(5).integers(0, 256, (150, 130, 3), np.uint8)
    for mode in ("minmax", "signed"):
        write_heatmaps(tmp_path / f"{mode}.h5", raw, mode)
        exact = by_definition(raw, mode)
        with h5store.HeatmapsFile.open(tmp_path / f"{mode}.h5") as maps:
            for m in range(len(maps)):
                before = drawing.draw(exact[m], image, 2, True, 0.25, "jet", mode == "signed")
                after = drawing.draw(maps.normalized(m), image, 2, True, 0.25, "jet", mode == "signed")
                np.testing.assert_array_equal(after, before)


@pytest.mark.parametrize("version, dtype", [(1, np.float32), (2, np.float16)])
def test_a_heatmaps_file_of_an_earlier_schema_version_still_reads(tmp_path, version, dtype):
    """A file as written before (its layout spelled out with h5py, not with the writer): the normalized maps
    stored themselves, as float32 (version 1) or float16 (version 2)."""
    raw = smooth_maps(3, (8, 6))
    normalized = by_definition(raw, "minmax").astype(dtype)
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(schema=h5store.HEATMAPS, schema_version=version, xaipipe_version="0.1", method="m")
        f.create_dataset("ids", data=np.array(["a", "b", "c"], dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("sample_index", data=np.arange(3, dtype=np.int32))
        f.create_dataset("class_index", data=np.zeros(3, np.int32))
        for name, data in (("raw", raw), ("normalized", normalized)):
            f.create_dataset(name, data=data, chunks=(1, 8, 6), compression="gzip", compression_opts=1, shuffle=True)
    with h5store.HeatmapsFile.open(path) as maps:
        assert maps.ids == ["a", "b", "c"] and maps.map_shape == (8, 6)
        for m in range(3):
            assert maps.normalized(m).dtype == np.float32
            np.testing.assert_array_equal(maps.normalized(m), normalized[m].astype(np.float32))  # as stored
            np.testing.assert_array_equal(maps.raw(m), raw[m])


@pytest.mark.parametrize(
    "layout",
    [
        dict(chunks=(1, 8, 6), compression="gzip", compression_opts=4, shuffle=True),  # the writer's, by HDF5
        dict(chunks=(1, 8, 6), compression="gzip", compression_opts=4),  # no shuffle
        dict(chunks=(2, 8, 6), compression="gzip", compression_opts=4, shuffle=True),  # two maps a chunk
        dict(chunks=(1, 8, 6), compression="lzf", shuffle=True),
        dict(),  # contiguous
    ],
)
def test_raw_maps_read_back_exactly_whatever_their_layout(tmp_path, layout):
    """HeatmapsFile.raw inflates the writer's chunks itself (libdeflate); any other layout, and a map never
    written (its fill value), must read as HDF5 reads it."""
    raw = np.concatenate([smooth_maps(2, (8, 6)), noisy_maps(2, (8, 6))])
    raw[1, 0, 0] = np.nan
    path = tmp_path / "h.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(schema=h5store.HEATMAPS, schema_version=3, xaipipe_version="0.1", method="m")
        f.create_dataset("ids", data=np.array(["a"], dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("sample_index", data=np.zeros(5, np.int32))
        f.create_dataset("class_index", data=np.zeros(5, np.int32))
        for name in h5store.NORMALIZATION_DATASETS:
            f.create_dataset(name, data=np.ones(5, np.float32))
        maps = f.create_dataset("raw", shape=(5, 8, 6), dtype="<f4", fillvalue=np.float32(-7.5), **layout)
        maps[:4] = raw  # the fifth never written
    with h5store.HeatmapsFile.open(path) as stored:
        for m in range(4):
            np.testing.assert_array_equal(stored.raw(m).view(np.uint32), raw[m].view(np.uint32))
        np.testing.assert_array_equal(stored.raw(4), np.full((8, 6), -7.5, np.float32))


def test_overlay_images_are_stored_whole_or_in_slabs_and_read_back_exactly(tmp_path, monkeypatch):
    """One chunk per overlay image (h5py's own chunking cut a 224x224x3 image into 16, each inflated apart),
    slabs along the first axis beyond OVERLAY_CHUNK_BYTES."""
    monkeypatch.setattr(h5store, "OVERLAY_CHUNK_BYTES", 40 * 30 * 3 * 7 + 5)  # at most 7 rows of the volume
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 41, 3), np.uint8)
    volume = rng.integers(0, 256, (20, 40, 30, 3), np.uint8)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f.create_group("overlay_images")
        h5store.put_overlay_image(f, 0, image)
        h5store.put_overlay_image(f, 1, volume)
        assert f["overlay_images/000000"].chunks == image.shape
        assert f["overlay_images/000001"].chunks == (7, 40, 30, 3)
        np.testing.assert_array_equal(f["overlay_images/000000"][()], image)
        np.testing.assert_array_equal(f["overlay_images/000001"][()], volume)


@pytest.mark.parametrize("shape", [(48, 40), (9, 10, 11)])
def test_raw_maps_are_stored_in_hdf5s_own_shuffle_and_gzip_format(tmp_path, shape):
    """The writer compresses each map itself (libdeflate) and writes the chunk directly: the chunk must be what
    HDF5's shuffle and gzip filters would have made of it, so that any HDF5 reader gets the map back. Checked
    three ways: h5py reading through HDF5's filters; each chunk undone by hand (Python's zlib, then the shuffle's
    byte planes put back); and the file no larger than HDF5's own filters at the same level make it."""
    import zlib

    raw = np.concatenate([smooth_maps(3, shape), noisy_maps(2, shape)])
    raw[1].flat[::7] = -0.0  # signed zeros and a denormal keep their bits
    raw[2].flat[0] = np.float32(1e-42)
    write_heatmaps(tmp_path / "h.h5", raw, "minmax")
    with h5py.File(tmp_path / "h.h5") as f:
        raw_maps = f["raw"]
        assert raw_maps.compression == "gzip" and raw_maps.shuffle and raw_maps.chunks == (1, *shape)
        assert raw_maps.dtype == np.dtype("<f4")
        np.testing.assert_array_equal(raw_maps[:].view(np.uint32), raw.view(np.uint32))
        for m in range(len(raw)):
            mask, chunk = raw_maps.id.read_direct_chunk((m,) + (0,) * len(shape))
            assert mask == 0  # both filters applied
            planes = np.frombuffer(zlib.decompress(chunk), np.uint8).reshape(4, -1)
            by_hand = np.ascontiguousarray(planes.T).view("<f4").reshape(shape)
            np.testing.assert_array_equal(by_hand.view(np.uint32), raw[m].view(np.uint32))
        stored = raw_maps.id.get_storage_size()
    with h5py.File(tmp_path / "filters.h5", "w") as f:
        f.create_dataset("raw", data=raw, chunks=(1, *shape), compression="gzip",
                         compression_opts=h5store.RAW_GZIP_LEVEL, shuffle=True)  # fmt: skip
        by_hdf5 = f["raw"].id.get_storage_size()
    assert stored <= 1.01 * by_hdf5


def test_a_heatmaps_file_without_its_normalization_parameters_is_damaged(tmp_path):
    write_heatmaps(tmp_path / "h.h5", smooth_maps(2, (8, 8)), "minmax")
    with h5py.File(tmp_path / "h.h5", "a") as f:
        del f["norm_divisor"]
    with pytest.raises(ValueError, match=r"h\.h5 is damaged: datasets \['norm_divisor'\] missing"):
        h5store.HeatmapsFile.open(tmp_path / "h.h5")


# ---------------------------------------------------------------- NIfTI maps: integers with the scaling in the header

GREY_LEVEL = 1 / 255


def volume_map(shape=(6, 7, 9), seed: int = 2) -> np.ndarray:
    """A [0, 1] map with exact 0 and 1 in it."""
    heat = np.random.default_rng(seed).random(shape).astype(np.float32)
    heat[0, 0, :2] = (0.0, 1.0)
    return heat


def nibabel_values(path) -> np.ndarray:
    """The values nibabel reads (scl_slope and scl_inter applied), in xaipipe's (z, y, x) order."""
    import nibabel  # a test dependency, independent of SimpleITK

    return np.asarray(nibabel.load(str(path)).get_fdata()).transpose(2, 1, 0)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_a_nifti_map_is_stored_in_8_bits_and_read_back_within_half_a_grey_level(tmp_path, ext):
    import nibabel
    import SimpleITK as sitk

    from xaipipe.writers import write_nifti

    heat = volume_map()
    path = tmp_path / f"map{ext}"
    write_nifti(path, heat, (2.0, 1.0, 0.5), value_range=(0.0, 1.0))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    image = nibabel.load(str(path))
    assert image.get_data_dtype() == np.uint8
    assert image.header["cal_min"] == 0.0 and image.header["cal_max"] == 1.0  # the range viewers show
    assert tuple(float(z) for z in image.header.get_zooms()) == (0.5, 1.0, 2.0)  # (x, y, z)
    values = nibabel_values(path)
    assert np.abs(values - heat).max() <= GREY_LEVEL / 2 + 1e-7
    assert values[0, 0, 0] == 0.0 and values[0, 0, 1] == pytest.approx(1.0, abs=1e-6)
    # ITK applies the scaling too (3D Slicer, ITK-SNAP): a float image of the same values
    itk = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert itk.dtype == np.float32 and np.abs(itk - heat).max() <= GREY_LEVEL / 2 + 1e-7
    assert itk[0, 0, 0] == 0.0 and itk[0, 0, 1] == 1.0
    if ext == ".nii":  # the 352-byte header (348 + the 4-byte extension flag), then 1 B per voxel
        assert path.stat().st_size == 352 + heat.size


def test_a_signed_nifti_map_keeps_its_sign_in_16_bits(tmp_path):
    import SimpleITK as sitk

    from xaipipe.writers import write_nifti

    heat = volume_map() * 2 - 1
    heat[0, 0, :3] = (-1.0, 0.0, 1.0)
    heat[0, 1, :2] = (-2e-4, 2e-4)  # small values of either sign
    write_nifti(tmp_path / "s.nii.gz", heat, (1.0, 1.0, 1.0), value_range=(-1.0, 1.0))
    for values in (
        nibabel_values(tmp_path / "s.nii.gz"),
        sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "s.nii.gz"))),
    ):
        assert np.abs(values - heat).max() <= 1 / 65535 + 1e-7
        assert (np.sign(values) == np.sign(heat)).all()
        assert values[0, 0, 1] == 0.0 and values[0, 0, 0] == pytest.approx(-1.0, abs=1e-6)


@pytest.mark.parametrize("signed", [False, True])
def test_write_map_stores_todays_float32_values_within_one_grey_level(tmp_path, signed):
    """What the render stage writes for a volume, against the float32 map it wrote before (drawing.map_at)."""
    from xaipipe import writers

    heat = normalize_maps(smooth_maps(1, (8, 8, 8), seed=7), "signed" if signed else "minmax")[0]
    image = np.zeros((12, 20, 16), np.uint8)  # the source volume: the map is resized to it
    writers.write_map(tmp_path / "m.nii.gz", heat, image, 3, "nifti", spacing=(3.0, 0.8, 0.8), signed=signed)
    before = drawing.map_at(heat, image.shape, signed)  # float32, what the file held before
    values = nibabel_values(tmp_path / "m.nii.gz")
    assert values.shape == before.shape
    assert np.abs(values - before).max() <= (1 / 65535 if signed else GREY_LEVEL / 2) + 1e-7


def test_scaled_nifti_refuses_what_it_cannot_store(tmp_path):
    from xaipipe.writers import write_nifti

    with pytest.raises(ValueError, match="NaN"):
        write_nifti(tmp_path / "a.nii.gz", np.full((2, 2, 2), np.nan, np.float32), (1, 1, 1), value_range=(0, 1))
    with pytest.raises(ValueError, match="outside"):
        write_nifti(tmp_path / "a.nii.gz", np.full((2, 2, 2), -0.5, np.float32), (1, 1, 1), value_range=(0, 1))
    assert list(tmp_path.iterdir()) == []


def test_the_same_map_gives_the_same_nifti_bytes(tmp_path):
    from xaipipe.writers import write_nifti

    for name in ("a", "b"):
        write_nifti(tmp_path / name / "m.nii.gz", volume_map(), (1, 1, 1), value_range=(0, 1))
    assert (tmp_path / "a/m.nii.gz").read_bytes() == (tmp_path / "b/m.nii.gz").read_bytes()


def test_an_interrupted_scaled_nifti_write_leaves_nothing(tmp_path, monkeypatch):
    from xaipipe import writers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.shutil, "copyfileobj", interrupted)  # while compressing the patched file
    with pytest.raises(KeyboardInterrupt):
        writers.write_nifti(tmp_path / "m.nii.gz", volume_map(), (1, 1, 1), value_range=(0, 1))
    assert list(tmp_path.iterdir()) == []
