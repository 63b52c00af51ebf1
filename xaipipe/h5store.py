"""The HDF5 files of the pipeline: preprocessed inputs, predictions, heatmaps and their evaluation.

Every file carries ``schema`` and ``schema_version`` attributes and the
xaipipe version, and is written under a temporary name and renamed when
complete (see :mod:`xaipipe.atomic`). Layouts are documented in the README.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import h5py
import numpy as np

from xaipipe import __version__
from xaipipe.atomic import atomic_path
from xaipipe.errors import Issue
from xaipipe.geometry import IDENTITY, Geometry
from xaipipe.maps import apply_normalization, normalization_params

SCHEMA_VERSION = 1
#: Schemas whose layout changed since version 1: their files record this version instead (both read).
SCHEMA_VERSIONS = {"xaipipe.heatmaps": 3}
_STR = h5py.string_dtype()


@contextmanager
def create(path: str | os.PathLike, schema: str, **attrs: Any) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing; it appears at ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema"] = schema
            f.attrs["schema_version"] = SCHEMA_VERSIONS.get(schema, SCHEMA_VERSION)
            f.attrs["xaipipe_version"] = __version__
            for key, value in attrs.items():
                f.attrs[key] = _attr(value)
            yield f


#: How to recover from a damaged cache, said in every error about one.
RECOVER = (
    "delete it, and the next snakemake run rebuilds it and what depends on it (a run also moves "
    "damaged caches aside by itself, to <name>.damaged)"
)


def open_checked(path: str | os.PathLike, schema: str) -> h5py.File:
    """Open an HDF5 file for reading and check that it holds ``schema``.

    ValueError naming the file and the way to recover where it is damaged (unreadable, of
    another schema, a dataset of the layout missing); FileNotFoundError where there is none.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is damaged: not a readable HDF5 file ({error}); {RECOVER}") from None
    why = _layout_problem(f, schema)
    if why:
        f.close()
        raise ValueError(f"{path} is damaged: {why}; {RECOVER}")
    return f


def problem(path: str | os.PathLike, schema: str) -> str | None:
    """Why the file at ``path`` is no usable file of ``schema`` (unreadable, other schema, dataset missing), or None.

    Cheap: opens the file and reads its root attributes and names only (about 1 ms).
    """
    try:
        with h5py.File(path, "r") as f:
            return _layout_problem(f, schema)
    except OSError as error:
        return f"not a readable HDF5 file ({error})"


def _layout_problem(f: h5py.File, schema: str) -> str | None:
    found = f.attrs.get("schema")
    if found != schema:
        return f"expected an HDF5 file of schema {schema!r}, found {found!r}"
    missing = [name for name in _DATASETS.get(schema, ()) if name not in f]
    if schema == HEATMAPS and "normalized" not in f:  # schema_version 3: the normalization's parameters
        missing += [name for name in NORMALIZATION_DATASETS if name not in f]
    return f"datasets {missing} missing" if missing else None


def json_attr(f: h5py.File, key: str) -> Any:
    """Read an attribute that was stored as JSON."""
    return json.loads(f.attrs[key])


def _attr(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)) or value is None:
        return json.dumps(value)
    return value


def write_strings(f: h5py.File, name: str, values: Sequence[str]) -> None:
    f.create_dataset(name, data=np.array(list(values), dtype=object), dtype=_STR)


def read_strings(f: h5py.File, name: str) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else s for s in f[name][()]]


def _whole_dataset(name: str, doc: str) -> property:
    """A read-only property that reads the dataset ``name`` whole."""
    return property(lambda self: self.file[name][()], doc=doc)


_Reader = TypeVar("_Reader", bound="_FileReader")


@dataclass
class _FileReader:
    """What the readers share: opening with the schema checked, closing after a ``with`` block, the sample ids."""

    file: h5py.File
    schema: ClassVar[str]

    @classmethod
    def open(cls: type[_Reader], path: str | os.PathLike) -> _Reader:
        return cls(open_checked(path, cls.schema))

    def __enter__(self: _Reader) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    @property
    def ids(self) -> list[str]:
        return read_strings(self.file, "ids")

    @property
    def skipped(self) -> np.ndarray:
        """(n,) bool: the samples left out from this file's stage on (``on_error: skip``)."""
        return read_skipped(self.file)

    @property
    def skip_reasons(self) -> list[str]:
        """``"<stage>: <reason>"`` of each skipped sample, ``""`` for the others."""
        return read_skip_reasons(self.file)

    @property
    def issues(self) -> list[Issue]:
        """What this file's stage found: the samples it skipped and those it warned about."""
        return read_issues(self.file)


# --- skipped samples and issues, in every file ----------------------------------------
#
# skipped (bool, n): the samples left out from the file's stage on, by it or an earlier stage
# (on_error: skip); skip_reason (str, n): "<stage>: <reason>" of each skipped sample, "" for the
# others; issues/{sample,stage,kind,reason} (str, F each): the samples this file's stage
# skipped (kind "skipped") or warned about ("warning"), the rows of failures.tsv. Written only
# where a sample was skipped or warned about (so good data gives the files it gave before
# these existed); a file without them: nothing skipped, no issues.


class SkipRecord:
    """The skipped samples and the issues of a file being written, carried over from its input file."""

    def __init__(self, n: int, skipped: Sequence[bool] | None = None, reasons: Sequence[str] | None = None):
        self.skipped = np.zeros(n, bool) if skipped is None else np.array(skipped, bool)
        self.reasons = [""] * n if reasons is None else list(reasons)
        if len(self.skipped) != n or len(self.reasons) != n:
            raise ValueError(f"skip records of {len(self.skipped)} and {len(self.reasons)} samples for {n} samples")
        self.issues: list[Issue] = []

    def skip(self, row: int, issue: Issue) -> None:
        """Leave the sample of ``row`` out from this stage on, for ``issue``."""
        self.skipped[row] = True
        self.reasons[row] = f"{issue.stage}: {issue.reason}"
        self.issues.append(issue._replace(kind="skipped"))

    def warn(self, issue: Issue) -> None:
        self.issues.append(issue._replace(kind="warning"))

    def write(self, f: h5py.File) -> None:
        """Into ``f``, where a sample is skipped or warned about (a file without them: nothing was)."""
        if not (self.skipped.any() or self.issues):
            return
        f.create_dataset("skipped", data=self.skipped)
        write_strings(f, "skip_reason", self.reasons)
        group = f.create_group("issues")
        for field in Issue._fields:
            write_strings(group, field, [getattr(issue, field) for issue in self.issues])


def read_skipped(f: h5py.File) -> np.ndarray:
    return f["skipped"][()].astype(bool) if "skipped" in f else np.zeros(f["ids"].shape[0], bool)


def read_skip_reasons(f: h5py.File) -> list[str]:
    return read_strings(f, "skip_reason") if "skip_reason" in f else [""] * f["ids"].shape[0]


def read_issues(f: h5py.File) -> list[Issue]:
    if "issues" not in f:
        return []
    columns = [read_strings(f["issues"], field) for field in Issue._fields]
    return [Issue(*row) for row in zip(*columns, strict=True)]


# --- preprocessed shards -------------------------------------------------------------
#
# ids (str, n), labels (int32, n), inputs (float32, (n, *input_shape), one chunk per
# sample), spacing (float64, (n, spatial_dims)), origin (float64, (n, spatial_dims)),
# direction (float64, (n, spatial_dims**2)), overlay_images/<row:06d> (uint8, gzip 1, one chunk),
# source_sha256 (str, n: each sample's content hash; absent in older files), source_shape
# and window_start (int64, (n, spatial_dims): the sample's shape as loaded, and where the
# overlay image's pixel 0 lies in it after a crop or padding; zeros where skipped);
# attributes preprocessing, class_names, spatial_dims, preprocess_overlay.
# spacing, origin and direction are the geometry of each overlay image's grid, on which
# the maps are written (xaipipe.geometry: spacing (z, y, x), origin (x, y, z) and the
# row-major direction as SimpleITK gives them; 2D images and skipped samples: ones,
# zeros, identity; files without origin/direction read as zeros and identity).
# map_grid_shape (int32, (n, 3)), map_grid_spacing, map_grid_origin (float64, (n, 3)),
# map_grid_direction (float64, (n, 9)): volumes only, and only where the model's grid
# (reoriented, resampled, cropped or padded) is not the overlay image's: the grid the
# model input was resized from, which the maps are resampled from onto the overlay
# image's grid; a row of shape zeros: the two grids are one.

PREPROCESSED = "xaipipe.preprocessed"


def create_preprocessed(
    f: h5py.File, ids: Sequence[str], input_shape: tuple[int, ...], labels: Sequence[int]
) -> None:
    """Lay out a preprocessed shard for ``len(ids)`` samples, to be filled row by row."""
    n = len(ids)
    write_strings(f, "ids", ids)
    f.create_dataset("labels", data=np.asarray(labels, dtype=np.int32))
    f.create_dataset("inputs", shape=(n, *input_shape), dtype=np.float32, chunks=(1, *input_shape))
    f.create_group("overlay_images")


def put_overlay_image(f: h5py.File, row: int, image: np.ndarray) -> None:
    f["overlay_images"].create_dataset(
        f"{row:06d}", data=image, chunks=_whole_image_chunks(image), compression="gzip", compression_opts=1
    )


#: The largest chunk of an overlay image (bytes): larger images are cut along their first axis.
OVERLAY_CHUNK_BYTES = 64 << 20


def _whole_image_chunks(image: np.ndarray) -> tuple[int, ...]:
    """Chunks of an overlay image: the whole image where it holds at most :data:`OVERLAY_CHUNK_BYTES`, else slabs of
    its first axis. Every reader reads the whole image: h5py's own chunks (16 for a 224x224x3 image) cost a
    224x224 image 6.4 ms to read instead of 2.0 ms, each decompressed apart, and 7% more bytes."""
    row_bytes = max(1, image.nbytes // max(1, image.shape[0]))
    return (max(1, min(image.shape[0], OVERLAY_CHUNK_BYTES // row_bytes)), *image.shape[1:])


class PreprocessedWriter:
    """Fills a new preprocessed shard sample by sample (see :func:`preprocessed_writer`)."""

    def __init__(
        self, f: h5py.File, ids: Sequence[str], input_shape: tuple[int, ...], labels: Sequence[int], spatial_dims: int
    ):
        self.file = f
        self.spatial_dims = spatial_dims
        create_preprocessed(f, ids, input_shape, labels)
        n, dims = len(ids), spatial_dims
        self._spacing = f.create_dataset("spacing", shape=(n, dims), dtype=np.float64)
        self._origin = f.create_dataset("origin", shape=(n, dims), dtype=np.float64)
        self._direction = f.create_dataset("direction", data=np.tile(np.eye(dims).ravel(), (n, 1)))
        self._source_shape = f.create_dataset("source_shape", shape=(n, dims), dtype=np.int64)
        self._window_start = f.create_dataset("window_start", shape=(n, dims), dtype=np.int64)
        self.record = SkipRecord(len(ids))

    def skip(self, row: int, issue: Issue) -> None:
        """Leave sample ``row`` out (``on_error: skip``): zero inputs, a 1-pixel black overlay image, spacing ones."""
        self.file["inputs"][row] = 0.0
        self._spacing[row] = np.ones(self.spatial_dims)
        put_overlay_image(self.file, row, np.zeros((1,) * self.spatial_dims + (3,), np.uint8))
        self.record.skip(row, issue)

    def warn(self, issue: Issue) -> None:
        self.record.warn(issue)

    def write(
        self,
        row: int,
        inputs: np.ndarray,
        overlay_image: np.ndarray,
        spacing: Sequence[float] | None = None,
        *,
        origin: Sequence[float] | None = None,
        direction: Sequence[float] | None = None,
        map_grid: tuple[Geometry, Sequence[int]] | None = None,
        source_window: tuple[Sequence[int], Sequence[int]] | None = None,
    ) -> None:
        """One sample: its model input, the 8-bit image its overlays are drawn on and that image's grid (spacing,
        origin, direction; None: ones, zeros, identity), and the model's grid where it is another (``map_grid``:
        its geometry and shape; see the layout above). ``source_window``: the sample's spatial shape as loaded
        and where the overlay image's pixel 0 lies in that grid (after a crop or padding), for its mask."""
        if source_window is not None:
            self._source_shape[row], self._window_start[row] = source_window
        self.file["inputs"][row] = inputs
        self._spacing[row] = spacing if spacing is not None else np.ones(self.spatial_dims)
        if origin is not None:
            self._origin[row] = origin
        if direction is not None:
            self._direction[row] = direction
        if map_grid is not None:
            if "map_grid_shape" not in self.file:
                n = self._spacing.shape[0]
                self.file.create_dataset("map_grid_shape", shape=(n, 3), dtype=np.int32)
                for name, width in (("spacing", 3), ("origin", 3), ("direction", 9)):
                    self.file.create_dataset(f"map_grid_{name}", shape=(n, width), dtype=np.float64)
            grid, shape = map_grid
            self.file["map_grid_shape"][row] = shape
            self.file["map_grid_spacing"][row] = grid.spacing
            self.file["map_grid_origin"][row] = grid.origin
            self.file["map_grid_direction"][row] = grid.direction
        put_overlay_image(self.file, row, overlay_image)


@contextmanager
def preprocessed_writer(
    path: str | os.PathLike,
    ids: Sequence[str],
    labels: Sequence[int],
    input_shape: tuple[int, ...],
    *,
    spatial_dims: int,
    class_names: Sequence[str],
    preprocessing: dict[str, Any],
    preprocess_overlay: bool,
    source_sha256: Sequence[str] | None = None,
    **attrs: Any,
) -> Iterator[PreprocessedWriter]:
    """A new preprocessed shard at ``path`` (written atomically), to fill with ``.write(row, ...)``.

    ``source_sha256``: each sample's content hash (:func:`xaipipe.caches.content_sha256`), recorded as the
    dataset ``source_sha256`` so that a run can tell a sample file replaced since (whatever its date)."""
    with create(
        path,
        PREPROCESSED,
        preprocessing=preprocessing,
        class_names=list(class_names),
        spatial_dims=spatial_dims,
        preprocess_overlay=preprocess_overlay,
        **attrs,
    ) as f:
        writer = PreprocessedWriter(f, ids, input_shape, labels, spatial_dims)
        if source_sha256 is not None:
            write_strings(f, "source_sha256", source_sha256)
        yield writer
        writer.record.write(f)


class PreprocessedShard(_FileReader):
    """Read access to a preprocessed shard; arrays are read lazily, batch by batch."""

    schema = PREPROCESSED
    labels = _whole_dataset("labels", "(n,) int32: each sample's class index, -1 where unknown.")

    @property
    def class_names(self) -> list[str]:
        return json_attr(self.file, "class_names")

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing settings the inputs were made with (``stages.preprocessing_record``)."""
        return json_attr(self.file, "preprocessing")

    @property
    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes (files without the attribute hold images)."""
        return int(self.file.attrs.get("spatial_dims", 2))

    def __len__(self) -> int:
        return self.file["inputs"].shape[0]

    @property
    def source_sha256(self) -> list[str] | None:
        """Each sample's content hash when it was preprocessed; None in shards written before it was recorded."""
        return read_strings(self.file, "source_sha256") if "source_sha256" in self.file else None

    def inputs(self, rows: slice) -> np.ndarray:
        """The model inputs of ``rows``."""
        return self.file["inputs"][rows]

    def batches(self, batch_size: int) -> Iterator[tuple[slice, np.ndarray]]:
        """(rows, inputs) for consecutive batches of at most ``batch_size`` samples."""
        for start in range(0, len(self), batch_size):
            rows = slice(start, min(start + batch_size, len(self)))
            yield rows, self.inputs(rows)

    def overlay_image(self, row: int) -> np.ndarray:
        return self._overlay_images[f"{row:06d}"][()]

    @cached_property
    def _overlay_images(self) -> h5py.Group:  # looked up once: a lookup costs about 0.2 ms, a map's drawing 3 ms
        return self.file["overlay_images"]

    def spacing(self, row: int) -> tuple[float, ...]:
        """The voxel size of sample ``row``, (z, y, x) in mm for volumes (ones for 2D images)."""
        return tuple(self._spacings[row])

    @cached_property
    def _spacings(self) -> np.ndarray:  # every row's, read once
        return self.file["spacing"][()]

    def geometry(self, row: int) -> Geometry:
        """The grid of volume ``row``'s overlay image, on which its maps are written (see the layout above)."""
        f = self.file
        origin = tuple(float(v) for v in f["origin"][row]) if "origin" in f else (0.0, 0.0, 0.0)
        direction = tuple(float(v) for v in f["direction"][row]) if "direction" in f else IDENTITY
        return Geometry(tuple(float(v) for v in f["spacing"][row]), origin, direction)  # type: ignore[arg-type]

    def source_window(self, row: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """(the sample's spatial shape as loaded, the index in that grid of the overlay image's pixel 0), the grid a
        mask of the source lies on; None in files written before it was recorded and for skipped samples."""
        f = self.file
        if "source_shape" not in f or not f["source_shape"][row].any():
            return None
        return tuple(int(v) for v in f["source_shape"][row]), tuple(int(v) for v in f["window_start"][row])

    def map_grid(self, row: int) -> tuple[Geometry, tuple[int, ...]] | None:
        """The model's grid of volume ``row`` (geometry, shape) where it is not the overlay image's; else None."""
        f = self.file
        if "map_grid_shape" not in f or not f["map_grid_shape"][row].any():
            return None
        grid = Geometry(
            tuple(float(v) for v in f["map_grid_spacing"][row]),  # type: ignore[arg-type]
            tuple(float(v) for v in f["map_grid_origin"][row]),  # type: ignore[arg-type]
            tuple(float(v) for v in f["map_grid_direction"][row]),
        )
        return grid, tuple(int(v) for v in f["map_grid_shape"][row])


# --- predictions ---------------------------------------------------------------------
#
# ids (str, n), labels (int32, n), probabilities (float32, (n, k)), predicted (int32, n);
# attribute class_names.

PREDICTIONS = "xaipipe.predictions"


@dataclass(frozen=True)
class Predictions:
    """The contents of a predictions file."""

    ids: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    predicted: np.ndarray
    class_names: list[str]
    model_sha256: str | None = None  # of the model that computed them
    skipped: np.ndarray | None = None  # (n,) bool, see SkipRecord; None read as nothing skipped
    skip_reasons: list[str] | None = None
    issues: list[Issue] | None = None


def write_predictions(
    path: str | os.PathLike,
    ids: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    class_names: Sequence[str],
    record: SkipRecord | None = None,
    **attrs: Any,
) -> None:
    """``record``: the skipped samples (their probabilities are stored as NaN, predicted class -1) and issues."""
    record = record or SkipRecord(len(ids))
    probabilities = np.array(probabilities, np.float32)
    probabilities[record.skipped] = np.nan
    predicted = np.where(record.skipped, -1, np.nan_to_num(probabilities, nan=-np.inf).argmax(axis=1))
    with create(path, PREDICTIONS, class_names=list(class_names), **attrs) as f:
        write_strings(f, "ids", ids)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int32))
        f.create_dataset("probabilities", data=probabilities)
        f.create_dataset("predicted", data=predicted.astype(np.int32))
        record.write(f)


def read_predictions(path: str | os.PathLike) -> Predictions:
    with open_checked(path, PREDICTIONS) as f:
        try:
            return Predictions(
                ids=read_strings(f, "ids"),
                labels=f["labels"][()],
                probabilities=f["probabilities"][()],
                predicted=f["predicted"][()],
                class_names=json_attr(f, "class_names"),
                model_sha256=f.attrs.get("model_sha256"),
                skipped=read_skipped(f),
                skip_reasons=read_skip_reasons(f),
                issues=read_issues(f),
            )
        except (OSError, KeyError) as error:
            raise ValueError(f"{path} is damaged: {error}; {RECOVER}") from None


# --- heatmaps ------------------------------------------------------------------------
#
# ids (str, n samples), sample_index and class_index (int32, m maps), raw (float32, (m, *map_shape),
# one shuffled, gzip-compressed chunk per map), norm_offset and norm_divisor (float32, m): each map
# normalized as the method's ``normalize`` says (its method_params; minmax where none is recorded) is
# xaipipe.maps.apply_normalization(raw, normalize, norm_offset, norm_divisor), which is what the
# method's own normalization computes, bit for bit: minmax (raw - offset) / divisor, zeros where the
# divisor is 0; positive max(raw, 0) / divisor; absolute |raw| / divisor; signed raw / divisor.
# Attributes: method, variant (its label), method_params, target_layer, targets, model_sha256, model_path.
#
# Files of schema_version 1 and 2 hold the normalized maps themselves instead of the two numbers
# per map: a dataset ``normalized`` (float32 in version 1, float16 in version 2); they read alike.
# Keeping the raw maps exact and deriving the normalized ones halves the bytes of version 1 (whose
# float32 raw maps, little shrunk by lossless compression, were half of it) and leaves the
# normalized maps exact, where version 2's float16 held them to within 2^-11.

HEATMAPS = "xaipipe.heatmaps"
EVALUATION = "xaipipe.evaluation"  # the layout: below, with its writer

# the datasets that every file of a schema holds (checked when it is opened)
_DATASETS = {
    PREPROCESSED: ("ids", "labels", "inputs", "overlay_images"),
    PREDICTIONS: ("ids", "labels", "probabilities", "predicted"),
    HEATMAPS: ("ids", "sample_index", "class_index", "raw"),
    EVALUATION: ("ids", "sample_index", "class_index", "fractions"),
}


#: The deflate level of the raw maps of a heatmaps file (shuffled, one chunk per map). Measured with zlib on
#: 192x192 and 64^3 maps (benchmarks/storage.py): level 4 makes them 1-2 % smaller than level 1 for about 0.3 ms
#: (2D) to 3 ms (3D) more per map; levels above 4 save under 1 % more at two to ten times the time; lzf is 15-20 %
#: larger.
RAW_GZIP_LEVEL = 4
#: The raw maps' stored type: little-endian float32, the byte order in which :func:`_deflated_chunk` shuffles them.
RAW_DTYPE = np.dtype("<f4")
#: The per-map normalization parameters of a heatmaps file (schema_version 3; see above).
NORMALIZATION_DATASETS = ("norm_offset", "norm_divisor")


def create_heatmaps(f: h5py.File, ids: Sequence[str], n_maps: int, map_shape: tuple[int, ...]) -> None:
    """Lay out a heatmaps file for ``n_maps`` maps of ``map_shape``, filled batch by batch."""
    write_strings(f, "ids", ids)
    f.create_dataset("sample_index", shape=(n_maps,), dtype=np.int32)
    f.create_dataset("class_index", shape=(n_maps,), dtype=np.int32)
    f.create_dataset(
        "raw",
        shape=(n_maps, *map_shape),
        dtype=RAW_DTYPE,
        chunks=(1, *map_shape),
        compression="gzip",
        compression_opts=RAW_GZIP_LEVEL,
        shuffle=True,
    )
    for name in NORMALIZATION_DATASETS:
        f.create_dataset(name, shape=(n_maps,), dtype=np.float32)


def _normalization(method_params: Any) -> str:
    """The ``normalize`` recorded in a heatmaps file's ``method_params`` (a dict, its JSON, or None): minmax where
    none is (files written before methods had one were normalized so)."""
    if isinstance(method_params, (str, bytes)):
        method_params = json.loads(method_params or "{}")
    return str((method_params or {}).get("normalize", "minmax"))


class HeatmapsWriter:
    """Fills a new heatmaps file batch by batch (see :func:`heatmaps_writer`)."""

    def __init__(
        self,
        f: h5py.File,
        ids: Sequence[str],
        n_maps: int,
        map_shape: tuple[int, ...],
        record: SkipRecord,
        normalize: str = "minmax",
    ):
        self.file = f
        self.map_shape = tuple(map_shape)
        self.record = record
        self.normalize = normalize
        create_heatmaps(f, ids, n_maps, self.map_shape)

    def write_skipped(self, maps: slice, row: int) -> None:
        """The maps ``maps`` of the skipped sample ``row``: class -1, NaN raw maps and normalization parameters."""
        n = maps.stop - maps.start
        self.file["sample_index"][maps] = row
        self.file["class_index"][maps] = -1
        self.file["raw"][maps] = np.full((n, *self.map_shape), np.nan, np.float32)
        for name in NORMALIZATION_DATASETS:
            self.file[name][maps] = np.full(n, np.nan, np.float32)

    def write(self, maps: slice, sample_index: np.ndarray, class_index: np.ndarray, raw: np.ndarray) -> None:
        """The maps ``maps``: the sample (row) and class of each, and the raw maps (reshaped to the map shape),
        with the parameters of their normalization (:func:`xaipipe.maps.normalization_params`)."""
        raw = np.reshape(np.asarray(raw, np.float32), (-1, *self.map_shape))
        offset, divisor = normalization_params(raw, self.normalize)
        self.file["sample_index"][maps] = sample_index
        self.file["class_index"][maps] = class_index
        raw_maps = self.file["raw"]
        for m, chunk in zip(range(*maps.indices(len(raw_maps))), raw, strict=True):  # each map its own chunk
            raw_maps.id.write_direct_chunk((m,) + (0,) * len(self.map_shape), _deflated_chunk(chunk))
        self.file["norm_offset"][maps] = offset
        self.file["norm_divisor"][maps] = divisor


def _inflated_map(chunk: bytes, map_shape: tuple[int, ...]) -> np.ndarray:
    """A raw map from its chunk as :func:`_deflated_chunk` writes it (HDF5's filters undone: inflated, unshuffled)."""
    import deflate

    size = int(np.prod(map_shape))
    planes = np.frombuffer(deflate.zlib_decompress(chunk, size * RAW_DTYPE.itemsize), np.uint8)
    return np.ascontiguousarray(planes.reshape(RAW_DTYPE.itemsize, size).T).view(RAW_DTYPE).reshape(map_shape)


def _deflated_chunk(raw_map: np.ndarray) -> bytes:
    """One raw map as its chunk of the ``raw`` dataset stores it: the bytes of HDF5's shuffle filter (each byte of
    the float32 values in a plane of its own), deflated in the zlib format that HDF5's gzip filter reads.

    Written directly (``write_direct_chunk``), every reader of HDF5 decompresses it as if HDF5 had compressed it,
    but libdeflate at :data:`RAW_GZIP_LEVEL` compresses it 1.4-2x faster than the zlib behind HDF5's filter, into
    as many bytes or fewer (benchmarks/storage.py): a 64^3 map is written in 9-20 ms against 19-33 ms, where a
    CAM on a small 3D CNN takes 5 ms to compute.
    """
    import deflate

    planes = np.ascontiguousarray(raw_map, RAW_DTYPE).view(np.uint8).reshape(-1, RAW_DTYPE.itemsize).T
    return deflate.zlib_compress(np.ascontiguousarray(planes).tobytes(), RAW_GZIP_LEVEL)


@contextmanager
def heatmaps_writer(
    path: str | os.PathLike,
    ids: Sequence[str],
    n_maps: int,
    map_shape: tuple[int, ...],
    record: SkipRecord | None = None,
    **attrs: Any,
) -> Iterator[HeatmapsWriter]:
    """A new heatmaps file at ``path`` (written atomically) for ``n_maps`` maps; ``attrs``: the method's record.

    ``record``: the samples skipped before (from the predictions), to which the writer's
    ``record.skip`` adds those whose maps failed.
    """
    with create(path, HEATMAPS, **attrs) as f:
        normalize = _normalization(attrs.get("method_params"))
        writer = HeatmapsWriter(f, ids, n_maps, map_shape, record or SkipRecord(len(ids)), normalize)
        yield writer
        writer.record.write(f)


class HeatmapsFile(_FileReader):
    """Read access to a heatmaps file; maps are read one at a time. ``sample_index`` points into ``ids``."""

    schema = HEATMAPS
    _parameters: tuple[np.ndarray, np.ndarray] | None = None  # norm_offset and norm_divisor, once read
    sample_index = _whole_dataset("sample_index", "(m,) int32: the row in ``ids`` of each map's sample.")
    class_index = _whole_dataset("class_index", "(m,) int32: the target class of each map.")

    def __len__(self) -> int:
        return self.file["sample_index"].shape[0]

    @property
    def map_shape(self) -> tuple[int, ...]:
        """The spatial shape of every map (the model input's)."""
        return tuple(self.file["raw"].shape[1:])

    def normalized(self, m: int) -> np.ndarray:
        """Map ``m`` scaled as :attr:`normalization` says: to [0, 1], or [-1, 1] where :attr:`signed` (float32; NaN
        for a skipped sample's map). Derived from the raw map exactly as the method normalized it; files of
        schema_version 2 stored it as float16 (within 2^-11 |v|), version 1 as float32."""
        if "normalized" in self.file:  # schema_version 1 and 2
            return self.file["normalized"][m].astype(np.float32, copy=False)
        if self._parameters is None:  # two numbers per map, read once
            self._parameters = tuple(self.file[name][()] for name in NORMALIZATION_DATASETS)
        offset, divisor = (values[m : m + 1] for values in self._parameters)
        return apply_normalization(self.raw(m)[None], self.normalization, offset, divisor)[0]

    @cached_property
    def normalization(self) -> str:
        """How the maps were normalized: the method's recorded ``normalize`` (``minmax`` for a file
        written before methods had one, which is how those were normalized)."""
        return _normalization(self.file.attrs.get("method_params"))

    @property
    def signed(self) -> bool:
        """Whether the normalized maps keep their sign (values in [-1, 1])."""
        return self.normalization == "signed"

    def raw(self, m: int) -> np.ndarray:
        """Map ``m`` as the method computed it."""
        raw = self._raw
        if self._direct_chunks:
            try:
                mask, chunk = raw.id.read_direct_chunk((m,) + (0,) * (raw.ndim - 1))
            except (KeyError, OSError, ValueError, RuntimeError):  # no chunk written (its fill value): HDF5 reads it
                mask = -1
            if mask == 0:
                return _inflated_map(chunk, self.map_shape)
        return raw[m]

    @cached_property
    def _raw(self) -> h5py.Dataset:
        return self.file["raw"]

    @cached_property
    def _direct_chunks(self) -> bool:
        """Whether each raw map is one chunk in the layout :func:`_deflated_chunk` writes, which :meth:`raw` then
        inflates with libdeflate (1.1-1.8 ms for a 224x224 map instead of 1.9-2.1 ms through HDF5's filters)."""
        raw = self._raw
        plist = raw.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        return (
            raw.chunks == (1, *raw.shape[1:])
            and raw.dtype == RAW_DTYPE
            and filters == [h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE]
        )


# --- evaluation ------------------------------------------------------------------------
#
# ids (str, n samples), sample_index and class_index (int32, m maps, as in the heatmaps file of
# the same method and shard), values/<metric> (float64, m: NaN where the metric is undefined
# or the map was left out), curves/<metric> (float64, (m, steps + 1)) for the curve metrics,
# fractions (float64, steps + 1); attributes method, settings (JSON), model_sha256; issues.


def write_evaluation(
    path: str | os.PathLike,
    ids: Sequence[str],
    sample_index: np.ndarray,
    class_index: np.ndarray,
    fractions: np.ndarray,
    values: dict[str, np.ndarray],
    curves: dict[str, np.ndarray],
    record: SkipRecord | None = None,
    mask_sha256: Sequence[str] | None = None,
    **attrs: Any,
) -> None:
    """An evaluation file (see :mod:`xaipipe.evaluate`): each map's metric values and curves; ``mask_sha256``: each
    sample's mask content hash ("" where none), where the localization metrics read masks."""
    with create(path, EVALUATION, **attrs) as f:
        if mask_sha256 is not None:
            write_strings(f, "mask_sha256", mask_sha256)
        write_strings(f, "ids", ids)
        f.create_dataset("sample_index", data=np.asarray(sample_index, np.int32))
        f.create_dataset("class_index", data=np.asarray(class_index, np.int32))
        f.create_dataset("fractions", data=np.asarray(fractions, np.float64))
        for name, value in values.items():
            f.create_dataset(f"values/{name}", data=np.asarray(value, np.float64))
        for name, curve in curves.items():
            f.create_dataset(f"curves/{name}", data=np.asarray(curve, np.float64))
        (record or SkipRecord(len(ids))).write(f)


def read_mask_sha256(path: str | os.PathLike) -> list[str] | None:
    """The mask content hashes an evaluation file recorded (None: it read no masks, or was written before the
    record existed)."""
    with open_checked(path, EVALUATION) as f:
        return read_strings(f, "mask_sha256") if "mask_sha256" in f else None


@dataclass
class EvaluationFile:
    """The contents of an evaluation file."""

    method: str
    ids: list[str]
    sample_index: np.ndarray
    class_index: np.ndarray
    fractions: np.ndarray
    values: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]
    issues: list[Issue]

    @classmethod
    def read(cls, path: str | os.PathLike) -> EvaluationFile:
        with open_checked(path, EVALUATION) as f:
            try:
                return cls(
                    method=str(f.attrs["method"]),
                    ids=read_strings(f, "ids"),
                    sample_index=f["sample_index"][()],
                    class_index=f["class_index"][()],
                    fractions=f["fractions"][()],
                    values={name: f[f"values/{name}"][()] for name in f.get("values", {})},
                    curves={name: f[f"curves/{name}"][()] for name in f.get("curves", {})},
                    issues=read_issues(f),
                )
            except (OSError, KeyError) as error:
                raise ValueError(f"{path} is damaged: {error}; {RECOVER}") from None
