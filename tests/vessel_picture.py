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
