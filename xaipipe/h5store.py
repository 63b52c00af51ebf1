"""The HDF5 files of the pipeline: preprocessed inputs, predictions and heatmaps.

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
from typing import Any

import h5py
import numpy as np

from xaipipe import __version__
from xaipipe.atomic import atomic_path

SCHEMA_VERSION = 1
_STR = h5py.string_dtype()


@contextmanager
def create(path: str | os.PathLike, schema: str, **attrs: Any) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing; it appears at ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema"] = schema
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["xaipipe_version"] = __version__
            for key, value in attrs.items():
                f.attrs[key] = _attr(value)
            yield f


def open_checked(path: str | os.PathLike, schema: str) -> h5py.File:
    """Open an HDF5 file for reading and check that it holds ``schema``."""
    f = h5py.File(path, "r")
    found = f.attrs.get("schema")
    if found != schema:
        f.close()
        raise ValueError(f"{path}: expected an HDF5 file of schema {schema!r}, found {found!r}")
    return f


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


# --- preprocessed shards -------------------------------------------------------------

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
    f["overlay_images"].create_dataset(f"{row:06d}", data=image, compression="gzip", compression_opts=1)


@dataclass
class PreprocessedShard:
    """Read access to a preprocessed shard; arrays are read lazily, batch by batch."""

    file: h5py.File

    @classmethod
    def open(cls, path: str | os.PathLike) -> "PreprocessedShard":
        return cls(open_checked(path, PREPROCESSED))

    def __enter__(self) -> "PreprocessedShard":
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    @property
    def ids(self) -> list[str]:
        return read_strings(self.file, "ids")

    @property
    def labels(self) -> np.ndarray:
        return self.file["labels"][()]

    def __len__(self) -> int:
        return self.file["inputs"].shape[0]

    def batches(self, batch_size: int) -> Iterator[tuple[slice, np.ndarray]]:
        """(rows, inputs) for consecutive batches of at most ``batch_size`` samples."""
        for start in range(0, len(self), batch_size):
            rows = slice(start, min(start + batch_size, len(self)))
            yield rows, self.file["inputs"][rows]

    def overlay_image(self, row: int) -> np.ndarray:
        return self.file["overlay_images"][f"{row:06d}"][()]


# --- predictions ---------------------------------------------------------------------

PREDICTIONS = "xaipipe.predictions"


def write_predictions(
    path: str | os.PathLike,
    ids: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    **attrs: Any,
) -> None:
    with create(path, PREDICTIONS, **attrs) as f:
        write_strings(f, "ids", ids)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.int32))
        f.create_dataset("probabilities", data=probabilities.astype(np.float32))
        f.create_dataset("predicted", data=probabilities.argmax(axis=1).astype(np.int32))


def read_predictions(path: str | os.PathLike) -> dict[str, Any]:
    with open_checked(path, PREDICTIONS) as f:
        return {
            "ids": read_strings(f, "ids"),
            "labels": f["labels"][()],
            "probabilities": f["probabilities"][()],
            "predicted": f["predicted"][()],
            "class_names": json_attr(f, "class_names"),
        }


# --- heatmaps ------------------------------------------------------------------------

HEATMAPS = "xaipipe.heatmaps"


def create_heatmaps(f: h5py.File, ids: Sequence[str], n_maps: int, map_shape: tuple[int, ...]) -> None:
    """Lay out a heatmaps file for ``n_maps`` maps of ``map_shape``, filled batch by batch."""
    write_strings(f, "ids", ids)
    f.create_dataset("sample_index", shape=(n_maps,), dtype=np.int32)
    f.create_dataset("class_index", shape=(n_maps,), dtype=np.int32)
    for name in ("raw", "normalized"):
        f.create_dataset(
            name,
            shape=(n_maps, *map_shape),
            dtype=np.float32,
            chunks=(1, *map_shape),
            compression="gzip",
            compression_opts=1,
            shuffle=True,
        )
