"""Load one sample (2D image or volume) as the configured input kind expects it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xaipipe.imageio import load_image
from xaipipe.preprocess import check_dims
from xaipipe.samples import VOLUME_EXTENSIONS


def load_sample(path: str | os.PathLike, spatial_dims: int) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """(array, spacing) of a sample file; spacing (z, y, x) in mm for volumes, None for 2D images.

    2D: PNG, JPEG, TIFF, BMP (OpenCV) and ``.npy``; 3D: NIfTI, MetaImage (SimpleITK) and
    ``.npy``. A volume where a 2D image is expected, or the reverse, is an error naming the file.
    """
    path = Path(path)
    name = path.name.lower()
    if spatial_dims == 3:
        if not (name.endswith(VOLUME_EXTENSIONS) or name.endswith(".npy")):
            raise ValueError(f"{path}: a 2D image where a volume is expected (preprocessing.size has 3 entries)")
        from xaipipe.volumes import load_volume

        volume = load_volume(path)
        return volume.array, tuple(float(s) for s in volume.spacing)
    if name.endswith(VOLUME_EXTENSIONS):
        raise ValueError(f"{path}: a volume where a 2D image is expected (preprocessing.size has 2 entries)")
    if name.endswith(".npy"):
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise ValueError(f"unreadable array file {path}: {error}") from None
        try:
            check_dims(array, 2)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        return array, None
    return load_image(path), None
