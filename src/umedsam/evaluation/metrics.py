"""DSC and NSD exactly as the CVPR 2024 "MedSAM on Laptop" evaluation computes them.

The reference is the challenge's ``evaluation/compute_metrics.py`` (bowang-lab/MedSAM, branch
LiteMedSAM). For every label ``1..max(gt)`` it computes the Dice similarity coefficient (DSC) and
the normalised surface Dice (NSD, DeepMind ``surface-distance``, tolerance 2); the case scores are
the means over labels, and the case NSD is set to 0 where the case DSC is <= 0.2.

Conventions reproduced on purpose (see :func:`case_metrics`):

* 3D cases use the ``spacing`` stored in the ground-truth npz **as stored**. The challenge files
  hold it in SimpleITK ``(x, y, z)`` order while the arrays are ``(z, y, x)``, so the official
  tolerance is applied with the spacing of the wrong axes. ``spacing_order="axis"`` reverses it to
  array-axis order instead (physically correct, no longer comparable with published numbers).
* 2D cases get a trailing singleton axis and unit spacing ``(1, 1, 1)``: the tolerance is in
  pixels, and because the single slice has a top and a bottom face, every foreground pixel is a
  surface element. This is not the 2D contour NSD; ``nsd_2d="contour"`` computes that instead.

Deviations, all where the official script fails or returns NaN:

* An empty predicted (or empty ground-truth) label scores DSC 0 and NSD 0. The official script
  crashes there under NumPy 2 (``surface_distance`` uses the removed ``np.Inf``).
* A label in ``1..max(gt)`` absent from both masks has an undefined score (NaN, as the official
  ``compute_dice_coefficient`` returns); the case means skip such labels, where the official
  case score would become NaN.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

#: Case DSC at or below which the official evaluation sets the case NSD to 0.
NSD_DSC_THRESHOLD = 0.2

SpacingOrder = Literal["official", "axis"]
Nsd2dMode = Literal["official", "contour"]


def _check_masks(
    pred: NDArray[np.bool_], gt: NDArray[np.bool_], ndims: tuple[int, ...] | None
) -> None:
    for name, mask in (("pred", pred), ("gt", gt)):
        if not isinstance(mask, np.ndarray):
            raise TypeError(f"{name} must be a numpy array; got {type(mask).__name__}")
        if mask.dtype != np.bool_:
            raise TypeError(
                f"{name} must be a boolean mask; got dtype {mask.dtype} "
                f"(pass e.g. labels == k or mask.astype(bool))"
            )
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt must have the same shape; got pred {pred.shape} and gt {gt.shape}"
        )
    if ndims is not None and pred.ndim not in ndims:
        wanted = " or ".join(f"{n}D" for n in ndims)
        raise ValueError(f"masks must be {wanted}; got {pred.ndim}D with shape {pred.shape}")


def dice(pred: NDArray[np.bool_], gt: NDArray[np.bool_]) -> float:
    """Dice similarity coefficient ``2 |P & G| / (|P| + |G|)`` of two boolean masks.

    Computed as the official ``compute_dice_coefficient`` does (integer counts, one division),
    so results are bit-identical to it.

    Args:
        pred: predicted mask, bool, any number of dimensions.
        gt: ground-truth mask, bool, same shape as ``pred``.

    Returns:
        DSC in [0, 1]. Edge cases: one mask empty -> 0.0; both empty -> NaN (undefined, as in
        the official script and ``surface_distance``).

    Raises:
        TypeError: if a mask is not a boolean numpy array.
        ValueError: if the shapes differ (the message prints both).
    """
    _check_masks(pred, gt, ndims=None)
    volume_sum = int(pred.sum()) + int(gt.sum())
    if volume_sum == 0:
        return math.nan
    intersection = int(np.logical_and(pred, gt).sum())
    return float(2 * intersection / volume_sum)


def _check_spacing(spacing: Sequence[float] | NDArray[np.floating], ndim: int) -> tuple[float, ...]:
    values = np.asarray(spacing, dtype=np.float64).ravel()
    if values.size != ndim:
        raise ValueError(
            f"spacing must have one value per mask axis ({ndim}); got {values.size} values "
            f"{values.tolist()}"
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing values must be finite and > 0; got {values.tolist()}")
    return tuple(float(v) for v in values)


def nsd(
    pred: NDArray[np.bool_],
    gt: NDArray[np.bool_],
    spacing: Sequence[float] | NDArray[np.floating],
    tolerance: float = 2.0,
) -> float:
    """Normalised surface Dice at ``tolerance`` (DeepMind ``surface-distance``).

    The fraction of the two surfaces (contours in 2D) lying within ``tolerance`` of the other
    surface, each surface element weighted by its area (length in 2D).

    Args:
        pred: predicted mask, bool, 2D or 3D.
        gt: ground-truth mask, bool, same shape as ``pred``.
        spacing: voxel size per array axis, in the same order as the axes of the masks (mm, or
            pixels for unit spacing).
        tolerance: distance in the units of ``spacing`` within which surfaces count as touching.

    Returns:
        NSD in [0, 1]. Edge cases: exactly one mask empty -> 0.0 (the official script crashes
        there under NumPy 2); both empty -> NaN (undefined, 0/0 in ``surface_distance``).

    Raises:
        TypeError: if a mask is not a boolean numpy array.
        ValueError: if the shapes differ (the message prints both), the masks are not 2D or 3D,
            ``spacing`` does not have one positive value per axis, or ``tolerance`` < 0.
    """
    _check_masks(pred, gt, ndims=(2, 3))
    spacing_t = _check_spacing(spacing, pred.ndim)
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be finite and >= 0; got {tolerance}")
    pred_any = bool(pred.any())
    gt_any = bool(gt.any())
    if not pred_any and not gt_any:
        return math.nan
    if pred_any != gt_any:
        return 0.0
    import surface_distance

    with warnings.catch_warnings():
        # surface_distance calls the deprecated scipy.ndimage.filters / .morphology namespaces.
        warnings.simplefilter("ignore", DeprecationWarning)
        distances = surface_distance.compute_surface_distances(gt, pred, spacing_mm=spacing_t)
    return float(surface_distance.compute_surface_dice_at_tolerance(distances, tolerance))


@dataclass(frozen=True)
class LabelMetrics:
    """Scores of one label (object) of a case.

    Attributes:
        label: the label value (1-based object id).
        dsc: DSC of ``segs == label`` against ``gts == label`` (NaN if both are empty).
        nsd: NSD of the same pair, not zeroed by the case-level DSC rule (NaN if both empty).
        gt_voxels: foreground voxels (pixels) of the label in the ground truth.
        pred_voxels: foreground voxels (pixels) of the label in the prediction.
    """

    label: int
    dsc: float
    nsd: float
    gt_voxels: int
    pred_voxels: int


@dataclass(frozen=True)
class CaseMetrics:
    """Scores of one case, unrounded (the official CSV rounds them to 4 decimals).

    Attributes:
        dsc: mean label DSC (NaN labels skipped).
        nsd: mean label NSD, or 0.0 where ``dsc`` <= 0.2 (the official rule).
        labels: one entry per label ``1..max(gt)``.
        is_3d: whether the case was evaluated as a volume.
        spacing: the spacing handed to ``surface_distance`` (per array axis as used).
    """

    dsc: float
    nsd: float
    labels: tuple[LabelMetrics, ...]
    is_3d: bool
    spacing: tuple[float, ...]


def _mean_skip_nan(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan
    return float(np.mean(finite))


def _check_label_maps(
    segs: NDArray, gts: NDArray, spacing_order: SpacingOrder, nsd_2d: Nsd2dMode
) -> None:
    """Raise TypeError/ValueError for what :func:`case_metrics` cannot score (see there)."""
    if spacing_order not in ("official", "axis"):
        raise ValueError(f"spacing_order must be 'official' or 'axis'; got {spacing_order!r}")
    if nsd_2d not in ("official", "contour"):
        raise ValueError(f"nsd_2d must be 'official' or 'contour'; got {nsd_2d!r}")
    for name, arr in (("segs", segs), ("gts", gts)):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{name} must be a numpy array; got {type(arr).__name__}")
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must be an integer label map; got dtype {arr.dtype}")
    if segs.shape != gts.shape:
        raise ValueError(
            f"segs and gts must have the same shape; got segs {segs.shape} and gts {gts.shape}"
        )
    if gts.ndim not in (2, 3):
        raise ValueError(f"label maps must be 2D (H, W) or 3D (D, H, W); got shape {gts.shape}")
    if (int(gts.max()) if gts.size else 0) < 1:
        raise ValueError("gts has no foreground label (max label 0); there is nothing to score")


def _scoring_spacing(
    spacing: Sequence[float] | NDArray[np.floating] | None,
    shape: tuple[int, ...],
    spacing_order: SpacingOrder,
    nsd_2d: Nsd2dMode,
) -> tuple[float, ...]:
    """The spacing NSD is computed with (see :func:`case_metrics`)."""
    if len(shape) == 3:
        if spacing is None:
            raise ValueError(f"3D case {shape} needs a spacing (3 values); got None")
        spacing_t = _check_spacing(spacing, 3)
        return spacing_t[::-1] if spacing_order == "axis" else spacing_t
    return (1.0, 1.0, 1.0) if nsd_2d == "official" else (1.0, 1.0)


def case_metrics(
    segs: NDArray[np.integer],
    gts: NDArray[np.integer],
    spacing: Sequence[float] | NDArray[np.floating] | None = None,
    tolerance: float = 2.0,
    spacing_order: SpacingOrder = "official",
    nsd_2d: Nsd2dMode = "official",
) -> CaseMetrics:
    """Per-label and per-case DSC/NSD of a label map, as the challenge's compute_metrics.py.

    Labels ``1..max(gts)`` are scored (labels in ``segs`` above ``max(gts)`` are ignored, as
    officially). 2D or 3D is decided by the array rank, not by the case name.

    Args:
        segs: predicted label map, integer or bool, ``(H, W)`` or ``(D, H, W)``.
        gts: ground-truth label map, same shape.
        spacing: 3D only: the ``spacing`` of the gts npz, SimpleITK ``(x, y, z)`` order in the
            challenge files. Ignored (unit spacing) in 2D.
        tolerance: NSD tolerance, mm in 3D (with the spacing as interpreted) and pixels in 2D.
        spacing_order: ``"official"`` hands ``spacing`` to ``surface_distance`` as stored (the
            official behaviour, axes mismatched for SimpleITK-ordered files); ``"axis"`` reverses
            it to the ``(z, y, x)`` array-axis order.
        nsd_2d: ``"official"`` scores 2D masks as a one-slice volume with spacing (1, 1, 1), as
            officially; ``"contour"`` uses the 2D contour NSD.

    Returns:
        The case scores (unrounded) with one :class:`LabelMetrics` per label.

    Raises:
        TypeError: if an array is not an integer/bool numpy array.
        ValueError: if the shapes differ (both printed), the rank is not 2 or 3, ``gts`` has no
            foreground label, a 3D case has no valid 3-value ``spacing``, or an option is unknown.
    """
    _check_label_maps(segs, gts, spacing_order, nsd_2d)
    max_label = int(gts.max())
    is_3d = gts.ndim == 3
    spacing_t = _scoring_spacing(spacing, gts.shape, spacing_order, nsd_2d)

    label_metrics: list[LabelMetrics] = []
    for label in range(1, max_label + 1):
        gt_i = gts == label
        seg_i = segs == label
        label_dsc = dice(seg_i, gt_i)
        if not is_3d and nsd_2d == "official":
            gt_i = gt_i[..., np.newaxis]
            seg_i = seg_i[..., np.newaxis]
        label_nsd = nsd(seg_i, gt_i, spacing_t, tolerance)
        label_metrics.append(
            LabelMetrics(
                label=label,
                dsc=label_dsc,
                nsd=label_nsd,
                gt_voxels=int(gt_i.sum()),
                pred_voxels=int(seg_i.sum()),
            )
        )

    case_dsc = _mean_skip_nan([m.dsc for m in label_metrics])
    case_nsd = (
        _mean_skip_nan([m.nsd for m in label_metrics]) if case_dsc > NSD_DSC_THRESHOLD else 0.0
    )
    return CaseMetrics(
        dsc=case_dsc,
        nsd=case_nsd,
        labels=tuple(label_metrics),
        is_3d=is_3d,
        spacing=spacing_t,
    )
