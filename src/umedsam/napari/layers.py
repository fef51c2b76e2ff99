"""Writing umedsam prompts back into napari prompt layers (after undo, redo, a new object)."""

from __future__ import annotations

from typing import Any

import numpy as np

from umedsam.napari.prompts import NEGATIVE, POSITIVE, THIN
from umedsam.ui.corrections import Stroke

CLICK_COLORS = {True: "#00ff00", False: "#ff0000"}
"""Face colours of positive and negative clicks."""


def painted(strokes: list[Stroke], shape: tuple[int, ...]) -> np.ndarray:
    """A scribble layer's data holding ``strokes`` (1 object, 2 background, 3 thin structure)."""
    out = np.zeros(shape, np.uint8)
    h, w = shape[-2:]
    for stroke in strokes:
        plane = out if stroke.z is None else out[stroke.z]
        value = (THIN if stroke.thin else POSITIVE) if stroke.label == 1 else NEGATIVE
        plane.reshape(h * w)[list(stroke.pixels)] = value
    return out


def set_rectangle(layer: Any, vertices: np.ndarray | None) -> None:
    """Make ``layer`` hold one rectangle with these corners, or none."""
    layer.data = []
    if vertices is not None:
        layer.add_rectangles([vertices])


def set_points(layer: Any, coords: np.ndarray, positive: np.ndarray) -> None:
    """Make ``layer`` hold these clicks, coloured by kind."""
    layer.data = coords
    layer.features = {"positive": positive}
    if len(positive):
        layer.face_color = [CLICK_COLORS[bool(p)] for p in positive]


def box_vertices(box: tuple[int, ...], ndim: int) -> np.ndarray:
    """A rectangle's corners (data coordinates) for a box; on a volume on its middle slice."""
    if ndim == 2:
        x0, y0, x1, y1 = box
        return np.array([[y0, x0], [y0, x1 - 1], [y1 - 1, x1 - 1], [y1 - 1, x0]], float)
    x0, y0, z0, x1, y1, z1 = box
    z = (z0 + z1) // 2
    return np.array([[z, y0, x0], [z, y0, x1 - 1], [z, y1 - 1, x1 - 1], [z, y1 - 1, x0]], float)
