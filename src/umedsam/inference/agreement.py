"""Prompts that agree with the mask change nothing (2D corrections).

A correction is decoded again from the image, the prompts and the previous mask, and the model
may redraw a mask the new prompt had no quarrel with: a positive scribble drawn inside the mask,
a negative one outside it, say nothing the mask does not already say. With
:data:`KEEP_AGREEING_2D` on, an object whose every prompt agrees with its previous mask (each
pixel of its positive strokes and each positive click inside the mask, each negative one
outside) keeps the previous mask. The same rule serves ``umedsam predict`` (a case's
``prev_pred``) and the apps' corrections (the mask one prompt earlier). Whether it is on is
decided by the rule in docs/interactive_log.md ("Prompts that agree with the mask change
nothing").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

KEEP_AGREEING_2D = True
"""Keep the previous mask of a 2D correction whose prompts all agree with it (on by its rule:
the apps' flow +0.77 DSC points on the design set, no task type falling)."""


def prompts_agree(
    previous: NDArray[np.bool_],
    strokes: NDArray | None = None,
    points_xy: NDArray | None = None,
    point_labels: NDArray | None = None,
) -> bool:
    """Whether an object's prompts all agree with its previous mask (and it has a prompt).

    Args:
        previous: (H, W) the object's mask before this step.
        strokes: (H, W) stroke map, 1 on positive strokes, -1 (or any negative value) on
            background ones; None without strokes.
        points_xy: (K, 2) clicks, (x, y) in pixels; None or empty without clicks.
        point_labels: (K,) 1 positive, 0 negative.
    """
    previous = np.asarray(previous, bool)
    prompted = False
    if strokes is not None:
        strokes = np.asarray(strokes)
        positive, negative = strokes > 0, strokes < 0
        if previous[negative].any() or not previous[positive].all():
            return False
        prompted = bool(positive.any() or negative.any())
    if points_xy is not None and len(points_xy):
        h, w = previous.shape
        xy = np.clip(
            np.round(np.asarray(points_xy, np.float64)).astype(np.int64), 0, [w - 1, h - 1]
        )
        inside = previous[xy[:, 1], xy[:, 0]]
        if not np.array_equal(inside, np.asarray(point_labels).reshape(-1) == 1):
            return False
        prompted = True
    return prompted


def settle_correction(
    previous: NDArray[np.bool_],
    new: NDArray[np.bool_],
    strokes: NDArray | None = None,
    points_xy: NDArray | None = None,
    point_labels: NDArray | None = None,
) -> NDArray[np.bool_]:
    """An object's 2D correction after the measured correction rules, in the one order every
    entry point (``umedsam predict``, the web app, napari, the benchmarks) applies them.

    Prompts that all agree with ``previous`` keep it (:data:`KEEP_AGREEING_2D`); otherwise the
    model's ``new`` mask keeps only the changes that touch a click
    (:data:`~umedsam.inference.click_locality.LOCAL_CLICKS_2D`) and a stroke
    (:data:`~umedsam.inference.click_locality.LOCAL_STROKES_2D`), each as switched.

    Args:
        previous: (H, W) the object's mask before this step (empty: nothing to settle against).
        new: (H, W) the model's mask with this step's prompts.
        strokes, points_xy, point_labels: the object's prompts, as :func:`prompts_agree` takes.
    """
    from umedsam.inference import click_locality as local

    previous = np.asarray(previous, bool)
    if not previous.any():
        return np.asarray(new, bool)
    if KEEP_AGREEING_2D and prompts_agree(previous, strokes, points_xy, point_labels):
        return previous
    radius = local.touch_radius(previous.shape)
    out = np.asarray(new, bool)
    if local.LOCAL_CLICKS_2D and points_xy is not None and len(points_xy):
        out = local.keep_clicked_changes(previous, out, points_xy, radius)
    if local.LOCAL_STROKES_2D and strokes is not None:
        out = local.keep_stroked_changes(previous, out, strokes, radius)
    return out
