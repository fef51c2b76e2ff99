"""Which objects take which background strokes of a CVPR 2024 scribble map.

Background strokes (id 1000) say "not an object here". Given to every object as negative
prompts, a stroke drawn at one object's border also reaches an object far away, and the
decoder, which was trained with background strokes near the object it segments, then loses
the far object (two lungs on a chest X-ray: one lung's background stroke made the other lung's
mask collapse). So each background-stroke pixel is a negative prompt for the objects whose own
prompts are nearest to it: object i takes pixel p iff its distance d_i(p) to the object's
positive strokes, foreground clicks and box is at most :data:`NEAREST_RATIO` times the smallest
such distance over all objects, plus :data:`NEAREST_SLACK` pixels. An object with no positive
prompt takes every background stroke, as does every object when :data:`BACKGROUND_STROKES` is
``"all"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

BACKGROUND_STROKES = "nearest"
"""``"nearest"``: each background-stroke pixel goes to the objects nearest to it (module
docstring); ``"all"``: every object takes every background stroke."""
NEAREST_RATIO = 2.0
"""An object takes a background pixel within this factor of the nearest object's distance."""
NEAREST_SLACK = 2.0
"""... plus this many pixels (so a pixel inside two touching objects' boxes goes to both)."""
MAX_SEED_POINTS = 20_000
"""Positive stroke pixels kept per object for the distance (evenly thinned beyond this)."""


def _box_region(
    box: NDArray | None, start: int | None, ndim: int
) -> tuple[NDArray, NDArray] | None:
    """(lo, hi) corners of an object's box in array-index order (y, x) or (z, y, x)."""
    if box is None or np.isnan(box).any():
        return None
    if ndim == 2:
        return np.array([box[1], box[0]]), np.array([box[3], box[2]])
    if len(box) == 6:
        return np.array([box[2], box[1], box[0]]), np.array([box[5], box[4], box[3]])
    if start is None or start < 0:  # a 2D box without its slice: every slice
        return np.array([-np.inf, box[1], box[0]]), np.array([np.inf, box[3], box[2]])
    return np.array([start, box[1], box[0]]), np.array([start, box[3], box[2]])


def background_owners(
    scribbles: NDArray,
    labels: NDArray,
    *,
    boxes: NDArray | None = None,
    start_slices: NDArray | None = None,
    clicks: Sequence[NDArray] = (),
    click_labels: Sequence[NDArray] = (),
    background_id: int = 1000,
) -> NDArray[np.bool_]:
    """Which objects take each background-stroke pixel (see the module docstring).

    Args:
        scribbles: (H, W) or (D, H, W) stroke-id map.
        labels: (N,) each object's stroke id.
        boxes: (N, 4) xyxy (2D, or 3D with ``start_slices``) or (N, 6) boxes; NaN rows: none.
        start_slices: (N,) the slice a 3D (N, 4) box lies on (-1: unknown).
        clicks: per object (K, ndim) index coordinates; ``click_labels`` 1 marks foreground.
        background_id: the id of background strokes.

    Returns:
        (N, P) bool, P the background-stroke pixels in ``np.nonzero`` order.
    """
    where = np.nonzero(scribbles == background_id)
    n, count = len(labels), int(where[0].size)
    if BACKGROUND_STROKES == "all" or n <= 1 or count == 0:
        return np.ones((n, count), bool)
    if BACKGROUND_STROKES != "nearest":
        raise ValueError(
            f"BACKGROUND_STROKES must be 'nearest' or 'all'; got {BACKGROUND_STROKES!r}"
        )
    pixels = np.stack(where, 1).astype(np.float64)
    marked = np.nonzero((scribbles != 0) & (scribbles != background_id))
    ids = scribbles[marked]
    order = np.argsort(ids, kind="stable")
    ids, coords = ids[order], np.stack(marked, 1)[order]
    dist = np.full((n, count), np.inf)
    for i, label in enumerate(labels):
        first, last = np.searchsorted(ids, label, "left"), np.searchsorted(ids, label, "right")
        seeds = coords[first:last]
        if len(seeds) > MAX_SEED_POINTS:
            seeds = seeds[np.linspace(0, len(seeds) - 1, MAX_SEED_POINTS).astype(np.int64)]
        if i < len(clicks) and len(clicks[i]):
            fg = np.asarray(clicks[i]).reshape(-1, scribbles.ndim)[np.asarray(click_labels[i]) == 1]
            seeds = np.concatenate([seeds, fg]) if len(fg) else seeds
        if len(seeds):
            dist[i] = cKDTree(seeds.astype(np.float64)).query(pixels)[0]
        box = None if boxes is None else np.asarray(boxes[i], np.float64)
        start = None if start_slices is None else int(start_slices[i])
        region = _box_region(box, start, scribbles.ndim)
        if region is not None:
            low, high = region
            outside = np.maximum(np.maximum(low - pixels, pixels - high), 0.0)
            dist[i] = np.minimum(dist[i], np.sqrt((outside**2).sum(1)))
    nearest = dist.min(0)
    owners = dist <= NEAREST_RATIO * nearest + NEAREST_SLACK
    owners[np.isinf(dist).all(1)] = True  # an object with no positive prompt takes them all
    return owners
