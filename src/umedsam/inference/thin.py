"""Thin, branching structures from a stroke (2D): vessels a 256-px mask cannot outline.

The decoder's 256 x 256 logits cannot hold a vessel one to three pixels wide in a 565-px
photograph, and a model trained on compact objects fills the region around the stroke. A stroke
drawn along a vessel says two things the image can then answer at full resolution: the structure
is a ridge (its pixels are brighter or darker than the pixels a few pixels away), and how strong a
ridge it is. So, for a first prediction from strokes (:func:`thin_structure_mask`):

1. **Ridge response.** The Frangi vesselness of the image's ridge channel (the green channel of a
   colour image, where vessels of colour photographs contrast most; the image itself if grey), at
   :data:`SIGMAS` pixels scaled by the image's longer side over 565 (DRIVE's width), for ridges of
   the stroke's polarity (darker or brighter than the ring around the stroke); an image larger
   than :data:`MAX_SIDE` is filtered at that size, its response resized back.
2. **Is the stroke on a ridge?** Only when the median response on the positive stroke is above
   :data:`THIN_RANK` of the image's pixels; otherwise the object is not thin and the model's mask
   stands.
3. **Mask.** The pixels whose response is above :data:`GROW_FRACTION` of the
   :data:`STROKE_QUANTILE` percentile of the response on the stroke, less the pixels a negative
   stroke covers, keeping only the 8-connected pieces that a positive stroke touches (stray
   ridges elsewhere go). So a negative stroke drawn across a wrong branch cuts it, and the part
   it severs from every positive stroke goes with it. The fraction lets the mask follow a vessel of even contrast past the
   stroke, where noise puts some of its pixels below the stroke's own percentile.

The parameters were chosen on DRIVE's training images (docs/interactive_log.md, "Thin
structures from a stroke"). By the rule written there the path is not on for every stroke
(:data:`THIN_STROKES`): the ridge test also fires on some lung and polyp strokes. Users ask for it
per run (``umedsam predict --thin-structures``, ``Predictor.predict(..., thin_strokes=True)``) or
per object in the web app and the napari plugin (a "thin structure" stroke). With a box, the
mask stays inside it.

Without that request, an object is traced when the model's own mask shows that it cannot outline
the structure (:data:`THIN_WHEN_CONTRADICTED`, :func:`contradicts_negatives`): the mask covers
most of the object's negative strokes (on a vessel tree the model fills the retina, negative
strokes between the vessels included) and the positive stroke lies on a ridge.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

THIN_STROKES = False
"""Segment first predictions from strokes on a ridge with :func:`thin_structure_mask`."""

THIN_WHEN_CONTRADICTED = True
"""Without :data:`THIN_STROKES`, trace an object whose model mask contradicts its negative
strokes (:func:`contradicts_negatives`) when its positive stroke lies on a ridge."""

THIN_CONTRADICTION = 0.6
"""Share of the negative strokes' pixels inside the model's mask that counts as a contradiction
(chosen on training images: docs/interactive_log.md)."""

SIGMAS = (1.0, 1.5, 2.0, 3.0)
"""Frangi scales in pixels at a 565-px image (scaled with the image's longer side)."""

THIN_RANK = 0.85
"""A stroke is on a ridge when its median response beats this fraction of the image's pixels."""

STROKE_QUANTILE = 30.0
"""Percentile of the stroke's response that sets the mask's threshold (with GROW_FRACTION)."""

GROW_FRACTION = 0.7
"""The mask's threshold is this fraction of the stroke's STROKE_QUANTILE percentile."""

REFERENCE_SIDE = 565.0
"""The image side at which :data:`SIGMAS` hold (DRIVE's width)."""

MAX_SIDE = 1024
"""Larger images are filtered at this longer side (the cost grows with the pixels)."""

_ENCLOSING = np.ones((3, 3), bool)


def contradicts_negatives(mask: NDArray[np.bool_], strokes: NDArray) -> bool:
    """Whether ``mask`` covers at least :data:`THIN_CONTRADICTION` of the negative pixels (-1)
    of an object's stroke map; False when it has none."""
    negative = np.asarray(strokes) < 0
    count = int(negative.sum())
    return (
        count > 0 and int((np.asarray(mask, bool) & negative).sum()) >= THIN_CONTRADICTION * count
    )


def ridge_channel(image: NDArray) -> NDArray[np.float32]:
    """(H, W) float32: the green channel of an (H, W, 3) image, else the image itself."""
    data = np.asarray(image)
    if data.ndim == 3:
        data = data[..., 1] if data.shape[2] >= 3 else data[..., 0]
    return data.astype(np.float32)


def stroke_is_dark(channel: NDArray[np.float32], positive: NDArray[np.bool_]) -> bool:
    """Whether the stroke lies on a dark ridge (darker than the ring a few pixels around it, in
    the stroke's own slices on a volume)."""
    around = np.ones((1, 3, 3) if positive.ndim == 3 else (3, 3), bool)
    outer = ndimage.binary_dilation(positive, structure=around, iterations=4)
    ring = outer & ~ndimage.binary_dilation(positive, structure=around, iterations=1)
    return bool(ring.any()) and float(channel[positive].mean()) < float(channel[ring].mean())


def ridge_response(channel: NDArray[np.float32], dark: bool) -> NDArray[np.float32]:
    """Frangi vesselness of ``channel`` for dark (or bright) ridges (images with a side over
    :data:`MAX_SIDE` are filtered at that size and the response resized back)."""
    import cv2
    from skimage.filters import frangi

    h, w = channel.shape
    shrink = min(1.0, MAX_SIDE / max(h, w))
    small: NDArray = channel
    if shrink < 1.0:
        size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
        small = cv2.resize(channel, size, interpolation=cv2.INTER_AREA)
    scale = max(1.0, max(small.shape) / REFERENCE_SIDE)
    sigmas = tuple(s * scale for s in SIGMAS)
    response = np.asarray(frangi(small, sigmas=sigmas, black_ridges=dark), np.float32)
    if shrink < 1.0:
        response = np.asarray(cv2.resize(response, (w, h), interpolation=cv2.INTER_LINEAR))
    return response


def thin_structure_mask(
    image: NDArray,
    positive: NDArray[np.bool_],
    negative: NDArray[np.bool_] | None = None,
    responses: dict[bool, NDArray[np.float32]] | None = None,
) -> NDArray[np.bool_] | None:
    """The thin structure a positive stroke lies on, or None if the stroke is not on a ridge.

    Args:
        image: (H, W) or (H, W, 3) image in original pixels.
        positive: (H, W) the object's positive stroke pixels.
        negative: (H, W) its negative stroke pixels, or None.
        responses: the image's ridge responses by polarity (dark: True), filled here as they
            are computed; pass the same dict for the same image and a later stroke skips the
            filter (the app's corrections).
    """
    positive = np.asarray(positive, bool)
    if positive.sum() < 3:
        return None
    channel = ridge_channel(image)
    dark = stroke_is_dark(channel, positive)
    response = None if responses is None else responses.get(dark)
    if response is None:
        response = ridge_response(channel, dark)
        if responses is not None:
            responses[dark] = response
    on_stroke = response[positive]
    if float(np.mean(response < np.median(on_stroke))) < THIN_RANK:
        return None
    mask = response > GROW_FRACTION * np.percentile(on_stroke, STROKE_QUANTILE)
    if negative is not None:  # a negative stroke cuts: what it severs from the seeds goes too
        mask &= ~np.asarray(negative, bool)
    pieces, _ = ndimage.label(mask, structure=_ENCLOSING)
    touched = np.unique(pieces[ndimage.binary_dilation(positive, iterations=2) & mask])
    return np.isin(pieces, touched[touched > 0])
