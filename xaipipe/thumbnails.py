"""The gallery's pictures (``results/report/``): small WebP views of each image and each map.

A 2D sample gets one view of its image and one of each map, the map drawn over the image as
the overlays are (:func:`xaipipe.drawing.render`: same colour map and blend), at most
:data:`THUMB_SIDE` pixels on the longer side. A volume gets three views per map, the axial,
coronal and sagittal slices through the map's peak (its maximum, the first in C order), drawn
over the volume's slices with the overlays' display scaling, each scaled to its physical
aspect (the sample's spacing); the image's own views pass through the volume's centre.

Every volume is shown in one orientation, the radiological convention, whatever the voxel
order its file stores: axial slices seen from the feet (the patient's right on the picture's
left, anterior at the top), coronal seen from the front (right on the left, superior at the
top), sagittal seen from the patient's left (anterior on the left, superior at the top). The
overlay image and the map (first put on the overlay's grid, as the NIfTI maps are:
:func:`xaipipe.stages.on_overlay_grid`) are brought to LPS voxel order by permuting and
flipping numpy axes after the grid's direction (:func:`xaipipe.geometry.to_lps`, the axes
``DICOMOrient`` picks): exact for an axis-aligned scan, the nearest LPS order for an oblique
one, without resampling (an oblique scan is shown as stored, slightly tilted, and every
voxel keeps its value), and with the same permutation for the overlay and a map of another
resolution on the same extent. In LPS order the axial slice (y, x) already reads as the
convention says; the coronal (z, x) and sagittal (z, y) slices are flipped upside down.
The peak is found in the map as computed and the slices pass through that same voxel.

One job per shard writes the shard's views into ``thumbs/shard-NNNNN/`` and a JSON record of
them (:func:`thumbnail_shard`); the gallery job (:mod:`xaipipe.gallery`) adds predictions and
evaluation values, so that changing the colour map re-renders the views only.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from xaipipe import h5store
from xaipipe.atomic import atomic_path, write_bytes_atomic
from xaipipe.channels import convert_channels
from xaipipe.drawing import render, value_range
from xaipipe.geometry import Geometry, index_to_lps, lps_axes, to_lps
from xaipipe.logs import progress
from xaipipe.stages import on_overlay_grid

#: The longer side of every view, in pixels.
THUMB_SIDE = 192
#: WebP quality of the views (0-100).
THUMB_QUALITY = 80
#: libwebp's effort (0 fastest - 6 smallest): 1 encodes a 192-pixel view in 0.67 ms against 2.0 ms at libwebp's
#: (and OpenCV's only) default 4, in a file 0.6% larger; OpenCV does not expose it, Pillow does.
THUMB_EFFORT = 1
THUMB_EXTENSION = ".webp"
#: The three views of a volume: the axis each slice is taken across, in LPS (z, y, x) voxel order, and
#: whether the slice is flipped upside down to show superior at the top (the module docstring's convention).
VIEWS_3D = {"axial": (0, False), "coronal": (1, True), "sagittal": (2, True)}


def fit(shape: Sequence[float], side: int = THUMB_SIDE, enlarge: bool = False) -> tuple[int, int]:
    """(height, width) of a picture of size ``shape`` (h, w) shrunk so that its longer side is at most
    ``side`` (with ``enlarge``, brought to exactly ``side``: volumes' physical sizes in mm)."""
    h, w = float(shape[0]), float(shape[1])
    scale = side / max(h, w) if enlarge or max(h, w) > side else 1.0
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def _resize(picture: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    if picture.shape[:2] == size:
        return picture
    shrinking = size[0] * size[1] < picture.shape[0] * picture.shape[1]
    interpolation = cv2.INTER_AREA if shrinking and smooth else cv2.INTER_LINEAR
    return cv2.resize(picture, (size[1], size[0]), interpolation=interpolation)


def blend(
    image_rgb: np.ndarray,
    heatmap: np.ndarray | None,
    alpha: float,
    colormap: str,
    overlay: bool,
    signed: bool = False,
) -> np.ndarray:
    """The coloured ``heatmap`` over ``image_rgb`` exactly as the overlays are drawn
    (:func:`xaipipe.drawing.render`, a diverging colour map where ``signed``), at the
    picture's size; None: the image alone."""
    if heatmap is None:
        return image_rgb
    return render(np.clip(heatmap, *value_range(signed)), image_rgb, overlay, alpha, colormap, signed)


def peak(heatmap: np.ndarray) -> tuple[int, ...] | None:
    """The index of the map's maximum (the first in C order); None for a flat map, which has no peak (its maximum
    is everywhere: the gallery said "peak at [0, 0]" for a blank map)."""
    if not heatmap.size or not np.nanmax(heatmap) > np.nanmin(heatmap):
        return None
    return tuple(int(i) for i in np.unravel_index(int(np.nanargmax(heatmap)), heatmap.shape))


def at_volume(index: Sequence[int], map_shape: Sequence[int], volume_shape: Sequence[int]) -> tuple[int, ...]:
    """A map voxel's index in the volume (centres aligned, as the overlays' trilinear resize)."""
    return tuple(
        int(np.clip(round((i + 0.5) * n / m - 0.5), 0, n - 1)) for i, m, n in zip(index, map_shape, volume_shape)
    )


def map_slice(heatmap: np.ndarray, volume_shape: Sequence[int], axis: int, index: int) -> np.ndarray:
    """The map's slice across ``axis`` at the volume's ``index``, linearly interpolated between map
    slices, at the map's in-plane resolution (the picture's resize does the rest)."""
    m, n = heatmap.shape[axis], volume_shape[axis]
    position = float(np.clip((index + 0.5) * m / n - 0.5, 0, m - 1))
    low = int(np.floor(position))
    high = min(low + 1, m - 1)
    weight = position - low
    return (1 - weight) * np.take(heatmap, low, axis=axis) + weight * np.take(heatmap, high, axis=axis)


def _encode(path: Path, picture_rgb: np.ndarray) -> None:
    import io

    from PIL import Image

    data = io.BytesIO()
    try:
        Image.fromarray(np.ascontiguousarray(picture_rgb, np.uint8)).save(
            data, "WEBP", quality=THUMB_QUALITY, method=THUMB_EFFORT
        )
    except (OSError, KeyError) as error:  # a Pillow built without WebP
        raise ValueError(f"{path}: Pillow could not encode the picture as WebP ({error}); install a Pillow with "
                         "WebP support (pip's and conda-forge's have it)") from error  # fmt: skip
    write_bytes_atomic(path, data.getvalue())


class _Views:
    """The pictures of one sample: its image's views and each map's, at the thumbnail's size.

    A volume is held in LPS voxel order (the module docstring); ``geometry``: the overlay
    image's grid, and ``map_grid`` the model's where it is another (the shard's).
    """

    def __init__(
        self,
        image: np.ndarray,
        spatial_dims: int,
        spacing: Sequence[float],
        geometry: Geometry | None = None,
        map_grid: tuple[Geometry, tuple[int, ...]] | None = None,
    ):
        self.dims = spatial_dims
        self._small: np.ndarray | None = None
        self.image = convert_channels(image, 3) if spatial_dims == 2 else convert_channels(image, 3, 3)
        self.spacing = tuple(float(s) for s in spacing)
        if spatial_dims == 3:
            self.geometry = geometry or Geometry(tuple(self.spacing))  # type: ignore[arg-type]
            self.map_grid = map_grid
            self.stored_shape = self.image.shape[:3]
            self.image = to_lps(self.image, self.geometry.direction)
            axes, _ = lps_axes(self.geometry.direction)
            self.spacing = tuple(self.spacing[a] for a in axes)

    def _centre(self, top: tuple[int, ...], heatmap: np.ndarray) -> tuple[int, ...]:
        """The overlay voxel (in LPS order) of the map's voxel ``top`` (in the map's stored order)."""
        if self.map_grid is None:  # same extent, centres aligned (as the overlays' trilinear resize)
            stored = at_volume(top, heatmap.shape, self.stored_shape)
        else:  # the voxel nearest the peak's position in the world: the map spans its grid (centres aligned)
            grid, grid_shape = self.map_grid
            position = [(i + 0.5) * n / m - 0.5 for i, m, n in zip(top, heatmap.shape, grid_shape)]
            index = np.round(self.geometry.world_to_index(grid.index_to_world(position))).astype(int)
            stored = tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(index, self.stored_shape))
        return index_to_lps(stored, self.stored_shape, self.geometry.direction)

    def pictures(self, heatmap: np.ndarray | None, alpha: float, colormap: str, overlay: bool, signed: bool = False):
        """[(view name, RGB picture)], and the peak (in the map's voxels, as stored) of ``heatmap``."""
        if self.dims == 2:
            if self._small is None:  # the image at the thumbnail's size, once for all its maps
                self._small = _resize(self.image, fit(self.image.shape[:2]), True)
            return [("image" if heatmap is None else "map", blend(
                self._small, heatmap, alpha, colormap, overlay, signed
            ))], (peak(heatmap) if heatmap is not None else None)  # fmt: skip
        volume = self.image
        shape = volume.shape[:3]
        top = None if heatmap is None else peak(heatmap)
        centre = tuple(n // 2 for n in shape) if top is None else self._centre(top, heatmap)  # a flat map: the middle
        if heatmap is not None:
            heatmap = on_overlay_grid(heatmap, self.map_grid, self.geometry, self.stored_shape, signed)
            heatmap = to_lps(heatmap, self.geometry.direction)
        views = []
        for name, (axis, upside_down) in VIEWS_3D.items():
            plane = np.take(volume, centre[axis], axis=axis)
            physical = [n * s for k, (n, s) in enumerate(zip(shape, self.spacing)) if k != axis]
            size = fit(physical, enlarge=True)
            heat = None if heatmap is None else map_slice(heatmap, shape, axis, centre[axis])
            if upside_down:
                plane = np.ascontiguousarray(plane[::-1])
                heat = None if heat is None else np.ascontiguousarray(heat[::-1])
            views.append((name, blend(_resize(plane, size, True), heat, alpha, colormap, overlay, signed)))
        return views, top


def thumbnail_shard(
    preprocessed_path: str | os.PathLike,
    heatmaps_paths: Mapping[str, str | os.PathLike],
    report_dir: str | os.PathLike,
    shard: str,
    out_record: str | os.PathLike,
    alpha: float = 0.25,
    colormap: str = "jet",
    overlay: bool = True,
) -> None:
    """Write one shard's views into ``{report_dir}/thumbs/shard-{shard}/`` and their JSON record.

    ``heatmaps_paths``: method -> its heatmaps file of this shard. The record holds, per
    sample (in the shard's order), ``id``, ``image`` (its views' paths, relative to
    ``report_dir``) and ``maps`` (method -> [{class, views, peak}]); a skipped sample has
    no views. ``signed`` lists the methods whose maps are signed (drawn in a diverging
    colour map, values in [-1, 1]), so that the gallery shows their colour scale.
    """
    report_dir = Path(report_dir)
    folder = report_dir / "thumbs" / f"shard-{shard}"
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        files = {method: stack.enter_context(h5store.HeatmapsFile.open(path)) for method, path in heatmaps_paths.items()}
        signed = [method for method, maps in files.items() if maps.signed]
        pre = stack.enter_context(h5store.PreprocessedShard.open(preprocessed_path))
        ids, dims = pre.ids, pre.spatial_dims
        skipped = np.zeros(len(ids), bool)
        maps_of: dict[str, list[list[tuple[int, int]]]] = {}  # method -> per sample [(map, class)]
        for method, maps in files.items():
            skipped |= maps.skipped
            rows: list[list[tuple[int, int]]] = [[] for _ in ids]
            for m, (row, c) in enumerate(zip(maps.sample_index, maps.class_index, strict=True)):
                rows[int(row)].append((m, int(c)))
            maps_of[method] = rows
        samples: list[dict[str, Any]] = []
        for row in progress(range(len(ids)), "thumbnails", len(ids), "img"):
            record: dict[str, Any] = {"id": ids[row], "image": [], "maps": {}}
            samples.append(record)
            if skipped[row]:
                continue
            volume = {"geometry": pre.geometry(row), "map_grid": pre.map_grid(row)} if dims == 3 else {}
            views = _Views(pre.overlay_image(row), dims, pre.spacing(row), **volume)
            record["image"] = _write(views.pictures(None, alpha, colormap, overlay)[0], folder, f"{row:06d}.image")
            for method, maps in files.items():
                entries = []
                for m, c in maps_of[method][row]:
                    pictures, top = views.pictures(maps.normalized(m), alpha, colormap, overlay, method in signed)
                    paths = _write(pictures, folder, f"{row:06d}.{method}.{c}")
                    entries.append({"class": c, "views": paths, "peak": None if top is None else list(top)})
                record["maps"][method] = entries
    relative = [
        {**s, "image": [_relative(p, report_dir) for p in s["image"]],
         "maps": {k: [{**e, "views": [_relative(p, report_dir) for p in e["views"]]} for e in v]
                  for k, v in s["maps"].items()}}
        for s in samples
    ]  # fmt: skip
    with atomic_path(out_record) as tmp:
        manifest = {"shard": shard, "spatial_dims": dims, "signed": signed, "samples": relative}
        Path(tmp).write_text(json.dumps(manifest) + "\n")


def _write(pictures: list[tuple[str, np.ndarray]], folder: Path, stem: str) -> list[Path]:
    paths = []
    for name, picture in pictures:
        suffix = "" if len(pictures) == 1 else f".{name}"
        path = folder / f"{stem}{suffix}{THUMB_EXTENSION}"
        _encode(path, picture)
        paths.append(path)
    return paths


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()
