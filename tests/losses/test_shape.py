"""Hand-computed values for the shape-distance loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from umedsam.losses import shape_distance_loss, shape_distance_target
from umedsam.losses.shape import shape_distance_target_np


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_target_on_a_row() -> None:
    # EDT of [0,1,1,1,0] is [0,1,2,1,0]; normalised [0,.5,1,.5,0];
    # D = sigmoid((1 - d_hat) / 0.2) inside.
    mask = np.array([[0, 1, 1, 1, 0]])
    d = shape_distance_target_np(mask)
    expected = [0.0, _sigmoid(2.5), 0.5, _sigmoid(2.5), 0.0]
    np.testing.assert_allclose(d[0], expected, rtol=1e-6, atol=1e-7)


def test_target_empty_and_full_masks() -> None:
    assert not shape_distance_target_np(np.zeros((4, 4))).any()
    full = shape_distance_target_np(np.ones((3, 3)))
    # distances to the outside: border 1, centre 2 -> d_hat 0.5 / 1.
    assert full[1, 1] == pytest.approx(0.5, rel=1e-6)
    assert full[0, 0] == pytest.approx(_sigmoid(2.5), rel=1e-6)


def test_loss_single_pixel_hand_computed() -> None:
    # Target: centre pixel of 3x3; D = 0.5 there, 0 elsewhere. p = 0.5 everywhere.
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1
    logits = torch.zeros(1, 1, 3, 3)
    eps = 1e-6
    expected = 4.0 / (4.5 + eps)
    assert shape_distance_loss(logits, target, eps=eps).item() == pytest.approx(expected, rel=1e-6)


def test_loss_eps_keeps_empty_prediction_finite() -> None:
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1
    logits = torch.full((1, 1, 3, 3), -200.0)  # p == 0 in float32
    loss = shape_distance_loss(logits, target, eps=1e-6)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(0.5 / 1e-6, rel=1e-4)


def test_precomputed_target_matches_and_gradients_flow() -> None:
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2:6, 2:6] = 1
    target[1, 0, 1:3, 4:8] = 1
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    a = shape_distance_loss(logits, target)
    b = shape_distance_loss(logits, target, shape_target=shape_distance_target(target))
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    a.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"mask must be \(H, W\)"):
        shape_distance_target_np(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="k must be > 0"):
        shape_distance_target_np(np.zeros((2, 2)), k=0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        shape_distance_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), eps=0)
    with pytest.raises(ValueError, match="shape_target must have"):
        shape_distance_loss(
            torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), shape_target=torch.zeros(1, 1, 3, 3)
        )
