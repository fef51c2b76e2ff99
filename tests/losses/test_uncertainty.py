"""UncertaintyWeightedLoss: the three weighting forms against hand-computed totals."""

from __future__ import annotations

import math

import pytest
import torch

from umedsam.losses import (
    DEFAULT_TERMS,
    TERM_NAMES,
    LossOutput,
    UncertaintyWeightedLoss,
    bce_loss,
    dice_loss,
    pixel_mse_loss,
)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 8, 8, generator=gen)
    target = torch.zeros(3, 1, 8, 8)
    target[:, :, 2:6, 3:7] = 1
    iou_pred = torch.rand(3, 1, generator=gen)
    return logits, iou_pred, target


def test_kendall_initial_and_shifted(batch) -> None:
    logits, iou_pred, target = batch
    loss = UncertaintyWeightedLoss(["dice", "bce"])
    d, b = dice_loss(logits, target).item(), bce_loss(logits, target).item()
    out = loss(logits, iou_pred, target)
    assert isinstance(out, LossOutput)
    assert out.total.item() == pytest.approx(0.5 * d + 0.5 * b, rel=1e-6)
    assert out.terms["dice"].item() == pytest.approx(d, rel=1e-6)
    assert out.weights["bce"].item() == pytest.approx(0.5)
    with torch.no_grad():
        loss.log_vars.copy_(torch.tensor([math.log(2.0), 0.0]))
    out = loss(logits, iou_pred, target)
    expected = 0.5 * 0.5 * d + 0.5 * math.log(2.0) + 0.5 * b
    assert out.total.item() == pytest.approx(expected, rel=1e-6)
    assert out.weights["dice"].item() == pytest.approx(0.25, rel=1e-6)


def test_kendall_gradient_of_log_var(batch) -> None:
    logits, iou_pred, target = batch
    loss = UncertaintyWeightedLoss(["mse"])
    m = pixel_mse_loss(logits, target).item()
    loss(logits, iou_pred, target).total.backward()
    # d/ds [0.5 e^{-s} L + 0.5 s] at s = 0 is 0.5 (1 - L).
    assert loss.log_vars.grad.item() == pytest.approx(0.5 * (1 - m), rel=1e-5)


def test_umedsam_code_form(batch) -> None:
    logits, iou_pred, target = batch
    loss = UncertaintyWeightedLoss(["dice", "bce"], mode="umedsam_code")
    d, b = dice_loss(logits, target).item(), bce_loss(logits, target).item()
    out = loss(logits, iou_pred, target)
    # sigma = 1: L/2 + ln 2 per term.
    assert out.total.item() == pytest.approx(d / 2 + b / 2 + 2 * math.log(2), rel=1e-6)
    with torch.no_grad():
        loss.sigmas.copy_(torch.tensor([2.0, 0.5]))
    out = loss(logits, iou_pred, target)
    expected = d / 8 + math.log(5) + b / 0.5 + math.log(1.25)
    assert out.total.item() == pytest.approx(expected, rel=1e-6)
    assert out.weights["bce"].item() == pytest.approx(2.0, rel=1e-6)


def test_fixed_weights(batch) -> None:
    logits, iou_pred, target = batch
    loss = UncertaintyWeightedLoss(["dice", "bce"], mode="fixed", fixed_weights={"bce": 0.25})
    d, b = dice_loss(logits, target).item(), bce_loss(logits, target).item()
    out = loss(logits, iou_pred, target)
    assert out.total.item() == pytest.approx(d + 0.25 * b, rel=1e-6)
    assert list(loss.parameters()) == []
    assert out.weights == {"dice": pytest.approx(1.0), "bce": pytest.approx(0.25)}


def test_default_terms_all_computed_and_finite(batch) -> None:
    logits, iou_pred, target = batch
    logits.requires_grad_(True)
    iou_pred.requires_grad_(True)
    loss = UncertaintyWeightedLoss()
    assert loss.terms == DEFAULT_TERMS
    out = loss(logits, iou_pred, target)
    assert set(out.terms) == set(DEFAULT_TERMS) == set(out.weights)
    out.total.backward()
    assert torch.isfinite(logits.grad).all()
    assert iou_pred.grad is not None
    assert loss.log_vars.grad is not None
    assert all(not t.requires_grad for t in out.terms.values())


def test_all_terms_selectable(batch) -> None:
    logits, iou_pred, target = batch
    out = UncertaintyWeightedLoss(TERM_NAMES)(logits, iou_pred, target)
    assert list(out.terms) == list(TERM_NAMES)


def test_state_dict_round_trip() -> None:
    a = UncertaintyWeightedLoss(["dice", "shape"])
    with torch.no_grad():
        a.log_vars.fill_(0.3)
    b = UncertaintyWeightedLoss(["dice", "shape"])
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.log_vars, b.log_vars)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"terms": ["dice", "focal"]}, r"unknown loss term\(s\) \['focal'\]"),
        ({"terms": []}, "at least one"),
        ({"terms": ["dice", "dice"]}, "must not repeat"),
        ({"terms": ["dice"], "mode": "softmax"}, "unknown loss mode 'softmax'"),
        ({"terms": ["dice"], "fixed_weights": {"dice": 1.0}}, "only used with mode='fixed'"),
        (
            {"terms": ["dice"], "mode": "fixed", "fixed_weights": {"bce": 1.0}},
            r"term\(s\) \['bce'\] that are not computed",
        ),
        ({"terms": ["dice"], "mode": "fixed", "fixed_weights": {"dice": -1}}, ">= 0"),
        ({"terms": ["dice"], "mode": "umedsam_code", "init": 0.0}, "non-zero"),
    ],
)
def test_bad_options_raise(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        UncertaintyWeightedLoss(**kwargs)
