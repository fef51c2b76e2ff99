"""Optimizer/scheduler factory: parameter groups, SAM wiring, bad options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from umedsam.losses import UncertaintyWeightedLoss
from umedsam.optim import SAM, build_optimizer, build_scheduler


def _parts() -> tuple[nn.Module, nn.Module]:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    return model, UncertaintyWeightedLoss(["dice", "bce"])


def test_adamw_groups() -> None:
    model, loss = _parts()
    opt = build_optimizer(model.parameters(), loss.parameters(), lr=1e-3, weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW)
    model_group, loss_group = opt.param_groups
    assert len(model_group["params"]) == 2  # frozen layer filtered out
    assert model_group["weight_decay"] == 0.01
    assert loss_group["params"] == [loss.log_vars]
    assert loss_group["weight_decay"] == 0.0
    assert loss_group["lr"] == 1e-3


@pytest.mark.parametrize(("sharpness", "rho"), [("sam", 0.05), ("asam", 2.0)])
def test_sam_groups_loss_not_perturbed(sharpness: str, rho: float) -> None:
    model, loss = _parts()
    opt = build_optimizer(model.parameters(), loss.parameters(), sharpness=sharpness)
    assert isinstance(opt, SAM)
    assert isinstance(opt.base_optimizer, torch.optim.AdamW)
    assert opt.param_groups[0]["rho"] == rho
    assert opt.param_groups[1]["rho"] == 0.0
    assert opt.param_groups[0]["adaptive"] is (sharpness == "asam")


def test_scheduler_wraps_base_optimizer() -> None:
    model, loss = _parts()
    opt = build_optimizer(model.parameters(), loss.parameters(), sharpness="sam", lr=0.1)
    sched = build_scheduler(opt, factor=0.9, patience=0)
    assert sched.optimizer is opt.base_optimizer
    sched.step(1.0)
    sched.step(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.09)
    assert build_scheduler(opt, name="none") is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "lion"}, "unknown optimizer 'lion'"),
        ({"sharpness": "gsam"}, "unknown sharpness 'gsam'"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"weight_decay": -1.0}, "weight decays must be >= 0"),
        ({"rho": 0.1}, "only used with sharpness"),
    ],
)
def test_bad_optimizer_options(kwargs, match) -> None:
    model, loss = _parts()
    with pytest.raises(ValueError, match=match):
        build_optimizer(model.parameters(), loss.parameters(), **kwargs)


def test_no_trainable_parameter_raises() -> None:
    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable model parameter"):
        build_optimizer(model.parameters())


def test_bad_scheduler_options() -> None:
    opt = build_optimizer(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="unknown scheduler"):
        build_scheduler(opt, name="cosine")
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\)"):
        build_scheduler(opt, factor=1.5)
    with pytest.raises(ValueError, match="mode must be"):
        build_scheduler(opt, mode="up")
