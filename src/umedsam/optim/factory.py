"""Optimizers and learning-rate schedulers from plain settings.

Model parameters and the uncertainty loss's learned weights go in separate parameter groups:

- group 0, ``"model"``: ``lr``, ``weight_decay``, and ``rho`` under Sharpness-Aware Minimization;
- group 1, ``"loss"`` (only if the loss has parameters): ``loss_lr`` (default ``lr``),
  ``loss_weight_decay`` (default 0: weight decay would pull the log-variances towards 0,
  i.e. towards weight 0.5, a prior the published code applies by accident) and ``rho = 0``
  (the loss weights are never perturbed by SAM).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from umedsam.optim.sam import SAM

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "SHARPNESS",
    "base_optimizer",
    "build_optimizer",
    "build_scheduler",
]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}
SHARPNESS: tuple[str, ...] = ("none", "sam", "asam")
SCHEDULERS: tuple[str, ...] = ("plateau", "none")
_DEFAULT_RHO = {"sam": 0.05, "asam": 2.0}


def build_optimizer(
    model_params: Iterable[nn.Parameter],
    loss_params: Iterable[nn.Parameter] = (),
    *,
    name: str = "adamw",
    lr: float = 5e-5,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    momentum: float = 0.9,
    loss_lr: float | None = None,
    loss_weight_decay: float = 0.0,
    sharpness: str = "none",
    rho: float | None = None,
) -> torch.optim.Optimizer:
    """Build the training optimizer.

    Args:
        model_params: trainable model parameters (frozen ones are filtered out).
        loss_params: learnable loss parameters (uncertainty weights), own group.
        name: base optimizer, one of :data:`OPTIMIZERS`.
        lr: model learning rate (> 0).
        weight_decay: model weight decay (>= 0).
        betas: Adam/AdamW betas.
        momentum: SGD momentum.
        loss_lr: learning rate of the loss parameters (default ``lr``).
        loss_weight_decay: weight decay of the loss parameters.
        sharpness: ``"none"``, ``"sam"`` (Foret et al.) or ``"asam"`` (adaptive, Kwon et al.).
        rho: SAM radius (default 0.05 for ``"sam"``, 2.0 for ``"asam"``).

    Returns:
        The base optimizer, or a :class:`~umedsam.optim.sam.SAM` wrapping it.

    Raises:
        ValueError: on an unknown name, a bad value, no trainable parameter, or ``rho``
            without sharpness-aware training.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)}")
    if sharpness not in SHARPNESS:
        raise ValueError(f"unknown sharpness {sharpness!r}; expected one of {list(SHARPNESS)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    if weight_decay < 0 or loss_weight_decay < 0:
        raise ValueError(
            f"weight decays must be >= 0; got weight_decay={weight_decay}, "
            f"loss_weight_decay={loss_weight_decay}"
        )
    if rho is not None and sharpness == "none":
        raise ValueError(f"rho={rho} is only used with sharpness 'sam' or 'asam'")
    model_list = [p for p in model_params if p.requires_grad]
    if not model_list:
        raise ValueError("no trainable model parameter: check which parts are set to train")
    loss_list = [p for p in loss_params if p.requires_grad]
    groups: list[dict[str, Any]] = [
        {"params": model_list, "name": "model", "lr": lr, "weight_decay": weight_decay}
    ]
    if loss_list:
        groups.append(
            {
                "params": loss_list,
                "name": "loss",
                "lr": lr if loss_lr is None else loss_lr,
                "weight_decay": loss_weight_decay,
            }
        )
    kwargs: dict[str, Any] = {"lr": lr}
    if name in ("adamw", "adam"):
        kwargs["betas"] = betas
    else:
        kwargs["momentum"] = momentum
    cls = OPTIMIZERS[name]
    if sharpness == "none":
        return cls(groups, **kwargs)
    radius = _DEFAULT_RHO[sharpness] if rho is None else rho
    groups[0]["rho"] = radius
    if loss_list:
        groups[1]["rho"] = 0.0
    return SAM(groups, cls, rho=radius, adaptive=sharpness == "asam", **kwargs)


def base_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimizer a scheduler must wrap: ``SAM.base_optimizer``, or the optimizer itself."""
    return optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    name: str = "plateau",
    mode: str = "min",
    factor: float = 0.9,
    patience: int = 5,
) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """Learning-rate scheduler on the base optimizer (SAM's wrapped one).

    Args:
        optimizer: the training optimizer (SAM or plain).
        name: ``"plateau"`` (ReduceLROnPlateau, stepped once per epoch with a metric) or ``"none"``.
        mode: ``"min"`` for a loss, ``"max"`` for a score such as DSC.
        factor: multiplicative decay in (0, 1).
        patience: epochs without improvement before decaying.

    Returns:
        The scheduler, or None for ``"none"``.

    Raises:
        ValueError: on an unknown name or mode, or a bad factor/patience.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {list(SCHEDULERS)}")
    if name == "none":
        return None
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
    if not 0 < factor < 1:
        raise ValueError(f"factor must be in (0, 1); got {factor}")
    if patience < 0:
        raise ValueError(f"patience must be >= 0; got {patience}")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        base_optimizer(optimizer),
        mode="max" if mode == "max" else "min",
        factor=factor,
        patience=patience,
    )
