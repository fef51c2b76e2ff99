"""Hand-computed values for the pixel losses and the IoU-head regression."""

from __future__ import annotations

import math

import pytest
import torch

from umedsam.losses import bce_loss, dice_loss, iou_regression_loss, mask_iou, pixel_mse_loss


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[None, None]


def test_dice_hand_computed_squared() -> None:
    # p = 0.5 everywhere on 2x2, one foreground pixel:
    # intersection 0.5, sum p^2 = 1, sum g^2 = 1.
    logits = torch.zeros(1, 1, 2, 2)
    target = _t([[1, 0], [0, 0]])
    expected = 1 - (2 * 0.5 + 1e-5) / (1 + 1 + 1e-5)
    assert dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_dice_hand_computed_linear() -> None:
    logits = torch.zeros(1, 1, 2, 2)
    target = _t([[1, 0], [0, 0]])
    # sum p = 2, sum g = 1.
    expected = 1 - (2 * 0.5 + 1e-5) / (2 + 1 + 1e-5)
    assert dice_loss(logits, target, squared_pred=False).item() == pytest.approx(expected, rel=1e-6)


def test_dice_perfect_and_both_empty_are_zero() -> None:
    target = _t([[1, 0], [0, 0]])
    perfect = (target * 2 - 1) * 50.0
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    empty = torch.zeros(1, 1, 2, 2)
    assert dice_loss(torch.full((1, 1, 2, 2), -50.0), empty).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_averages_over_masks() -> None:
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.stack([_t([[1, 0], [0, 0]])[0], _t([[1, 1], [1, 1]])[0]])
    first = 1 - (1 + 1e-5) / (2 + 1e-5)
    # second: intersection 2, sum p^2 = 1, sum g^2 = 4.
    second = 1 - (4 + 1e-5) / (5 + 1e-5)
    assert dice_loss(logits, target).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_bce_and_mse_at_zero_logits() -> None:
    logits = torch.zeros(1, 1, 2, 2)
    target = _t([[1, 0], [0, 1]])
    assert bce_loss(logits, target).item() == pytest.approx(math.log(2), rel=1e-6)
    assert pixel_mse_loss(logits, target).item() == pytest.approx(0.25, rel=1e-6)


def test_mse_hand_computed() -> None:
    logits = _t([[math.log(3), 0.0]])  # sigmoid -> 0.75, 0.5
    target = _t([[1, 0]])
    expected = ((0.25) ** 2 + 0.5**2) / 2
    assert pixel_mse_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_iou_regression_hand_computed() -> None:
    logits = _t([[2.0, -2.0], [2.0, -2.0]])  # predicted mask: left column
    target = _t([[1, 1], [0, 0]])  # top row -> intersection 1, union 3
    iou_pred = torch.tensor([[0.5]], requires_grad=True)
    loss = iou_regression_loss(logits, iou_pred, target)
    assert loss.item() == pytest.approx((0.5 - 1 / 3) ** 2, rel=1e-6)
    loss.backward()
    assert iou_pred.grad is not None
    assert iou_pred.grad.item() == pytest.approx(2 * (0.5 - 1 / 3), rel=1e-5)


def test_iou_regression_no_gradient_to_logits() -> None:
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    target = (torch.rand(2, 1, 4, 4) > 0.5).float()
    iou_pred = torch.rand(2, 1, requires_grad=True)
    iou_regression_loss(logits, iou_pred, target).backward()
    assert logits.grad is None


def test_mask_iou_both_empty_is_one() -> None:
    empty = torch.zeros(1, 1, 3, 3)
    assert mask_iou(empty.bool(), empty).tolist() == [1.0]


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"logits must be \(N, 1, H, W\)"):
        dice_loss(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="target must have the logits' shape"):
        bce_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"iou_pred must be \(1, 1\)"):
        iou_regression_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="smooth_dr must be > 0"):
        dice_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), smooth_dr=0.0)
