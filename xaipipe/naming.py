"""Output file names, as the seed framework names them."""

from __future__ import annotations

import posixpath


def overlay_name(sample_id: str, class_index: int | None = None, extension: str = ".png") -> str:
    """``disk/case_01.png`` -> ``disk.case_01.png``; with a class: ``disk.case_01.class_2.png``."""
    stem, _ = posixpath.splitext(sample_id.replace("\\", "/"))
    name = stem.replace("/", ".")
    if class_index is not None:
        name += f".class_{class_index}"
    return name + extension
