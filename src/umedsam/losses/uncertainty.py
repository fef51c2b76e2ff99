"""Uncertainty-weighted multi-term segmentation loss (the U-MedSAM loss).

Three weighting modes, chosen by ``mode``:

- ``"kendall"`` (default): ``L = sum_m 0.5 * exp(-s_m) * L_m + 0.5 * s_m`` with one learnable
  ``s_m = log(sigma_m^2)`` per term, initialised to 0 (Kendall et al. 2018, the numerically stable
  form of the U-MedSAM paper's equation 1). Reported weight: ``0.5 * exp(-s_m)``. The optimum in
  ``s_m`` is ``exp(s_m) = L_m``, i.e. weight ``1 / (2 L_m)``.
- ``"umedsam_code"``: ``L = sum_m L_m / (2 sigma_m^2) + log(1 + sigma_m^2)`` with raw learnable
  ``sigma_m`` initialised to 1, exactly as the published U-MedSAM ``loss_op.py``
  (``AutomaticWeightedLoss``; Liebel & Koerner 2018). Reported weight: ``1 / (2 sigma_m^2)``.
  ``sigma_m`` may reach 0 or go negative, as in the original.
- ``"fixed"``: ``L = sum_m w_m L_m`` with constant weights (default 1), for ablations.

The learnable values are one ``nn.Parameter`` (``log_vars`` or ``sigmas``), so they are optimised
and checkpointed with the module. Put them in their own optimizer parameter group (no weight
decay, and ``rho = 0`` under Sharpness-Aware Minimization); see ``umedsam.optim.factory``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from umedsam.losses.segmentation import (
    bce_loss,
    check_mask_pair,
    dice_loss,
    iou_regression_loss,
    pixel_mse_loss,
)
from umedsam.losses.shape import shape_distance_loss

__all__ = [
    "DEFAULT_TERMS",
    "MODES",
    "TERM_NAMES",
    "LossOutput",
    "UncertaintyWeightedLoss",
]

TermFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _dice(logits, iou_pred, target, shape_target):
    return dice_loss(logits, target)


def _bce(logits, iou_pred, target, shape_target):
    return bce_loss(logits, target)


def _mse(logits, iou_pred, target, shape_target):
    return pixel_mse_loss(logits, target)


def _iou(logits, iou_pred, target, shape_target):
    return iou_regression_loss(logits, iou_pred, target)


def _shape(logits, iou_pred, target, shape_target):
    return shape_distance_loss(logits, target, shape_target=shape_target)


_TERMS: dict[str, TermFn] = {
    "dice": _dice,
    "bce": _bce,
    "mse": _mse,
    "iou": _iou,
    "shape": _shape,
}
#: Every term name the loss knows: soft Dice, BCE with logits, pixel MSE of probabilities,
#: IoU-head regression, shape distance.
TERM_NAMES: tuple[str, ...] = tuple(_TERMS)
#: The published U-MedSAM code's four terms (Dice, BCE, IoU-head MSE, shape distance).
DEFAULT_TERMS: tuple[str, ...] = ("dice", "bce", "iou", "shape")
MODES: tuple[str, ...] = ("kendall", "umedsam_code", "fixed")


class LossOutput(NamedTuple):
    """Result of a multi-term loss.

    Attributes:
        total: scalar tensor to back-propagate.
        terms: every computed term by name, detached scalar tensors (unweighted).
        weights: every term's current effective weight by name, detached scalar tensors
            (the multiplier of the term in ``total``).
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]


class UncertaintyWeightedLoss(nn.Module):
    """Weighted sum of segmentation loss terms with learned (or fixed) weights.

    Args:
        terms: term names to compute, from :data:`TERM_NAMES`, in order.
        mode: ``"kendall"``, ``"umedsam_code"`` or ``"fixed"`` (see module docstring).
        fixed_weights: per-term constant weights for ``mode="fixed"`` (missing terms get 1.0).
        init: initial ``s_m`` (kendall, default 0) or ``sigma_m`` (umedsam_code, default 1).

    Raises:
        ValueError: on an unknown or repeated term name, an empty term list, an unknown mode,
            ``fixed_weights`` outside fixed mode or naming a term that is not computed,
            or a non-finite/zero initial sigma.
    """

    fixed: torch.Tensor

    def __init__(
        self,
        terms: Sequence[str] = DEFAULT_TERMS,
        *,
        mode: str = "kendall",
        fixed_weights: Mapping[str, float] | None = None,
        init: float | None = None,
    ) -> None:
        super().__init__()
        terms = tuple(terms)
        if not terms:
            raise ValueError(f"terms must name at least one of {TERM_NAMES}; got none")
        unknown = [t for t in terms if t not in _TERMS]
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; known terms: {list(TERM_NAMES)}")
        if len(set(terms)) != len(terms):
            raise ValueError(f"loss terms must not repeat; got {list(terms)}")
        if mode not in MODES:
            raise ValueError(f"unknown loss mode {mode!r}; expected one of {list(MODES)}")
        if fixed_weights is not None and mode != "fixed":
            raise ValueError(f"fixed_weights are only used with mode='fixed'; got mode={mode!r}")
        self.terms = terms
        self.mode = mode
        n = len(terms)
        if mode == "kendall":
            value = 0.0 if init is None else float(init)
            self.log_vars = nn.Parameter(torch.full((n,), value))
        elif mode == "umedsam_code":
            value = 1.0 if init is None else float(init)
            if not math.isfinite(value) or value == 0.0:
                raise ValueError(f"initial sigma must be finite and non-zero; got {value}")
            self.sigmas = nn.Parameter(torch.full((n,), value))
        else:
            if init is not None:
                raise ValueError("init is not used with mode='fixed'; pass fixed_weights instead")
            weights = dict(fixed_weights or {})
            extra = [t for t in weights if t not in terms]
            if extra:
                raise ValueError(
                    f"fixed_weights name term(s) {extra} that are not computed; terms: {list(terms)}"
                )
            bad = {t: w for t, w in weights.items() if not math.isfinite(float(w)) or w < 0}
            if bad:
                raise ValueError(f"fixed weights must be finite and >= 0; got {bad}")
            self.register_buffer("fixed", torch.tensor([float(weights.get(t, 1.0)) for t in terms]))

    def extra_repr(self) -> str:
        return f"terms={list(self.terms)}, mode={self.mode!r}"

    def current_weights(self) -> torch.Tensor:
        """Effective multiplier of each term, ``(len(terms),)``, with gradient where learnable."""
        if self.mode == "kendall":
            return 0.5 * torch.exp(-self.log_vars)
        if self.mode == "umedsam_code":
            return 1.0 / (2.0 * self.sigmas**2)
        return self.fixed

    def regularizer(self) -> torch.Tensor:
        """The weight-dependent additive term (0 for fixed weights)."""
        if self.mode == "kendall":
            return 0.5 * self.log_vars.sum()
        if self.mode == "umedsam_code":
            return torch.log1p(self.sigmas**2).sum()
        return self.fixed.new_zeros(())

    def forward(
        self,
        logits: torch.Tensor,
        iou_pred: torch.Tensor,
        target: torch.Tensor,
        shape_target: torch.Tensor | None = None,
    ) -> LossOutput:
        """Compute every configured term and the weighted total.

        Args:
            logits: ``(N, 1, H, W)`` mask logits.
            iou_pred: ``(N, 1)`` IoU-head predictions.
            target: ``(N, 1, H, W)`` 0/1 masks.
            shape_target: optional precomputed shape-distance target (see
                ``umedsam.losses.shape.shape_distance_target``).

        Returns:
            :class:`LossOutput` with the total, the unweighted terms and the current weights.

        Raises:
            ValueError: on bad shapes.
        """
        check_mask_pair(logits, target)
        values = torch.stack(
            [_TERMS[name](logits, iou_pred, target, shape_target) for name in self.terms]
        )
        weights = self.current_weights().to(values.dtype)
        total = (weights * values).sum() + self.regularizer().to(values.dtype)
        detached_values = values.detach()
        detached_weights = weights.detach()
        return LossOutput(
            total=total,
            terms={name: detached_values[i] for i, name in enumerate(self.terms)},
            weights={name: detached_weights[i] for i, name in enumerate(self.terms)},
        )
