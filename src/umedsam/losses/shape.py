"""Shape-information ("shape distance", SD) loss.

Huang et al. 2021 (IEEE Xplore 9433775) shape-information loss, in the form of the unmerged MONAI
PR #4205 ``ShapeDistLoss`` used by Chalcroft et al. (arXiv 2308.07251) and by the U-MedSAM code.
For each mask, with g the ground truth, p = sigmoid(logits) and k = 0.2:

- d = Euclidean distance transform of g (distance of each foreground pixel to the background),
  normalised as d_hat = d / (max d + 1e-8);
- target D = g * sigmoid((1 - d_hat) / k): about 0.993 on the boundary, 0.5 at the deepest interior
  pixel, 0 outside;
- loss = sum |D - p| / (sum p + eps), averaged over the masks.

Unlike the published code this keeps an ``eps`` in the denominator, so near-empty predictions
cannot make the loss explode. The distance transform runs on the CPU (scipy); compute the target
once per batch with :func:`shape_distance_target` and pass it to :func:`shape_distance_loss` when
the same batch is evaluated twice (Sharpness-Aware Minimization).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.ndimage import distance_transform_edt

from umedsam.losses.segmentation import check_mask_pair

__all__ = ["shape_distance_loss", "shape_distance_target", "shape_distance_target_np"]

DEFAULT_K = 0.2
DEFAULT_EPS = 1e-6


def shape_distance_target_np(mask: NDArray, k: float = DEFAULT_K) -> NDArray[np.float32]:
    """Shape-distance target D for one 2D mask.

    Args:
        mask: ``(H, W)`` boolean or 0/1 ground-truth mask.
        k: sigmoid temperature (0.2 in the published loss).

    Returns:
        ``(H, W)`` float32 target, 0 outside the mask, in (0.5, 1) inside. An empty mask gives
        all zeros. A mask with no background pixel measures distances to the image border.

    Raises:
        ValueError: if ``mask`` is not 2D or ``k`` is not positive.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W); got shape {mask.shape}")
    if k <= 0:
        raise ValueError(f"k must be > 0; got {k}")
    g = mask.astype(bool)
    if not g.any():
        return np.zeros(g.shape, dtype=np.float32)
    if g.all():
        # No background pixel: measure the distance to just outside the image.
        dist = distance_transform_edt(np.pad(g, 1))[1:-1, 1:-1]
    else:
        dist = distance_transform_edt(g)
    dist_hat = dist / (dist.max() + 1e-8)
    target = g / (1.0 + np.exp(-(1.0 - dist_hat) / k))
    return target.astype(np.float32)


def shape_distance_target(target: torch.Tensor, k: float = DEFAULT_K) -> torch.Tensor:
    """Shape-distance targets for a batch of masks (computed on the CPU, returned on its device).

    Args:
        target: ``(N, 1, H, W)`` 0/1 ground-truth masks.
        k: sigmoid temperature.

    Returns:
        ``(N, 1, H, W)`` float tensor on ``target``'s device, no gradient.

    Raises:
        ValueError: if ``target`` is not ``(N, 1, H, W)``.
    """
    if target.ndim != 4 or target.shape[1] != 1:
        raise ValueError(f"target must be (N, 1, H, W); got {tuple(target.shape)}")
    masks = target.detach().to("cpu").numpy() > 0.5
    out = np.zeros(masks.shape, dtype=np.float32)
    for i, mask in enumerate(masks):
        out[i, 0] = shape_distance_target_np(mask[0], k)
    return torch.from_numpy(out).to(device=target.device)


def shape_distance_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    shape_target: torch.Tensor | None = None,
    k: float = DEFAULT_K,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """Shape-distance loss ``mean_n( sum|D - p| / (sum p + eps) )``.

    Args:
        logits: ``(N, 1, H, W)`` mask logits.
        target: ``(N, 1, H, W)`` 0/1 masks.
        shape_target: precomputed :func:`shape_distance_target` of ``target`` (saves the CPU
            distance transform when the same batch is evaluated again); computed if None.
        k: sigmoid temperature of the target.
        eps: denominator guard (> 0).

    Returns:
        Scalar loss (>= 0; not 0 at p = g, since the interior target is below 1).

    Raises:
        ValueError: on bad shapes or a non-positive ``eps``.
    """
    check_mask_pair(logits, target)
    if eps <= 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    if shape_target is None:
        shape_target = shape_distance_target(target, k)
    elif shape_target.shape != logits.shape:
        raise ValueError(
            f"shape_target must have the logits' shape {tuple(logits.shape)}; "
            f"got {tuple(shape_target.shape)}"
        )
    probs = torch.sigmoid(logits)
    dims = (1, 2, 3)
    numerator = (shape_target.to(probs.dtype) - probs).abs().sum(dims)
    return (numerator / (probs.sum(dims) + eps)).mean()
