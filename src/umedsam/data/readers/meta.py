"""Geometry and provenance of an image read from disk (:class:`ImageMeta`).

Conventions, shared by every reader and by :func:`umedsam.data.writers.write_mask`:

* Arrays are returned in **array-axis order**: 2D images as ``(H, W)`` or ``(H, W, C)``, volumes as
  ``(D, H, W) = (z, y, x)``, exactly as the CVPR24 challenge npz stores them. nibabel and NRRD hand
  out ``(x, y, z)`` arrays; the readers transpose them with ``array.transpose(2, 1, 0)`` and the
  NIfTI writer applies the same transpose (its own inverse) before saving.
* ``spacing`` is in the same array-axis order (``(z, y, x)`` for volumes, ``(y, x)`` for 2D), in mm.
  The challenge npz stores SimpleITK's ``(x, y, z)`` order instead; use :meth:`ImageMeta.spacing_xyz`.
* World coordinates are **RAS** (nibabel's convention). DICOM and ITK use LPS; the readers flip the
  first two world axes when converting.
* ``affine`` (when known) is the 4x4 voxel -> RAS-mm matrix in nibabel's convention, i.e. its voxel
  index order is ``(x, y, z) = (array axis 2, 1, 0)`` for volumes and ``(x, y, 0) = (axis 1, 0)``
  for 2D slices with a 3D position (single DICOM files). It is stored exactly as read, so a mask
  written back overlays its image in any viewer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Matrix = tuple[tuple[float, ...], ...]


def _as_matrix(array: NDArray[np.floating]) -> Matrix:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(array, dtype=np.float64))


@dataclass(frozen=True)
class ImageMeta:
    """What a reader knows about an image, and what a writer needs to put a mask back.

    Attributes:
        shape: spatial shape of the returned array (no channel axis): ``(D, H, W)`` or ``(H, W)``.
        spacing: voxel size in mm, array-axis order (``(z, y, x)`` or ``(y, x)``); 1.0 where the
            format records none (PNG, JPEG, ...).
        origin: RAS position (mm) of the centre of the first voxel; 3 values when the image has a
            3D position (NIfTI, NRRD, DICOM), otherwise ``(0.0, 0.0)``.
        direction: unit RAS direction of each array axis as matrix **columns** (3x3 for volumes;
            3x3 for a single DICOM slice, whose third column is the slice normal; 2x2 identity for
            plain 2D images).
        source_format: ``"nifti"``, ``"nrrd"``, ``"dicom"``, ``"png"``, ``"jpeg"``, ``"bmp"`` or
            ``"tiff"``.
        affine: 4x4 voxel -> RAS-mm matrix in nibabel's (x, y, z) voxel order, or None for plain
            2D images (see the module docstring).
        modality: DICOM Modality (``"CT"``, ``"MR"``, ...) when the file records one.
        channels: number of colour channels of the returned array (1 for grey, 3 for RGB).
        nifti_codes: ``(qform_code, sform_code)`` of a NIfTI source, reused when writing a mask.
        source_dtype: dtype name of the stored data before any rescale (informational).
        source_files: DICOM only: the files of the image, in the array's slice order (a DICOM
            SEG export references them).
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: Matrix
    source_format: str
    affine: Matrix | None = None
    modality: str | None = None
    channels: int = 1
    nifti_codes: tuple[int, int] | None = None
    source_dtype: str | None = None
    source_files: tuple[str, ...] = ()

    @property
    def ndim(self) -> int:
        """Number of spatial axes of the array (2 or 3)."""
        return len(self.shape)

    @property
    def is_3d(self) -> bool:
        """True for volumes ``(D, H, W)``."""
        return len(self.shape) == 3

    def spacing_xyz(self) -> tuple[float, ...]:
        """Spacing in SimpleITK ``(x, y, z)`` order, as the challenge npz ``spacing`` key holds it."""
        return tuple(reversed(self.spacing))

    def affine_array(self) -> NDArray[np.float64]:
        """The 4x4 voxel -> RAS affine (nibabel voxel order), derived from spacing if not stored.

        Plain 2D images get ``diag(spacing_x, spacing_y, 1, 1)``: a one-slice volume at the origin.
        """
        if self.affine is not None:
            return np.array(self.affine, dtype=np.float64)
        affine = np.eye(4)
        if self.ndim == 3:
            direction = np.array(self.direction, dtype=np.float64)
            for axis in range(3):  # array axis a is voxel axis 2 - a
                affine[:3, 2 - axis] = direction[:, axis] * self.spacing[axis]
            affine[:3, 3] = self.origin
        else:
            affine[0, 0] = self.spacing[1]
            affine[1, 1] = self.spacing[0]
        return affine


def meta_from_affine(
    affine: NDArray[np.floating],
    shape: tuple[int, ...],
    *,
    source_format: str,
    modality: str | None = None,
    nifti_codes: tuple[int, int] | None = None,
    source_dtype: str | None = None,
) -> ImageMeta:
    """Build an :class:`ImageMeta` for a volume ``(D, H, W)`` from a nibabel-convention affine.

    Args:
        affine: 4x4 voxel (x, y, z) -> RAS mm.
        shape: spatial array shape ``(D, H, W)``.
        source_format: format name stored in the meta.
        modality: optional modality hint.
        nifti_codes: ``(qform_code, sform_code)`` for NIfTI sources.
        source_dtype: dtype name of the stored data.

    Returns:
        The meta; spacing and direction are the column norms and unit columns of the affine,
        reordered to array-axis order.
    """
    affine = np.asarray(affine, dtype=np.float64)
    columns = affine[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    norms_safe = np.where(norms > 0, norms, 1.0)
    unit = columns / norms_safe
    # voxel order (x, y, z) -> array order (z, y, x)
    spacing = tuple(float(v) for v in norms[::-1])
    direction = unit[:, ::-1]
    return ImageMeta(
        shape=tuple(int(s) for s in shape),
        spacing=spacing,
        origin=tuple(float(v) for v in affine[:3, 3]),
        direction=_as_matrix(direction),
        source_format=source_format,
        affine=_as_matrix(affine),
        modality=modality,
        nifti_codes=nifti_codes,
        source_dtype=source_dtype,
    )


def plain_2d_meta(
    shape: tuple[int, ...], *, source_format: str, channels: int, source_dtype: str | None = None
) -> ImageMeta:
    """Meta for a 2D image file without geometry (PNG, JPEG, BMP, TIFF): unit spacing, no affine."""
    return ImageMeta(
        shape=(int(shape[0]), int(shape[1])),
        spacing=(1.0, 1.0),
        origin=(0.0, 0.0),
        direction=((1.0, 0.0), (0.0, 1.0)),
        source_format=source_format,
        channels=channels,
        source_dtype=source_dtype,
    )


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""Left-multiply an LPS affine by this to get the RAS affine (and vice versa)."""
