"""Boxes that make a slice's mask agree with its clicks (3D corrections).

On a volume slice the box comes from the object's 3D box or from the neighbouring slice's mask,
and near the ends of an object it is often much larger than the object there. The model trusts
the box: a background click inside it is then often ignored, and the next correction step clicks
the same voxel again. When a decoded mask contradicts a click on its slice (a background click
inside the mask, a foreground click outside it), the slice is decoded once more, in one batch,
with candidate boxes that say what the clicks say: the box widened to take in foreground clicks
outside it, and that box with one side moved past a contradicted background click (each of the
four sides, keeping every foreground click inside). Among the retries that agree with every
click, the one that changes the first mask least (highest DSC with it) replaces it; if none
agrees, the first mask stays. Propagation takes the next slice's box from the first mask, so a
retry changes its own slice only (clicks carried to neighbour slices retry there). Chosen on
training volumes (docs/interactive_log.md, "Clicks over boxes").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from umedsam.evaluation.metrics import dice

MIN_SIDE = 4.0
"""Smallest side (model pixels) of a candidate box."""


def contradicted(mask: NDArray[np.bool_], points: NDArray, labels: NDArray) -> NDArray[np.bool_]:
    """(K,) whether each click (xy, original pixels) disagrees with ``mask`` (H, W)."""
    h, w = mask.shape
    xy = np.rint(np.asarray(points, np.float64)).astype(np.int64)
    x = np.clip(xy[:, 0], 0, w - 1)
    y = np.clip(xy[:, 1], 0, h - 1)
    return np.asarray(mask[y, x] != (np.asarray(labels) == 1), bool)


def candidate_boxes(
    box: NDArray, points: NDArray, labels: NDArray, wrong: NDArray[np.bool_], ratio: float
) -> list[NDArray]:
    """Boxes (model frame, xyxy) to retry a slice with, given which clicks ``wrong`` disagree.

    Args:
        box: (4,) the box the slice was decoded with (model frame).
        points: (K, 2) xy clicks in original pixels.
        labels: (K,) 1 foreground, 0 background.
        wrong: (K,) clicks the first mask contradicts.
        ratio: model side / longest image side (original pixels to model frame).
    """
    xy = np.asarray(points, np.float64).reshape(-1, 2) * ratio
    labels = np.asarray(labels)
    margin = max(ratio, 1.0)  # one original pixel
    base = np.asarray(box, np.float64).copy()
    fg = xy[labels == 1]
    if len(fg):
        base[:2] = np.minimum(base[:2], fg.min(0) - margin)
        base[2:] = np.maximum(base[2:], fg.max(0) + margin)
    out = [] if np.allclose(base, box) else [base]
    for cx, cy in xy[(labels == 0) & wrong]:
        for side, edge in ((0, cx + margin), (1, cy + margin), (2, cx - margin), (3, cy - margin)):
            cut = base.copy()
            cut[side] = edge
            if cut[2] - cut[0] < MIN_SIDE or cut[3] - cut[1] < MIN_SIDE:
                continue
            inside = (
                (fg[:, 0] > cut[0])
                & (fg[:, 0] < cut[2])
                & (fg[:, 1] > cut[1])
                & (fg[:, 1] < cut[3])
            )
            if inside.all():
                out.append(cut)
    return out


def best_agreeing(
    masks: NDArray[np.bool_], first: NDArray[np.bool_], points: NDArray, labels: NDArray
) -> int | None:
    """Index of the mask (of (C, H, W)) that agrees with every click and changes ``first`` the
    least (highest DSC with it), or None when none agrees."""
    agree = [k for k in range(len(masks)) if not contradicted(masks[k], points, labels).any()]
    if not agree:
        return None
    return max(agree, key=lambda k: np.nan_to_num(dice(masks[k], first)))
