"""Find the samples of a study and split them into fixed-size shards.

A sample id is a path relative to the image folder, '/'-separated: a file (an image,
a volume, a ``.npy`` array, a DICOM file) or, for volumes, a folder holding one DICOM
series (its slices). A folder holding several series is one sample per series, each
id naming its series by SeriesInstanceUID after an ``@``: ``patient7/ct@1.2.840.113619.2.55.3``
(:data:`SERIES_SEPARATOR`, :func:`split_series`). A UID is digits and dots, so such an
id is a valid file name once its '/' become '.' (:func:`xaipipe.naming.overlay_name`).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The JPEG family's names (lossy; EXIF orientation).
JPEG_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe")
#: What OpenCV reads (:func:`xaipipe.readers.load_image`), as Keras's ``load_img`` does: PNG, the JPEG family,
#: TIFF, BMP, WebP, JPEG 2000 (also 16-bit) and the Netpbm files (MIAS's mammograms are ``.pgm``).
IMAGE_EXTENSIONS = (".png", *JPEG_EXTENSIONS, ".tif", ".tiff", ".bmp", ".webp", ".jp2", ".pgm", ".ppm", ".pnm")
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".mha", ".mhd")
ARRAY_EXTENSIONS = (".npy",)
DICOM_EXTENSIONS = (".dcm",)
SAMPLE_EXTENSIONS = IMAGE_EXTENSIONS + VOLUME_EXTENSIONS + ARRAY_EXTENSIONS + DICOM_EXTENSIONS
#: Files that sit beside images and are no images: a folder's tables, notes and archives are passed over in silence.
NOT_IMAGE_EXTENSIONS = (
    ".csv", ".tsv", ".txt", ".md", ".rst", ".json", ".yaml", ".yml", ".xml", ".xls", ".xlsx", ".pdf", ".html",
    ".log", ".py", ".ipynb", ".zip", ".gz", ".tar", ".7z", ".sha256", ".md5", ".db", ".pkl", ".h5", ".keras",
)  # fmt: skip

#: Between a series folder and the SeriesInstanceUID of the series it names: ``ct@1.2.840.10008.5``.
SERIES_SEPARATOR = "@"
#: A DICOM UID: at most 64 characters, digits and dots (PS3.5 9.1).
_UID = re.compile(r"[0-9]+(\.[0-9]+)*\Z")


def split_series(sample_id: str) -> tuple[str, str | None]:
    """(the id's file or folder, the SeriesInstanceUID it names or None): ``ct@1.2.3`` -> ``("ct", "1.2.3")``.

    Only a UID (digits and dots, at most 64 characters) after the last ``@`` counts, so
    ``scan@2.png`` is a file name as it stands.
    """
    folder, separator, uid = sample_id.rpartition(SERIES_SEPARATOR)
    if separator and folder and len(uid) <= 64 and _UID.match(uid):
        return folder, uid
    return sample_id, None


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file named ``.dcm`` or one that starts with the DICOM preamble (``DICM`` at byte 128)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.name.lower().endswith(DICOM_EXTENSIONS):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _series_folders(root: Path) -> list[Path]:
    """The folders below ``root`` that directly hold DICOM files."""
    return sorted(
        folder
        for folder in root.rglob("*")
        if folder.is_dir()
        and not any(part.startswith(".") for part in folder.relative_to(root).parts)
        and any(is_dicom_file(f) and not f.name.startswith(".") for f in folder.iterdir())
    )


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
        for position, sample_id in enumerate(self.ids):
            if not sample_id.strip():
                raise ValueError(f"sample {position + 1} has an empty id")
            if sample_id in seen:
                raise ValueError(f"sample id {sample_id!r} is listed twice")
            seen.add(sample_id)
        if self.labels is not None and len(self.labels) != len(self.ids):
            raise ValueError("labels and sample ids differ in length")

    def __len__(self) -> int:
        return len(self.ids)


def discover_folder(
    root: str | os.PathLike,
    class_subfolders: bool | str = "auto",
    classes: Sequence[str] = (),
    series_folders: bool = False,
) -> SampleSheet:
    """List the images under ``root`` in a stable (sorted) order.

    With ``class_subfolders`` true, every top-level subfolder is a class and its
    images are labelled with it; ``"auto"`` chooses this when ``root`` holds only
    subfolders (and files that are no samples) and none of them holds DICOM files itself; images both in
    subfolders and beside them are an error there, which asks for true or false. The class index is the
    subfolder's position in ``classes`` (the model's output order; a subfolder not
    among them is an error), or without ``classes`` in the sorted subfolder names. Without class
    subfolders the samples have no labels, and ``classes`` names the model's outputs.

    DICOM files are those named ``.dcm`` and others that start with the DICOM preamble
    (scanners often write names without extension). With ``series_folders`` (volumes
    expected) a folder below ``root`` that holds DICOM files is one sample, a series,
    listed instead of its files; DICOM files in ``root`` itself are samples each
    (multi-frame volumes).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    series = _series_folders(root) if series_folders else []
    if class_subfolders == "auto":  # other files beside the class folders (a README, the labels' table) aside
        entries = [e for e in root.iterdir() if not e.name.startswith(".") and (e.is_dir() or _is_sample_file(e))]
        class_subfolders = bool(entries) and all(e.is_dir() and e not in series for e in entries)
        loose = sorted(e.name for e in entries if not e.is_dir())
        folders = [] if not loose or series_folders else [
            e for e in entries if e.is_dir() and e not in series and any(map(_is_sample_file, e.rglob("*")))
        ]  # fmt: skip
        if folders:
            raise ValueError(
                f"{root} holds both images in subfolders ({', '.join(sorted(e.name for e in folders)[:3])}) and "
                f"images beside them ({', '.join(loose[:3])}): set data.class_subfolders to true (the subfolders "
                "are the classes; move the loose images into theirs) or to false (no labels from folders)"
            )
    series = [folder for folder in series if not _hidden(folder, root)]
    found = [
        p for p in root.rglob("*")
        if _is_sample_file(p) and not _hidden(p, root) and not (p.parent in series and is_dicom_file(p))
    ]  # fmt: skip
    ids = sorted([p.relative_to(root).as_posix() for p in found] + [p.relative_to(root).as_posix() for p in series])
    if not ids:
        raise ValueError(f"no images or volumes ({', '.join(SAMPLE_EXTENSIONS)}) found under {root}")
    if not class_subfolders:  # no labels; the configured classes still name (and count) the model's outputs
        return SampleSheet(tuple(ids), None, tuple(classes) or None)
    loose = [i for i in ids if "/" not in i]
    if loose:
        raise ValueError(f"{root}: images outside a class subfolder: {loose[:3]}")
    folders = sorted({i.split("/", 1)[0] for i in ids})
    for folder in folders:
        if classes and folder not in classes:
            raise ValueError(
                f"{root}: class subfolder {folder!r} is not one of the classes {', '.join(classes)} "
                "(config key classes); rename the folder or add the class in the model's output order"
            )
    class_names = tuple(classes) if classes else tuple(folders)
    index = {name: k for k, name in enumerate(class_names)}
    labels = tuple(index[i.split("/", 1)[0]] for i in ids)
    return SampleSheet(tuple(ids), labels, class_names)


def unread_files(root: str | os.PathLike) -> dict[str, int]:
    """The files under ``root`` that folder discovery passes over and that may be meant as samples: extension
    (lower case, ``""`` for none) -> count. Hidden files and folders, DICOM files without extension, the files
    of :data:`NOT_IMAGE_EXTENSIONS` and the ``.raw`` pixel files beside ``.mhd`` headers are left out. A folder
    of ``.gif`` or ``.nrrd`` files beside ``.png`` ones would otherwise lose them without a word."""
    root = Path(root)
    counts: dict[str, int] = {}
    for path in root.rglob("*"):
        name = path.name.lower()
        if _hidden(path, root) or name.endswith(NOT_IMAGE_EXTENSIONS) or not path.is_file() or _is_sample_file(path):
            continue
        if name.endswith((".raw", ".zraw")) and any(path.parent.glob("*.[mM][hH][dD]")):
            continue  # a MetaImage header's pixel data
        extension = Path(name).suffix  # (a compressed .gz is passed over with the archives)
        counts[extension] = counts.get(extension, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def unread_files_warning(root: str | os.PathLike) -> str | None:
    """What to say of :func:`unread_files` (None where there are none)."""
    counts = unread_files(root)
    if not counts:
        return None
    listed = ", ".join(f"{n} {ext or 'without extension'}" for ext, n in list(counts.items())[:6])
    more = ", ..." if len(counts) > 6 else ""
    return (
        f"{sum(counts.values())} files under {root} are not read as samples ({listed}{more}): "
        f"xaipipe reads {', '.join(SAMPLE_EXTENSIONS)} and DICOM files; convert the others (for example to .png or "
        ".nii.gz) or move them out of the folder"
    )


def _hidden(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in a hidden folder below ``root`` or is hidden itself (``.ipynb_checkpoints``, ``.git``:
    copies and caches, no samples)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def shard_names(n_samples: int, shard_size: int) -> list[str]:
    """Names ('00000', '00001', ...) of the shards that hold ``n_samples`` samples."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    return [f"{k:05d}" for k in range((n_samples + shard_size - 1) // shard_size)]


def shard_slice(shard: str | int, shard_size: int) -> slice:
    """The positions in the sample sheet that belong to ``shard``."""
    k = int(shard)
    return slice(k * shard_size, (k + 1) * shard_size)


def _is_sample_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and (has_sample_extension(path.name) or is_dicom_file(path))


def has_sample_extension(name: str) -> bool:
    return name.lower().endswith(SAMPLE_EXTENSIONS)


def sample_path(image_dir: str | os.PathLike, sample_id: str, image_format: str | None = None) -> Path:
    """The file (or DICOM series folder) of a sample: the id as a path, ``@UID`` dropped (:func:`split_series`).

    ``.{image_format}`` is added where the id has no extension, unless the id names a
    series (``@UID``) or only the id as it stands exists (a series folder, or a DICOM
    file without extension).
    """
    name, uid = split_series(sample_id)
    path = Path(image_dir) / name
    if image_format and uid is None and not has_sample_extension(name):
        with_format = Path(image_dir) / f"{name}.{image_format.lstrip('.')}"
        if with_format.exists() or not path.exists():
            return with_format
    return path


def _is_index(value: Any) -> bool:
    """Whether a label is a class index: an int (not a bool) or a string of digits (a sign allowed)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit())


def _label_names(values: Sequence[Any]) -> list[str]:
    return sorted({str(v).strip() for v in values if not _is_index(v) and v is not None and str(v).strip()})


def _labels(
    path: Path, values: Sequence[Any], where: Sequence[str], classes: Sequence[str]
) -> tuple[tuple[int, ...], tuple[str, ...] | None]:
    """(labels, class names) of class names or indices, ``where[k]`` naming the sample of ``values[k]``.

    With ``classes`` (the config's, in model output order) a label is one of them or
    an index into them; where a class name is a number (grades ``1``, ``2``, ``3``) a label is
    always a name (label ``1`` is the class named ``1``, index 0). Without, the labels must all
    be indices (their order is explicit; the names stay unknown): names would be guessed, so
    they are refused.
    """
    if not classes:
        names = _label_names(values)
        if names:
            raise ValueError(
                f"{path}: the labels are class names ({names[:20]}{' ...' if len(names) > 20 else ''}) but the "
                "config lists no classes; set `classes` to every class name in the model's output order "
                "(the order cannot be taken from the labels present)"
            )
    # class names that are numbers (grades 1-3): every label is a name, an index would be ambiguous
    numbered = any(_is_index(name) for name in classes)
    labels = []
    for value, sample in zip(values, where):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError(f"{path}: {sample} has no label; give every sample a class, or leave the labels out")
        if str(value).strip() in classes and not isinstance(value, bool):
            index = list(classes).index(str(value).strip())
        elif _is_index(value) and not numbered:
            index = int(value)
            if index < 0 or (classes and index >= len(classes)):
                valid = f"0..{len(classes) - 1} ({', '.join(classes)})" if classes else "0 or more"
                raise ValueError(f"{path}: {sample}: class index {value!r} out of range; valid: {valid}")
        else:
            why = " (with class names that are numbers, labels are read as class names)" if numbered else ""
            raise ValueError(
                f"{path}: {sample}: label {str(value).strip()!r} is not one of the classes {', '.join(classes)} "
                f"(config key classes){why}; correct the label or the classes"
            )
        labels.append(index)
    return tuple(labels), (tuple(classes) if classes else None)


def _one_hot_index(values: Sequence[Any], where: str) -> int:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {list(values)} is not one-hot (0 and 1 values, a single 1)") from None
    if sorted(numbers) != [0.0] * (len(numbers) - 1) + [1.0]:
        several = set(numbers) <= {0.0, 1.0} and numbers.count(1.0) != 1
        multi = (
            "; a row of several 1s, or none, is a multi-label study (findings each present or not), whose labels "
            "xaipipe does not take: give a table of the id column alone (or a folder without class subfolders), "
            "the findings' names under `classes`, and set targets: all to explain every finding"
        ) if several else ""  # fmt: skip
        raise ValueError(f"{where}: {list(values)} is not one-hot (0 and 1 values, a single 1){multi}")
    return numbers.index(1.0)


def _one_hot_order(path: Path, columns: Sequence[str], classes: Sequence[str]) -> tuple[list[int], tuple[str, ...]]:
    """Class index of each one-hot column, and the class names: the columns', or the configured ones by name."""
    if len(set(columns)) != len(columns):
        raise ValueError(f"{path}: one-hot column listed twice in {list(columns)} (data.class_columns)")
    if not classes:
        return list(range(len(columns))), tuple(columns)
    if sorted(columns) != sorted(classes):
        raise ValueError(
            f"{path}: one-hot columns {list(columns)} (data.class_columns) are not the configured classes "
            f"{list(classes)}; name one column after each class, or leave `classes` out (the columns' order is "
            "then the model's output order)"
        )
    return [list(classes).index(c) for c in columns], tuple(classes)


def _sheet(path: Path, ids: Sequence[str], labels: Sequence[int] | None, names: Sequence[str] | None) -> SampleSheet:
    try:
        return SampleSheet(tuple(ids), None if labels is None else tuple(labels), None if names is None else tuple(names))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def read_csv(
    path: str | os.PathLike,
    id_column: str = "SAMPLE",
    class_column: str | None = None,
    class_columns: Sequence[str] = (),
    classes: Sequence[str] = (),
    not_labels: Sequence[str] = (),
) -> SampleSheet:
    """Samples from a CSV file (UTF-8, a byte-order mark allowed): an id column, and one class column, one-hot columns, or no labels.

    ``class_column`` names a column of class names or indices; ``class_columns``
    lists one-hot columns. With neither, a file with only the id column (and the columns of ``not_labels``, such
    as the mask column) has no labels, a file with one more column uses it as the class column, and more
    columns are an error that lists them.

    Class order: class names need ``classes`` (the model's output order) and each
    label must be one of them; integer labels are indices (into ``classes`` where
    given; without, the names stay unknown); one-hot columns are the classes in
    the columns' order, or, with ``classes``, must be named after them. Every
    problem is a ValueError naming the file and the sample (id and row) or column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample table not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a readable UTF-8 CSV file: {error}") from None
    doubled = sorted({c for c in columns if columns.count(c) > 1})
    if doubled:
        raise ValueError(f"{path}: column {doubled[0]!r} appears more than once in the header {columns}")
    if id_column not in columns:
        raise ValueError(f"{path}: no id column {id_column!r} (data.id_column); columns: {columns}")
    others = [c for c in columns if c != id_column and c not in not_labels]  # a mask column holds no labels
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
    ids = []
    for k, row in enumerate(rows):
        sample_id = (row[id_column] or "").strip()
        if not sample_id:
            raise ValueError(f"{path} row {k + 2}: no sample id (column {id_column!r})")
        ids.append(sample_id)
    where = [f"sample {i!r} (row {k + 2})" for k, i in enumerate(ids)]
    if class_columns:
        order, names = _one_hot_order(path, class_columns, classes)
        labels = [
            order[_one_hot_index([row[c] for c in class_columns], f"{path}: {w}")] for w, row in zip(where, rows)
        ]
        return _sheet(path, ids, labels, names)
    if class_column is None:  # no labels; the configured classes still name (and count) the model's outputs
        return _sheet(path, ids, None, tuple(classes) or None)
    labels, names = _labels(path, [row[class_column] for row in rows], where, classes)
    return _sheet(path, ids, labels, names)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"sample id {key!r} is listed twice")
    return dict(pairs)


def read_json(path: str | os.PathLike, classes: Sequence[str] = ()) -> SampleSheet:
    """Samples from a JSON object (UTF-8) mapping sample id to a class name, index or one-hot list.

    Class order as in :func:`read_csv`: names need ``classes``; indices are
    explicit; one-hot lists all have one entry per class (``len(classes)`` where
    given; without, the classes are named by position, ``0``, ``1``, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample table not found: {path}")
    try:
        table = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=_refuse_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a valid JSON sample table: {error}") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected an object mapping sample id to class")
    ids = list(table)
    values = list(table.values())
    where = [f"sample {i!r}" for i in ids]
    if values and all(isinstance(v, list) for v in values):
        width = len(classes) or len(values[0])
        for w, v in zip(where, values):
            if len(v) != width:
                raise ValueError(
                    f"{path}: {w}: one-hot list of {len(v)} entries, expected {width} "
                    f"({'config key classes' if classes else 'as the first sample'})"
                )
        labels = [_one_hot_index(v, f"{path}: {w}") for w, v in zip(where, values)]
        return _sheet(path, ids, labels, list(classes) or [str(k) for k in range(width)])
    labels, names = _labels(path, values, where, classes)
    return _sheet(path, ids, labels, names)
