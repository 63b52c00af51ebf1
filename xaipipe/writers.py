"""Write outputs: images (PNG and the other OpenCV types), NIfTI, ``.npy`` and animated GIF.

:func:`write_map` is the single place that turns a normalized map into an output
file, used by the pipeline's render stage and by :func:`xaipipe.xai_decoder` alike;
the formats and their file extensions are here too, and :func:`write_archive`, the zip file
that holds a shard's overlays with ``render.archive``. Every file is written under a
temporary name and renamed when complete. Drawing is :mod:`xaipipe.drawing`'s.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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
    *,
    value_range: tuple[float, float] | None = None,
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

    ``value_range``: the (D, H, W) float map lies in this range (a normalized map: (0, 1),
    or (-1, 1) where signed) and is stored as integers with the scaling in the header
    (:func:`nifti_levels`): readers that apply ``scl_slope`` (nibabel, ITK and so 3D Slicer
    and ITK-SNAP, FSL, AFNI) see the map's values, and ``cal_min``/``cal_max`` give viewers
    the range to show.
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
    scaling = None
    if value_range is not None:
        if is_vector:
            raise ValueError(f"{path}: value_range is for a (D, H, W) map, not an RGB volume")
        array, scaling = nifti_levels(array, value_range, path)
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
    plain = tmp
    if scaling is not None and ext == ".nii.gz":
        # SimpleITK cannot set the header's scaling (ITK writes scl_slope 1): it writes an
        # uncompressed file, whose header is patched, then compressed here into tmp
        fd, plain = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part.nii", dir=path.parent)
        os.close(fd)
    try:
        try:
            sitk.WriteImage(image, plain)
        except RuntimeError as exc:
            raise ValueError(f"could not write NIfTI {path}: {str(exc).strip()}") from exc
        if scaling is not None:
            _set_nifti_scaling(plain, *scaling)
            if plain != tmp:
                # no name, time 0 in the gzip header: the same map gives the same bytes
                with (
                    open(plain, "rb") as source,
                    open(tmp, "wb") as out,
                    gzip.GzipFile("", "wb", _NIFTI_GZIP_LEVEL, out, mtime=0) as target,
                ):
                    shutil.copyfileobj(source, target, 1 << 20)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        if plain != tmp:
            with suppress(FileNotFoundError):
                os.unlink(plain)


#: zlib's default, as ITK's NIfTI writer compresses (within 2 % of level 9's size at half the time).
_NIFTI_GZIP_LEVEL = 6
#: Byte offsets in the NIfTI-1 header (348 bytes, nifti1.h): scl_slope and scl_inter; cal_max and cal_min.
_SCL, _CAL = 112, 124


def nifti_levels(
    array: np.ndarray, value_range: tuple[float, float], path: str | os.PathLike = "map"
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A float map in ``value_range`` as the integers a NIfTI file stores, and (slope, inter, cal_min, cal_max).

    A range from 0 (a normalized map's [0, 1]): uint8 levels ``round(v * 255 / hi)``, slope
    ``hi / 255``, so a value is kept to within half a grey level (0.5 / 255 for [0, 1]) and 0
    stays exactly 0: 1 B per voxel. A range with negative values (a signed map's [-1, 1]):
    int16 ``round(v * 32767 / max|range|)``, so 0 stays 0 and the sign is kept; 8 bits could
    not hold [-1, 1] to within 1/255 (that needs 511 levels). The intercept is 0 in both.
    """
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and hi > 0):
        raise ValueError(f"{path}: value_range must be finite with lo < hi and hi > 0, got {value_range}")
    values = np.asarray(array, np.float32)
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: a map with NaN or infinite values cannot be stored as scaled integers")
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"{path}: map values [{values.min():g}, {values.max():g}] lie outside {value_range}")
    dtype, top = (np.uint8, 255) if lo >= 0 else (np.int16, 32767)
    slope = max(abs(lo), hi) / top
    return np.rint(values / np.float32(slope)).astype(dtype), (slope, 0.0, lo, hi)


def _set_nifti_scaling(path: str, slope: float, inter: float, cal_min: float, cal_max: float) -> None:
    """Write scl_slope, scl_inter, cal_max and cal_min into the header of the uncompressed NIfTI-1 file ``path``."""
    with open(path, "r+b") as f:
        head = f.read(4)
        order = next((o for o in "<>" if struct.unpack(f"{o}i", head)[0] == 348), None)
        if order is None:
            raise ValueError(f"{path}: not a NIfTI-1 header (sizeof_hdr is not 348)")
        f.seek(_SCL)
        f.write(struct.pack(f"{order}ff", slope, inter))
        f.seek(_CAL)
        f.write(struct.pack(f"{order}ff", cal_max, cal_min))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a ``.npy`` file, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


#: At most this many pixels of a volume's frames choose its GIF palette (an even sample of them; every pixel is
#: then mapped to the nearest of its colours).
GIF_PALETTE_PIXELS = 1 << 16


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> None:
    """Write (D, H, W, 3) uint8 RGB frames as an animated GIF that loops forever, atomically.

    Each slice is one frame (also where slices repeat), shown for 1 / ``fps`` seconds (GIF stores delays in
    hundredths of a second, so the delay is rounded to that). The colours are those of one palette of 256 for the
    whole animation, chosen from the frames' own pixels (Pillow's maximum coverage: an overlay volume's 2,959
    colours came back within 11 levels, 2 on average; median cut left outliers 57 off), without dithering: OpenCV's
    GIF encoder snapped every pixel to a fixed 3-3-2 palette (grey 40 came back (36, 36, 0), errors up to 79).
    """
    from PIL import GifImagePlugin, Image

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: expected (D, H, W, 3) uint8 RGB frames, got {frames.dtype} of shape {frames.shape}")
    if 0 in frames.shape:
        raise ValueError(f"{path}: no frames to write (shape {frames.shape})")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"{path}: fps must be positive, got {fps}")
    duration_ms = max(10, int(round(100.0 / fps)) * 10)
    depth, height, width = frames.shape[:3]
    stacked = np.ascontiguousarray(frames.reshape(depth * height, width, 3))
    pixels = stacked.reshape(-1, 3)
    sample = pixels[:: max(1, len(pixels) // GIF_PALETTE_PIXELS)][:GIF_PALETTE_PIXELS]
    palette = Image.fromarray(sample[None]).quantize(256, method=Image.Quantize.MAXCOVERAGE)
    indexed = Image.fromarray(stacked).quantize(palette=palette, dither=Image.Dither.NONE)
    chunks, _ = GifImagePlugin.getheader(indexed.crop((0, 0, width, height)), info={"loop": 0, "duration": duration_ms})
    for k in range(depth):  # each frame whole, as Pillow's own writer would merge repeated slices into one frame
        chunks += GifImagePlugin.getdata(indexed.crop((0, k * height, width, (k + 1) * height)), duration=duration_ms)
    write_bytes_atomic(path, b"".join(chunks) + b";")


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
    coloured map, blended over the image with ``overlay`` (a volume's GIF: its axial slices from inferior to
    superior, the patient's right on the left and anterior at the top, whatever the voxel order ``direction``
    says the file has); ``npy`` and ``nifti``
    store the map itself (NIfTI with ``spacing``, ``origin`` and ``direction``, as 8-bit levels with
    the scaling in its header, 16-bit for signed maps: see :func:`nifti_levels`). ``signed``: the map is in [-1, 1]
    (its method's ``normalize: signed``), drawn in a diverging colour map and stored with its sign.
    """
    shape = image.shape[:spatial_dims]
    if file_format == "png":
        write_image(path, drawing.draw(heatmap, image, 2, overlay, alpha, colormap, signed))
    elif file_format == "gif":  # in LPS order, as the report's axial views: one orientation whatever the storage
        if direction is not None:
            from xaipipe.geometry import to_lps

            heatmap, image = to_lps(np.asarray(heatmap), direction), to_lps(np.asarray(image), direction)
        write_gif(path, drawing.draw(heatmap, image, 3, overlay, alpha, colormap, signed))
    elif file_format == "npy":
        write_npy(path, drawing.map_at(heatmap, shape, signed))
    elif file_format == "nifti":
        spacing = tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0)
        write_nifti(
            path, drawing.map_at(heatmap, shape, signed), spacing, origin, direction,
            value_range=drawing.value_range(signed),
        )  # fmt: skip
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


#: Archive members stored as they are: their formats are compressed already (deflating them again gains nothing).
_COMPRESSED = (".png", ".gif", ".nii.gz", ".jpg", ".jpeg")
#: Every member's date (zip's earliest): equal members give byte-equal archives, whenever they are written.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ArchiveMembers:
    """The members of a zip file that :func:`write_archive` writes, each through an ordinary file writer."""

    def __init__(self, archive: zipfile.ZipFile, folder: Path) -> None:
        self._archive = archive
        self._folder = folder

    @contextmanager
    def member(self, name: str) -> Iterator[Path]:
        """A temporary path, with ``name`` as its file name (writers take the format from it), to write the member
        ``name`` to; stored in the archive (and removed) when the block ends without an error."""
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"archive member {name!r}: a member is a file name, without folders")
        path = self._folder / name
        yield path
        info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_STORED if name.lower().endswith(_COMPRESSED) else zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16  # a plain file, rw-r--r--, when unpacked
        info.file_size = path.stat().st_size  # decides whether the member needs zip64 (over 2 GiB)
        with open(path, "rb") as source, self._archive.open(info, "w") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        path.unlink()


@contextmanager
def write_archive(path: str | os.PathLike) -> Iterator[ArchiveMembers]:
    """Write the zip file ``path`` member by member (:meth:`ArchiveMembers.member`), atomically: it appears whole
    when the block ends, or not at all. One member at a time lies in a temporary folder (the system's)."""
    with (
        atomic_path(path) as tmp,
        tempfile.TemporaryDirectory(prefix="xaipipe-archive-") as folder,
        zipfile.ZipFile(tmp, "w", allowZip64=True) as archive,
    ):
        yield ArchiveMembers(archive, Path(folder))
