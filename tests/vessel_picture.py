"""A synthetic fundus-like picture for the thin-structure tests: a dark vessel tree on a field."""

from __future__ import annotations

import numpy as np


def vessel_picture(stray: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A 160-px grey uint8 picture of a dark vessel (a trunk and a branch leaving it at row 80,
    3 px wide) on a noisy field, and the tree's mask; ``stray`` adds a dark line at columns
    140-142 that no stroke touches."""
    import cv2

    rng = np.random.default_rng(3)
    grey = 180.0 + rng.normal(0.0, 3.0, (160, 160))
    tree = np.zeros((160, 160), np.uint8)
    cv2.line(tree, (60, 20), (60, 140), 1, 3)
    cv2.line(tree, (61, 80), (120, 130), 1, 3)
    grey[tree > 0] -= 60.0
    if stray:
        grey[20:140, 140:143] -= 60.0
    return np.clip(grey, 0, 255).astype(np.uint8), tree > 0


def vessel_volume(stray: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A 24 x 64 x 64 uint8 volume of a bright tube (radius 1.5 voxels) that climbs from slice
    6 to slice 17 as it runs along x at row 32, on a noisy field, and the tube's mask; ``stray``
    adds a second, straight tube at row 52 that no stroke touches."""
    rng = np.random.default_rng(5)
    z, y, x = np.mgrid[:24, :64, :64].astype(np.float32)
    centre_z = 6.0 + (x - 6.0) * 11.0 / 52.0
    tube = ((z - centre_z) ** 2 + (y - 32.0) ** 2 <= 1.5**2) & (x >= 6) & (x <= 58)
    volume = 60.0 + rng.normal(0.0, 4.0, z.shape)
    volume[tube] += 100.0
    if stray:
        volume[((z - 12.0) ** 2 + (y - 52.0) ** 2 <= 1.5**2) & (x >= 6) & (x <= 58)] += 100.0
    return np.clip(volume, 0, 255).astype(np.uint8), tube
