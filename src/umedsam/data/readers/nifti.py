"""NIfTI-1/2 volumes (``.nii``, ``.nii.gz``) via nibabel (extra ``nifti``)."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from umedsam.data.readers.guards import (
    DEFAULT_MAX_BYTES,
    check_declared_size,
    check_nonempty_file,
    first_line,
)
from umedsam.data.readers.meta import ImageMeta, meta_from_affine
from umedsam.errors import InputError
from umedsam.extras import import_optional

logger = logging.getLogger(__name__)


def read_nifti(
    path: str | Path, *, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> tuple[NDArray, ImageMeta]:
    """Read a NIfTI volume as a ``(D, H, W) = (z, y, x)`` array.

    nibabel returns ``(x, y, z)``; this function returns ``data.transpose(2, 1, 0)`` so the array
    matches the challenge layout, and :func:`umedsam.data.writers.write_mask` undoes it exactly.
    The stored dtype is kept unless the header sets a scale (``scl_slope``/``scl_inter``), which
    nibabel applies (giving floats). A 2D file becomes a one-slice volume; a 4D file with a single
    time point is squeezed.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        max_bytes: refuse files whose header declares a larger array (None: no limit).

    Returns:
        ``(array (D, H, W), ImageMeta)`` with the file's affine, spacing in (z, y, x) order and the
        qform/sform codes.

    Raises:
        MissingExtraError: nibabel is not installed (``pip install 'umedsam[nifti]'``).
        FileNotFoundError: no file at ``path``.
        InputError: not a NIfTI file, truncated or corrupt data, or an unsupported shape.
    """
    nib = import_optional(
        "nibabel", package="nibabel", extra="nifti", purpose="Reading NIfTI files"
    )
    path = check_nonempty_file(path)
    try:
        img = nib.load(str(path), mmap=False)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError, zlib.error) as err:
        raise InputError(path, f"not a readable NIfTI file ({first_line(err)})") from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"expected a NIfTI image, nibabel found {type(img).__name__}")
    shape = tuple(int(s) for s in img.shape)
    check_declared_size(path, shape, np.dtype(img.get_data_dtype()).itemsize, max_bytes)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3):
        raise InputError(
            path,
            f"expected a 2D or 3D image, got shape {tuple(img.shape)}; "
            "extract one volume of a 4D series first",
        )
    try:
        data = np.asarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise InputError(
            path, f"the image data is truncated or corrupt ({first_line(err)})"
        ) from err
    data = data.reshape(shape)
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    volume = np.ascontiguousarray(data.transpose(2, 1, 0))
    header = img.header
    codes = (int(header["qform_code"]), int(header["sform_code"]))
    meta = meta_from_affine(
        img.affine,
        volume.shape,
        source_format="nifti",
        nifti_codes=codes,
        source_dtype=str(img.get_data_dtype()),
    )
    logger.debug("read %s: shape %s spacing %s", path, volume.shape, meta.spacing)
    return volume, meta
