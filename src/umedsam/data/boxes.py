"""Boxes from masks (pure numpy)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def mask_to_box(mask: NDArray) -> NDArray[np.int64] | None:
    """Tight box of a 2D mask as xyxy (inclusive max), or of a 3D mask as
    x_min, y_min, z_min, x_max, y_max, z_max; None for an empty mask."""
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        return None
    if mask.ndim == 2:
        ys, xs = idx
        return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)
    if mask.ndim == 3:
        zs, ys, xs = idx
        return np.array(
            [xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()], dtype=np.int64
        )
    raise ValueError(f"mask must be 2D or 3D; got shape {mask.shape}")
