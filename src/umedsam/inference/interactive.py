"""Interactive cases on arrays: boxes, clicks, scribbles and a previous mask, in 2D and 3D.

2D: every object's prompts (its box if any, all its clicks, its scribble strokes, and its
previous mask as the dense prompt) are decoded in one batch on one image embedding.

3D corrections (the rule documented in docs/interactive.md): an object without clicks starts on
its box's start slice (the CVPR 2025 ``z_mid``, else the middle slice) as in box-only
propagation. An object with clicks restarts on the slice of its newest click: that slice is
decoded with its clicks, the object's box and, for a model trained for it, the previous mask as
dense prompt; the mask then propagates from there towards both ends of the object, each slice
with the box of its neighbour's new mask, its own clicks and its previous mask, and stops in a
direction as soon as a new mask agrees with the previous one on its slice (DSC >= 0.9) or is
more than :data:`CORRECTION_REACH` slices from the start slice: a correction changes the slices
it reaches, the previous masks stand beyond. The z-range grows to take in foreground clicks
beyond the box. Objects without a box stop
where their mask vanishes. A caller that keeps a :class:`SliceEmbeddingCache` for the volume
encodes every slice once across all steps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from umedsam.data.npz import Case, CasePrompts, label_dtype
from umedsam.errors import InputError
from umedsam.inference import agreement
from umedsam.inference.backends.base import Backend
from umedsam.inference.predictor import Predictor
from umedsam.inference.prompts import mask_to_logits, sample_stroke_points
from umedsam.inference.propagation import (
    PropagationStats,
    SliceEmbeddingCache,
    VolumePrompts,
    key_slices,
    paint_labels,
    propagate,
)

PROMPT_KINDS = ("box", "click", "scribble", "mask")
"""Prompt kinds a case can hold (``mask``: a previous prediction)."""


def case_prompt_kinds(case: Case) -> set[str]:
    """The kinds of prompt a case holds (see :data:`PROMPT_KINDS`)."""
    p = case.prompts
    if p is None:
        return {"box"}
    kinds = set()
    if p.boxes is not None and not np.isnan(p.boxes).all():
        kinds.add("box")
    if any(len(c) for c in p.clicks):
        kinds.add("click")
    if p.scribbles is not None:
        kinds.add("scribble")
    if p.prev_pred is not None:
        kinds.add("mask")
    return kinds


def _paint(shape: tuple[int, ...], masks: NDArray, labels: NDArray) -> NDArray:
    """Label map of per-object masks; where they overlap the higher label wins."""
    segs = np.zeros(shape, dtype=label_dtype(int(labels.max())))
    order = np.argsort(labels)
    paint_labels(segs, masks[order], labels[order])
    return segs


def segment_interactive_image(
    backend: Backend,
    image: NDArray,
    prompts: CasePrompts,
    mask_prompts: bool = True,
    thin_strokes: bool | None = None,
) -> tuple[NDArray, NDArray[np.float32]]:
    """Label map and per-object IoU estimates of a 2D interactive case.

    Args:
        backend: the engine.
        image: (H, W) or (H, W, 3).
        prompts: the case's prompts.
        mask_prompts: feed ``prompts.prev_pred`` as each object's dense prompt.
        thin_strokes: see :meth:`Predictor.predict` (None: the package's rule).
    """
    n = len(prompts.labels)
    predictor = Predictor(backend)
    predictor.set_image(image)
    side = predictor.frame.low_res
    points = [c[:, ::-1].astype(np.float64) for c in prompts.clicks]  # (y, x) -> (x, y)
    scribbles = None
    if prompts.scribbles is not None:  # an object without strokes of any kind gets none
        maps = [prompts.scribble_map(i) for i in range(n)]
        scribbles = [m if m is not None and m.any() else None for m in maps]
    mask_input = None
    if mask_prompts and prompts.prev_pred is not None:
        mask_input = np.full((n, 1, side, side), np.nan, np.float32)
        for i, label in enumerate(prompts.labels):
            previous = prompts.prev_pred == label
            if previous.any():
                mask_input[i] = mask_to_logits(previous, predictor.frame)
    pred = predictor.predict(
        prompts.boxes,
        points=points,
        point_labels=list(prompts.click_labels),
        scribbles=scribbles,
        mask_input=mask_input,
        return_logits=False,
        thin_strokes=thin_strokes,
    )
    masks = np.array(pred.masks, bool)
    if prompts.prev_pred is not None:  # a correction: the measured correction rules
        for i, label in enumerate(prompts.labels):
            masks[i] = agreement.settle_correction(
                prompts.prev_pred == label,
                masks[i],
                None if scribbles is None else scribbles[i],
                points[i],
                np.asarray(prompts.click_labels[i]),
            )
    return _paint(image.shape[:2], masks, prompts.labels), pred.iou


def carried_slices(
    previous: NDArray[np.bool_] | None, z: int, y: int, x: int, label: int, reach: int
) -> list[int]:
    """Neighbour slices a 3D click also applies to (see ``CLICK_REACH``).

    A click says the previous mask is wrong at (y, x) on slice z (a negative click on the mask, a
    positive one off it). Up to ``reach`` slices on each side, the click is copied to the
    neighbours where the previous mask is wrong in the same way at (y, x), stopping in a
    direction at the first slice where it is not.

    Args:
        previous: (D, H, W) previous mask of the object, or None (nothing carried).
    """
    if previous is None or reach <= 0:
        return []
    wrong = bool(label == 0)  # a negative click contradicts a mask that is on there
    if bool(previous[z, y, x]) != wrong:
        return []  # the click does not contradict the previous mask: keep it on its slice
    out = []
    for step in (-1, 1):
        for k in range(1, reach + 1):
            zz = z + step * k
            if not 0 <= zz < previous.shape[0] or bool(previous[zz, y, x]) != wrong:
                break
            out.append(zz)
    return out


CLICK_REACH = 2
"""Slices on each side that a 3D click reaches (:func:`carried_slices`); chosen on train cases
with the CVPR 2025 protocol (docs/interactive_log.md)."""
SETTLE_DSC: float | None = 0.9
"""A 3D correction stops re-propagating in a direction once an object's new mask on a slice
agrees this well (DSC) with its previous one (``VolumePrompts.settle_dsc``; None: to the ends)."""
CLICK_BOXES = True
"""Retry a 3D slice whose mask contradicts its clicks with boxes that agree with them
(:mod:`umedsam.inference.click_boxes`, ``VolumePrompts.click_boxes``)."""
CORRECTION_REACH: int | None = 2
"""Slices on each side of its start slice that a 3D correction re-propagates an object with a
previous mask (``VolumePrompts.correction_reach``; None: as far as :data:`SETTLE_DSC` lets it).
Chosen by a held-out rule on training volumes (docs/interactive_log.md)."""
PROPAGATED_THRESHOLD = 0.5
"""Logit above which a pixel is on an object's mask in 3D, for models that take mask prompts
(``VolumePrompts.propagated_threshold``): on every slice but a start slice prompted by its box
alone, which keeps 0 (:data:`CUT_CLICKED_START`). Chosen by a held-out rule on training volumes
(docs/interactive_log.md)."""
CUT_CLICKED_START = True
"""A correction's start slice is cut at :data:`PROPAGATED_THRESHOLD` too; only a start slice
prompted by its box alone keeps 0 (``VolumePrompts.cut_clicked_start``). Chosen by a held-out
rule on training volumes (docs/interactive_log.md)."""
MIRROR_SLICES = False
"""Decode every slice of a 3D interactive case also on its mirror image and average the two
(``VolumePrompts.mirror_slices``), for models that take mask prompts; doubles the encoder and
decoder work of a volume (docs/interactive_log.md)."""


def _volume_prompts(
    prompts: CasePrompts,
    shape: tuple[int, int, int],
    scribble_points: int = 8,
    click_reach: int | None = None,
) -> tuple[NDArray, NDArray, dict[tuple[int, int], tuple[NDArray, NDArray]], NDArray]:
    """Boxes (N, 6), start slices, per-slice clicks and box flags of a 3D interactive case."""
    reach = CLICK_REACH if click_reach is None else click_reach
    d, h, w = shape
    n = len(prompts.labels)
    boxes = np.zeros((n, 6), np.float64)
    boxes[:, [3, 4, 5]] = (w, h, d - 1)
    has_box: NDArray[np.bool_] = np.zeros(n, bool)
    if prompts.boxes is not None:
        has_box = np.asarray(~np.isnan(prompts.boxes).any(1), bool)
        boxes[has_box] = prompts.boxes[has_box]
    boxes[~has_box, 2] = 0
    starts = key_slices(boxes)
    if prompts.start_slices is not None:  # -1: no start slice given for that object
        given_start = has_box & (prompts.start_slices >= 0)
        starts = np.where(given_start, prompts.start_slices, starts)
    clicks: dict[tuple[int, int], list[tuple[NDArray, int]]] = defaultdict(list)
    newest: dict[int, int] = {}
    fg_slices: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        previous = None
        if reach > 0 and prompts.prev_pred is not None:
            previous = prompts.prev_pred == prompts.labels[i]
        for (z, y, x), label in zip(prompts.clicks[i], prompts.click_labels[i], strict=True):
            clicks[(i, int(z))].append((np.array([x, y], np.float64), int(label)))
            newest[i] = int(z)
            if label == 1:
                fg_slices[i].append(int(z))
            for zz in carried_slices(previous, int(z), int(y), int(x), int(label), reach):
                clicks[(i, zz)].append((np.array([x, y], np.float64), int(label)))
        if prompts.scribbles is not None:
            smap = prompts.scribble_map(i)
            assert smap is not None
            for z in np.flatnonzero((smap != 0).reshape(d, -1).any(1)):
                for value, label in ((1, 1), (-1, 0)):
                    for xy in sample_stroke_points(smap[z] == value, scribble_points):
                        clicks[(i, int(z))].append((xy, label))
                        if label == 1:
                            fg_slices[i].append(int(z))
                            newest.setdefault(i, int(z))
    for i in range(n):
        prev_z = np.zeros(0, np.int64)
        if prompts.prev_pred is not None:
            prev_z = np.flatnonzero((prompts.prev_pred == prompts.labels[i]).reshape(d, -1).any(1))
        if not has_box[i]:
            if not fg_slices[i] and prev_z.size == 0:
                raise InputError(
                    None,
                    f"object {i + 1} has no box, no foreground click or stroke and no previous "
                    "mask: nothing says where it is",
                )
            boxes[i, 2], boxes[i, 5] = 0, d - 1
            starts[i] = fg_slices[i][-1] if fg_slices[i] else int(np.median(prev_z))
        if fg_slices[i]:  # foreground clicks beyond the box extend the object's z-range
            boxes[i, 2] = min(boxes[i, 2], min(fg_slices[i]))
            boxes[i, 5] = max(boxes[i, 5], max(fg_slices[i]))
        if i in newest:
            starts[i] = int(np.clip(newest[i], boxes[i, 2], boxes[i, 5]))
    packed = {
        key: (np.stack([xy for xy, _ in items]), np.array([lab for _, lab in items]))
        for key, items in clicks.items()
    }
    return boxes, starts.astype(np.int64), packed, has_box


def _rule_prompts(
    prompts: CasePrompts,
    clicks: dict[tuple[int, int], tuple[NDArray, NDArray]],
    has_box: NDArray[np.bool_],
    mask_prompts: bool,
) -> VolumePrompts:
    """The 3D correction rule's settings (this module's switches) with a case's prompts."""
    return VolumePrompts(
        clicks=clicks,
        prev_masks=prompts.prev_pred,
        labels=prompts.labels,
        has_box=has_box,
        mask_prompts=mask_prompts,
        settle_dsc=SETTLE_DSC,
        click_boxes=CLICK_BOXES,
        correction_reach=CORRECTION_REACH,
        propagated_threshold=PROPAGATED_THRESHOLD if mask_prompts else 0.0,
        cut_clicked_start=CUT_CLICKED_START,
        mirror_slices=MIRROR_SLICES and mask_prompts,
    )


def segment_interactive_volume(
    backend: Backend,
    volume: NDArray,
    prompts: CasePrompts,
    mask_prompts: bool = True,
    embeddings: SliceEmbeddingCache | None = None,
    cache_mb: float = 1024.0,
    stats: PropagationStats | None = None,
    slice_iou: NDArray[np.float32] | None = None,
    click_reach: int | None = None,
    clip_to_box: bool = False,
    thin_strokes: bool | None = None,
    spacing_zyx: Sequence[float] | None = None,
) -> tuple[NDArray, NDArray[np.float32]]:
    """Label map and per-object start-slice IoU of a 3D interactive case (see module docstring).

    Args:
        backend: the engine.
        volume: (D, H, W).
        prompts: the case's prompts.
        mask_prompts: a model trained for interactive prompts: feed ``prompts.prev_pred`` as
            dense prompts and cut masks at :data:`PROPAGATED_THRESHOLD` (False: neither).
        embeddings: a slice-embedding cache kept for this volume across steps (None: private).
        cache_mb: bound of the private cache.
        stats: optional counters.
        slice_iou: optional (N, D) array filled with each object's IoU-head estimate per slice
            (left as given where the object is absent).
        click_reach: slices on each side a click reaches (None: :data:`CLICK_REACH`).
        clip_to_box: keep each object's propagated boxes inside its box's x/y range, widened to
            take in its foreground clicks, when the boxes are 3D extents (an (N, 6) array; not
            the CVPR 2025 ``z_mid`` dicts, whose x/y range is one slice's).
        thin_strokes: trace objects drawn with strokes alone as the thin structure the strokes
            lie on (:func:`traced_objects`; NaN IoU); None or False: the model segments them
            (volumes have no automatic rule).
        spacing_zyx: voxel size in mm for the thin-structure filter (None: isotropic).
    """
    traced = traced_objects(volume, prompts, spacing_zyx) if thin_strokes else {}
    shape = (int(volume.shape[0]), int(volume.shape[1]), int(volume.shape[2]))
    boxes, starts, clicks, has_box = _volume_prompts(prompts, shape, click_reach=click_reach)
    vp = _rule_prompts(prompts, clicks, has_box, mask_prompts)
    extents = None
    if clip_to_box and prompts.boxes is not None and prompts.start_slices is None:
        extents = _extents(boxes, prompts)
    n = len(prompts.labels)
    masks = np.zeros((n, *shape), bool)
    if prompts.prev_pred is not None:  # slices a correction does not reach keep their masks
        for i, label in enumerate(prompts.labels):
            masks[i] = prompts.prev_pred == label
    iou = np.zeros(n, np.float32)
    results = (
        propagate(
            backend,
            volume,
            boxes,
            start_slices=starts,
            embeddings=embeddings,
            cache_mb=cache_mb,
            stats=stats,
            prompts=vp,
            clip_boxes=extents,
        )
        if len(traced) < n
        else ()
    )  # all traced: no model call
    for res in results:
        masks[res.object_ids, res.z] = res.masks
        iou[res.object_ids[res.is_start]] = res.iou[res.is_start]
        if slice_iou is not None:
            slice_iou[res.object_ids, res.z] = res.iou
    for i, found in traced.items():  # no estimate describes a trace
        masks[i], iou[i] = found, np.nan
        if slice_iou is not None:
            slice_iou[i] = np.nan
    return _paint(shape, masks, prompts.labels), iou


def traced_objects(
    volume: NDArray, prompts: CasePrompts, spacing_zyx: Sequence[float] | None = None
) -> dict[int, NDArray[np.bool_]]:
    """Objects of a 3D case traced as thin structures (:mod:`umedsam.inference.thin_volume`),
    by index: first predictions from strokes (no click, no previous mask) whose positive strokes
    lie on a ridge, inside their box when it is a 3D extent."""
    from umedsam.inference.thin_volume import VolumeTracer

    if prompts.scribbles is None:
        return {}
    tracer = VolumeTracer(volume, spacing_zyx)
    extents = prompts.boxes if prompts.start_slices is None else None
    out = {}
    for i, label in enumerate(prompts.labels):
        smap = prompts.scribble_map(i)
        earlier = prompts.prev_pred is not None and bool((prompts.prev_pred == label).any())
        if smap is None or not (smap > 0).any() or len(prompts.clicks[i]) or earlier:
            continue
        found = tracer.trace(smap, None if extents is None else extents[i])
        if found is not None:
            out[i] = found
    return out


def _extents(boxes: NDArray, prompts: CasePrompts) -> NDArray:
    """(N, 4) x/y ranges of the (N, 6) boxes, widened to take in each object's foreground clicks
    and strokes (a user who marks the object outside its box says the box was too small)."""
    out = boxes[:, [0, 1, 3, 4]].astype(np.float64)
    for i, (clicks, labels) in enumerate(zip(prompts.clicks, prompts.click_labels, strict=True)):
        xy = [np.asarray(clicks).reshape(-1, 3)[np.asarray(labels) == 1][:, [2, 1]]]
        smap = prompts.scribble_map(i) if prompts.scribbles is not None else None
        if smap is not None:
            xy.append(np.argwhere(smap == 1)[:, [2, 1]])
        fg = np.concatenate(xy)
        if len(fg):
            out[i, :2] = np.minimum(out[i, :2], fg.min(0))
            out[i, 2:] = np.maximum(out[i, 2:], fg.max(0))
    return out


def segment_interactive_case(
    backend: Backend,
    case: Case,
    mask_prompts: bool = True,
    cache_mb: float = 1024.0,
    embeddings: SliceEmbeddingCache | None = None,
    clip_to_box: bool = False,
    thin_strokes: bool | None = None,
) -> tuple[NDArray, NDArray[np.float32]]:
    """``segs`` and per-object IoU estimates of a case with interactive prompts.

    ``clip_to_box``: see :func:`segment_interactive_volume`; ``thin_strokes``: see
    :meth:`Predictor.predict` (2D) and :func:`segment_interactive_volume` (3D).
    """
    if case.prompts is None:
        raise ValueError(f"{case.name} holds no interactive prompts")
    try:
        if case.is_3d:
            spacing = None if case.spacing is None else case.spacing[::-1].tolist()
            return segment_interactive_volume(
                backend,
                case.imgs,
                case.prompts,
                mask_prompts,
                embeddings,
                cache_mb,
                clip_to_box=clip_to_box,
                thin_strokes=thin_strokes,
                spacing_zyx=spacing,
            )
        return segment_interactive_image(
            backend, case.imgs, case.prompts, mask_prompts, thin_strokes
        )
    except InputError as err:
        if err.path is None:
            raise InputError(case.name, err.problem) from err
        raise
