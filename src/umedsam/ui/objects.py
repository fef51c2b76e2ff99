"""The app's per-object results and the rows the page shows for them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from umedsam.inference.overlay import label_color


@dataclass
class ObjectResult:
    """The mask of one box prompt, cached by its coordinates.

    Attributes:
        mask: (H, W) or (D, H, W) bool.
        iou: IoU-head estimate (3D: on the key slice); NaN where no estimate describes the mask
            (a thin structure traced along the image's ridges).
        heat: uint8 uncertainty map of the mask's shape (0 certain .. 255 one bit), or None.
        confidence: per-object confidence in [0, 1] (2D only), or None.
        slice_iou: 3D: (D,) IoU-head estimate on each slice the object covers, NaN elsewhere.
    """

    mask: NDArray[np.bool_]
    iou: float
    heat: NDArray[np.uint8] | None = None
    confidence: float | None = None
    slice_iou: NDArray[np.float32] | None = None


def _per_slice(values: NDArray | None) -> list[float | None] | None:
    """Per-slice estimates for JSON: rounded, None where the object is absent."""
    if values is None:
        return None
    return [None if not np.isfinite(v) else round(float(v), 3) for v in values]


def rounded(value: float | None) -> float | None:
    """``value`` rounded to 4 decimals for JSON (None stays None)."""
    return None if value is None else round(float(value), 4)


def object_rows(keys: list, results: dict, segs: NDArray, spacing: tuple[float, ...]) -> list[dict]:
    """JSON rows of the objects ``keys`` (label i + 1 in ``segs``): box, clicks, IoU estimate
    (None when unknown), confidence, per-slice IoU, voxel count, size in mm^2 / mm^3 and colour."""
    voxel = math.prod(spacing)
    rows = []
    for label, key in enumerate(keys, start=1):
        count = int((segs == label).sum())
        found: ObjectResult = results[key]
        rows.append(
            {
                "label": label,
                "box": list(key[0]),
                "clicks": len(key[1]),
                "iou": rounded(found.iou) if math.isfinite(found.iou) else None,
                "confidence": rounded(found.confidence),
                "slice_iou": _per_slice(found.slice_iou),
                "voxels": count,
                "size_mm": round(count * voxel, 2),
                "color": list(label_color(label)),
            }
        )
    return rows


def reference_dsc(segs: NDArray, gts: NDArray, count: int) -> list[float]:
    """DSC of each object ``1..count`` of ``segs`` against the reference label it overlaps most.

    An object is scored against the label its mask covers most (not against the label with its
    own number: a user's first box need not be the reference's label 1); an empty mask, or one
    over background only, scores 0.
    """
    from umedsam.evaluation.metrics import dice

    reference = np.asarray(gts)
    scores = []
    for label in range(1, count + 1):
        mask = segs == label
        overlap = np.bincount(reference[mask].astype(np.int64).ravel(), minlength=1)
        overlap[0] = 0
        if not mask.any() or not overlap.any():
            scores.append(0.0)
            continue
        target = int(np.argmax(overlap))
        scores.append(round(float(dice(mask, reference == target)), 4))
    return scores
