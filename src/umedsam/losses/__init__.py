"""Segmentation losses and the uncertainty-weighted multi-term loss of U-MedSAM."""

from __future__ import annotations

from umedsam.losses.segmentation import (
    bce_loss,
    dice_loss,
    iou_regression_loss,
    mask_iou,
    pixel_mse_loss,
)
from umedsam.losses.shape import shape_distance_loss, shape_distance_target
from umedsam.losses.uncertainty import (
    DEFAULT_TERMS,
    MODES,
    TERM_NAMES,
    LossOutput,
    UncertaintyWeightedLoss,
)

__all__ = [
    "DEFAULT_TERMS",
    "MODES",
    "TERM_NAMES",
    "LossOutput",
    "UncertaintyWeightedLoss",
    "bce_loss",
    "dice_loss",
    "iou_regression_loss",
    "mask_iou",
    "pixel_mse_loss",
    "shape_distance_loss",
    "shape_distance_target",
]
