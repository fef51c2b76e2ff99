"""Training augmentations as pure functions: flips and box jitter.

Randomness is local: every random function takes a ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FLIP_AXES",
    "apply_flips",
    "flip_variant_name",
    "jitter_box",
    "random_flips",
]

#: Allowed flip names and the image axis each flips ((H, W[, C]) arrays).
FLIP_AXES: dict[str, int] = {"vertical": 0, "horizontal": 1}


def _check_flips(flips: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [f for f in flips if f not in FLIP_AXES]
    if unknown:
        raise ValueError(f"unknown flip(s) {unknown}; expected names from {list(FLIP_AXES)}")
    return tuple(f for f in FLIP_AXES if f in flips)  # canonical order


def random_flips(
    rng: np.random.Generator, allowed: tuple[str, ...] | list[str], p: float = 0.5
) -> tuple[str, ...]:
    """Draw which of the ``allowed`` flips to apply, each independently with probability ``p``.

    Args:
        rng: the random generator.
        allowed: flip names from :data:`FLIP_AXES`.
        p: probability of each flip, in [0, 1].

    Returns:
        The chosen flips in canonical order (``"vertical"`` before ``"horizontal"``).

    Raises:
        ValueError: on an unknown flip name or ``p`` outside [0, 1].
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability must be in [0, 1]; got {p}")
    allowed = _check_flips(allowed)
    draws = rng.random(len(allowed))
    return tuple(name for name, u in zip(allowed, draws, strict=True) if u < p)


def flip_variant_name(flips: tuple[str, ...] | list[str]) -> str:
    """Stable short name of a flip combination: ``"none"``, ``"v"``, ``"h"`` or ``"vh"``."""
    flips = _check_flips(flips)
    return "".join(name[0] for name in flips) or "none"


def apply_flips(array: NDArray, flips: tuple[str, ...] | list[str]) -> NDArray:
    """Flip a 2D image or mask, ``(H, W)`` or ``(H, W, C)``.

    Args:
        array: the array to flip.
        flips: flip names from :data:`FLIP_AXES`.

    Returns:
        A contiguous flipped copy (or the input when ``flips`` is empty).

    Raises:
        ValueError: on an unknown flip name or an array with fewer than 2 dimensions.
    """
    flips = _check_flips(flips)
    if array.ndim < 2:
        raise ValueError(f"array must be (H, W) or (H, W, C); got shape {array.shape}")
    if not flips:
        return array
    axes = tuple(FLIP_AXES[name] for name in flips)
    return np.ascontiguousarray(np.flip(array, axis=axes))


def jitter_box(
    box_xyxy: NDArray,
    rng: np.random.Generator,
    max_shift: int,
    bounds_hw: tuple[int, int],
) -> NDArray[np.float32]:
    """Enlarge a box by a random 0..``max_shift`` pixels on each side, clipped to the bounds.

    As in LiteMedSAM/U-MedSAM training: each of the four sides moves outwards by an independent
    integer in [0, max_shift], then the box is clipped to ``[0, w - 1] x [0, h - 1]``.

    Args:
        box_xyxy: ``(4,)`` box, xyxy (inclusive max) in the frame of ``bounds_hw``.
        rng: the random generator.
        max_shift: largest shift in pixels (>= 0).
        bounds_hw: ``(h, w)`` of the valid area (e.g. the resized image inside the model frame).

    Returns:
        ``(4,)`` float32 jittered box.

    Raises:
        ValueError: on a box that is not 4 numbers, a negative ``max_shift`` or empty bounds.
    """
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,):
        raise ValueError(f"box must have 4 values (xyxy); got shape {np.shape(box_xyxy)}")
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0; got {max_shift}")
    h, w = bounds_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"bounds_hw must be positive; got {bounds_hw}")
    shifts = rng.integers(0, max_shift + 1, size=4) if max_shift > 0 else np.zeros(4)
    out = box + np.array([-shifts[0], -shifts[1], shifts[2], shifts[3]], dtype=np.float64)
    out[[0, 2]] = np.clip(out[[0, 2]], 0, w - 1)
    out[[1, 3]] = np.clip(out[[1, 3]], 0, h - 1)
    return out.astype(np.float32)
