"""Pixel-wise segmentation losses on mask logits, and the IoU-head regression loss.

All functions take ``logits`` of shape ``(N, 1, H, W)`` (pre-sigmoid, one mask per box prompt)
and a ``target`` of the same shape holding 0/1 floats (the ground-truth mask of that box's object
in the same frame). Every loss is averaged over the N masks and returns a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "bce_loss",
    "check_mask_pair",
    "dice_loss",
    "iou_regression_loss",
    "mask_iou",
    "pixel_mse_loss",
]


def check_mask_pair(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Validate a (logits, target) pair.

    Args:
        logits: mask logits, ``(N, 1, H, W)``.
        target: ground-truth masks, same shape, values in {0, 1}.

    Raises:
        ValueError: if the shapes are not ``(N, 1, H, W)`` or differ.
    """
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be (N, 1, H, W); got {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise ValueError(
            f"target must have the logits' shape {tuple(logits.shape)}; got {tuple(target.shape)}"
        )


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    squared_pred: bool = True,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
) -> torch.Tensor:
    """Soft Dice loss on sigmoid probabilities, averaged over masks.

    Per mask, with p = sigmoid(logits) and g the target:
    ``1 - (2 sum(p g) + smooth_nr) / (sum(p^2) + sum(g^2) + smooth_dr)`` when ``squared_pred``
    (the form used by the U-MedSAM code, MONAI ``DiceLoss(sigmoid=True, squared_pred=True)``),
    else ``... / (sum(p) + sum(g) + smooth_dr)``. Both-empty masks give a loss of 0.

    Args:
        logits: ``(N, 1, H, W)`` mask logits.
        target: ``(N, 1, H, W)`` 0/1 masks.
        squared_pred: square p and g in the denominator.
        smooth_nr: numerator smoothing.
        smooth_dr: denominator smoothing (must be > 0).

    Returns:
        Scalar loss in [0, 1].

    Raises:
        ValueError: on bad shapes or a non-positive ``smooth_dr``.
    """
    check_mask_pair(logits, target)
    if smooth_dr <= 0:
        raise ValueError(f"smooth_dr must be > 0; got {smooth_dr}")
    probs = torch.sigmoid(logits)
    target = target.to(probs.dtype)
    dims = (1, 2, 3)
    intersection = (probs * target).sum(dims)
    if squared_pred:
        denominator = (probs * probs).sum(dims) + (target * target).sum(dims)
    else:
        denominator = probs.sum(dims) + target.sum(dims)
    dice = (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)
    return (1.0 - dice).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over all pixels and masks.

    Args:
        logits: ``(N, 1, H, W)`` mask logits.
        target: ``(N, 1, H, W)`` 0/1 masks.

    Returns:
        Scalar loss.

    Raises:
        ValueError: on bad shapes.
    """
    check_mask_pair(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def pixel_mse_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between sigmoid probabilities and the 0/1 mask.

    Args:
        logits: ``(N, 1, H, W)`` mask logits.
        target: ``(N, 1, H, W)`` 0/1 masks.

    Returns:
        Scalar loss in [0, 1].

    Raises:
        ValueError: on bad shapes.
    """
    check_mask_pair(logits, target)
    return F.mse_loss(torch.sigmoid(logits), target.to(logits.dtype))


def mask_iou(pred_mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks, one value per mask.

    Args:
        pred_mask: ``(N, 1, H, W)`` boolean (or 0/1) masks.
        target: ``(N, 1, H, W)`` 0/1 masks.

    Returns:
        ``(N,)`` float IoU; 1.0 where both masks are empty (perfect agreement on "nothing").
    """
    pred = pred_mask.bool()
    gt = target.bool()
    dims = (1, 2, 3)
    intersection = (pred & gt).sum(dims).float()
    union = (pred | gt).sum(dims).float()
    return torch.where(union > 0, intersection / union.clamp_min(1.0), torch.ones_like(union))


def iou_regression_loss(
    logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """MSE between the IoU head's prediction and the actual IoU of the thresholded mask.

    The actual IoU uses ``sigmoid(logits) > 0.5`` (i.e. ``logits > 0``) against the target and
    carries no gradient; only the IoU head learns from this term (as in SAM/MedSAM training).

    Args:
        logits: ``(N, 1, H, W)`` mask logits.
        iou_pred: ``(N, 1)`` predicted IoU.
        target: ``(N, 1, H, W)`` 0/1 masks.

    Returns:
        Scalar loss.

    Raises:
        ValueError: on bad shapes.
    """
    check_mask_pair(logits, target)
    if iou_pred.shape != (logits.shape[0], 1):
        raise ValueError(
            f"iou_pred must be ({logits.shape[0]}, 1) for {logits.shape[0]} masks; "
            f"got {tuple(iou_pred.shape)}"
        )
    with torch.no_grad():
        actual = mask_iou(logits > 0, target).to(iou_pred.dtype).unsqueeze(1)
    return F.mse_loss(iou_pred, actual)
