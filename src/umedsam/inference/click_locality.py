"""Clicks and strokes change what they touch (2D corrections).

A correction click says "this pixel is wrong". A model decoding the image again with the click,
the box and the previous mask also moves the mask in places nobody clicked, and those moves can
make a good mask worse (on endoscopy the first click lowered the mean DSC). With
:data:`LOCAL_CLICKS_2D` on, an object's new mask keeps only the changes (pixels that flipped
against its previous mask) whose connected piece comes within :func:`touch_radius` of one of its
clicks; every other pixel keeps the previous mask. A click the model ignored changes nothing;
the rule never moves a pixel the model did not move. Whether it is on is decided by the rule in
docs/interactive_log.md ("Clicks change what they touch"). :data:`LOCAL_STROKES_2D` does the
same for the strokes of a correction (a changed piece must come within the radius of a stroke
pixel; "Strokes change what they touch").
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

LOCAL_CLICKS_2D = False
"""Keep only the changes of a 2D correction that touch a click (off until its rule decides)."""

LOCAL_STROKES_2D = True
"""Keep only the changes of a 2D correction that touch a stroke (switched on by its rule:
docs/interactive_log.md, "Strokes change what they touch")."""

TOUCH_FRACTION = 0.01
"""A change touches a click within this fraction of the image's longer side (at least 2 px)."""


def touch_radius(shape: tuple[int, ...]) -> int:
    """Pixels within which a changed piece counts as touching a click, for an image of ``shape``."""
    return max(2, int(round(TOUCH_FRACTION * max(shape[:2]))))


def keep_clicked_changes(
    previous: NDArray[np.bool_], new: NDArray[np.bool_], points_xy: NDArray, radius: int
) -> NDArray[np.bool_]:
    """``new`` where its change against ``previous`` touches a click, ``previous`` elsewhere.

    Args:
        previous: (H, W) the object's mask before this step.
        new: (H, W) the model's mask with the clicks.
        points_xy: (K, 2) the object's clicks, (x, y) in pixels.
        radius: a changed piece touches a click when a pixel of it is within this many pixels.

    Returns:
        (H, W) bool mask.
    """
    changed = np.asarray(previous, bool) != np.asarray(new, bool)
    if not changed.any() or len(points_xy) == 0:
        return np.asarray(new, bool).copy()
    h, w = changed.shape
    near = np.zeros((h, w), bool)
    for x, y in np.rint(np.asarray(points_xy, np.float64)).astype(np.int64):
        x0, x1 = max(0, x - radius), min(w, x + radius + 1)
        y0, y1 = max(0, y - radius), min(h, y + radius + 1)
        near[y0:y1, x0:x1] = True
    return _keep_touching(previous, new, changed, near)


def keep_stroked_changes(
    previous: NDArray[np.bool_], new: NDArray[np.bool_], strokes: NDArray, radius: int
) -> NDArray[np.bool_]:
    """``new`` where its change against ``previous`` comes within ``radius`` pixels of one of
    the object's stroke pixels (``strokes`` != 0: positive or negative), ``previous`` elsewhere."""
    changed = np.asarray(previous, bool) != np.asarray(new, bool)
    marked = np.asarray(strokes) != 0
    if not changed.any() or not marked.any():
        return np.asarray(new, bool).copy()
    square = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)  # the clicks' square reach
    near = cv2.dilate(marked.astype(np.uint8), square).astype(bool)
    return _keep_touching(previous, new, changed, near)


def _keep_touching(
    previous: NDArray, new: NDArray, changed: NDArray[np.bool_], near: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    """``new`` on the 8-connected pieces of ``changed`` that reach ``near``, ``previous`` elsewhere."""
    count, pieces = cv2.connectedComponents(changed.astype(np.uint8), connectivity=8)
    kept = np.zeros(count, bool)
    kept[pieces[near & changed]] = True
    kept[0] = False  # unchanged pixels
    return np.where(kept[pieces], new, previous).astype(bool)
