"""napari prompt layers -> umedsam prompts: rectangles, points and painted strokes, Qt-free.

Prompt layers share the image layer's scale and translation, so their data coordinates are the
image's voxel indices ((z,) y, x, pixel centres at integers). A rectangle is a box as the web app
draws it (x/y max exclusive); on a volume it is drawn on one slice and spans that slice +- a few
slices (the web app's default: 10 % of the depth, at least 2), the range the propagation covers.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from umedsam.ui.corrections import Click, Stroke, painted_stroke

POSITIVE, NEGATIVE, THIN = 1, 2, 3
"""Values of the scribble layer: 1 paints the object, 2 the background, 3 traces a thin structure
(a vessel: the object becomes the structure the stroke lies on; 2D images)."""


def default_half_depth(depth: int) -> int:
    """Slices on each side of the drawn slice that a new 3D box spans (the web app's rule)."""
    return max(2, round(depth * 0.1))


def whole_image_box(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The box of a whole image, (x0, y0, x1, y1), or of every slice of a volume, (x0, y0, z0,
    x1, y1, z1): a thin-structure stroke alone is traced in it."""
    if len(shape) == 2:
        return (0, 0, int(shape[1]), int(shape[0]))
    return (0, 0, 0, int(shape[2]), int(shape[1]), int(shape[0]) - 1)


def rectangle_box(
    vertices: NDArray, shape: tuple[int, ...], half_depth: int | None = None
) -> tuple[int, ...] | None:
    """The box of a napari rectangle (its vertices in data coordinates), or None if it covers
    no pixel of the image.

    Args:
        vertices: (4, 2) y, x or (4, 3) z, y, x corners.
        shape: the image's spatial shape, (H, W) or (D, H, W).
        half_depth: 3D: slices on each side of the rectangle's slice (None: the default rule).
    """
    corners = np.asarray(vertices, np.float64)
    h, w = shape[-2:]
    y0, x0 = np.floor(corners[:, -2:].min(0) + 0.5).astype(int)
    y1, x1 = np.floor(corners[:, -2:].max(0) + 0.5).astype(int) + 1
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x0 >= x1 or y0 >= y1:
        return None
    if len(shape) == 2:
        return (int(x0), int(y0), int(x1), int(y1))
    depth = shape[0]
    z = int(np.clip(round(float(corners[:, 0].mean())), 0, depth - 1))
    r = default_half_depth(depth) if half_depth is None else max(0, int(half_depth))
    return (int(x0), int(y0), max(0, z - r), int(x1), int(y1), min(depth - 1, z + r))


def point_clicks(points: NDArray, positive: NDArray, shape: tuple[int, ...]) -> list[Click]:
    """Clicks ``(x, y, (z,) label)`` of a points layer's data ((N, 2) y, x or (N, 3) z, y, x) in
    layer order; points outside the image are left out."""
    clicks: list[Click] = []
    for coords, is_positive in zip(np.asarray(points), np.asarray(positive), strict=True):
        index = [int(round(float(v))) for v in coords[-len(shape) :]]
        if any(not 0 <= v < s for v, s in zip(index, shape, strict=True)):
            continue
        label = 1 if is_positive else 0
        clicks.append((index[-1], index[-2], label) if len(shape) == 2 else (*index[::-1], label))
    return clicks


def scribble_strokes(painted: NDArray) -> list[Stroke]:
    """The strokes of a scribble layer: each connected stroke of each value (1 object, 2
    background, 3 a thin structure) on each slice, as the web app's strokes are
    (:class:`~umedsam.ui.corrections.Stroke`; the same pixels give the same stroke)."""
    import cv2

    painted = np.asarray(painted)
    slices = [(None, painted)] if painted.ndim == 2 else list(enumerate(painted))
    strokes: list[Stroke] = []
    for z, plane in slices:
        if not plane.any():
            continue
        for value, label in ((POSITIVE, 1), (NEGATIVE, 0), (THIN, 1)):
            count, parts = cv2.connectedComponents(
                (plane == value).astype(np.uint8), connectivity=8
            )
            strokes += [
                painted_stroke(parts == part, label, z, thin=value == THIN)
                for part in range(1, count)
            ]
    return strokes


def in_given_order(previous: tuple, current: list) -> tuple:
    """``current`` prompts with those also in ``previous`` first, in their order, and the new ones
    after them: the newest prompt last, so that the object's state one prompt earlier (its dense
    prompt) is found, whatever order the layers list them in."""
    kept = [p for p in previous if p in current]
    return tuple(kept + [p for p in current if p not in kept])
