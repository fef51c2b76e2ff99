"""Background strokes go to the objects nearest to them (umedsam.data.strokes)."""

from __future__ import annotations

import numpy as np
import pytest

import umedsam.data.strokes as strokes
from umedsam.data.npz import SCRIBBLE_BACKGROUND, CasePrompts
from umedsam.data.strokes import background_owners

BG = SCRIBBLE_BACKGROUND


def _two_objects() -> np.ndarray:
    """Object 1 strokes on the left, object 2 on the right, a background stroke beside each."""
    smap = np.zeros((40, 100), np.int32)
    smap[10:30, 10] = 1
    smap[10:30, 90] = 2
    smap[10:30, 14] = BG  # 4 px from object 1, 76 px from object 2
    smap[10:30, 85] = BG  # 5 px from object 2
    return smap


def test_each_background_stroke_goes_to_the_nearest_object() -> None:
    smap = _two_objects()
    owners = background_owners(smap, np.array([1, 2]), background_id=BG)
    ys, xs = np.nonzero(smap == BG)
    assert owners.shape == (2, ys.size)
    assert owners[0, xs == 14].all() and not owners[0, xs == 85].any()
    assert owners[1, xs == 85].all() and not owners[1, xs == 14].any()


def test_a_stroke_between_two_objects_goes_to_both() -> None:
    smap = np.zeros((40, 100), np.int32)
    smap[10:30, 10] = 1
    smap[10:30, 90] = 2
    smap[10:30, 50] = BG  # 40 px from each
    owners = background_owners(smap, np.array([1, 2]), background_id=BG)
    assert owners.all()


def test_boxes_and_foreground_clicks_count_as_the_objects_place() -> None:
    smap = np.zeros((40, 100), np.int32)
    smap[20, 12] = BG
    smap[20, 88] = BG
    boxes = np.array([[0, 0, 10, 39], [np.nan] * 4])  # object 1: box on the left
    clicks = (np.zeros((0, 2), np.int64), np.array([[20, 95], [20, 15]]))
    click_labels = (np.zeros(0, np.int64), np.array([1, 0]))  # only (20, 95) is foreground
    owners = background_owners(
        smap, np.array([1, 2]), boxes=boxes, clicks=clicks, click_labels=click_labels,
        background_id=BG,
    )  # fmt: skip
    assert owners.tolist() == [[True, False], [False, True]]


def test_single_objects_and_objects_without_positive_prompts_take_every_stroke() -> None:
    smap = _two_objects()
    assert background_owners(np.where(smap == 2, 0, smap), np.array([1]), background_id=BG).all()
    only_one = np.where(smap == 2, 0, smap)  # object 2 has no stroke, box or click
    owners = background_owners(only_one, np.array([1, 2]), background_id=BG)
    assert owners[1].all()
    assert owners[0].all()  # object 1 is the nearest object with a place to every stroke


def test_setting_all_gives_every_object_every_stroke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strokes, "BACKGROUND_STROKES", "all")
    assert background_owners(_two_objects(), np.array([1, 2]), background_id=BG).all()


def test_volumes_use_3d_distances_and_extent_boxes() -> None:
    smap = np.zeros((20, 30, 30), np.int32)
    smap[2, 10:20, 5] = 1  # object 1 strokes on slice 2
    smap[17, 10:20, 25] = BG  # far from object 1 in z, inside object 2's box
    boxes = np.array([[np.nan] * 6, [20, 5, 15, 29, 25, 19]])  # x0 y0 z0 x1 y1 z1
    owners = background_owners(smap, np.array([1, 2]), boxes=boxes, background_id=BG)
    assert not owners[0].any() and owners[1].all()


def test_case_prompts_stroke_maps_hold_only_the_objects_background_strokes() -> None:
    smap = _two_objects()
    prompts = CasePrompts(
        labels=np.array([1, 2]),
        boxes=None,
        start_slices=None,
        clicks=(np.zeros((0, 2), np.int64),) * 2,
        click_labels=(np.zeros(0, np.int64),) * 2,
        scribbles=smap,
    )
    first, second = prompts.scribble_map(0), prompts.scribble_map(1)
    assert first is not None and second is not None
    assert (first[:, 14] == -1)[10:30].all() and (first[:, 85] == 0).all()
    assert (second[:, 85] == -1)[10:30].all() and (second[:, 14] == 0).all()
    assert (first == 1).sum() == 20 and (second == 1).sum() == 20
