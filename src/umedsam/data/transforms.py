"""LiteMedSAM pre- and post-processing as pure functions.

These reproduce the official CVPR24 LiteMedSAM inference exactly: the longest side is resized to
the model size with OpenCV INTER_AREA (rounded half up), intensities are min-max normalised to
[0, 1] in float64 and cast to float32, and the image is zero-padded at the bottom/right. Boxes are
scaled by size / max(H, W) and truncated to integers. Logits are cropped to the resized extent and
bilinearly resized back to the original size.

Everything is numpy (and OpenCV), so the ONNX Runtime and OpenVINO engines never import torch.
:func:`resize_bilinear` reproduces ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)``, including its float32 rounding, so masks equal those of the official code.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

MODEL_SIZE = 256
NEXT_SLICE_BOX_MARGIN = 3  # px at model scale, as the official 3D propagation widens boxes


def resized_hw(orig_hw: tuple[int, int], size: int = MODEL_SIZE) -> tuple[int, int]:
    """(h, w) after scaling the longest side of ``orig_hw`` to ``size`` (rounded half up)."""
    h, w = orig_hw
    scale = size * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_longest_side(image: NDArray, size: int = MODEL_SIZE) -> NDArray:
    """Resize (H, W) or (H, W, C) so that the longest side is ``size`` (cv2 INTER_AREA)."""
    new_h, new_w = resized_hw(image.shape[:2], size)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)


def normalize_minmax(image: NDArray) -> NDArray[np.float32]:
    """Min-max normalise to [0, 1] (float64 arithmetic, float32 result; constant image -> 0)."""
    lo = image.min()
    span = max(float(image.max()) - float(lo), 1e-8)
    return ((image - lo) / span).astype(np.float32)


def pad_bottom_right(image: NDArray, size: int = MODEL_SIZE) -> NDArray:
    """Zero-pad (h, w, ...) at the bottom and right to (size, size, ...)."""
    pad_h, pad_w = size - image.shape[0], size - image.shape[1]
    pad = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad)


def to_rgb(image: NDArray) -> NDArray:
    """(H, W) or (H, W, 1) -> (H, W, 3) by repetition; (H, W, 3) unchanged."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=-1)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=-1)
    return image


def preprocess_image(
    image: NDArray, size: int = MODEL_SIZE
) -> tuple[NDArray[np.float32], tuple[int, int]]:
    """Official LiteMedSAM preprocessing of one 2D image.

    Args:
        image: (H, W) grey or (H, W, 3) RGB, any real dtype (uint8 in the challenge data).
        size: model input side.

    Returns:
        float32 array (1, 3, size, size) in [0, 1], and the (h, w) of the resized content.
    """
    resized = resize_longest_side(to_rgb(image), size)
    padded = pad_bottom_right(normalize_minmax(resized), size)
    array = np.ascontiguousarray(padded.transpose(2, 0, 1))[None]
    return array, (resized.shape[0], resized.shape[1])


def preprocess_slices(
    slices: NDArray, size: int = MODEL_SIZE
) -> tuple[NDArray[np.float32], tuple[int, int]]:
    """Preprocess a stack of grey slices (N, H, W) at once, identical to preprocess_image per slice.

    A grey slice is resized once and broadcast to three channels (INTER_AREA works per channel, so
    this equals resizing the replicated RGB image).

    Returns:
        float32 array (N, 3, size, size) and the resized (h, w) shared by all slices.
    """
    n = slices.shape[0]
    new_h, new_w = resized_hw(slices.shape[1:3], size)
    out = np.zeros((n, size, size), dtype=np.float32)
    for i in range(n):
        resized = cv2.resize(slices[i], (new_w, new_h), interpolation=cv2.INTER_AREA)
        out[i, :new_h, :new_w] = normalize_minmax(resized)
    array = np.ascontiguousarray(np.broadcast_to(out[:, None], (n, 3, size, size)))
    return array, (new_h, new_w)


def boxes_to_model_frame(
    boxes_xyxy: NDArray, orig_hw: tuple[int, int], size: int = MODEL_SIZE
) -> NDArray[np.float32]:
    """Scale (N, 4) xyxy boxes from original pixels to the model frame, truncating to integers."""
    ratio = size / max(orig_hw)
    scaled = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) * ratio
    return np.trunc(scaled).astype(np.float32)


def mask_to_model_box(
    mask: NDArray, label: int = 1, size: int = MODEL_SIZE, margin: int = NEXT_SLICE_BOX_MARGIN
) -> NDArray[np.float32] | None:
    """Box prompt for the next slice from a mask in original pixels (official 3D propagation).

    The mask is painted with ``label`` (the official code resizes the uint8 label map, so the label
    value changes which partially covered pixels survive INTER_AREA), resized like the image and
    padded to the model frame; its tight box is widened by ``margin`` px and clipped to the
    ``size`` x ``size`` frame (not to the resized extent), as the official code does.

    Returns:
        (4,) float32 xyxy in the model frame, or None if the resized mask is empty.
    """
    painted = mask.astype(np.uint8) * np.uint8(min(max(label, 1), 255))
    small = resize_longest_side(painted, size)
    ys, xs = np.nonzero(small)
    if ys.size == 0:
        return None
    h, w = size, size  # the official code pads before taking the box
    box = [
        max(0, int(xs.min()) - margin),
        max(0, int(ys.min()) - margin),
        min(w, int(xs.max()) + margin),
        min(h, int(ys.max()) + margin),
    ]
    return np.asarray(box, dtype=np.float32)


def _bilinear_axis(
    in_size: int, out_size: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]]:
    """Source indices and float32 weights along one axis, as PyTorch computes them.

    PyTorch evaluates ``scale * (dst + 0.5) - 0.5`` with a fused multiply-add in float32; doing
    the arithmetic in float64 and rounding once to float32 gives the same value.
    """
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    dst = np.arange(out_size, dtype=np.float64)
    real = np.maximum((scale * (dst + 0.5) - 0.5).astype(np.float32), np.float32(0))
    i0 = real.astype(np.int64)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = np.clip(real - i0.astype(np.float32), 0, 1).astype(np.float32)
    w0 = (np.float32(1) - w1).astype(np.float32)
    return i0, i1, w0, w1


def _blend(a: NDArray, wa: NDArray, b: NDArray, wb: NDArray) -> NDArray[np.float32]:
    """``a * wa + b * wb`` rounded like PyTorch's kernel (``b * wb`` rounded, then one FMA)."""
    first = (b * wb).astype(np.float32)
    return (first.astype(np.float64) + a.astype(np.float64) * wa.astype(np.float64)).astype(
        np.float32
    )


def resize_bilinear(array: NDArray, out_hw: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear resize of the last two axes (half-pixel centres, no antialiasing).

    Equals ``F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)`` bit for bit
    when enlarging (the usual case: low-resolution logits to the image size) and to within one
    float32 rounding step when shrinking.
    """
    x = np.asarray(array, dtype=np.float32)
    rows, cols = out_hw
    r0, r1, hw0, hw1 = _bilinear_axis(x.shape[-2], rows)
    c0, c1, ww0, ww1 = _bilinear_axis(x.shape[-1], cols)
    across = _blend(x[..., c0], ww0, x[..., c1], ww1)
    return _blend(across[..., r0, :], hw0[:, None], across[..., r1, :], hw1[:, None])


def postprocess_logits(
    low_res_logits: NDArray, new_hw: tuple[int, int], orig_hw: tuple[int, int]
) -> NDArray[np.float32]:
    """Crop (N, 1, S, S) logits to the resized extent and resize bilinearly to (N, 1, H, W)."""
    cropped = np.asarray(low_res_logits)[..., : new_hw[0], : new_hw[1]]
    return resize_bilinear(cropped, orig_hw)


#: Smallest float32 logit whose sigmoid PyTorch rounds above 0.5 (checked against torch in tests).
#: Tiny positive logits have a float32 sigmoid of exactly 0.5, so the mask is not quite logits > 0.
MASK_LOGIT_THRESHOLD = np.float32(8.9406974e-08)


def logits_to_mask(logits: NDArray) -> NDArray[np.bool_]:
    """Binary mask as the official code computes it: ``torch.sigmoid(logits) > 0.5``."""
    return np.asarray(logits) >= MASK_LOGIT_THRESHOLD


def _candidate_span(
    hit: NDArray[np.bool_], i0: NDArray[np.int64], i1: NDArray[np.int64]
) -> tuple[int, int] | None:
    """Output index range [lo, hi) whose two source cells along one axis include a hit."""
    where = np.flatnonzero(hit)
    if where.size == 0:
        return None
    # i0 and i1 never decrease along the output axis, so the matching outputs are contiguous.
    out = np.flatnonzero((i1 >= where[0]) & (i0 <= where[-1]))
    if out.size == 0:  # shrinking: the hits lie between the cells any output reads
        return None
    return int(out[0]), int(out[-1]) + 1


def low_res_to_masks(
    low_res_logits: NDArray,
    new_hw: tuple[int, int],
    orig_hw: tuple[int, int],
    threshold: np.float32 = MASK_LOGIT_THRESHOLD,
) -> NDArray[np.bool_]:
    """Full-resolution masks (N, H, W) of (N, 1, S, S) logits, without full-resolution logits.

    Equal, pixel for pixel, to ``logits_to_mask(postprocess_logits(...))[:, 0]``, but it only
    interpolates where a mask pixel is possible. A bilinear output is a convex combination of
    its four source logits, so it can only reach the threshold if one source does. Float
    rounding (at most ~1e-6 max|logit| over the two blends) is covered by a margin of
    1e-3 + 1e-5 max|logit|, ten or more times that bound. Each object is
    therefore interpolated on the output rows and columns whose source cells reach
    ``threshold - margin``; the values there are the very float32 numbers the full resize
    computes, and every other pixel is background. For small objects on large images (many
    boxes on a microscopy slide) this is most of the post-processing time.

    ``threshold``: a pixel is on where the resized value is >= it (another model family's rule,
    e.g. probabilities above 0.5: :mod:`umedsam.data.frames`).
    """
    low = np.asarray(low_res_logits)
    cropped = low.reshape(low.shape[0], *low.shape[-2:])[:, : new_hw[0], : new_hw[1]]
    rows, cols = orig_hw
    r0, r1, hw0, hw1 = _bilinear_axis(cropped.shape[-2], rows)
    c0, c1, ww0, ww1 = _bilinear_axis(cropped.shape[-1], cols)
    masks = np.zeros((cropped.shape[0], rows, cols), dtype=bool)
    for i, logits in enumerate(cropped.astype(np.float32, copy=False)):
        margin = np.float32(1e-3 + 1e-5 * float(np.abs(logits).max(initial=0.0)))
        candidate = logits >= threshold - margin
        row_span = _candidate_span(candidate.any(axis=1), r0, r1)
        col_span = _candidate_span(candidate.any(axis=0), c0, c1)
        if row_span is None or col_span is None:
            continue
        (y0, y1), (x0, x1) = row_span, col_span
        lo, hi = int(r0[y0]), int(r1[y1 - 1]) + 1  # source rows the output rows read
        src = logits[lo:hi]
        across = _blend(src[:, c0[x0:x1]], ww0[x0:x1], src[:, c1[x0:x1]], ww1[x0:x1])
        block = _blend(
            across[r0[y0:y1] - lo], hw0[y0:y1, None], across[r1[y0:y1] - lo], hw1[y0:y1, None]
        )
        masks[i, y0:y1, x0:x1] = block >= threshold
    return masks
