"""What the Snakefile checks of the caches already on disk, at parse time, before any job.

Snakemake decides reruns by modification times; two things it cannot see are caught here:

- a model file replaced by another one (whatever its modification time): the model's
  sha256 is recorded in ``{output}/checksums/model.sha256``, an input of every rule that
  runs the model; where the model's content no longer matches it, the record is removed,
  so its rule writes it again and everything that depends on the model reruns;
- a damaged HDF5 cache (truncated, emptied, of another schema): it is moved aside to
  ``<name>.damaged``, so exactly that file is rebuilt, and what depends on it, instead of
  a job failing on it (and failing again on every rerun).

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from xaipipe import h5store
from xaipipe.atomic import write_bytes_atomic
from xaipipe.model import sha256_file


def write_model_checksum(model_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Record the sha256 of the model file, as ``sha256sum`` writes it (``sha256sum -c`` checks it)."""
    write_bytes_atomic(out_path, f"{sha256_file(model_path)}  {model_path}\n".encode())


def recorded_checksum(checksum_path: str | os.PathLike) -> str | None:
    """The sha256 recorded in a checksum file, or None where it holds none."""
    try:
        words = Path(checksum_path).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return words[0] if words and len(words[0]) == 64 else None


def forget_stale_checksum(model_path: str | os.PathLike, checksum_path: str | os.PathLike) -> str | None:
    """Remove the checksum record where the model's content differs from it; say so, or return None.

    Hashes the model once, and only where a record exists (it does not before the first run).
    """
    if not os.path.exists(checksum_path) or not os.path.isfile(model_path):
        return None
    recorded = recorded_checksum(checksum_path)
    current = sha256_file(model_path)
    if recorded == current:
        return None
    os.unlink(checksum_path)
    return (
        f"the model {model_path} is not the one the cached predictions and maps were computed with "
        f"(sha256 {current[:12]}, recorded {str(recorded)[:12]} in {checksum_path}): "
        "its predictions, heatmaps and overlays are computed again"
    )


def move_damaged_aside(files: Mapping[str | os.PathLike, str]) -> list[tuple[Path, str]]:
    """Move every existing file of ``files`` (path -> HDF5 schema) that is damaged to ``<name>.damaged``.

    Returns (path, message) for each file moved; the message names it, says why and where
    it went. Missing files are left to their rules.
    """
    moved = []
    for path, schema in files.items():
        path = Path(path)
        if not path.exists():
            continue
        why = h5store.problem(path, schema)
        if why is None:
            continue
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        moved.append((path, f"{path} is damaged ({why}): moved aside to {aside}; it is rebuilt by this run"))
    return moved
