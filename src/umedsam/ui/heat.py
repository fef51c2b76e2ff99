"""Uncertainty pictures for the web app, when :mod:`umedsam.inference.uncertainty` is installed.

Per object, the decoder's low-resolution logits give a per-pixel entropy map (bits in [0, 1]) and
a confidence score; the app shows the highest entropy over the objects as a heat overlay.
"""

from __future__ import annotations

import logging
from types import ModuleType

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

_NEEDED = ("crop_to_content", "object_scores", "max_uncertainty_map")


def uncertainty_tools() -> ModuleType | None:
    """The uncertainty module, or None when it is missing or lacks the functions used here."""
    try:
        from umedsam.inference import uncertainty
    except ImportError:
        return None
    if not all(hasattr(uncertainty, name) for name in _NEEDED):
        logger.warning("umedsam.inference.uncertainty lacks %s; no uncertainty overlay", _NEEDED)
        return None
    return uncertainty


def object_heat(
    low_res_logits: NDArray,
    iou: NDArray,
    new_hw: tuple[int, int],
    orig_hw: tuple[int, int],
    boxes_model: NDArray | None = None,
    weights: tuple[tuple[str, float], ...] | None = None,
) -> tuple[list[NDArray[np.uint8]], NDArray[np.float32]] | None:
    """Per-object uncertainty maps at full size and per-object confidence.

    Args:
        low_res_logits: (N, 1, S, S) decoder logits in the model frame.
        iou: (N,) IoU-head estimates.
        new_hw: extent of the resized image inside the S x S frame.
        orig_hw: (H, W) of the original image.
        boxes_model: (N, 4) prompt boxes in the model frame (enables the box-agreement cue, as
            in ``umedsam predict --uncertainty``).
        weights: the model's cue weights (``cue_weights_of(backend)``), as ``umedsam predict``
            combines them.

    Returns:
        ``(maps, confidence)``: N uint8 (H, W) maps (0 = certain, 255 = one bit of entropy) and
        (N,) confidences in [0, 1]; None when the uncertainty module is not available.
    """
    tools = uncertainty_tools()
    if tools is None:
        return None
    try:
        base = tools.crop_to_content(low_res_logits[:, 0], new_hw)
        scores, maps = tools.object_scores(
            base, np.asarray(iou, dtype=np.float32), boxes_model=boxes_model, weights=weights
        )
        heat = [tools.max_uncertainty_map(maps[i : i + 1], orig_hw) for i in range(maps.shape[0])]
        confidence = np.asarray(scores.confidence, dtype=np.float32)
    except (TypeError, ValueError, RuntimeError, AttributeError) as err:
        # the overlay is optional: a mismatch with the uncertainty module must not stop segmenting
        logger.warning("uncertainty overlay unavailable: %s", err)
        return None
    return heat, confidence
