"""Overlay images (pure arrays): mask outlines and boxes drawn on the image."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray


def label_color(label: int) -> tuple[int, int, int]:
    """A stable, distinct RGB colour per label (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def _to_rgb_uint8(image: NDArray) -> NDArray[np.uint8]:
    img = np.asarray(image, dtype=np.float64)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / max(hi - lo, 1e-8) * 255.0
    img8 = img.astype(np.uint8)
    return np.repeat(img8[:, :, None], 3, axis=-1) if img8.ndim == 2 else img8


def render_overlay(
    image: NDArray, segs: NDArray, boxes_xyxy: NDArray | None = None, heat: NDArray | None = None
) -> NDArray[np.uint8]:
    """RGB (H, W, 3) uint8 picture of ``image`` with each label's outline and optional boxes.

    Args:
        image: (H, W) or (H, W, 3).
        segs: (H, W) label map.
        boxes_xyxy: optional (N, 4) boxes; box i is drawn in label i+1's colour.
        heat: optional (H, W) uint8 map (e.g. uncertainty) blended in as a heat map.
    """
    canvas = _to_rgb_uint8(image).copy()
    if heat is not None:
        colored = cv2.applyColorMap(np.asarray(heat, dtype=np.uint8), cv2.COLORMAP_INFERNO)
        colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
        alpha = (np.asarray(heat, dtype=np.float32) / 255.0)[..., None] * 0.6
        canvas = (canvas * (1 - alpha) + colored * alpha).astype(np.uint8)
    for label in np.unique(segs):
        if label == 0:
            continue
        mask = (segs == label).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, label_color(int(label)), 1)
    if boxes_xyxy is not None:
        for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes_xyxy).reshape(-1, 4)):
            cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1), int(y1)), label_color(i + 1), 1)
    return canvas
