"""The gallery's volume views (issue 16, Outputs: "Volume previews for people"): one display orientation, the
radiological convention, whatever voxel order the file stores.

One world content (a textured volume with a bright marker at the patient's right-anterior-superior corner, its
brightest voxel unique) is written by hand in three voxel orders with the geometry that keeps every voxel's world
position (checked with SimpleITK's own index-to-point): LPS (identity direction), RAS (y and x reversed) and a
sagittal acquisition (slices along x, rows from superior to inferior, columns from anterior to posterior). The
real pipeline stages preprocess each file and the thumbnail stage draws the map (the model input, min-max scaled,
so it peaks at the marker's brightest voxel). The views must be the same pictures for every storage, and the
marker must lie where the convention puts it, computed by hand from its world position and the spacing.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from xaipipe import h5store
from xaipipe.preprocess import Preprocessing
from xaipipe.stages import preprocess_shard
from xaipipe.thumbnails import THUMB_SIDE, thumbnail_shard

SHAPE = (6, 8, 10)  # LPS (z, y, x): z towards superior, y posterior, x the patient's left
SPACING = (2.0, 1.0, 1.5)  # (z, y, x) mm: physical extent 12 (z) x 8 (y) x 15 (x) mm
ORIGIN = (10.0, -20.0, 30.0)  # world (x, y, z) of LPS voxel (0, 0, 0)
#: The marker: superior (high z), anterior (low y), right (low x), in LPS voxels; its brightest voxel inside it.
MARKER = (slice(3, 6), slice(0, 3), slice(0, 4))
PEAK = (4, 1, 1)


def _world_content() -> np.ndarray:
    volume = np.random.default_rng(3).uniform(0.0, 100.0, SHAPE).astype(np.float32)
    volume[MARKER] = 200.0
    volume[PEAK] = 255.0
    return volume


def _storages(lps: np.ndarray) -> dict[str, tuple[np.ndarray, tuple, tuple, tuple]]:
    """name -> (array as stored (numpy order), SimpleITK spacing (x, y, z), origin, row-major direction), by hand."""
    d, h, w = SHAPE
    sz, sy, sx = SPACING
    x0, y0, z0 = ORIGIN
    return {
        "LPS": (lps, (sx, sy, sz), ORIGIN, (1, 0, 0, 0, 1, 0, 0, 0, 1)),
        # RAS: index x runs towards the right (world -x), index y towards anterior (world -y)
        "RAS": (
            lps[:, ::-1, ::-1],
            (sx, sy, sz),
            (x0 + (w - 1) * sx, y0 + (h - 1) * sy, z0),
            (-1, 0, 0, 0, -1, 0, 0, 0, 1),
        ),
        # sagittal: stored[k, j, i] = lps[d-1-j, i, w-1-k]: slices k from left to right (world -x), rows j from
        # superior to inferior (world -z), columns i from anterior to posterior (world +y)
        "sagittal": (
            np.transpose(lps[::-1, :, ::-1], (2, 0, 1)),
            (sy, sz, sx),
            (x0 + (w - 1) * sx, y0, z0 + (d - 1) * sz),
            (0, 0, -1, 1, 0, 0, 0, -1, 0),
        ),
    }


def _write(tmp_path, name, stored, spacing, origin, direction) -> str:
    image = sitk.GetImageFromArray(np.ascontiguousarray(stored))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([float(v) for v in direction])
    path = str(tmp_path / f"{name}.mha")
    sitk.WriteImage(image, path)
    return path


def test_storages_hold_the_same_world_content(tmp_path):
    """The hand-made storages put every voxel value at the same world position (SimpleITK's index-to-point)."""
    lps = _world_content()
    reference = sitk.ReadImage(_write(tmp_path, "LPS", *_storages(lps)["LPS"]))
    for name, storage in _storages(lps).items():
        image = sitk.ReadImage(_write(tmp_path, name, *storage))
        array = sitk.GetArrayFromImage(image)
        for index in np.ndindex(array.shape):
            point = image.TransformIndexToPhysicalPoint([int(i) for i in index[::-1]])
            source = reference.TransformPhysicalPointToIndex(point)[::-1]
            assert array[index] == lps[source], (name, index)


def _thumbnails(tmp_path, name, path, shape, orientation="none") -> tuple[dict, dict[str, np.ndarray]]:
    """Preprocess the file (overlay: the untouched original, on the file's grid), take the model input as the map,
    draw the thumbnails; the record's map entry and the views (RGB): the map's, and the image's as ``image.<view>``."""
    folder = tmp_path / f"{name}-{orientation}"
    folder.mkdir()
    settings = {"channels": 1, "standardize": "minmax", "interpolation": "linear", "orientation": orientation}
    preprocessing = Preprocessing(size=shape, **settings)
    pre, maps = folder / "pre.h5", folder / "maps.h5"
    preprocess_shard([path], ["s"], None, ["x"], preprocessing, pre, preprocess_overlay=False)
    with h5store.PreprocessedShard.open(pre) as shard:
        inputs = shard.inputs(slice(None))[..., 0]
    normalized = (inputs - inputs.min()) / (inputs.max() - inputs.min())
    with h5store.heatmaps_writer(maps, ["s"], 1, tuple(shape), method="m") as writer:
        writer.write(slice(None), np.array([0]), np.array([0]), normalized)
    thumbnail_shard(pre, {"m": maps}, folder / "report", "00000", folder / "record.json", 0.25, "hot", True)
    (sample,) = json.loads((folder / "record.json").read_text())["samples"]
    (entry,) = sample["maps"]["m"]
    views = {}
    for prefix, paths in (("", entry["views"]), ("image.", sample["image"])):
        for view in paths:
            picture = cv2.imread(str(folder / "report" / view), cv2.IMREAD_COLOR)
            views[prefix + view.rsplit(".", 2)[-2]] = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB).astype(int)
    return entry, views


def _expected_size(height_mm: float, width_mm: float) -> tuple[int, int]:
    scale = THUMB_SIDE / max(height_mm, width_mm)
    return round(height_mm * scale), round(width_mm * scale)


#: Per view: (picture height, width) in mm, and the marker's (rows, columns) as fractions of the picture, by hand
#: from the convention. Axial: rows anterior (y = 0) to posterior, columns right (x = 0) to left. Coronal: rows
#: superior (z = 5) to inferior, columns right to left. Sagittal: rows superior to inferior, columns anterior to
#: posterior. The marker spans z 3..5 (the top 3 of 6 slices), y 0..2 (the first 3 of 8), x 0..3 (the first 4 of 10).
EXPECTED = {
    "axial": ((8.0, 15.0), ((0, 3 / 8), (0, 4 / 10))),
    "coronal": ((12.0, 15.0), ((0, 3 / 6), (0, 4 / 10))),
    "sagittal": ((12.0, 8.0), ((0, 3 / 6), (0, 3 / 8))),
}


def _marker_box(views: dict[str, np.ndarray]) -> dict[str, tuple[float, float, float, float]]:
    """Per view: the bright pixels' (top, bottom, left, right) as fractions of the picture."""
    boxes = {}
    for name, picture in views.items():
        rows, cols = np.nonzero(picture.mean(axis=2) > 170)
        h, w = picture.shape[:2]
        boxes[name] = (rows.min() / h, (rows.max() + 1) / h, cols.min() / w, (cols.max() + 1) / w)
    return boxes


def test_views_follow_the_radiological_convention_whatever_the_storage(tmp_path):
    lps = _world_content()
    results = {}
    for name, (stored, spacing, origin, direction) in _storages(lps).items():
        path = _write(tmp_path, name, stored, spacing, origin, direction)
        results[name] = _thumbnails(tmp_path, name, path, stored.shape)
    # the recorded peak is the map's brightest voxel in its own (stored) order
    d, h, w = SHAPE
    z, y, x = PEAK
    assert results["LPS"][0]["peak"] == [z, y, x]
    assert results["RAS"][0]["peak"] == [z, h - 1 - y, w - 1 - x]
    assert results["sagittal"][0]["peak"] == [w - 1 - x, d - 1 - z, y]
    reference = results["LPS"][1]
    assert set(reference) == set(EXPECTED) | {f"image.{view}" for view in EXPECTED}
    for name, (_, views) in results.items():
        for view, picture in views.items():
            assert np.array_equal(picture, reference[view]), (name, view)  # the same picture, pixel for pixel
    boxes = _marker_box({view: reference[view] for view in EXPECTED})
    for view, ((height_mm, width_mm), ((top, bottom), (left, right))) in EXPECTED.items():
        assert reference[view].shape[:2] == _expected_size(height_mm, width_mm), view  # physical aspect
        found = boxes[view]
        tolerance = 0.06  # the resize's blur at the marker's edge, and WebP's
        assert found == pytest.approx((top, bottom, left, right), abs=tolerance), (view, found)


def test_a_map_on_a_reoriented_model_grid_is_drawn_on_the_overlay(tmp_path):
    """``preprocessing.orientation: RAS``: the model's grid is not the file's (the shard's map_grid); the map is put
    on the overlay's grid (as the NIfTI maps are) before the views, which match those of the plain LPS run."""
    lps = _world_content()
    storages = _storages(lps)
    _, reference = _thumbnails(tmp_path, "LPS", _write(tmp_path, "LPS", *storages["LPS"]), SHAPE)
    stored, *geometry = storages["sagittal"]
    entry, views = _thumbnails(tmp_path, "sagittal", _write(tmp_path, "sagittal", stored, *geometry), SHAPE, "RAS")
    z, y, x = PEAK
    assert entry["peak"] == [z, SHAPE[1] - 1 - y, SHAPE[2] - 1 - x]  # RAS model grid: y and x reversed from LPS
    for view, picture in views.items():
        assert picture.shape == reference[view].shape, view
        assert np.abs(picture - reference[view]).max() <= 1, view  # linear resampling at voxel centres: rounding


def test_the_views_pass_through_the_peak_where_the_model_grid_has_another_shape_than_the_map():
    # preprocessing.spacing resampled a volume to a (24, 20, 12) grid, which the model saw at 8^3: the views were put
    # at the peak's index on the 8^3 map taken as an index of the 24 x 20 x 12 grid, 10 mm from a lesion, whose
    # axial view then showed noise alone
    from xaipipe.geometry import Geometry
    from xaipipe.thumbnails import _Views

    volume = np.zeros((12, 20, 24), np.uint8)  # the overlay image: 2.5 x 1 x 0.8 mm, LPS stored
    geometry = Geometry((2.5, 1.0, 0.8), (10.0, -20.0, 5.0))
    grid = Geometry((1.25, 1.0, 1.2), (10.0, -20.0, 5.0))  # the resampled grid the model's input was made from
    heatmap = np.zeros((8, 8, 8), np.float32)
    heatmap[5, 2, 5] = 1.0
    views = _Views(volume, 3, geometry.spacing, geometry, (grid, (24, 20, 12)))
    # by hand: map voxel i of 8 on 24, 20, 12 grid voxels lies at (i + 0.5) * n / 8 - 0.5: z 16, y 5.75, x 7.75;
    # in mm from the origin z 20, y 5.75, x 9.3; on the image's grid z 20 / 2.5 = 8, y 5.75 -> 6, x 11.625 -> 12
    assert views._centre((5, 2, 5), heatmap) == (8, 6, 12)


def test_a_flat_map_has_no_peak_and_its_volume_views_pass_through_the_middle():
    # a blank map (Grad-CAM of a class the model never sees) was said to peak at [0, 0], its first voxel
    from xaipipe.thumbnails import _Views, peak

    assert peak(np.zeros((4, 5))) is None and peak(np.full((3, 3, 3), 0.7)) is None
    assert peak(np.array([[0.0, 0.2], [0.9, 0.1]])) == (1, 0)
    volume = np.zeros((9, 7, 5), np.uint8)
    volume[4] = 200  # the middle axial slice bright, the rest black
    views, top = _Views(volume, 3, (1.0, 1.0, 1.0)).pictures(np.zeros((3, 3, 3), np.float32), 0.5, "jet", True)
    assert top is None
    by_name = dict(views)
    assert by_name["axial"].mean() > 150  # the middle slice, not slice 0 (black)
