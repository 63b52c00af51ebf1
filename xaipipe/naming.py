"""Output file names, as the seed framework names them."""

from __future__ import annotations

import os

from xaipipe.samples import SAMPLE_EXTENSIONS


def overlay_name(sample_id: str, class_index: int | None = None, extension: str = ".png") -> str:
    """``disk/case_01.png`` -> ``disk.case_01.png``; with a class: ``disk.case_01.class_2.png``."""
    name = sample_stem(sample_id.replace("\\", "/")).replace("/", ".")
    if class_index is not None:
        name += f".class_{class_index}"
    return name + extension


def sample_stem(sample_id: str) -> str:
    """The sample id without a known image or volume extension (``.nii.gz`` counts as one).

    Ids without such an extension (``image_format`` supplies it) are kept whole,
    dots included.
    """
    lower = sample_id.lower()
    for extension in sorted(SAMPLE_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(extension):
            return sample_id[: -len(extension)]
    return sample_id


def extension_of(path: str | os.PathLike) -> str:
    """The extension of a file name, ``.nii.gz`` counted as one (``a/b.nii.gz`` -> ``.nii.gz``, ``b.png`` -> ``.png``)."""
    name = os.path.basename(os.fspath(path))
    return ".nii.gz" if name.lower().endswith(".nii.gz") else os.path.splitext(name)[1]
