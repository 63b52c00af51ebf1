"""Read DICOM through SimpleITK (GDCM): single-file images, multi-frame files and series.

A DICOM sample is one of:

- a single-frame file (``.dcm``, or any name when the file starts with the DICOM
  preamble): a 2D image;
- a multi-frame file: a volume, its frames the slices (a 2D sample only with one frame);
- a folder of slices, a series: a volume. :func:`read_series` takes the file names
  from GDCM (``ImageSeriesReader.GetGDCMSeriesFileNames``), sorted by the slices'
  positions along the slice normal, not by file name. A folder holding several series
  (told apart by SeriesInstanceUID) needs the sample id to name one
  (``folder@UID``, :func:`xaipipe.samples.split_series`).

Values, as GDCM (ITK's GDCMImageIO) gives them and tests/test_dicom.py checks against
pydicom: each file's Rescale Slope and Intercept (0028,1053 and 0028,1052) applied, so
CT comes in Hounsfield units (negative values included; the voxel type widens to int32,
or float where the slope is not an integer); MONOCHROME1 images (the lowest value drawn
white, as some radiographs are stored) inverted so that high values are bright like
every other sample: ``v' = lo + hi - v`` on the stored values, ``lo..hi`` the range the
stored bits can hold (BitsStored, PixelRepresentation), independent of the content.
Nothing here changes values.

These functions give SimpleITK images with the file's geometry (spacing, origin,
direction); :func:`xaipipe.readers.volume_from_sitk` turns them into volumes.
Every problem is a ValueError naming the file or the series and saying what to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: Transfer syntaxes by UID, to name the one SimpleITK could not decode.
_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended (12 bit)",
    "1.2.840.10008.1.2.4.57": "JPEG lossless",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE lossless",
}
#: Relative tolerance on the gaps between slice positions (positions are stored as decimal text).
_GAP_TOLERANCE = 0.01
_DECOMPRESS = "convert it to uncompressed DICOM (e.g. `gdcmconv --raw IN OUT` or dcmtk's `dcmdjpeg`) and run again"


def _reason(error: RuntimeError) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _file_reader(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    return reader


def _meta(reader: sitk.ImageFileReader) -> Callable[[str], str | None]:
    """A look-up of a tag (``"0028|0004"``) in the reader's metadata: its stripped text, or None."""

    def get(key: str) -> str | None:
        if not reader.HasMetaDataKey(key):
            return None
        return reader.GetMetaData(key).strip().rstrip("\x00").strip()

    return get


def _transfer_syntax(path: Path) -> str | None:
    """The Transfer Syntax UID (0002,0010) of the file meta information, read from the bytes; else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    at = head.find(b"\x02\x00\x10\x00UI")
    if at < 0 or at + 8 > len(head):
        return None
    length = int.from_bytes(head[at + 6 : at + 8], "little")
    return head[at + 8 : at + 8 + length].decode("ascii", "replace").strip("\x00 ") or None


#: The first bytes of the image files a DICOM folder may hold by mistake, and their types.
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP",
    b"GIF8": "GIF",
}  # fmt: skip


def _image_signature(path: Path) -> str | None:
    """The type of image whose signature starts ``path`` (PNG, JPEG, ...), or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return None
    return next((kind for magic, kind in _SIGNATURES.items() if head.startswith(magic)), None)


def _has_pixel_data(path: Path) -> bool:
    """Whether the file holds a Pixel Data element (7FE0,0010), either byte order (a byte search)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


def _unreadable(path: Path, error: RuntimeError) -> ValueError:
    """The ValueError for a DICOM file GDCM could not read: no DICOM at all, no pixel data, an undecodable codec, or
    damage."""
    kind = _image_signature(path)
    if kind is not None:  # a PNG renamed .dcm was said to be "a DICOM file without pixel data"
        return ValueError(
            f"{path}: not a DICOM file but a {kind} image named .dcm; rename it to its type's extension"
        )
    if not _has_pixel_data(path):
        return ValueError(
            f"{path}: a DICOM file without pixel data (an RT plan, a structure set, a report, ...), not an image; "
            "remove it from the samples (or from the series folder)"
        )
    syntax = _transfer_syntax(path)
    if syntax in _TRANSFER_SYNTAXES:
        return ValueError(
            f"{path}: SimpleITK cannot decode its pixel data, compressed as {_TRANSFER_SYNTAXES[syntax]} "
            f"(transfer syntax {syntax}: {_reason(error)}); {_DECOMPRESS}"
        )
    return ValueError(f"unreadable or truncated DICOM file: {path} ({_reason(error)}); repair or remove it")


def read_file(path: str | os.PathLike) -> tuple[sitk.Image, int]:
    """(image, frames) of a single DICOM file: a 3D image of ``frames`` slices (1 for a 2D image).

    Values as in the module docstring.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DICOM file not found: {path}")
    reader = _file_reader(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise _unreadable(path, error) from None
    _check_decodable(path, _meta(reader))
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise _unreadable(path, error) from None
    frames = image.GetSize()[2] if image.GetDimension() == 3 else 1
    return image, frames


#: RLE lossless, whose decoder in SimpleITK's GDCM mixes the channels and bytes of colour of more than 8 bits.
_RLE = "1.2.840.10008.1.2.5"
#: JPEG processes whose decoder in SimpleITK's GDCM takes 8-bit samples only.
_EIGHT_BIT_JPEG = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")


def _check_decodable(path: Path, meta: Callable[[str], str | None]) -> None:
    """ValueError for pixel data GDCM would decode wrongly without an error: JPEG of more than 8 bits per sample
    (it prints "Unsupported JPEG data precision 12" and returns values cut to 8 bits: pydicom's JPGExtended.dcm,
    12-bit, came back with a maximum of 264), and RLE colour of more than 8 bits (SC_rgb_rle_16bit.dcm)."""
    syntax = _transfer_syntax(path)
    bits = meta("0028|0101")  # Bits Stored
    if syntax in _EIGHT_BIT_JPEG and bits is not None and bits.isdigit() and int(bits) > 8:
        raise ValueError(
            f"{path}: {bits}-bit {_TRANSFER_SYNTAXES[syntax]} pixel data (transfer syntax {syntax}), which "
            f"SimpleITK decodes to wrong values (8 bits only); {_DECOMPRESS}"
        )
    allocated, channels = meta("0028|0100"), meta("0028|0002")  # Bits Allocated, Samples per Pixel
    if (
        syntax == _RLE
        and allocated is not None and allocated.isdigit() and int(allocated) > 8
        and channels is not None and channels.isdigit() and int(channels) > 1
    ):  # fmt: skip
        raise ValueError(
            f"{path}: {allocated}-bit colour pixel data compressed as RLE lossless (transfer syntax {syntax}), "
            "which SimpleITK decodes with its channels and bytes mixed (pydicom's red, green and blue stripes came "
            f"back green, blue and red); {_DECOMPRESS}"
        )


def series_uids(folder: str | os.PathLike) -> list[str]:
    """The SeriesInstanceUIDs of the DICOM series in ``folder`` (not its subfolders)."""
    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))


def _check_positions(files: list[str], label: str) -> None:
    """ValueError naming the series unless its slices share one orientation and pixel spacing and lie at even
    steps along the slice normal, each straight behind the last (no gantry tilt): a rectangular grid."""
    positions, points, first = [], [], None
    for name in files:
        reader = _file_reader(Path(name))
        try:
            reader.ReadImageInformation()
        except RuntimeError as error:
            raise _unreadable(Path(name), error) from None
        meta = _meta(reader)
        _check_decodable(Path(name), meta)
        position, orientation = meta("0020|0032"), meta("0020|0037")
        if position is None or orientation is None:
            raise ValueError(
                f"{label}: slice {name} has no Image Position or Orientation (Patient), so the slices cannot be "
                "placed; give the series as a multi-frame file or a NIfTI volume"
            )
        row_col = np.array([float(v) for v in orientation.split("\\")])
        pixel = np.array([float(v) for v in (meta("0028|0030") or "1\\1").split("\\")])
        if first is None:
            first = (name, row_col, pixel)
        elif not (np.allclose(row_col, first[1], atol=1e-4) and np.allclose(pixel, first[2], rtol=1e-4)):
            raise ValueError(
                f"{label}: slice {name} has another orientation or pixel spacing ({row_col.round(4).tolist()}, "
                f"{pixel.tolist()} mm) than slice {first[0]} ({first[1].round(4).tolist()}, {first[2].tolist()} mm); "
                "the folder mixes acquisitions: keep the slices of one"
            )
        normal = np.cross(row_col[:3], row_col[3:])
        points.append(np.array([float(v) for v in position.split("\\")]))
        positions.append(float(np.dot(normal, points[-1])))
    assert first is not None
    # the slices' positions within their plane: one point on a rectangular grid, spread by a gantry tilt
    in_plane = np.array(points) @ np.stack([first[1][:3], first[1][3:]]).T
    shift = float(np.linalg.norm(in_plane.max(axis=0) - in_plane.min(axis=0)))
    if shift > 0.5 * float(first[2].min()):
        raise ValueError(
            f"{label}: the slices shift by {shift:.3g} mm within their plane from the first to the last (a gantry "
            "tilt, or a sheared series); xaipipe places a series on a rectangular grid, where its maps would lie up "
            "to that far off: convert it with a tool that corrects the tilt (e.g. dcm2niix) and give the NIfTI"
        )
    order = np.sort(np.array(positions))
    gaps = np.diff(order)
    step = float(np.median(gaps))
    if step <= 0 or gaps.min() <= 0:
        at = float(order[int(np.argmin(gaps))])
        raise ValueError(
            f"{label}: two slices at the same position ({at:g} mm along the slice normal); the folder mixes "
            "acquisitions or holds a copy of a slice: keep one slice per position"
        )
    uneven = np.abs(gaps - step) > _GAP_TOLERANCE * step
    if uneven.any():
        k = int(np.argmax(np.abs(gaps - step)))
        raise ValueError(
            f"{label}: uneven slice spacing, a gap of {gaps[k]:g} mm between the slices at {order[k]:g} and "
            f"{order[k + 1]:g} mm where the others are {step:g} mm apart: a slice is missing (or the series mixes "
            "two); add the missing slices or export the series again"
        )


def read_series(folder: str | os.PathLike, uid: str | None = None) -> tuple[sitk.Image, int]:
    """(image, slices) of the DICOM series ``uid`` in ``folder``; without ``uid`` the folder's only series.

    A series of a single multi-frame file is read as that file. The slices must lie
    at even steps (a missing slice is an error; SimpleITK only warns). Values as in
    the module docstring.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"DICOM series folder not found: {folder}")
    uids = series_uids(folder)
    if uid is None:
        if not uids:
            raise ValueError(
                f"{folder}: no DICOM series with pixel data in this folder; a series folder holds the image files "
                "of one series (slices), not subfolders or RT plans, structure sets or reports"
            )
        if len(uids) > 1:
            raise ValueError(
                f"{folder}: holds {len(uids)} DICOM series, SeriesInstanceUIDs {', '.join(uids)}; name the one to use "
                f"in a sample table (data.samples) as <folder>@<SeriesInstanceUID>, e.g. {folder.name}@{uids[0]}, "
                "or move each series to a folder of its own"
            )
        uid = uids[0]
    elif uid not in uids:
        raise ValueError(
            f"{folder}: no DICOM series with SeriesInstanceUID {uid}; the folder holds "
            f"{', '.join(uids) or 'none'}: correct the sample id"
        )
    label = f"DICOM series {uid} in {folder}"
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    if len(files) == 1:
        image, frames = read_file(files[0])
        if frames > 1:
            return image, frames
        raise ValueError(
            f"{label}: a series of one slice ({files[0]}) where a volume is expected; add the series' other slices, "
            "or run it with a 2D config (preprocessing.size of 2 entries) naming the file"
        )
    _check_positions(files, label)
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        for name in files:  # name the slice at fault
            read_file(name)
        raise ValueError(f"{label}: unreadable series ({_reason(error)}); repair or export it again") from None
    return image, len(files)
