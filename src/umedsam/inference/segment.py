"""Whole-case segmentation on arrays: a 2D image with N boxes, or a volume with N 3D boxes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from umedsam.data.npz import Case
from umedsam.inference.backends.base import Backend
from umedsam.inference.predictor import Predictor
from umedsam.inference.propagation import (
    EmbeddingCache,
    PropagationStats,
    paint_labels,
    propagate,
)


@dataclass(frozen=True)
class CaseSegmentation:
    """Label map and per-object IoU-head scores of one case.

    Attributes:
        segs: (H, W) or (D, H, W) uint8/uint16 label map, label i+1 for box i.
        iou: (N,) IoU estimate per object (3D: on its key slice).
        stats: propagation counters (3D only).
    """

    segs: NDArray
    iou: NDArray[np.float32]
    stats: PropagationStats | None = None


def label_dtype(num_objects: int) -> type[np.unsignedinteger]:
    """uint8 for up to 255 objects, else uint16 (the official uint8 maps overflow past 255)."""
    return np.uint8 if num_objects <= 255 else np.uint16


def segment_image(backend: Backend, image: NDArray, boxes: NDArray) -> CaseSegmentation:
    """Segment N boxes (N, 4) on one 2D image: one encoder call, batched decoder calls."""
    predictor = Predictor(backend)
    predictor.set_image(image)
    pred = predictor.predict(boxes, return_logits=False)
    segs = np.zeros(image.shape[:2], dtype=label_dtype(len(boxes)))
    paint_labels(segs, pred.masks, np.arange(1, len(boxes) + 1))
    return CaseSegmentation(segs=segs, iou=pred.iou)


def segment_volume_case(
    backend: Backend,
    volume: NDArray,
    boxes_3d: NDArray,
    cache_mb: float = 1024.0,
    progress: Callable[[int], None] | None = None,
) -> CaseSegmentation:
    """Segment N 3D boxes (N, 6) in a (D, H, W) volume by slice propagation."""
    n = boxes_3d.shape[0]
    segs = np.zeros(volume.shape, dtype=label_dtype(n))
    iou = np.zeros(n, dtype=np.float32)
    stats = PropagationStats()
    key = {int(i): int((b[5] - b[2]) / 2 + b[2]) for i, b in enumerate(boxes_3d)}
    for res in propagate(backend, volume, boxes_3d, EmbeddingCache(cache_mb), stats, progress):
        paint_labels(segs[res.z], res.masks, res.object_ids + 1)
        for k, i in enumerate(res.object_ids):
            if res.z == key[int(i)] and res.direction == "up":
                iou[i] = res.iou[k]
    return CaseSegmentation(segs=segs, iou=iou, stats=stats)


def segment_case(
    backend: Backend,
    case: Case,
    cache_mb: float = 1024.0,
    progress: Callable[[int], None] | None = None,
) -> CaseSegmentation:
    """Segment a validated challenge case (2D or 3D)."""
    if case.is_3d:
        return segment_volume_case(backend, case.imgs, case.boxes, cache_mb, progress)
    return segment_image(backend, case.imgs, case.boxes)
