"""Write one rendered map: the single place that turns a normalized map into an output file.

Used by the pipeline's render stage and by :func:`xaipipe.xai_decoder` alike.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from xaipipe.atomic import write_bytes_atomic
from xaipipe.maps import resize_linear
from xaipipe.preprocess import convert_channels

EXTENSIONS = {"png": ".png", "npy": ".npy", "nifti": ".nii.gz", "gif": ".gif"}
FORMATS_2D = ("png", "npy")
FORMATS_3D = ("nifti", "npy", "gif")


def output_format(requested: str, spatial_dims: int) -> str:
    """The render format: ``auto`` is PNG for 2D images and NIfTI for volumes."""
    if requested == "auto":
        return "png" if spatial_dims == 2 else "nifti"
    allowed = FORMATS_2D if spatial_dims == 2 else FORMATS_3D
    if requested not in allowed:
        raise ValueError(f"render.format {requested!r} does not suit {spatial_dims}D inputs; use one of {allowed}")
    return requested


def format_of_extension(extension: str, spatial_dims: int) -> str:
    """The output format that a file extension asks for (``jpg`` and other 2D image types draw like PNG)."""
    extension = extension.lower().lstrip(".")
    if extension in ("nii", "nii.gz"):
        return output_format("nifti", spatial_dims)
    if extension in ("npy", "gif"):
        return output_format(extension, spatial_dims)
    return output_format("png", spatial_dims)


def map_at(heatmap: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A [0, 1] map resized (bi/trilinearly) to ``shape``, still in [0, 1]."""
    if heatmap.shape == tuple(shape):
        return heatmap.astype(np.float32)
    return np.clip(resize_linear(heatmap[None], tuple(shape))[0], 0.0, 1.0)


def write_map(
    path: str | os.PathLike,
    heatmap: np.ndarray,
    image: np.ndarray,
    spatial_dims: int,
    file_format: str,
    overlay: bool = True,
    alpha: float = 0.25,
    colormap: str = "jet",
    spacing: tuple[float, ...] | None = None,
) -> None:
    """Write one normalized map at the resolution of ``image`` (8-bit, gray or RGB).

    ``png`` (and other 2D image types, by the path's extension) and ``gif`` draw the
    coloured map, blended over the image with ``overlay``; ``npy`` and ``nifti``
    store the map itself (NIfTI with ``spacing``).
    """
    from xaipipe.render import render

    shape = image.shape[:spatial_dims]
    if file_format == "png":
        picture = render(heatmap, convert_channels(image, 3), overlay, alpha, colormap)
        extension = os.path.splitext(str(path))[1] or ".png"
        ok, encoded = cv2.imencode(extension, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"could not encode {path}")
        write_bytes_atomic(path, encoded.tobytes())
    elif file_format == "gif":
        from xaipipe.volumes import overlay_frames, write_gif

        write_gif(path, overlay_frames(convert_channels(image, 3, 3), heatmap, overlay, alpha, colormap))
    elif file_format == "npy":
        from xaipipe.volumes import write_npy

        write_npy(path, map_at(heatmap, shape))
    elif file_format == "nifti":
        from xaipipe.volumes import write_nifti

        write_nifti(path, map_at(heatmap, shape), tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0))
    else:
        raise ValueError(f"unknown output format {file_format!r}")
