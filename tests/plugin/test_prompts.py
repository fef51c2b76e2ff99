"""napari prompt layers -> umedsam prompts (Qt-free): boxes, clicks, painted strokes."""

from __future__ import annotations

import cv2
import numpy as np

from umedsam.napari.prompts import (
    NEGATIVE,
    POSITIVE,
    default_half_depth,
    point_clicks,
    rectangle_box,
    scribble_strokes,
)
from umedsam.ui.corrections import normalise_clicks


def test_a_rectangle_is_the_box_the_web_app_draws() -> None:
    corners = np.array([[10.2, 5.0], [10.2, 20.4], [30.0, 20.4], [30.0, 5.0]])  # y, x
    assert rectangle_box(corners, (64, 64)) == (5, 10, 21, 31)  # x/y max exclusive
    # clipped to the image; nothing left -> None
    assert rectangle_box(np.array([[-5.0, -5.0], [70.0, 70.0]]), (64, 64)) == (0, 0, 64, 64)
    assert rectangle_box(np.array([[80.0, 80.0], [90.0, 90.0]]), (64, 64)) is None


def test_a_rectangle_on_a_slice_spans_the_default_depth() -> None:
    corners = np.array([[12, 10, 5], [12, 30, 20]], float)  # z, y, x
    assert default_half_depth(40) == 4 and default_half_depth(5) == 2
    assert rectangle_box(corners, (40, 64, 64)) == (5, 10, 8, 21, 31, 16)
    assert rectangle_box(corners, (40, 64, 64), half_depth=1) == (5, 10, 11, 21, 31, 13)
    # "to the ends": every slice (the session then stops each way where the mask vanishes)
    assert rectangle_box(corners, (40, 64, 64), half_depth=40) == (5, 10, 0, 21, 31, 39)
    near_top = np.array([[1, 10, 5], [1, 30, 20]], float)
    assert rectangle_box(near_top, (40, 64, 64))[2] == 0  # clipped at the first slice


def test_points_become_clicks_in_layer_order() -> None:
    points = np.array([[3.4, 7.6], [10.0, 2.0], [99.0, 1.0]])  # y, x; the last is outside
    assert point_clicks(points, np.array([True, False, True]), (32, 32)) == [(8, 3, 1), (2, 10, 0)]
    points_3d = np.array([[4.0, 3.0, 7.0]])
    assert point_clicks(points_3d, np.array([True]), (8, 32, 32)) == [(7, 3, 4, 1)]


def test_each_painted_stroke_is_one_stroke() -> None:
    painted = np.zeros((2, 40, 40), np.uint8)
    painted[1, 5, 5:30] = POSITIVE
    painted[1, 20:35, 10] = NEGATIVE
    painted[1, 30, 30:35] = POSITIVE  # a second positive stroke
    strokes = scribble_strokes(painted)
    assert [(s.z, s.label, len(s.pixels)) for s in strokes] == [(1, 1, 25), (1, 1, 5), (1, 0, 15)]
    assert strokes[0].pixels == tuple(5 * 40 + x for x in range(5, 30))


def test_a_stroke_is_the_same_in_the_web_app_and_in_napari() -> None:
    """The web app draws a stroke from its polyline and brush; painted in napari as those
    pixels, it is the same stroke (equal, so the same key and the same mask)."""
    stroke = {"stroke": [[5, 6], [20, 12], [33, 30]], "label": 1, "radius": 3}
    (web,) = normalise_clicks([[stroke]], 1, (48, 48))[0]
    canvas = np.zeros((48, 48), np.uint8)
    pts = np.array(stroke["stroke"], np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, 1, thickness=6)
    cv2.circle(canvas, (5, 6), 3, 1, -1)
    assert scribble_strokes(canvas * POSITIVE) == [web]
    assert web.to_json()["stroke"] == [[5.0, 6.0], [20.0, 12.0], [33.0, 30.0]]
