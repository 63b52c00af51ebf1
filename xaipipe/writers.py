"""Write outputs: images (PNG and the other OpenCV types), NIfTI, ``.npy`` and animated GIF.

:func:`write_map` is the single place that turns a normalized map into an output
file, used by the pipeline's render stage and by :func:`xaipipe.xai_decoder` alike;
the formats and their file extensions are here too. Every file is written under a
temporary name and renamed when complete. Drawing is :mod:`xaipipe.drawing`'s.
"""

from __future__ import annotations

import math
import os
import tempfile
from contextlib import suppress
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from xaipipe import drawing
from xaipipe.atomic import atomic_path, write_bytes_atomic
from xaipipe.geometry import check_direction

EXTENSIONS = {"png": ".png", "npy": ".npy", "nifti": ".nii.gz", "gif": ".gif"}
FORMATS_2D = ("png", "npy")
FORMATS_3D = ("nifti", "npy", "gif")
_NIFTI_EXTENSIONS = (".nii.gz", ".nii")


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


def write_image(path: str | os.PathLike, image: np.ndarray, extension: str | None = None) -> None:
    """Write an (H, W) gray or (H, W, 3) RGB image, atomically: the one image encoder.

    The image type is ``extension`` or, without it, that of ``path`` (PNG when it has none).
    """
    extension = extension or os.path.splitext(str(path))[1] or ".png"
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(extension, image)
    if not ok:
        raise ValueError(f"could not encode {extension} for {path}")
    write_bytes_atomic(path, encoded.tobytes())


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an (H, W) gray or (H, W, 3) RGB image as PNG (whatever the path's extension), atomically."""
    write_image(path, image, ".png")


def _check_spacing(spacing: tuple[float, float, float], path: Path) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"{path}: spacing must be three positive (z, y, x) values, got {spacing}")
    return values  # type: ignore[return-value]


def write_nifti(
    path: str | os.PathLike,
    array: np.ndarray,
    spacing: tuple[float, float, float],
    origin: tuple[float, ...] | None = None,
    direction: tuple[float, ...] | None = None,
) -> None:
    """Write a (D, H, W) map or a (D, H, W, 3) uint8 RGB volume as NIfTI, atomically.

    ``path`` must end in ``.nii.gz`` (compressed) or ``.nii``. ``spacing`` is
    (z, y, x) in millimetres; ``origin`` (x, y, z) and the row-major ``direction``
    are SimpleITK's (:mod:`xaipipe.geometry`; None: zeros, identity), so the file's
    affine is its source's. RGB is written as a 3-component vector image. The
    file is first written under a temporary name in the same folder, ending in
    the same extension (SimpleITK picks its writer by the extension), then
    renamed onto ``path``; on any error the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    ext = next((e for e in _NIFTI_EXTENSIONS if path.name.lower().endswith(e)), None)
    if ext is None:
        raise ValueError(f"{path}: a NIfTI file name must end in .nii.gz or .nii")
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[3] == 3:
        if array.dtype != np.uint8:
            raise ValueError(f"{path}: an RGB volume must be uint8, got {array.dtype}")
        is_vector = True
    elif array.ndim == 3:
        if array.dtype.kind not in "iuf" or array.dtype == np.float16:
            raise ValueError(f"{path}: unsupported voxel type {array.dtype} for NIfTI")
        is_vector = False
    else:
        raise ValueError(f"{path}: expected a (D, H, W) map or (D, H, W, 3) RGB volume, got shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{path}: cannot write an empty volume of shape {array.shape}")
    z, y, x = _check_spacing(spacing, path)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=is_vector)
    image.SetSpacing((x, y, z))
    if origin is not None:
        image.SetOrigin(tuple(float(v) for v in origin))
    if direction is not None:
        check_direction(direction, str(path))
        image.SetDirection(tuple(float(v) for v in direction))

    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name[: -len(ext)]
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".part{ext}", dir=path.parent)
    os.close(fd)
    try:
        try:
            sitk.WriteImage(image, tmp)
        except RuntimeError as exc:
            raise ValueError(f"could not write NIfTI {path}: {str(exc).strip()}") from exc
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a ``.npy`` file, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> None:
    """Write (D, H, W, 3) uint8 RGB frames as an animated GIF that loops forever, atomically.

    Each slice is one frame, shown for 1 / ``fps`` seconds (GIF stores delays in
    hundredths of a second, so the delay is rounded to that). GIF colours are
    quantized to a palette of at most 256 colours per frame.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: expected (D, H, W, 3) uint8 RGB frames, got {frames.dtype} of shape {frames.shape}")
    if 0 in frames.shape:
        raise ValueError(f"{path}: no frames to write (shape {frames.shape})")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"{path}: fps must be positive, got {fps}")
    duration_ms = max(10, int(round(100.0 / fps)) * 10)
    animation = cv2.Animation()
    animation.frames = [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR) for frame in frames]
    animation.durations = [duration_ms] * len(frames)
    animation.loop_count = 0  # 0: loop forever
    ok, encoded = cv2.imencodeanimation(".gif", animation)
    if not ok:
        raise ValueError(f"could not encode GIF for {path}")
    write_bytes_atomic(path, encoded.tobytes())




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
    signed: bool = False,
    origin: tuple[float, ...] | None = None,
    direction: tuple[float, ...] | None = None,
) -> None:
    """Write one normalized map at the resolution of ``image`` (8-bit, gray or RGB).

    ``png`` (and other 2D image types, by the path's extension) and ``gif`` draw the
    coloured map, blended over the image with ``overlay``; ``npy`` and ``nifti``
    store the map itself (NIfTI with ``spacing``, ``origin`` and ``direction``). ``signed``: the map is in [-1, 1]
    (its method's ``normalize: signed``), drawn in a diverging colour map and stored with its sign.
    """
    shape = image.shape[:spatial_dims]
    if file_format == "png":
        write_image(path, drawing.draw(heatmap, image, 2, overlay, alpha, colormap, signed))
    elif file_format == "gif":
        write_gif(path, drawing.draw(heatmap, image, 3, overlay, alpha, colormap, signed))
    elif file_format == "npy":
        write_npy(path, drawing.map_at(heatmap, shape, signed))
    elif file_format == "nifti":
        spacing = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
        write_nifti(path, drawing.map_at(heatmap, shape, signed), spacing, origin, direction)
    else:
        raise ValueError(f"unknown output format {file_format!r}")


#: The placeholder image of a skipped sample: text lines of at most this many characters, at most this many lines.
_PLACEHOLDER_COLUMNS, _PLACEHOLDER_LINES = 44, 6


def placeholder_image(text: str) -> np.ndarray:
    """A light gray (H, 384, 3) uint8 image with ``text`` written on it in black (ASCII; wrapped, cut to six lines)."""
    import textwrap

    ascii_text = text.encode("ascii", "replace").decode()
    lines = textwrap.wrap(ascii_text, _PLACEHOLDER_COLUMNS) or [""]
    if len(lines) > _PLACEHOLDER_LINES:
        lines = lines[: _PLACEHOLDER_LINES - 1] + [lines[_PLACEHOLDER_LINES - 1][: _PLACEHOLDER_COLUMNS - 3] + "..."]
    image = np.full((16 + 20 * len(lines), 384, 3), 230, np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(image, line, (8, 24 + 20 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def write_placeholder(path: str | os.PathLike, file_format: str, text: str, map_shape: tuple[int, ...]) -> None:
    """The output of a sample that was skipped: where a map would be drawn, an image saying ``text``
    (``png`` and the other 2D image types; ``gif``: one such frame); where a map would be stored,
    a map of NaN of ``map_shape`` (``npy``; ``nifti`` with spacing 1)."""
    if file_format == "png":
        write_image(path, placeholder_image(text))
    elif file_format == "gif":
        write_gif(path, placeholder_image(text)[None])
    elif file_format == "npy":
        write_npy(path, np.full(map_shape, np.nan, np.float32))
    elif file_format == "nifti":
        write_nifti(path, np.full(map_shape, np.nan, np.float32), (1.0, 1.0, 1.0))
    else:
        raise ValueError(f"unknown output format {file_format!r}")
