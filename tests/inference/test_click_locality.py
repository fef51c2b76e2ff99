"""Clicks change what they touch: the pieces kept, and the rule inside 2D interactive cases."""

from __future__ import annotations

import numpy as np

import umedsam.inference.click_locality as click_locality
from umedsam.data.npz import CasePrompts
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.click_locality import (
    keep_clicked_changes,
    keep_stroked_changes,
    touch_radius,
)
from umedsam.inference.interactive import segment_interactive_image


def _square(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_only_the_changed_piece_a_click_touches_is_kept() -> None:
    previous = _square((40, 40), 10, 20, 10, 20)
    new = previous.copy()
    new[10:20, 20:25] = True  # grown where the click is
    new[30:35, 30:35] = True  # a new piece far from any click
    new[18:20, 10:14] = False  # shrunk elsewhere
    out = keep_clicked_changes(previous, new, np.array([[22, 15]]), radius=2)
    assert out[15, 22] and out[10:20, 20:25].all()
    assert not out[30:35, 30:35].any() and out[18:20, 10:14].all()


def test_a_background_click_removes_its_piece_and_an_ignored_click_changes_nothing() -> None:
    previous = _square((40, 40), 5, 30, 5, 30)
    new = previous.copy()
    new[5:15, 5:15] = False  # the model removed the clicked corner
    new[25:30, 25:30] = False  # and another corner nobody clicked
    out = keep_clicked_changes(previous, new, np.array([[8, 8]]), radius=1)
    assert not out[5:15, 5:15].any() and out[25:30, 25:30].all()
    ignored = keep_clicked_changes(previous, new, np.array([[38, 38]]), radius=1)
    assert np.array_equal(ignored, previous)


def test_without_clicks_or_changes_the_new_mask_stands() -> None:
    previous = _square((20, 20), 2, 8, 2, 8)
    new = _square((20, 20), 4, 12, 4, 12)
    assert np.array_equal(keep_clicked_changes(previous, new, np.zeros((0, 2)), 2), new)
    assert np.array_equal(keep_clicked_changes(previous, previous, np.array([[5, 5]]), 2), previous)


def test_only_the_changed_pieces_a_stroke_touches_are_kept() -> None:
    previous = _square((40, 40), 10, 20, 10, 20)
    new = previous.copy()
    new[10:20, 20:26] = True  # grown where the stroke crosses the border
    new[30:35, 30:35] = True  # a new piece far from the stroke
    new[18:20, 10:14] = False  # shrunk on the other side
    strokes = np.zeros((40, 40), np.int8)
    strokes[15, 14:24] = 1
    out = keep_stroked_changes(previous, new, strokes, radius=2)
    assert out[10:20, 20:26].all()
    assert not out[30:35, 30:35].any() and out[18:20, 10:14].all()
    strokes[:] = 0
    strokes[32, 36:39] = -1  # a negative stroke near the far piece: that change stands too
    out = keep_stroked_changes(previous, new, strokes, radius=2)
    assert out[30:35, 30:35].all() and not out[10:20, 20:26].any()
    assert np.array_equal(keep_stroked_changes(previous, new, np.zeros((40, 40)), 2), new)


def test_touch_radius_scales_with_the_image() -> None:
    assert touch_radius((64, 48)) == 2
    assert touch_radius((1000, 800, 3)) == 10


def test_2d_case_keeps_the_previous_mask_away_from_the_clicks(
    tiny_model, make_disk, monkeypatch
) -> None:
    img, mask = make_disk(48, 64, center=(24, 30), radius=10)
    previous = np.zeros((48, 64), np.uint8)
    previous[40:46, 2:8] = 1  # a previous piece far from the click
    clicks = (np.array([[24, 30]]),)  # (y, x)
    prompts = CasePrompts(
        np.array([1]),
        np.array([[18.0, 12.0, 42.0, 36.0]]),
        None,
        clicks,
        (np.array([1]),),
        None,
        prev_pred=previous,
    )
    backend = TorchBackend(tiny_model)
    monkeypatch.setattr(click_locality, "LOCAL_CLICKS_2D", False)
    free, _ = segment_interactive_image(backend, img, prompts)
    monkeypatch.setattr(click_locality, "LOCAL_CLICKS_2D", True)
    local, _ = segment_interactive_image(backend, img, prompts)
    expected = keep_clicked_changes(previous == 1, free == 1, np.array([[30, 24]]), 2)
    assert np.array_equal(local == 1, expected)
