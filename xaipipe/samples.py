"""Find the samples of a study and split them into fixed-size shards."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".mha", ".mhd")
ARRAY_EXTENSIONS = (".npy",)
SAMPLE_EXTENSIONS = IMAGE_EXTENSIONS + VOLUME_EXTENSIONS + ARRAY_EXTENSIONS


@dataclass(frozen=True)
class SampleSheet:
    """Sample ids (paths relative to the image folder, '/'-separated) with optional labels."""

    ids: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.ids:
            raise ValueError("the sample list is empty")
        seen: set[str] = set()
        for sample_id in self.ids:
            if sample_id in seen:
                raise ValueError(f"sample id {sample_id!r} is listed twice")
            seen.add(sample_id)
        if self.labels is not None and len(self.labels) != len(self.ids):
            raise ValueError("labels and sample ids differ in length")

    def __len__(self) -> int:
        return len(self.ids)


def discover_folder(root: str | os.PathLike, class_subfolders: bool | str = "auto") -> SampleSheet:
    """List the images under ``root`` in a stable (sorted) order.

    With ``class_subfolders`` true, every top-level subfolder is a class (names
    sorted, index = position) and its images are labelled with it; ``"auto"``
    chooses this when ``root`` holds only subfolders.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    if class_subfolders == "auto":
        entries = [e for e in root.iterdir() if not e.name.startswith(".")]
        class_subfolders = bool(entries) and all(e.is_dir() for e in entries)
    ids = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and has_sample_extension(p.name) and not p.name.startswith(".")
    )
    if not ids:
        raise ValueError(f"no images or volumes ({', '.join(SAMPLE_EXTENSIONS)}) found under {root}")
    if not class_subfolders:
        return SampleSheet(tuple(ids))
    loose = [i for i in ids if "/" not in i]
    if loose:
        raise ValueError(f"{root}: images outside a class subfolder: {loose[:3]}")
    class_names = tuple(sorted({i.split("/", 1)[0] for i in ids}))
    index = {name: k for k, name in enumerate(class_names)}
    labels = tuple(index[i.split("/", 1)[0]] for i in ids)
    return SampleSheet(tuple(ids), labels, class_names)


def shard_names(n_samples: int, shard_size: int) -> list[str]:
    """Names ('00000', '00001', ...) of the shards that hold ``n_samples`` samples."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    return [f"{k:05d}" for k in range((n_samples + shard_size - 1) // shard_size)]


def shard_slice(shard: str | int, shard_size: int) -> slice:
    """The positions in the sample sheet that belong to ``shard``."""
    k = int(shard)
    return slice(k * shard_size, (k + 1) * shard_size)


def has_sample_extension(name: str) -> bool:
    return name.lower().endswith(SAMPLE_EXTENSIONS)


def sample_path(image_dir: str | os.PathLike, sample_id: str, image_format: str | None = None) -> Path:
    """The file of a sample: the id as a path, with ``.{image_format}`` added where the id has no extension."""
    if image_format and not has_sample_extension(sample_id):
        sample_id = f"{sample_id}.{image_format.lstrip('.')}"
    return Path(image_dir) / sample_id


def _class_index(value: Any, class_names: list[str], where: str) -> int:
    """A class given as a name or an index (int, or a digit string) -> its index."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is not a class")
    if isinstance(value, int):
        index = value
    elif isinstance(value, str) and value.strip() in class_names:
        return class_names.index(value.strip())
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        index = int(value)
    else:
        raise ValueError(f"{where}: unknown class {value!r}; classes: {class_names}")
    if not 0 <= index < len(class_names):
        raise ValueError(f"{where}: class index {index} out of range for {len(class_names)} classes")
    return index


def _one_hot_index(values: Sequence[Any], where: str) -> int:
    numbers = [float(v) for v in values]
    if sorted(numbers) != [0.0] * (len(numbers) - 1) + [1.0]:
        raise ValueError(f"{where}: {list(values)} is not one-hot")
    return numbers.index(1.0)


def _names_from_labels(labels: Sequence[Any], classes: Sequence[str]) -> list[str]:
    """Class names: those configured, else the sorted names used, else 0..max index."""
    if classes:
        return list(classes)
    names = {str(v).strip() for v in labels if not (isinstance(v, int) or str(v).strip().lstrip("-").isdigit())}
    if names:
        return sorted(names)
    indices = [int(v) for v in labels]
    return [str(k) for k in range(max(indices) + 1)] if indices else []


def read_csv(
    path: str | os.PathLike,
    id_column: str = "SAMPLE",
    class_column: str | None = None,
    class_columns: Sequence[str] = (),
    classes: Sequence[str] = (),
) -> SampleSheet:
    """Samples from a CSV file: an id column, and one class column, one-hot columns, or no labels.

    ``class_column`` names a column of class names or indices; ``class_columns``
    lists one-hot columns (their names are the classes). With neither, a file
    with only the id column has no labels, a file with one more column uses it as
    the class column, and more columns are an error that lists them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample table not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if id_column not in columns:
        raise ValueError(f"{path}: no id column {id_column!r} (data.id_column); columns: {columns}")
    others = [c for c in columns if c != id_column]
    for column in [class_column, *class_columns]:
        if column is not None and column not in columns:
            raise ValueError(f"{path}: label column {column!r} does not exist; columns: {columns}")
    if class_column is None and not class_columns:
        if len(others) > 1:
            raise ValueError(
                f"{path}: several columns besides {id_column!r} ({others}); set data.class_column "
                "or data.class_columns (one-hot)"
            )
        class_column = others[0] if others else None
    ids = tuple(row[id_column].strip() for row in rows)
    if class_columns:
        labels = tuple(
            _one_hot_index([row[c] for c in class_columns], f"{path} row {k + 2}") for k, row in enumerate(rows)
        )
        names = list(classes) or list(class_columns)
        return SampleSheet(ids, labels, tuple(names))
    if class_column is None:
        return SampleSheet(ids)
    raw = [row[class_column] for row in rows]
    names = _names_from_labels(raw, classes)
    labels = tuple(_class_index(v, names, f"{path} row {k + 2}") for k, v in enumerate(raw))
    return SampleSheet(ids, labels, tuple(names))


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"sample id {key!r} is listed twice")
    return dict(pairs)


def read_json(path: str | os.PathLike, classes: Sequence[str] = ()) -> SampleSheet:
    """Samples from a JSON object mapping sample id to a class name, index or one-hot list."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample table not found: {path}")
    try:
        table = json.loads(path.read_text(), object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected an object mapping sample id to class")
    ids = tuple(table)
    values = list(table.values())
    if values and all(isinstance(v, list) for v in values):
        labels = tuple(_one_hot_index(v, f"{path} sample {i!r}") for i, v in zip(ids, values))
        width = len(values[0])
        names = list(classes) or [str(k) for k in range(width)]
        return SampleSheet(ids, labels, tuple(names))
    names = _names_from_labels(values, classes)
    labels = tuple(_class_index(v, names, f"{path} sample {i!r}") for i, v in zip(ids, values))
    return SampleSheet(ids, labels, tuple(names))
