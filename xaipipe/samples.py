"""Find the samples of a study and split them into fixed-size shards."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


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
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not ids:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
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
