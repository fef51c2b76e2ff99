"""2D image files: PNG, JPEG, BMP via Pillow and TIFF via tifffile (extra ``images``).

Pixels come back in the order they are stored: EXIF orientation tags are ignored, so a mask saved
with :func:`umedsam.data.writers.write_mask` lines up pixel for pixel with the array read here.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from umedsam.data.readers.guards import (
    DEFAULT_MAX_BYTES,
    check_declared_size,
    check_nonempty_file,
    first_line,
)
from umedsam.data.readers.meta import ImageMeta, meta_from_affine, plain_2d_meta
from umedsam.errors import InputError
from umedsam.extras import import_optional

logger = logging.getLogger(__name__)

PILLOW_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp"}
TIFF_SUFFIXES = {".tif": "tiff", ".tiff": "tiff"}


def read_pillow_image(
    path: str | Path, *, labels: bool = False, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> tuple[NDArray, ImageMeta]:
    """Read a PNG, JPEG or BMP file.

    Args:
        path: the image file.
        labels: read a label map instead of a picture: palette images give their palette
            indices, grey images their values, and colour images one id per distinct colour
            (black = 0, other colours 1, 2, ... in sorted RGB order).
        max_bytes: refuse images whose header declares a larger array (None: no limit).

    Returns:
        ``(array, ImageMeta)``: ``(H, W)`` uint8/uint16/int32/float32 for grey images,
        ``(H, W, 3)`` uint8 for colour (alpha dropped, palette expanded), unit spacing.

    Raises:
        MissingExtraError: Pillow is not installed (``pip install 'umedsam[images]'``).
        FileNotFoundError: no file at ``path``.
        InputError: not an image, truncated, or too large.
    """
    pil = import_optional(
        "PIL.Image", package="pillow", extra="images", purpose="Reading PNG/JPEG/BMP"
    )
    path = check_nonempty_file(path)
    fmt = PILLOW_SUFFIXES.get(path.suffix.lower(), path.suffix.lower().lstrip("."))
    try:
        with pil.open(path) as img:
            width, height = img.size
            bands = len(img.getbands())
            check_declared_size(
                path, (height, width, bands), 4 if img.mode in ("I", "F") else 2, max_bytes
            )
            array = _pil_to_array(img, labels=labels, path=path)
    except InputError:
        raise
    except (pil.UnidentifiedImageError, pil.DecompressionBombError) as err:
        raise InputError(path, f"not a readable image ({first_line(err)})") from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputError(
            path, f"the image data is truncated or corrupt ({first_line(err)})"
        ) from err
    channels = 3 if array.ndim == 3 else 1
    meta = plain_2d_meta(
        array.shape, source_format=fmt, channels=channels, source_dtype=str(array.dtype)
    )
    return array, meta


def _pil_to_array(img, *, labels: bool, path: Path) -> NDArray:  # noqa: ANN001 - PIL type is lazy
    mode = img.mode
    if labels and mode == "P":
        return np.asarray(img)
    if mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(img)
        if mode.startswith("I;16"):
            array = array.astype(np.uint16)
        return array
    if mode == "1":
        return np.asarray(img).astype(np.uint8)
    if mode == "LA":
        return np.asarray(img.convert("L"))
    rgb = np.asarray(img.convert("RGB"))
    if labels:
        return colour_labels(rgb)
    return rgb


def colour_labels(rgb: NDArray[np.uint8]) -> NDArray[np.int32]:
    """Map an ``(H, W, 3)`` colour label image to ids: black 0, other colours 1..K (sorted RGB).

    Grey images stored as RGB (three equal channels) keep their grey values.
    """
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0].astype(np.int32)
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    ids = np.arange(len(colours), dtype=np.int32)
    if not np.any(np.all(colours == 0, axis=1)):
        ids += 1  # no black: every colour is an object
    return ids[inverse.reshape(-1)].reshape(rgb.shape[:2])


def read_tiff(
    path: str | Path, *, labels: bool = False, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> tuple[NDArray, ImageMeta]:
    """Read a TIFF file: one page as a 2D image, or a multi-page grey stack as a volume.

    Args:
        path: ``.tif`` / ``.tiff`` file.
        labels: as for :func:`read_pillow_image` (colour label maps get one id per colour).
        max_bytes: refuse files whose pages declare a larger array (None: no limit).

    Returns:
        ``(array, ImageMeta)``: ``(H, W)``/``(H, W, 3)`` for one page (RGBA drops alpha), or
        ``(D, H, W)`` for a grey stack, in the stored dtype, with unit spacing.

    Raises:
        MissingExtraError: tifffile is not installed (``pip install 'umedsam[images]'``).
        FileNotFoundError: no file at ``path``.
        InputError: not a TIFF, truncated, too large, or a layout other than the above.
    """
    tifffile = import_optional(
        "tifffile", package="tifffile", extra="images", purpose="Reading TIFF"
    )
    path = check_nonempty_file(path)
    try:
        with tifffile.TiffFile(str(path)) as tif:
            if not tif.series:
                raise InputError(path, "the TIFF file holds no image")
            series = tif.series[0]
            check_declared_size(
                path, tuple(series.shape), np.dtype(series.dtype).itemsize, max_bytes
            )
            array = series.asarray()
    except InputError:
        raise
    except (
        tifffile.TiffFileError,
        OSError,
        ValueError,
        EOFError,
        IndexError,
        KeyError,
        struct.error,
    ) as err:
        raise InputError(path, f"not a readable TIFF file ({first_line(err)})") from err
    array = np.squeeze(array)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.shape[0] > 4:
        array = array[..., :3]
        if labels:
            array = colour_labels(array.astype(np.uint8))
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3 and not labels):
        channels = 3 if array.ndim == 3 else 1
        meta = plain_2d_meta(
            array.shape, source_format="tiff", channels=channels, source_dtype=str(array.dtype)
        )
        return np.ascontiguousarray(array), meta
    if array.ndim == 3:
        meta = meta_from_affine(
            np.eye(4), array.shape, source_format="tiff", source_dtype=str(array.dtype)
        )
        return np.ascontiguousarray(array), meta
    raise InputError(
        path, f"unsupported TIFF layout {array.shape}; expected (H, W), (H, W, 3) or (D, H, W)"
    )
