"""NRRD volumes (``.nrrd``, ``.nhdr``) via pynrrd (extra ``nifti``)."""

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

# world-axis sign flips that take each NRRD "space" to RAS
_SPACE_TO_RAS = {
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (-1.0, 1.0, 1.0),
    "las": (-1.0, 1.0, 1.0),
}
_NRRD_TYPES = {
    "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
    "int64": 8, "uint64": 8, "float": 4, "double": 8, "signed char": 1, "uchar": 1,
    "unsigned char": 1, "short": 2, "ushort": 2, "unsigned short": 2, "int": 4, "uint": 4,
    "unsigned int": 4, "longlong": 8, "ulonglong": 8, "block": 1,
}  # fmt: skip


def read_nrrd(
    path: str | Path, *, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> tuple[NDArray, ImageMeta]:
    """Read a 3D NRRD volume as a ``(D, H, W) = (z, y, x)`` array.

    NRRD lists axes fastest first (x, y, z); like NIfTI, the array is transposed with
    ``transpose(2, 1, 0)``. ``space directions`` / ``space origin`` give the affine, converted to
    RAS from the file's ``space`` (LPS, RAS or LAS). Files without a space get a diagonal affine
    from ``spacings`` (or 1 mm).

    Args:
        path: ``.nrrd`` or ``.nhdr`` file.
        max_bytes: refuse files whose header declares a larger array (None: no limit).

    Returns:
        ``(array (D, H, W), ImageMeta)`` with an RAS affine; a 2D file becomes a one-slice volume.

    Raises:
        MissingExtraError: pynrrd is not installed (``pip install 'umedsam[nifti]'``).
        FileNotFoundError: no file at ``path``.
        InputError: not NRRD, truncated, non-spatial axes (vectors, colour) or more than 3 axes.
    """
    nrrd = import_optional("nrrd", package="pynrrd", extra="nifti", purpose="Reading NRRD files")
    path = check_nonempty_file(path)
    try:
        header = nrrd.read_header(str(path))
    except (nrrd.NRRDError, OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a readable NRRD file ({first_line(err)})") from err
    sizes = tuple(int(s) for s in header.get("sizes", ()))
    itemsize = _NRRD_TYPES.get(str(header.get("type", "")).lower(), 8)
    check_declared_size(path, sizes, itemsize, max_bytes)
    kinds = [str(k).lower() for k in header.get("kinds", ["domain"] * len(sizes))]
    spatial = [i for i, k in enumerate(kinds) if k in ("domain", "space", "time", "none", "???")]
    if len(sizes) not in (2, 3) or len(spatial) != len(sizes):
        raise InputError(
            path,
            f"expected a 2D or 3D scalar NRRD, got sizes {sizes} with kinds {kinds}; "
            "split vector or colour axes first",
        )
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except (nrrd.NRRDError, OSError, EOFError, ValueError, KeyError, TypeError, zlib.error) as err:
        raise InputError(
            path, f"the image data is truncated or corrupt ({first_line(err)})"
        ) from err
    affine = _affine(header, len(sizes), path)
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    volume = np.ascontiguousarray(data.transpose(2, 1, 0))
    meta = meta_from_affine(
        affine, volume.shape, source_format="nrrd", source_dtype=str(data.dtype)
    )
    logger.debug("read %s: shape %s spacing %s", path, volume.shape, meta.spacing)
    return volume, meta


def _affine(header: dict, ndim: int, path: Path) -> NDArray[np.float64]:
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is not None:
        directions = np.asarray(directions, dtype=np.float64)
        if directions.shape != (ndim, 3) or not np.all(np.isfinite(directions)):
            raise InputError(
                path, f"unsupported 'space directions' {directions.tolist()} (need 3D vectors)"
            )
        affine[:3, :ndim] = directions.T  # row i of the header is the vector of axis i
        origin = header.get("space origin")
        if origin is not None:
            affine[:3, 3] = np.asarray(origin, dtype=np.float64)
        space = str(header.get("space", "right-anterior-superior")).lower()
        flips = _SPACE_TO_RAS.get(space)
        if flips is None:
            logger.warning("%s: NRRD space %r is not LPS/RAS/LAS; treating it as RAS", path, space)
            flips = (1.0, 1.0, 1.0)
        affine = np.diag([*flips, 1.0]) @ affine
    else:
        spacings = header.get("spacings")
        values = np.ones(ndim) if spacings is None else np.asarray(spacings, dtype=np.float64)
        values = np.where(np.isfinite(values) & (values > 0), values, 1.0)
        affine[np.arange(ndim), np.arange(ndim)] = values
    return affine
