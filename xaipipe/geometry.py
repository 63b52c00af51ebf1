"""The geometry of volumes: where each voxel lies in the patient (world) space, and moving maps between grids.

The convention is SimpleITK's (ITK's, DICOM's): world coordinates are physical
millimetres in LPS (x towards the patient's left, y posterior, z superior).
A :class:`Geometry` holds

- ``spacing``: the voxel size, (z, y, x) in millimetres, in numpy axis order (as
  everywhere in xaipipe; SimpleITK's ``GetSpacing`` is its reverse, (x, y, z));
- ``origin``: the world position of voxel (0, 0, 0)'s centre, (x, y, z) in mm, as
  SimpleITK's ``GetOrigin``;
- ``direction``: the 3x3 direction cosines, row-major, as SimpleITK's
  ``GetDirection``: column k is the world direction of the image's k-th index
  axis in SimpleITK order (k = 0 is x, numpy's last axis).

So the voxel of numpy index (k, j, i) lies at ``origin + direction @ (i * sx, j * sy, k * sz)``.
NIfTI's RAS affine is this with the first two world axes negated (what nibabel
reports). Volumes read from ``.npy`` and 2D images have the identity direction and
origin zero.

The maps of a volume are computed on the grid the model sees; :func:`reorient` and
:func:`resample_to_spacing` make that grid (``preprocessing.orientation`` and
``preprocessing.spacing``, as MONAI's ``Orientation`` and ``Spacing``), and
:func:`resample_onto` brings a map back onto its source's grid for the outputs.
:func:`to_lps` only permutes and flips numpy axes to LPS order, for display (the
gallery's views, :mod:`xaipipe.thumbnails`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_AXIS_LETTERS = ("LR", "PA", "IS")


@dataclass(frozen=True)
class Geometry:
    """Spacing (z, y, x), origin (x, y, z) and row-major direction of a volume's grid (module docstring)."""

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """``image`` with this geometry set (SimpleITK's own orders)."""
        image.SetSpacing(tuple(float(s) for s in self.spacing[::-1]))
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction))
        return image

    def image(self, array: np.ndarray) -> sitk.Image:
        """A SimpleITK image of a (D, H, W) or (D, H, W, 3) ``array`` on this grid."""
        return self.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 4))

    def shifted(self, start: Sequence[int]) -> Geometry:
        """The geometry of the sub-grid (or padded grid) whose voxel 0 is this grid's voxel ``start`` (z, y, x)."""
        steps = np.array([start[2] * self.spacing[2], start[1] * self.spacing[1], start[0] * self.spacing[0]])
        origin = np.array(self.origin) + np.array(self.direction).reshape(3, 3) @ steps
        return Geometry(self.spacing, _floats(origin), self.direction)

    def index_to_world(self, index: Sequence[float] | np.ndarray) -> np.ndarray:
        """The world position (x, y, z) of the numpy index (k, j, i), fractional allowed; of (3, N) indices, the
        (3, N) positions."""
        index = np.asarray(index, np.float64)
        extra = (1,) * (index.ndim - 1)
        steps = index[::-1] * np.asarray(self.spacing[::-1], np.float64).reshape(3, *extra)
        return np.asarray(self.origin, np.float64).reshape(3, *extra) + np.array(self.direction).reshape(3, 3) @ steps

    def world_to_index(self, world: Sequence[float] | np.ndarray) -> np.ndarray:
        """The fractional numpy index (k, j, i) of the world position (x, y, z): :meth:`index_to_world` inverted;
        of (3, N) positions, the (3, N) indices."""
        world = np.asarray(world, np.float64)
        extra = (1,) * (world.ndim - 1)
        origin = np.asarray(self.origin, np.float64).reshape(3, *extra)
        steps = np.linalg.solve(np.array(self.direction).reshape(3, 3), world - origin)
        return steps[::-1] / np.asarray(self.spacing, np.float64).reshape(3, *extra)


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def of_image(image: sitk.Image) -> Geometry:
    """The geometry of a 3D SimpleITK image."""
    return Geometry(
        spacing=_floats(image.GetSpacing()[::-1]),  # type: ignore[arg-type]
        origin=_floats(image.GetOrigin()),  # type: ignore[arg-type]
        direction=_floats(image.GetDirection()),
    )


def check_direction(direction: Sequence[float], where: str) -> None:
    """ValueError naming ``where`` unless ``direction`` is nine finite values of an invertible 3x3 matrix."""
    values = np.asarray(direction, np.float64)
    if values.shape != (9,) or not np.isfinite(values).all() or abs(np.linalg.det(values.reshape(3, 3))) < 1e-6:
        raise ValueError(
            f"{where}: its direction (orientation) matrix {list(values.ravel())} is not invertible, so its voxels "
            "have no position in space; repair the file's header (NIfTI qform/sform, MetaImage TransformMatrix)"
        )


def check_orientation(code: str) -> str:
    """``code`` (``none`` or three letters such as ``RAS``, ``LPS``), or a ValueError saying what is valid."""
    if code == "none":
        return code
    letters = str(code).upper()
    axes = sorted(next((k for k, pair in enumerate(_AXIS_LETTERS) if c in pair), -1) for c in letters)
    if len(letters) != 3 or axes != [0, 1, 2]:
        raise ValueError(
            f"preprocessing.orientation {code!r}: expected 'none' or three letters, one of each pair L/R, P/A, I/S "
            "(such as RAS or LPS)"
        )
    return letters


def reorient(image: sitk.Image, code: str) -> sitk.Image:
    """``image`` with its axes permuted and flipped so that they point as ``code`` says (SimpleITK's ``DICOMOrient``).

    ``code`` names where each SimpleITK axis (x, y, z; numpy's last axis first) points
    *towards*, as MONAI's ``Orientation(axcodes)``, nibabel's axis codes and DICOM do:
    ``RAS`` means x increases to the patient's right, y anterior, z superior; the
    identity direction is ``LPS``. Voxel values are not interpolated; the world
    positions of the voxels are unchanged.
    """
    return sitk.DICOMOrient(image, check_orientation(code))


def lps_axes(direction: Sequence[float]) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """How to bring a (z, y, x) array of grid ``direction`` to LPS by permuting and flipping numpy axes alone.

    Returns (``axes``, ``flips``): ``np.transpose(array, axes)`` then flipping each axis ``a``
    where ``flips[a]`` gives the array whose numpy axes 0, 1, 2 increase towards the patient's
    superior, posterior and left (world z, y, x): the identity direction's order. Each index
    axis goes to the world axis it is most nearly parallel to (the largest |cosine| first, so
    that a 45-degree tie still names each world axis once), as ``DICOMOrient`` chooses:
    exact for an axis-aligned grid, the nearest LPS grid for an oblique one (no resampling).
    """
    cosines = np.abs(np.asarray(direction, np.float64).reshape(3, 3))
    world_of = [0, 0, 0]  # SimpleITK index axis k (x, y, z) -> world axis
    for _ in range(3):
        w, k = np.unravel_index(int(np.argmax(cosines)), cosines.shape)
        world_of[int(k)] = int(w)
        cosines[w, :], cosines[:, k] = -1.0, -1.0
    signs = np.asarray(direction, np.float64).reshape(3, 3)
    axes, flips = [0, 0, 0], [False, False, False]
    for k, w in enumerate(world_of):  # numpy axis 2 - k holds SimpleITK axis k; world axis w is numpy axis 2 - w
        axes[2 - w] = 2 - k
        flips[2 - w] = bool(signs[w, k] < 0)
    return (axes[0], axes[1], axes[2]), (flips[0], flips[1], flips[2])


def to_lps(array: np.ndarray, direction: Sequence[float]) -> np.ndarray:
    """A (z, y, x, ...) ``array`` of grid ``direction`` with its first three axes in LPS order (:func:`lps_axes`)."""
    axes, flips = lps_axes(direction)
    out = np.transpose(array, (*axes, *range(3, array.ndim)))
    return out[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]


def index_to_lps(index: Sequence[int], shape: Sequence[int], direction: Sequence[float]) -> tuple[int, int, int]:
    """Where voxel ``index`` (z, y, x) of an array of ``shape`` lies in :func:`to_lps` of that array."""
    axes, flips = lps_axes(direction)
    return tuple(  # type: ignore[return-value]
        int(shape[a] - 1 - index[a]) if f else int(index[a]) for a, f in zip(axes, flips)
    )


def resample_to_spacing(image: sitk.Image, spacing: Sequence[float], interpolation: str = "linear") -> sitk.Image:
    """``image`` resampled to ``spacing`` (z, y, x) mm over the same extent, same origin and direction.

    The new size is round(extent / spacing), at least 1; voxels beyond the source's last
    ones (at the far edges, where a finer spacing reaches past them) repeat the nearest
    source voxel, as MONAI's ``Spacing`` pads with the border: a fill of 0 would be water
    in a CT of air (-1000 HU), a plane no scanner made.
    """
    new = tuple(float(s) for s in spacing[::-1])
    size = [max(1, round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), new)]
    resample = sitk.ResampleImageFilter()
    resample.SetSize(size)
    resample.SetOutputOrigin(image.GetOrigin())
    resample.SetOutputSpacing(new)
    resample.SetOutputDirection(image.GetDirection())
    resample.SetInterpolator(sitk.sitkNearestNeighbor if interpolation == "nearest" else sitk.sitkLinear)
    resample.SetOutputPixelType(image.GetPixelID())
    resample.SetUseNearestNeighborExtrapolator(True)
    return resample.Execute(image)


def resample_onto(
    array: np.ndarray,
    source: Geometry,
    target: Geometry,
    shape: Sequence[int],
    interpolation: str = "linear",
    extrapolate: bool = False,
) -> np.ndarray:
    """``array`` (on the grid ``source``) resampled onto the grid ``target`` of ``shape`` (z, y, x), 0 outside
    (with ``extrapolate``, the nearest voxel's value outside).

    Linear interpolation (``nearest`` on request) in world space; the type of ``array`` is kept.
    """
    image = source.image(np.asarray(array))
    resample = sitk.ResampleImageFilter()
    resample.SetReferenceImage(target.image(np.zeros(tuple(shape), np.uint8)))
    resample.SetInterpolator(sitk.sitkNearestNeighbor if interpolation == "nearest" else sitk.sitkLinear)
    resample.SetOutputPixelType(image.GetPixelID())
    resample.SetUseNearestNeighborExtrapolator(extrapolate)
    return sitk.GetArrayFromImage(resample.Execute(image))


def covers(source: Geometry, source_shape: Sequence[int], target: Geometry, shape: Sequence[int]) -> bool:
    """Whether the grid ``source`` of ``source_shape`` covers the whole extent of ``target`` of ``shape`` (up to
    half a source voxel, what rounding the size of a resampled grid leaves): a volume's grid made by
    reorientation and resampling, not a crop of it."""
    corners = [(z, y, x) for z in (0, shape[0] - 1) for y in (0, shape[1] - 1) for x in (0, shape[2] - 1)]
    for corner in corners:
        index = source.world_to_index(target.index_to_world(corner))
        if any(i < -1.0 - 1e-6 or i > n + 1e-6 for i, n in zip(index, source_shape)):
            return False
    return True


def equal(a: Geometry, b: Geometry, tolerance: float = 1e-6) -> bool:
    """Whether two geometries describe the same grid (up to ``tolerance``)."""
    return all(
        math.isclose(x, y, abs_tol=tolerance)
        for x, y in zip((*a.spacing, *a.origin, *a.direction), (*b.spacing, *b.origin, *b.direction))
    )
