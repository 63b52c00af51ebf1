"""Read samples: 2D images (OpenCV), volumes (NIfTI, MetaImage via SimpleITK), DICOM and ``.npy`` arrays.

:func:`load_sample` is the one entry point of the pipeline and the data generator:
it gives the array as stored and, for volumes, the geometry that travels with it.

2D images are (H, W) gray or (H, W, 3) RGB, uint8 or uint16 as stored. Volumes are
in numpy axis order z, y, x: (D, H, W) for gray volumes and (D, H, W, 3) for RGB
ones, the order ``SimpleITK.GetArrayFromImage`` gives. Spacings are given in the
same order, (z, y, x), in millimetres; SimpleITK's own ``GetSpacing``/``SetSpacing``
use (x, y, z), so they are reversed here. Origin and direction are kept as
SimpleITK gives them: origin (x, y, z) in mm and the 3x3 direction row-major, in
SimpleITK's physical LPS world (the convention: :mod:`xaipipe.geometry`). A
``.npy`` volume has the identity direction and origin zero. A direction that is not
invertible is an error naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import SimpleITK as sitk

from xaipipe import dicom, samples
from xaipipe.channels import check_dims
from xaipipe.geometry import IDENTITY, Geometry, check_direction

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
    the voxel size (z, y, x) in millimetres, ``origin`` the position (x, y, z) in mm
    of voxel (0, 0, 0) and ``direction`` the row-major 3x3 direction cosines, both as
    SimpleITK gives them (LPS world; :mod:`xaipipe.geometry`).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.spacing, self.origin, self.direction)


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


#: NIfTI datatype codes of the float voxel types, and their numpy types (without byte order).
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


class _NiftiHeader(NamedTuple):
    """What the checks read of a NIfTI-1 or NIfTI-2 header: its magic, dim[8], bitpix, vox_offset, datatype code
    and byte order (``<`` or ``>``)."""

    magic: bytes
    dims: tuple[int, ...]
    bitpix: int
    vox_offset: float
    datatype: int
    endian: str


def _open_nifti(path: str | os.PathLike) -> Any:
    """A NIfTI file opened for reading its stream, decompressed where it starts with the gzip magic (whatever its
    extension says)."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    return (gzip.open if compressed else open)(path, "rb")


def _nifti_stream_length(path: Path) -> tuple[bytes, int, int]:
    """The first 540 bytes of the (decompressed) NIfTI stream, its full decompressed length and, for float
    voxels, how many of them are NaN or infinite (read from the stream itself: SimpleITK turns them into 0)."""
    with _open_nifti(path) as handle:
        head = handle.read(540)
        length = len(head)
        counter = _NonFinite(head)
        while chunk := handle.read(1 << 20):
            length += len(chunk)
            counter.add(chunk)
    return head, length, counter.count


class _NonFinite:
    """Counts the NaN and infinite voxels of a single-file NIfTI stream of float voxels, fed chunk by chunk."""

    def __init__(self, head: bytes):
        header = _parse_nifti_header(head)
        floats = (
            header is not None
            and header.magic.startswith((b"n+1", b"n+2"))  # the voxels follow the header in this stream
            and header.datatype in _NIFTI_FLOATS
            and math.isfinite(header.vox_offset)
            and header.vox_offset >= 0
            and 1 <= header.dims[0] <= 7
        )
        self.count = 0
        self._dtype = np.dtype(header.endian + _NIFTI_FLOATS[header.datatype]) if floats else None
        self._skip = int(header.vox_offset) if floats else 0  # stream bytes before the voxels
        self._left = math.prod(header.dims[1 : header.dims[0] + 1]) if floats else 0  # voxels to count
        self._pending = b""
        self.add(head)

    def add(self, chunk: bytes) -> None:
        if self._dtype is None or self._left <= 0:
            return
        skipped = min(self._skip, len(chunk))
        self._skip -= skipped
        self._pending += chunk[skipped:]
        size = min(len(self._pending) // self._dtype.itemsize, self._left)
        values = np.frombuffer(self._pending[: size * self._dtype.itemsize], self._dtype)
        self.count += size - int(np.count_nonzero(np.isfinite(values)))
        self._pending = self._pending[size * self._dtype.itemsize :]
        self._left -= size


def _parse_nifti_header(head: bytes) -> _NiftiHeader | None:
    """The fields of a NIfTI-1 or NIfTI-2 header (:class:`_NiftiHeader`), either byte order; else None."""
    for endian in "<>":
        if len(head) < 4:
            return None
        (sizeof_hdr,) = struct.unpack(f"{endian}i", head[:4])
        if sizeof_hdr == 348 and len(head) >= 348:
            dims = struct.unpack(f"{endian}8h", head[40:56])
            datatype, bitpix = struct.unpack(f"{endian}2h", head[70:74])
            (vox_offset,) = struct.unpack(f"{endian}f", head[108:112])
            return _NiftiHeader(head[344:348], dims, bitpix, vox_offset, datatype, endian)
        if sizeof_hdr == 540 and len(head) >= 540:
            datatype, bitpix = struct.unpack(f"{endian}2h", head[12:16])
            dims = struct.unpack(f"{endian}8q", head[16:80])
            (vox_offset,) = struct.unpack(f"{endian}q", head[168:176])
            return _NiftiHeader(head[4:12], dims, bitpix, float(vox_offset), datatype, endian)
    return None


def nifti_form_offset(path: str | os.PathLike) -> float | None:
    """How far apart, in mm, a NIfTI-1 file's sform and qform place its volume (the largest distance at its
    corners), where it sets both; None otherwise. SimpleITK (and so xaipipe) places the volume by the qform;
    viewers that prefer the sform (nibabel, FSL) place it, and the maps written on its grid, elsewhere."""
    try:
        with _open_nifti(path) as handle:
            head = handle.read(348)
    except (OSError, EOFError, zlib.error):
        return None
    header = _parse_nifti_header(head)
    if header is None or len(head) < 348 or struct.unpack(f"{header.endian}i", head[:4])[0] != 348:
        return None
    e = header.endian
    qform_code, sform_code = struct.unpack(f"{e}2h", head[252:256])
    if qform_code <= 0 or sform_code <= 0:
        return None
    pixdim = np.array(struct.unpack(f"{e}8f", head[76:108]), np.float64)
    b, c, d, *offset = struct.unpack(f"{e}6f", head[256:280])
    a = math.sqrt(max(0.0, 1.0 - b * b - c * c - d * d))
    rotation = np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ])  # fmt: skip
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    qform = rotation @ np.diag([pixdim[1], pixdim[2], qfac * pixdim[3]])
    sform = np.array(struct.unpack(f"{e}12f", head[280:328]), np.float64).reshape(3, 4)
    extent = [max(int(n), 1) - 1 for n in header.dims[1:4]]
    corners = np.array([[i, j, k] for i in (0, extent[0]) for j in (0, extent[1]) for k in (0, extent[2])], float)
    apart = (corners @ qform.T + np.array(offset)) - (corners @ sform[:, :3].T + sform[:, 3])
    return float(np.linalg.norm(apart, axis=1).max())


def _is_nifti2(path: Path) -> bool:
    """Whether ``path`` starts with a NIfTI-2 header (540 bytes), either byte order."""
    try:
        head, _, _ = _nifti_stream_length(path)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) >= 4 and 540 in struct.unpack("<i", head[:4]) + struct.unpack(">i", head[:4])


def _check_nifti_complete(path: Path) -> None:
    """Raise ValueError unless the single-file NIfTI ``path`` holds all the voxel data its header declares.

    The NIfTI reader of SimpleITK reads a truncated file without an error (the
    missing voxels get arbitrary values), so the size is checked here: the whole
    stream is read (and, for ``.nii.gz``, decompressed with its CRC verified). It also
    turns NaN and infinite voxels into 0 without a word, so float voxels are counted on
    the way and any non-finite one stops the sample, as for every other format.
    """
    try:
        head, length, not_finite = _nifti_stream_length(path)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"unreadable or truncated volume: {path} ({exc})") from exc
    header = _parse_nifti_header(head)
    if header is None:
        raise ValueError(f"unreadable or truncated volume: {path} (no NIfTI header)")
    magic, dims, bitpix, vox_offset = header.magic, header.dims, header.bitpix, header.vox_offset
    if not magic.startswith((b"n+1", b"n+2")):
        return  # not a single-file NIfTI (no voxel data after the header): left to SimpleITK
    ndim = dims[0]
    if not 1 <= ndim <= 7 or any(d < 1 for d in dims[1 : ndim + 1]) or bitpix <= 0 or not math.isfinite(vox_offset):
        raise ValueError(f"unreadable volume: {path} (invalid NIfTI header)")
    expected = int(vox_offset) + math.prod(dims[1 : ndim + 1]) * bitpix // 8
    if length < expected:
        raise ValueError(f"unreadable or truncated volume: {path} ({length} of {expected} bytes)")
    if not_finite:
        raise ValueError(_not_finite_message(path, not_finite, math.prod(dims[1 : ndim + 1])))


def _load_sitk(path: Path, ext: str) -> Volume:
    """Read a NIfTI or MetaImage file through SimpleITK."""
    if ext in _NIFTI_EXTENSIONS:
        _check_nifti_complete(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        if "determinant is 0" in str(exc):  # ITK refuses a singular direction while reading
            check_direction((0.0,) * 9, str(path))
        if ext in _NIFTI_EXTENSIONS and _is_nifti2(path):
            raise ValueError(
                f"{path}: a NIfTI-2 file, which SimpleITK cannot read; save it as NIfTI-1 (for example with "
                "nibabel: nibabel.Nifti1Image(img.dataobj, img.affine, img.header).to_filename(...))"
            ) from exc
        if "orthonormal direction cosines" in str(exc):  # a sheared affine: intact, but no grid ITK can hold
            raise ValueError(
                f"{path}: its affine is sheared (not a rotation times spacings: a CT with gantry tilt converted "
                "without tilt correction, or a registration output), which ITK cannot hold as a grid; resample it "
                "onto an orthonormal grid (e.g. nibabel.processing.resample_from_to, or dcm2niix's gantry tilt "
                "correction from the DICOM)"
            ) from exc
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"unreadable or truncated volume: {path} ({reason})") from exc
    return volume_from_sitk(image, path)


def volume_from_sitk(image: sitk.Image, path: Path) -> Volume:
    """The :class:`Volume` of a SimpleITK image read from ``path`` (a file or a DICOM series folder, named in
    every error): array and geometry.

    A 4D image of one time point is taken as 3D; other 4D images, 2D images,
    unsupported component counts and a singular direction are ValueErrors.
    """
    try:
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"unreadable or truncated volume: {path} ({reason})") from exc
    dimension = image.GetDimension()
    spacing = tuple(float(s) for s in image.GetSpacing())
    origin = tuple(float(o) for o in image.GetOrigin())
    direction = tuple(float(d) for d in image.GetDirection())
    if dimension == 4 and image.GetNumberOfComponentsPerPixel() == 1 and array.shape[0] == 1:
        array, dimension, spacing, origin = array[0], 3, spacing[:3], origin[:3]  # a 4D header, one time point
        direction = direction[0:3] + direction[4:7] + direction[8:11]  # the 3x3 block of the 4x4
    if dimension != 3:
        if dimension == 4:
            raise ValueError(
                f"{path}: a 3D volume expected, got a 4D time series of shape {array.shape}; save the time point "
                "to explain (or a mean over time) as a 3D volume of its own"
            )
        raise ValueError(f"{path}: a volume expected, got shape {array.shape} ({dimension}D image)")
    array = _check_volume_array(array, path)
    check_direction(direction, str(path))
    z_y_x = spacing[::-1]
    return Volume(
        array=array,
        spacing=(z_y_x[0], z_y_x[1], z_y_x[2]),
        origin=(origin[0], origin[1], origin[2]),
        direction=direction,
    )


def _load_npy(path: Path) -> Volume:
    """Read a ``.npy`` array (no pickles) as a volume with spacing (1, 1, 1), identity direction and origin zero."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"unreadable or truncated volume: {path} ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: expected a .npy array, not an archive")
    return Volume(array=_check_volume_array(array, path), spacing=(1.0, 1.0, 1.0))


def load_volume(path: str | os.PathLike) -> Volume:
    """Load a 3D volume from NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``) or ``.npy``.

    NIfTI and MetaImage are read with SimpleITK and keep their geometry (spacing,
    origin, direction); a ``.npy`` array gets spacing (1, 1, 1), the identity
    direction and origin zero. The result is (D, H, W) gray or (D, H, W, 3) RGB (a
    single trailing component is squeezed), voxel type as stored. 2D images, 4D time
    series, other component counts and a singular direction are rejected.

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


#: EXIF orientations (tag 0x0112) other than 1, as viewers apply them.
_ORIENTATIONS = {
    2: "mirrored", 3: "rotated 180 degrees", 4: "flipped upside down", 5: "mirrored and rotated 90 degrees",
    6: "rotated 90 degrees clockwise", 7: "mirrored and rotated 270 degrees", 8: "rotated 90 degrees counter-clockwise",
}  # fmt: skip


def exif_orientation_warning(path: str | os.PathLike) -> str | None:
    """What to say of a JPEG, TIFF, WebP or PNG whose EXIF orientation asks viewers to turn it (a phone photo), or
    None.

    xaipipe reads the pixels as stored, as Keras's ``load_img`` and ``tf.io.decode_jpeg`` do (training pipelines
    that ignore the tag see the same input); a viewer that applies the tag shows the file turned against its
    overlays. Reads the header only."""
    if not str(path).lower().endswith((*samples.JPEG_EXTENSIONS, ".tif", ".tiff", ".webp", ".png")):
        return None
    try:
        from PIL import Image

        with Image.open(path) as image:
            if image.format == "PNG" and "exif" not in image.info:  # getexif would decode the image to look further
                return None
            orientation = image.getexif().get(0x0112)
    except Exception:  # noqa: BLE001  no readable header: the loader names the file
        return None
    if orientation not in _ORIENTATIONS:
        return None
    return (
        f"its EXIF orientation ({orientation}: {_ORIENTATIONS[orientation]}) is not applied: the model and the "
        "overlays see the pixels as stored (as Keras's load_img and tf.io.decode_jpeg read them), which viewers "
        "show turned; if the model was trained on turned images, save them turned (PIL.ImageOps.exif_transpose)"
    )


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load a 2D image as (H, W) gray or (H, W, 3) RGB, of its stored type (uint8, uint16, int16, float32, ...).

    An alpha channel is dropped (the colour channels are kept as they are).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if path.suffix.lower() == ".gif":  # as folder discovery, which counts them among the files not read
        raise ValueError(
            f"{path}: GIF is not read as a sample (of an animation OpenCV reads the first frame, and its colours "
            "are a palette of 256); save the image as PNG"
        )
    tiff = path.suffix.lower() in (".tif", ".tiff")
    if tiff and (pages := cv2.imcount(str(path))) > 1:
        raise ValueError(
            f"{path}: a TIFF of {pages} pages (a stack of slices, or channels stored as pages), of which OpenCV "
            "reads the first; a 2D image is one page: save the page to explain as a file of its own, or the "
            "stack as a volume (.nii.gz, .mha)"
        )
    layout = _tiff_layout(path) if tiff else None
    if layout is not None and layout.unassociated_alpha and layout.bits == 8:  # OpenCV multiplies RGB by alpha
        image = _pillow_without_alpha(path)
    else:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(_undecodable(path))
    if layout is not None and layout.min_is_white and image.dtype.kind == "u" and image.dtype != np.uint8:
        # OpenCV inverts 8 bits only; inverted over the stored bits, as DICOM's MONOCHROME1 (dicom.py)
        image = (min((1 << layout.bits) - 1, np.iinfo(image.dtype).max) - image).astype(image.dtype)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        else:
            raise ValueError(f"{path}: unsupported channel count {image.shape[2]}")
    if image.ndim != 2 and image.ndim != 3:
        raise ValueError(f"{path}: expected a 2D image, got shape {image.shape}")
    if image.dtype.kind not in "iuf":
        raise ValueError(f"{path}: unsupported pixel type {image.dtype}; save it with integer or float pixels")
    return image  # int16 (a CT exported as TIFF), int32, float64 too: kept as stored, as .npy and DICOM samples are


@dataclass(frozen=True)
class _TiffLayout:
    """What a TIFF's first directory says of its pixels (:func:`_tiff_layout`)."""

    bits: int
    min_is_white: bool  # PhotometricInterpretation 0: 0 is white (as DICOM's MONOCHROME1)
    unassociated_alpha: bool  # ExtraSamples 2: an alpha channel the colours are not multiplied by


def _tiff_layout(path: Path) -> _TiffLayout | None:
    """The layout of a TIFF from its tags (Pillow reads the header only), or None where Pillow cannot read them (the
    loader then names the file). A ValueError for channels that are neither colour nor alpha (ExtraSamples 0, a
    microscope's second channel), of which OpenCV reads the first alone."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            tags = image.tag_v2
            photometric = tags.get(262)
            samples_per_pixel = int(tags.get(277, 1))
            extra = tuple(tags.get(338, ()) or ())
            bits = int((tags.get(258) or (8,))[0])
    except Exception:  # noqa: BLE001  no readable header: the loader says what is wrong with the file
        return None
    if 0 in extra:
        raise ValueError(
            f"{path}: a TIFF of {samples_per_pixel} channels per pixel, {extra.count(0)} of them neither colour nor "
            "alpha (a microscope's channels?), of which OpenCV reads the first alone; save the channels to explain "
            "as a gray or RGB image"
        )
    return _TiffLayout(bits, photometric == 0, 2 in extra)


def _pillow_without_alpha(path: Path) -> np.ndarray | None:
    """An 8-bit TIFF with unassociated alpha as Pillow reads it, its alpha dropped (None where Pillow cannot)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except Exception:  # noqa: BLE001  then OpenCV's reading and its error
        return None
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (2, 4):
        return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(array[..., 0] if array.shape[2] == 2 else array[..., :3][..., ::-1])  # BGR as OpenCV


def _undecodable(path: Path) -> str:
    """Why OpenCV read nothing from ``path``: a damaged file, or one that Pillow reads and OpenCV cannot decode (a
    TIFF with an Orientation tag, with OpenCV 5), which is then what to say."""
    import warnings

    try:
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged file's "Corrupt EXIF data"
            with Image.open(path) as image:
                image.load()
                what = f"{image.format} {image.mode} {image.width}x{image.height}"
    except Exception:  # noqa: BLE001  Pillow cannot read it either
        return f"unreadable or truncated image: {path}; repair or remove it"
    return f"OpenCV cannot decode {path}, although Pillow reads it ({what}): save it again, e.g. as PNG"


def _load_npy_image(path: Path) -> np.ndarray:
    """Read a ``.npy`` array (no pickles) that must be a gray or RGB 2D image."""
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
    if array.dtype.kind not in "biuf" or 0 in array.shape:
        raise ValueError(f"{path}: expected a non-empty array of numbers, got {array.dtype} of shape {array.shape}")
    return array


def load_sample(
    path: str | os.PathLike, spatial_dims: int, series: str | None = None
) -> tuple[np.ndarray, Geometry | None]:
    """(array, geometry) of a sample file: spacing, origin and direction for volumes, None for 2D images.

    2D: the images of :data:`xaipipe.samples.IMAGE_EXTENSIONS` (OpenCV), ``.npy`` and single-frame DICOM;
    3D: NIfTI, MetaImage (SimpleITK), ``.npy``, multi-frame DICOM and DICOM series folders (:mod:`xaipipe.dicom`;
    ``series``: the SeriesInstanceUID to read from the folder, see
    :func:`xaipipe.samples.split_series`). A volume where a 2D image is expected, or the
    reverse, is an error naming the file, and so is a sample with NaN or infinite values
    (this is the one place that checks them).
    """
    path = Path(path)
    name = path.name.lower()
    if path.is_dir() or name.endswith(samples.DICOM_EXTENSIONS) or samples.is_dicom_file(path):
        return _load_dicom(path, spatial_dims, series)
    if spatial_dims == 3:
        if not (name.endswith(samples.VOLUME_EXTENSIONS) or name.endswith(".npy")):
            raise ValueError(f"{path}: a 2D image where a volume is expected (preprocessing.size has 3 entries)")
        volume = load_volume(path)
        return _check_finite(volume.array, path), volume.geometry
    if name.endswith(samples.VOLUME_EXTENSIONS):
        raise ValueError(f"{path}: a volume where a 2D image is expected (preprocessing.size has 2 entries)")
    if name.endswith(".npy"):
        return _check_finite(_load_npy_image(path), path), None
    return _check_finite(load_image(path), path), None


def _load_dicom(path: Path, spatial_dims: int, series: str | None) -> tuple[np.ndarray, Geometry | None]:
    """A DICOM file or series folder as a 2D image or a volume (:mod:`xaipipe.dicom`)."""
    if path.is_dir():
        if spatial_dims != 3:
            raise ValueError(
                f"{path}: a DICOM series folder where a 2D image is expected (preprocessing.size has 2 entries); "
                "name the slice files as samples, or use a 3D config"
            )
        image, _ = dicom.read_series(path, series)
    else:
        image, frames = dicom.read_file(path)
        if spatial_dims != 3:
            if frames != 1:
                raise ValueError(
                    f"{path}: a multi-frame DICOM file of {frames} frames (a volume, or a cine clip) where a 2D image "
                    "is expected (preprocessing.size has 2 entries); save the frame to explain as a file of its own, "
                    "or explain the frames as a volume with a 3D config"
                )
            array = sitk.GetArrayFromImage(image)
            return _check_finite(array.reshape(array.shape[1:]), path), None
        if frames == 1:
            raise ValueError(
                f"{path}: a single-frame DICOM image (2D) where a volume is expected (preprocessing.size has 3 "
                "entries); a 3D DICOM sample is a multi-frame file or a folder of slices (a series)"
            )
    volume = volume_from_sitk(image, path)
    return _check_finite(volume.array, path), volume.geometry


def _check_finite(array: np.ndarray, path: Path) -> np.ndarray:
    """``array``, or a ValueError naming ``path`` and how many of its values are NaN or infinite."""
    if array.dtype.kind == "f":
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(_not_finite_message(path, bad, array.size))
    return array


def _not_finite_message(path: Path, bad: int, size: int) -> str:
    return f"{path}: {bad} non-finite values (NaN or infinite) of {size}; repair or remove the file"
