"""Read and write 3D volumes (NIfTI, MetaImage, NumPy) and draw heatmaps over them.

Arrays are in numpy axis order z, y, x: (D, H, W) for gray volumes and
(D, H, W, 3) for RGB ones, the order ``SimpleITK.GetArrayFromImage`` gives.
Spacings are given in the same order, (z, y, x), in millimetres; SimpleITK's
own ``GetSpacing``/``SetSpacing`` use (x, y, z), so they are reversed here.
Origin and direction (orientation) are not kept: a heatmap is drawn in the
voxel grid of its volume, and ``write_nifti`` writes identity orientation.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tempfile
import zlib
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from xaipipe import samples
from xaipipe.atomic import atomic_path, write_bytes_atomic
from xaipipe.maps import resize_linear
from xaipipe.render import render

VOLUME_EXTENSIONS = samples.VOLUME_EXTENSIONS + samples.ARRAY_EXTENSIONS  # the medical formats, and .npy
_NIFTI_EXTENSIONS = (".nii.gz", ".nii")


def _volume_extension(path: str | os.PathLike) -> str | None:
    """The volume extension ``path`` ends with (lower case), ``.nii.gz`` before ``.nii``; else None."""
    name = Path(path).name.lower()
    for ext in sorted(VOLUME_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext) and len(name) > len(ext):
            return ext
    return None


def is_volume_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a volume file by its extension (case-insensitive, ``.nii.gz`` included)."""
    return _volume_extension(path) is not None


@dataclass(frozen=True)
class Volume:
    """A loaded volume.

    ``array`` is (D, H, W) gray or (D, H, W, 3) RGB in axis order z, y, x, with
    the voxel type as stored (int16 Hounsfield units stay int16). ``spacing`` is
    the voxel size (z, y, x) in millimetres.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]


def _check_volume_array(array: np.ndarray, path: Path) -> np.ndarray:
    """Accept (D, H, W) or (D, H, W, 3); squeeze (D, H, W, 1); reject anything else naming ``path``."""
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim < 3:
        raise ValueError(f"{path}: a volume expected, got shape {array.shape}")
    if array.ndim == 4 and array.shape[3] != 3:
        raise ValueError(
            f"{path}: expected a (D, H, W) gray or (D, H, W, 3) RGB volume, got shape {array.shape} "
            f"({array.shape[3]} components or time points)"
        )
    if array.ndim > 4:
        raise ValueError(f"{path}: expected a (D, H, W) gray or (D, H, W, 3) RGB volume, got shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{path}: empty volume of shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: unsupported voxel type {array.dtype}")
    return array


def _nifti_stream_length(path: Path) -> tuple[bytes, int]:
    """The first 540 bytes of the (decompressed) NIfTI stream and its full decompressed length."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"  # the gzip magic, whatever the extension says
    opener = gzip.open if compressed else open
    with opener(path, "rb") as handle:
        head = handle.read(540)
        length = len(head)
        while chunk := handle.read(1 << 20):
            length += len(chunk)
    return head, length


def _parse_nifti_header(head: bytes) -> tuple[bytes, tuple[int, ...], int, float] | None:
    """(magic, dim[8], bitpix, vox_offset) of a NIfTI-1 or NIfTI-2 header, either byte order; else None."""
    for endian in "<>":
        if len(head) < 4:
            return None
        (sizeof_hdr,) = struct.unpack(f"{endian}i", head[:4])
        if sizeof_hdr == 348 and len(head) >= 348:
            dims = struct.unpack(f"{endian}8h", head[40:56])
            (bitpix,) = struct.unpack(f"{endian}h", head[72:74])
            (vox_offset,) = struct.unpack(f"{endian}f", head[108:112])
            return head[344:348], dims, bitpix, vox_offset
        if sizeof_hdr == 540 and len(head) >= 540:
            (bitpix,) = struct.unpack(f"{endian}h", head[14:16])
            dims = struct.unpack(f"{endian}8q", head[16:80])
            (vox_offset,) = struct.unpack(f"{endian}q", head[168:176])
            return head[4:12], dims, bitpix, float(vox_offset)
    return None


def _check_nifti_complete(path: Path) -> None:
    """Raise ValueError unless the single-file NIfTI ``path`` holds all the voxel data its header declares.

    The NIfTI reader of SimpleITK reads a truncated file without an error (the
    missing voxels get arbitrary values), so the size is checked here: the whole
    stream is read (and, for ``.nii.gz``, decompressed with its CRC verified).
    """
    try:
        head, length = _nifti_stream_length(path)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"unreadable or truncated volume: {path} ({exc})") from exc
    header = _parse_nifti_header(head)
    if header is None:
        raise ValueError(f"unreadable or truncated volume: {path} (no NIfTI header)")
    magic, dims, bitpix, vox_offset = header
    if not magic.startswith((b"n+1", b"n+2")):
        return  # not a single-file NIfTI (no voxel data after the header): left to SimpleITK
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1 : ndim + 1]) or bitpix <= 0 or not math.isfinite(vox_offset):
        raise ValueError(f"unreadable volume: {path} (invalid NIfTI header)")
    expected = int(vox_offset) + math.prod(dims[1 : ndim + 1]) * bitpix // 8
    if length < expected:
        raise ValueError(f"unreadable or truncated volume: {path} ({length} of {expected} bytes)")


def _load_sitk(path: Path, ext: str) -> Volume:
    """Read a NIfTI or MetaImage file through SimpleITK."""
    if ext in _NIFTI_EXTENSIONS:
        _check_nifti_complete(path)
    try:
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"unreadable or truncated volume: {path} ({reason})") from exc
    dimension = image.GetDimension()
    spacing = tuple(float(s) for s in image.GetSpacing())
    if dimension == 4 and image.GetNumberOfComponentsPerPixel() == 1 and array.shape[0] == 1:
        array, dimension, spacing = array[0], 3, spacing[:3]  # a 4D header with a single time point
    if dimension != 3:
        if dimension == 4:
            raise ValueError(f"{path}: a 3D volume expected, got a 4D time series of shape {array.shape}")
        raise ValueError(f"{path}: a volume expected, got shape {array.shape} ({dimension}D image)")
    array = _check_volume_array(array, path)
    z_y_x = spacing[::-1]
    return Volume(array=array, spacing=(z_y_x[0], z_y_x[1], z_y_x[2]))


def _load_npy(path: Path) -> Volume:
    """Read a ``.npy`` array (no pickles) as a volume with spacing (1, 1, 1)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"unreadable or truncated volume: {path} ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected a .npy array, not an archive")
    return Volume(array=_check_volume_array(array, path), spacing=(1.0, 1.0, 1.0))


def load_volume(path: str | os.PathLike) -> Volume:
    """Load a 3D volume from NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``) or ``.npy``.

    NIfTI and MetaImage are read with SimpleITK and keep their spacing; a ``.npy``
    array gets spacing (1, 1, 1). The result is (D, H, W) gray or (D, H, W, 3)
    RGB (a single trailing component is squeezed), voxel type as stored. 2D
    images, 4D time series and other component counts are rejected.

    Raises FileNotFoundError for a missing file and ValueError for an
    unsupported extension or an unreadable, truncated or non-volume file,
    naming the file in each case.
    """
    path = Path(path)
    ext = _volume_extension(path)
    if ext is None:
        raise ValueError(f"{path}: not a volume file; expected one of {', '.join(VOLUME_EXTENSIONS)}")
    if not path.is_file():
        raise FileNotFoundError(f"volume not found: {path}")
    if ext == ".npy":
        return _load_npy(path)
    return _load_sitk(path, ext)


def _check_spacing(spacing: tuple[float, float, float], path: Path) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"{path}: spacing must be three positive (z, y, x) values, got {spacing}")
    return values  # type: ignore[return-value]


def write_nifti(path: str | os.PathLike, array: np.ndarray, spacing: tuple[float, float, float]) -> None:
    """Write a (D, H, W) map or a (D, H, W, 3) uint8 RGB volume as NIfTI, atomically.

    ``path`` must end in ``.nii.gz`` (compressed) or ``.nii``. ``spacing`` is
    (z, y, x) in millimetres. RGB is written as a 3-component vector image. The
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


def overlay_frames(
    volume_rgb_uint8: np.ndarray,
    heatmap01: np.ndarray,
    overlay: bool = True,
    alpha: float = 0.25,
    colormap: str = "jet",
) -> np.ndarray:
    """Draw a 3D heatmap over an RGB uint8 volume, slice by slice: (D, H, W, 3) uint8.

    The (d, h, w) heatmap in [0, 1] is resized trilinearly to the volume's
    (D, H, W) with ``resize_linear``, clipped to [0, 1], and each slice is drawn
    by ``xaipipe.render.render`` (blended with weight ``alpha`` when ``overlay``,
    else the coloured map alone).
    """
    volume = np.asarray(volume_rgb_uint8)
    heatmap = np.asarray(heatmap01)
    if volume.ndim != 4 or volume.shape[3] != 3 or volume.dtype != np.uint8:
        raise ValueError(f"expected a (D, H, W, 3) uint8 RGB volume, got {volume.dtype} of shape {volume.shape}")
    if heatmap.ndim != 3:
        raise ValueError(f"expected a (d, h, w) heatmap, got shape {heatmap.shape}")
    if heatmap.size == 0 or not np.all(np.isfinite(heatmap)):
        raise ValueError("heatmap is empty or holds NaN or infinite values")
    resized = resize_linear(heatmap[np.newaxis], volume.shape[:3])[0]
    resized = np.clip(resized, 0.0, 1.0)
    slices = [render(resized[z], volume[z], overlay, alpha, colormap) for z in range(volume.shape[0])]
    return np.stack(slices).astype(np.uint8, copy=False)


def display_volume(array: np.ndarray) -> np.ndarray:
    """A (D, H, W, 3) uint8 display copy of a loaded volume.

    - Gray (D, H, W), e.g. Hounsfield units: scaled linearly so that the
      volume's own 0.5th percentile maps to 0 and its 99.5th percentile to 255,
      values beyond clipped (a robust window that ignores a few outliers such as
      metal or air); a constant volume becomes 0. NaN voxels become 0.
    - RGB uint8 (D, H, W, 3): kept as it is.
    - Other RGB (D, H, W, 3): scaled from the array's minimum (0) to its maximum (255).

    Gray is repeated to three channels.
    """
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[3] == 3:
        if array.dtype == np.uint8:
            return array.copy()
        lo_hi = (np.nanmin(array), np.nanmax(array)) if array.size else (0, 0)
        return _scale_to_uint8(array, float(lo_hi[0]), float(lo_hi[1]))
    if array.ndim != 3:
        raise ValueError(f"expected a (D, H, W) or (D, H, W, 3) volume, got shape {array.shape}")
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size == 0:
        gray = np.zeros(array.shape, dtype=np.uint8)
    else:
        lo, hi = np.percentile(finite.astype(np.float64), [0.5, 99.5])
        gray = _scale_to_uint8(array, float(lo), float(hi))
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)


def _scale_to_uint8(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``lo`` to 0 and ``hi`` to 255 linearly, clipped and rounded; all zeros when ``hi <= lo``."""
    if not hi > lo:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (array.astype(np.float64) - lo) * (255.0 / (hi - lo))
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)
