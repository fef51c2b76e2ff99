"""Intensity preprocessing to the challenge's uint8 range: CT windows and percentile clipping.

The CVPR24 challenge (``pre_CT_MR.py``) mapped every image to uint8 0..255 before training and
inference:

* CT: clip to a window ``[level - width/2, level + width/2]`` (HU) and rescale linearly.
* MR, PET and other modalities: clip to the 0.5 and 99.5 percentiles of the *foreground*
  (voxels > 0), rescale the clipped range to 0..255 and put the zero voxels back to 0.

Both end with ``np.uint8(x)``, which truncates (255.9 -> 255), and so does this module: a
NIfTI converted here gives the same bytes as the challenge's files. :func:`to_uint8` picks the
method from an explicit window, the modality (a flag, or the DICOM Modality tag in ``ImageMeta``)
and the dtype: 8-bit images pass through unchanged.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "abdomen": (40.0, 400.0),
    "mediastinum": (50.0, 350.0),
    "liver": (30.0, 150.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
"""Preset CT windows as ``(level, width)`` in HU (Radiopaedia's usual values). ``soft_tissue``
(= ``abdomen``, W400 L40) is the challenge's default for CT."""

DEFAULT_CT_WINDOW = "soft_tissue"
PERCENTILES = (0.5, 99.5)


def window_for(preset: str) -> tuple[float, float]:
    """``(level, width)`` of a named CT window (case-insensitive, ``-`` or ``_``).

    Raises:
        ValueError: unknown preset; the message lists the known ones.
    """
    key = preset.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in CT_WINDOWS:
        raise ValueError(f"unknown CT window {preset!r}; choose one of {', '.join(CT_WINDOWS)}")
    return CT_WINDOWS[key]


def apply_window(image: NDArray, *, level: float, width: float) -> NDArray[np.uint8]:
    """Map intensities (HU for CT) to uint8 through a window.

    Args:
        image: any shape, numeric.
        level: window centre.
        width: window width, > 0.

    Returns:
        uint8 array of the same shape: ``lower = level - width/2`` maps to 0 and
        ``lower + width`` to 255, values outside are clipped; fractions are truncated.

    Raises:
        ValueError: ``width <= 0`` or a non-finite level/width.
    """
    if not (np.isfinite(level) and np.isfinite(width)) or width <= 0:
        raise ValueError(
            f"window needs a finite level and width > 0; got level={level}, width={width}"
        )
    lower = level - width / 2.0
    upper = level + width / 2.0
    clipped = np.clip(np.asarray(image, dtype=np.float64), lower, upper)
    return ((clipped - lower) / (upper - lower) * 255.0).astype(np.uint8)


def clip_percentiles(
    image: NDArray,
    *,
    lower: float = PERCENTILES[0],
    upper: float = PERCENTILES[1],
    foreground_only: bool = True,
) -> NDArray[np.uint8]:
    """Challenge preprocessing for MR/PET/other: percentile clip of the foreground, then 0..255.

    Exactly ``pre_CT_MR.py``'s non-CT branch when ``foreground_only`` (the default): the
    percentiles are taken over voxels > 0, the clipped image is min-max rescaled to 0..255,
    voxels that were 0 stay 0, and the result is truncated to uint8.

    Args:
        image: any shape, numeric (an RGB image is treated as one set of values).
        lower: lower percentile (0..100).
        upper: upper percentile (> lower).
        foreground_only: compute percentiles over values > 0 and keep zeros at 0; False uses
            every value (for images whose background is not 0).

    Returns:
        uint8 array of the same shape. An image without foreground, or whose clipped range is
        constant, gives all zeros (logged as a warning).

    Raises:
        ValueError: percentiles out of order or outside 0..100, or NaN/inf values.
    """
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(
            f"percentiles must satisfy 0 <= lower < upper <= 100; got {lower}, {upper}"
        )
    data = np.asarray(image)
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise ValueError("image contains NaN or infinite values; fill or mask them first")
    values = data[data > 0] if foreground_only else data.reshape(-1)
    if values.size == 0:
        logger.warning("image has no foreground (no value > 0); returning zeros")
        return np.zeros(data.shape, dtype=np.uint8)
    low, high = np.percentile(values, lower), np.percentile(values, upper)
    clipped = np.clip(data, low, high)
    cmin, cmax = clipped.min(), clipped.max()
    if cmax <= cmin:
        logger.warning("image intensities are constant after clipping; returning zeros")
        return np.zeros(data.shape, dtype=np.uint8)
    scaled = (clipped - cmin) / (cmax - cmin) * 255.0
    if foreground_only:
        scaled[data == 0] = 0
    return scaled.astype(np.uint8)


def to_uint8(
    image: NDArray,
    *,
    modality: str | None = None,
    window: str | None = None,
    level: float | None = None,
    width: float | None = None,
) -> NDArray[np.uint8]:
    """Bring an image or volume to uint8 0..255 the way the challenge data were prepared.

    Rules, first match wins:

    1. ``window`` (preset name) or ``level`` and ``width``: that CT window.
    2. uint8 input: returned unchanged (8-bit PNG/JPEG/BMP, already-windowed data).
    3. ``modality == "CT"`` (case-insensitive): the ``soft_tissue`` window (W400 L40).
    4. anything else (MR, PET, X-ray, 16-bit or float 2D images, unknown):
       :func:`clip_percentiles` with the challenge's 0.5/99.5 foreground percentiles.

    Args:
        image: ``(D, H, W)``, ``(H, W)`` or ``(H, W, 3)``, any numeric dtype.
        modality: ``"CT"``, ``"MR"``, ``"PT"``, ... typically ``meta.modality`` from a DICOM or a
            user flag.
        window: CT preset name, see :data:`CT_WINDOWS`.
        level: explicit window level (HU); needs ``width``.
        width: explicit window width (HU); needs ``level``.

    Returns:
        uint8 array of the input's shape.

    Raises:
        ValueError: a preset together with level/width, only one of level/width, unknown preset,
            or a bool/complex/non-numeric image.
    """
    data = np.asarray(image)
    if data.dtype == bool or not (
        np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
    ):
        raise ValueError(f"image must be numeric (int or float); got dtype {data.dtype}")
    if window is not None and (level is not None or width is not None):
        raise ValueError("give either a window preset or level and width, not both")
    if (level is None) != (width is None):
        raise ValueError(f"level and width go together; got level={level}, width={width}")
    if window is not None:
        level, width = window_for(window)
    if level is not None and width is not None:
        logger.debug("CT window level %s width %s", level, width)
        return apply_window(data, level=level, width=width)
    if data.dtype == np.uint8:
        return data
    if modality is not None and modality.strip().upper() == "CT":
        level, width = CT_WINDOWS[DEFAULT_CT_WINDOW]
        logger.info("CT: using the %s window (W%g L%g)", DEFAULT_CT_WINDOW, width, level)
        return apply_window(data, level=level, width=width)
    return clip_percentiles(data)


def to_rgb(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A 2D uint8 image as ``(H, W, 3)``: grey replicated to three channels, alpha dropped.

    Raises:
        ValueError: not ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``, or not uint8.
    """
    data = np.asarray(image)
    if data.dtype != np.uint8:
        raise ValueError(f"to_rgb expects uint8 (use to_uint8 first); got {data.dtype}")
    if data.ndim == 2:
        return np.repeat(data[:, :, np.newaxis], 3, axis=2)
    if data.ndim == 3 and data.shape[2] in (1, 3, 4):
        return np.ascontiguousarray(
            np.repeat(data, 3, axis=2) if data.shape[2] == 1 else data[:, :, :3]
        )
    raise ValueError(f"expected a 2D image (H, W) or (H, W, 1|3|4); got shape {data.shape}")
