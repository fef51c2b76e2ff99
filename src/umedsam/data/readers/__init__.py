"""Read medical images from disk as ``(array, ImageMeta)``; see :func:`read_image`.

Every reader returns arrays in the challenge layout (2D ``(H, W)`` / ``(H, W, 3)``, volumes
``(D, H, W) = (z, y, x)``) with an :class:`ImageMeta` holding spacing in the same axis order and
the RAS affine a writer needs to put a mask back. Optional libraries are imported on first use.
"""

from __future__ import annotations

from pathlib import Path

from numpy.typing import NDArray

from umedsam.data.readers.guards import DEFAULT_MAX_BYTES
from umedsam.data.readers.meta import ImageMeta
from umedsam.errors import InputError

SUPPORTED = (
    ".nii, .nii.gz (NIfTI), .nrrd, .nhdr (NRRD), .dcm or a DICOM series folder, "
    ".png, .jpg, .jpeg, .bmp, .tif, .tiff"
)


def image_format(path: str | Path) -> str:
    """Name the reader for ``path``: nifti, nrrd, dicom, pillow or tiff.

    Folders are DICOM series. Files are recognised by suffix; a file without a known suffix is
    DICOM if it carries the ``DICM`` marker at byte 128.

    Raises:
        InputError: the format is not one umedsam reads.
    """
    path = Path(path)
    if path.is_dir():
        return "dicom"
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    suffix = path.suffix.lower()
    if suffix in (".nrrd", ".nhdr"):
        return "nrrd"
    if suffix in (".dcm", ".dicom", ".ima"):
        return "dicom"
    if suffix in (".png", ".jpg", ".jpeg", ".bmp"):
        return "pillow"
    if suffix in (".tif", ".tiff"):
        return "tiff"
    if path.is_file():
        try:
            with path.open("rb") as handle:
                handle.seek(128)
                if handle.read(4) == b"DICM":
                    return "dicom"
        except OSError:
            pass
    raise InputError(
        path, f"unknown image format {suffix or '(no suffix)'}; umedsam reads {SUPPORTED}"
    )


def read_image(
    path: str | Path,
    *,
    labels: bool = False,
    series_uid: str | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> tuple[NDArray, ImageMeta]:
    """Read an image or volume, dispatching on the suffix (a folder is a DICOM series).

    Args:
        path: NIfTI, NRRD, DICOM file or series folder, PNG, JPEG, BMP or TIFF.
        labels: the file is a label map: colour and palette images become integer ids
            (see :func:`umedsam.data.readers.image.read_pillow_image`); no effect on volumes.
        series_uid: SeriesInstanceUID to pick when a DICOM folder holds several series.
        max_bytes: refuse files whose header declares a larger decoded array (None: no limit).

    Returns:
        ``(array, meta)``. Volumes are ``(D, H, W) = (z, y, x)`` in the stored dtype (CT in HU
        for DICOM); 2D images are ``(H, W)`` or ``(H, W, 3)``. ``meta.spacing`` is in the same
        axis order, in mm. Intensities are *not* normalised: see :mod:`umedsam.data.intensity`.

    Raises:
        FileNotFoundError: nothing at ``path``.
        MissingExtraError: the reader's optional library is missing (the message names the extra).
        InputError: unknown format, unreadable, truncated, empty or oversized file.

    Example:
        >>> volume, meta = read_image("ct_folder/")  # doctest: +SKIP
        >>> volume.shape, meta.spacing, meta.modality  # doctest: +SKIP
        ((120, 512, 512), (2.5, 0.7, 0.7), 'CT')
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    kind = image_format(path)
    if kind == "nifti":
        from umedsam.data.readers.nifti import read_nifti

        return read_nifti(path, max_bytes=max_bytes)
    if kind == "nrrd":
        from umedsam.data.readers.nrrd import read_nrrd

        return read_nrrd(path, max_bytes=max_bytes)
    if kind == "dicom":
        from umedsam.data.readers.dicom import read_dicom

        return read_dicom(path, series_uid=series_uid, max_bytes=max_bytes)
    if kind == "tiff":
        from umedsam.data.readers.image import read_tiff

        return read_tiff(path, labels=labels, max_bytes=max_bytes)
    from umedsam.data.readers.image import read_pillow_image

    return read_pillow_image(path, labels=labels, max_bytes=max_bytes)


__all__ = ["DEFAULT_MAX_BYTES", "SUPPORTED", "ImageMeta", "image_format", "read_image"]
