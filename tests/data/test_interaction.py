"""Simulated interaction: the CVPR 2025 click rule, training clicks, scribble families."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.data.interaction import (
    SCRIBBLE_FAMILIES,
    challenge_boxes_3d,
    challenge_click,
    correction_click,
    correction_scribble,
    simulate_scribble,
)


def _disk(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_challenge_boxes_3d_as_the_challenge_script_makes_them() -> None:
    gts = np.zeros((10, 256, 512), np.uint8)
    gts[1:9, 100:120, 200:260] = 1  # z-range 1-8 ...
    gts[7:9, 90:140, 150:300] = 1  # ... but most voxels on slices 7-8: the median voxel is there
    gts[3, 10:20, 10:30] = 3  # a one-slice label; label 2 absent
    boxes = challenge_boxes_3d(gts)
    assert [b["z_mid"] for b in boxes] == [7, 3]
    assert (boxes[0]["z_min"], boxes[0]["z_max"]) == (1, 8)
    assert (boxes[1]["z_min"], boxes[1]["z_max"]) == (3, 3)
    shifts = np.random.RandomState(2025).randint(0, 6, 2)  # one draw per label, in order
    for box, tight, s in zip(boxes, [(150, 90, 299, 139), (10, 10, 29, 19)], shifts, strict=True):
        x0, y0, x1, y1 = tight
        dx, dy = int(s * 512 / 256), int(s * 256 / 256)
        got = (box["z_mid_x_min"], box["z_mid_y_min"], box["z_mid_x_max"], box["z_mid_y_max"])
        assert got == (max(0, x0 - dx), max(0, y0 - dy), x1 + dx, y1 + dy)
    assert challenge_boxes_3d(gts) == boxes  # fresh generator per case: repeatable
    with pytest.raises(ValueError, match="D, H, W"):
        challenge_boxes_3d(gts[0])


def test_challenge_click_is_the_centre_of_the_largest_error_2d() -> None:
    gt = _disk(64, 64, 32, 32, 12)
    pred = np.zeros_like(gt)
    pred[:, :32] = gt[:, :32]  # right half missed
    pred[2:5, 2:5] = True  # a small false region
    click = challenge_click(pred, gt)
    assert click is not None and click.positive
    y, x = click.index
    assert gt[y, x] and not pred[y, x]
    assert 32 <= x <= 44 and abs(y - 32) <= 2  # deep inside the missed half-disk


def test_challenge_click_negative_and_perfect_3d() -> None:
    gt = np.zeros((10, 32, 32), bool)
    gt[3:7, 10:20, 10:20] = True
    pred = gt.copy()
    pred[0:9, 25:31, 25:31] = True  # a false block
    click = challenge_click(pred, gt)
    assert click is not None and not click.positive
    z, y, x = click.index
    assert pred[z, y, x] and not gt[z, y, x]
    assert 2 <= z <= 6 and 27 <= y <= 28 and 27 <= x <= 28  # the 9x6x6 block's core
    assert challenge_click(gt, gt) is None


def test_challenge_click_is_deterministic_on_ties() -> None:
    gt = np.zeros((20, 20), bool)
    gt[5:15, 5:15] = True
    pred = np.zeros_like(gt)
    assert challenge_click(pred, gt) == challenge_click(pred, gt)


def test_training_click_random_position_is_in_the_error() -> None:
    gt = _disk(48, 48, 24, 24, 10)
    pred = np.zeros_like(gt)
    rng = np.random.default_rng(0)
    for _ in range(10):
        click = correction_click(pred, gt, rng, centre=False)
        assert click is not None and click.positive and gt[click.index]


@pytest.mark.parametrize("family", SCRIBBLE_FAMILIES)
def test_scribble_families_stay_on_their_side(family: str) -> None:
    mask = _disk(96, 96, 48, 48, 25)
    rng = np.random.default_rng(1)
    strokes = [simulate_scribble(mask, rng, family) for _ in range(5)]
    assert sum(s.any() for s in strokes) >= 4
    for stroke in strokes:
        if family == "background":
            assert not (stroke & mask).any()
        else:
            assert not (stroke & ~mask).any()


def test_scribbles_vary() -> None:
    mask = _disk(96, 96, 48, 48, 25)
    rng = np.random.default_rng(2)
    a, b = simulate_scribble(mask, rng, "curve"), simulate_scribble(mask, rng, "curve")
    assert not np.array_equal(a, b)


def test_correction_scribble_marks_the_missed_region() -> None:
    gt = _disk(64, 64, 32, 32, 16)
    pred = gt.copy()
    pred[:, 32:] = False
    stroke, positive = correction_scribble(pred, gt, np.random.default_rng(0))
    assert positive and stroke.any()
    assert (stroke <= (gt & ~pred)).all()


def test_challenge_boxes_2d_margin_is_seeded_and_3d_boxes_are_extents() -> None:
    from umedsam.data.interaction import challenge_boxes

    gts = np.zeros((512, 256), np.uint8)
    gts[100:200, 50:80] = 1
    gts[300:310, 200:250] = 2
    boxes = challenge_boxes(gts)
    assert boxes.shape == (2, 4)
    np.testing.assert_array_equal(boxes, challenge_boxes(gts))  # same seed, same margins
    tight = [(50, 100, 79, 199), (200, 300, 249, 309)]
    for (x0, y0, x1, y1), (tx0, ty0, tx1, ty1) in zip(boxes, tight, strict=True):
        dx, dy = tx0 - x0, ty0 - y0
        assert 0 <= dx <= 5 and dy == 2 * dx  # 0-5 px at 256 scale; y scale is 512 / 256
        assert (x1 - tx1, y1 - ty1) == (dx, dy)
    vol = np.zeros((6, 20, 20), np.uint8)
    vol[1:4, 5:9, 2:7] = 1
    np.testing.assert_array_equal(challenge_boxes(vol), [[2, 5, 1, 6, 8, 3]])


def test_a_zigzag_crosses_its_object_along_the_long_axis() -> None:
    from umedsam.data.interaction import simulate_scribble

    mask = np.zeros((80, 200), bool)
    mask[20:60, 10:190] = True  # long along x
    stroke = simulate_scribble(mask, np.random.default_rng(0), "zigzag", thickness=2, deform=0.0)
    assert stroke.any() and not (stroke & ~mask).any()
    ys, xs = np.nonzero(stroke)
    assert np.ptp(xs) > 100  # along the long axis
    assert np.ptp(ys) > 15  # and it swings across it
    # the draws of the default families are unchanged: zigzag is drawn only when named
    from umedsam.data.interaction import MORE_FAMILIES, SCRIBBLE_FAMILIES

    assert "zigzag" in MORE_FAMILIES and "zigzag" not in SCRIBBLE_FAMILIES


def test_a_broken_stroke_has_gaps_but_keeps_most_of_it() -> None:
    import cv2

    from umedsam.data.interaction import break_stroke

    stroke = np.zeros((64, 200), bool)
    stroke[30:33, 10:190] = True
    broken = break_stroke(stroke, np.random.default_rng(1), gaps=2)
    pieces = cv2.connectedComponents(broken.astype(np.uint8), connectivity=8)[0] - 1
    assert pieces == 3 and not (broken & ~stroke).any()
    assert broken.sum() > 0.8 * stroke.sum()
