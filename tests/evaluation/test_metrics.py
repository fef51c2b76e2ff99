"""DSC/NSD on tiny arrays with hand-computed values, edge cases and the official conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from umedsam.evaluation.metrics import case_metrics, dice, nsd


def square(shape: tuple[int, ...], shift: int = 0, axis: int = -1) -> np.ndarray:
    """A 4-pixel (or 3-voxel in 3D) cube at offset 1, rolled by ``shift`` along ``axis``."""
    mask = np.zeros(shape, dtype=bool)
    size = 4 if len(shape) == 2 else 3
    mask[tuple(slice(1, 1 + size) for _ in shape)] = True
    return np.roll(mask, shift, axis=axis)


# --- dice -----------------------------------------------------------------------------------


def test_dice_hand_computed() -> None:
    # 4x4 squares shifted by one column: overlap 12 of 16 + 16 pixels -> 24 / 32.
    gt = square((8, 8))
    pred = square((8, 8), shift=1)
    assert dice(pred, gt) == pytest.approx(0.75)
    assert dice(gt, gt) == 1.0
    a = np.array([[1, 1, 0], [1, 1, 0]], dtype=bool)
    b = np.array([[0, 1, 1], [0, 1, 1]], dtype=bool)
    assert dice(a, b) == pytest.approx(0.5)  # 2 * 2 / (4 + 4)


def test_dice_edge_cases() -> None:
    empty = np.zeros((5, 5), dtype=bool)
    full = np.ones((5, 5), dtype=bool)
    assert math.isnan(dice(empty, empty))  # both empty: undefined, as officially
    assert dice(empty, full) == 0.0  # empty prediction
    assert dice(full, empty) == 0.0  # empty ground truth


def test_dice_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"pred \(3, 4\) and gt \(4, 3\)"):
        dice(np.zeros((3, 4), bool), np.zeros((4, 3), bool))
    with pytest.raises(TypeError, match="boolean mask; got dtype uint8"):
        dice(np.zeros((3, 3), np.uint8), np.zeros((3, 3), bool))


# --- nsd ------------------------------------------------------------------------------------


def test_nsd_hand_computed_2d_contour() -> None:
    gt = square((8, 8))
    pred = square((8, 8), shift=1)
    assert nsd(gt, gt, (1.0, 1.0), 0.0) == pytest.approx(1.0)
    # Shift by 1 px: within tolerance 1 every contour point touches the other contour.
    assert nsd(pred, gt, (1.0, 1.0), 1.0) == pytest.approx(1.0)
    # Tolerance 0.5: only the shared contour points count. Of each square's 16 corner points
    # (4 corners + 12 edge points), the shared ones are 2 corners + 6 edge points, so the
    # result is (2c + 6e) / (4c + 12e) = 0.5 whatever the corner/edge lengths c, e.
    assert nsd(pred, gt, (1.0, 1.0), 0.5) == pytest.approx(0.5)
    # Spacing scales the distances: 1 px at 3 mm is beyond a 2 mm tolerance.
    assert nsd(pred, gt, (3.0, 3.0), 2.0) == pytest.approx(0.5)


def test_nsd_far_apart_is_zero() -> None:
    gt = np.zeros((20, 20), bool)
    pred = np.zeros((20, 20), bool)
    gt[1:4, 1:4] = True
    pred[12:15, 12:15] = True
    assert nsd(pred, gt, (1.0, 1.0), 2.0) == 0.0


def test_nsd_edge_cases() -> None:
    empty = np.zeros((6, 6, 2), dtype=bool)
    cube = np.zeros((6, 6, 2), dtype=bool)
    cube[1:4, 1:4, :] = True
    assert math.isnan(nsd(empty, empty, (1, 1, 1)))  # both empty: undefined
    assert nsd(empty, cube, (1, 1, 1)) == 0.0  # empty prediction (official code crashes)
    assert nsd(cube, empty, (1, 1, 1)) == 0.0  # empty ground truth


def test_nsd_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"pred \(4, 4\) and gt \(4, 5\)"):
        nsd(np.zeros((4, 4), bool), np.zeros((4, 5), bool), (1, 1))
    with pytest.raises(ValueError, match="one value per mask axis"):
        nsd(np.ones((4, 4), bool), np.ones((4, 4), bool), (1, 1, 1))
    with pytest.raises(ValueError, match=r"finite and > 0; got \[1.0, 0.0\]"):
        nsd(np.ones((4, 4), bool), np.ones((4, 4), bool), (1, 0))
    with pytest.raises(ValueError, match="2D or 3D; got 1D"):
        nsd(np.ones(4, bool), np.ones(4, bool), (1,))
    with pytest.raises(ValueError, match="tolerance must be finite and >= 0"):
        nsd(np.ones((4, 4), bool), np.ones((4, 4), bool), (1, 1), tolerance=-1)


# --- case_metrics ---------------------------------------------------------------------------


def test_case_metrics_2d_is_official_one_slice_volume() -> None:
    gt = square((8, 8)).astype(np.uint8)
    seg = square((8, 8), shift=1).astype(np.uint8)
    result = case_metrics(seg, gt)
    assert not result.is_3d
    assert result.spacing == (1.0, 1.0, 1.0)
    assert result.dsc == pytest.approx(0.75)
    # Official 2D NSD: a one-slice volume with unit spacing, not the 2D contour NSD.
    expected = nsd(seg[..., None] == 1, gt[..., None] == 1, (1, 1, 1), 2.0)
    assert result.nsd == pytest.approx(expected)
    contour = case_metrics(seg, gt, tolerance=0.5, nsd_2d="contour")
    assert contour.spacing == (1.0, 1.0)
    assert contour.nsd == pytest.approx(0.5)


def test_case_metrics_3d_spacing_order() -> None:
    # Stored spacing (x, y, z) = (1, 1, 5) for arrays in (z, y, x) order; pred shifted by one
    # voxel along z (axis 0).
    gt = square((7, 7, 7)).astype(np.uint8)
    seg = square((7, 7, 7), shift=1, axis=0).astype(np.uint8)
    stored = np.array([1.0, 1.0, 5.0])
    official = case_metrics(seg, gt, stored)
    axis = case_metrics(seg, gt, stored, spacing_order="axis")
    assert official.is_3d
    # Official: spacing used as stored, so axis 0 gets 1 mm and the 1-voxel shift is in tolerance.
    assert official.spacing == (1.0, 1.0, 5.0)
    assert official.nsd == pytest.approx(1.0)
    # Axis-correct: axis 0 gets 5 mm and the shift is beyond the 2 mm tolerance.
    assert axis.spacing == (5.0, 1.0, 1.0)
    assert axis.nsd < 0.9
    assert axis.nsd == pytest.approx(nsd(seg == 1, gt == 1, (5.0, 1.0, 1.0), 2.0))
    assert official.dsc == axis.dsc == pytest.approx(2 / 3)  # 18 of 27 + 27 voxels


def test_case_metrics_labels_mean_and_dsc_rule() -> None:
    gt = np.zeros((12, 12), np.uint8)
    gt[1:5, 1:5] = 1
    gt[7:11, 7:11] = 2
    seg = gt.copy()
    seg[seg == 2] = 0  # label 2 missing from the prediction
    result = case_metrics(seg, gt)
    assert [m.label for m in result.labels] == [1, 2]
    assert result.labels[1].dsc == 0.0
    assert result.labels[1].nsd == 0.0
    assert result.labels[1].pred_voxels == 0
    assert result.dsc == pytest.approx(0.5)
    assert result.nsd == pytest.approx(0.5)

    # Case DSC <= 0.2: the case NSD is 0 while the label NSD is still reported.
    gt3 = np.zeros((20, 20), np.uint8)
    gt3[0:10, 0:10] = 1
    seg3 = np.zeros_like(gt3)
    seg3[0:10, 0:1] = 1  # 10 of 100 pixels: DSC = 20 / 110
    low = case_metrics(seg3, gt3)
    assert low.dsc == pytest.approx(20 / 110)
    assert low.nsd == 0.0
    assert low.labels[0].nsd > 0.0


def test_case_metrics_label_gap_and_extra_labels() -> None:
    gt = np.zeros((10, 10), np.uint8)
    gt[1:4, 1:4] = 1
    gt[6:9, 6:9] = 3  # label 2 absent from both: undefined, skipped in the mean
    seg = gt.copy()
    seg[0, 9] = 7  # labels above max(gt) are ignored, as officially
    result = case_metrics(seg, gt)
    assert [m.label for m in result.labels] == [1, 2, 3]
    assert math.isnan(result.labels[1].dsc)
    assert result.dsc == 1.0
    assert result.nsd == 1.0


def test_case_metrics_rejects_bad_input() -> None:
    gt = np.ones((4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"segs \(4, 5\) and gts \(4, 4\)"):
        case_metrics(np.ones((4, 5), np.uint8), gt)
    with pytest.raises(ValueError, match="no foreground label"):
        case_metrics(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="needs a spacing"):
        case_metrics(np.ones((2, 4, 4), np.uint8), np.ones((2, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="integer label map; got dtype float32"):
        case_metrics(np.ones((4, 4), np.float32), gt)
    with pytest.raises(ValueError, match="spacing_order must be 'official' or 'axis'"):
        case_metrics(gt, gt, spacing_order="xyz")  # type: ignore[arg-type]
