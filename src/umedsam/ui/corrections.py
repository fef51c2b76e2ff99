"""Corrections in the web app and the napari plugin: validate clicks and strokes, segment
corrected objects.

An object is its box plus the clicks and strokes added to it, in order. A corrected object is
segmented with all its clicks, its strokes as a stroke map (the stroke rules of ``umedsam
predict``: one path for the CLI, the web app and napari) and, as the dense prompt, the mask it had
one prompt earlier (the refinement the interactive model was trained for); a volume goes through
the same 3D correction rule as ``umedsam predict`` (restart on the newest click's slice,
re-propagate), on the session's slice-embedding cache, so a correction only runs the decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from umedsam.errors import InputError
from umedsam.inference.backends.base import Backend
from umedsam.inference.predictor import Predictor
from umedsam.inference.propagation import SliceEmbeddingCache
from umedsam.inference.thin_volume import VolumeTracer

Click = tuple[int, ...]
"""``(x, y, label)`` in 2D or ``(x, y, z, label)`` in 3D; label 1 positive, 0 negative."""


@dataclass(frozen=True)
class Stroke:
    """A scribble stroke of an object: the pixels it covers on one slice, and its sign.

    The web app's strokes (a polyline and a brush radius, drawn here) and the napari plugin's
    (painted pixels) become the same value for the same pixels, and every stroke reaches the
    model through the stroke rules of ``umedsam predict`` (:func:`stroke_map`), never as clicks.

    Attributes:
        z: the slice (volumes), or None (2D images).
        label: 1 object, 0 background.
        pixels: flat indices ``y * W + x`` of its pixels on the slice, ascending.
        entry: the client's entry it came from (kept for autosave; not part of its identity).
        thin: a positive stroke traced along a thin structure (a vessel): its object becomes the
            thin structure its strokes lie on (:func:`umedsam.inference.thin.thin_structure_mask`,
            what ``umedsam predict --thin-structures`` does).
    """

    z: int | None
    label: int
    pixels: tuple[int, ...]
    entry: dict | None = field(default=None, compare=False, hash=False)
    thin: bool = False

    def to_json(self) -> dict:
        """What autosave keeps: the client's entry (the page can send it again), else pixels."""
        if self.entry is not None:
            return self.entry
        kept = {"z": self.z, "label": self.label, "pixels": list(self.pixels)}
        return {**kept, "thin": True} if self.thin else kept


Prompt = Click | Stroke
"""One prompt event of an object, in the order the user gave them."""
ObjectKey = tuple[tuple[int, ...], tuple[Prompt, ...]]
"""An object of the app: its box and its clicks and strokes, in the order they were added."""


MAX_STROKE_POINTS = 2000
MAX_BRUSH_RADIUS = 50
THIN_CLICK_RADIUS = 2
"""A positive click on a thin-structure object is a dot of this radius in its stroke map."""
THIN_CUT_RADIUS = 5
"""A negative click on a thin-structure object cuts a disk of this radius (pixels at a 565-px
image, scaled with the image as the ridge filter's scales are): wider than any ridge the filter
finds, so a click on a wrong branch severs it."""


def painted_stroke(
    painted: NDArray[np.bool_], label: int, z: int | None, thin: bool = False
) -> Stroke:
    """The stroke of a 2D map of painted pixels (one stroke, one sign; ``thin``: traced along a
    thin structure)."""
    flat = tuple(int(i) for i in np.flatnonzero(np.asarray(painted, bool)))
    return Stroke(z, int(label), flat, thin=bool(thin))


def stroke_from_entry(entry: dict, shape: tuple[int, ...], object_index: int) -> Stroke:
    """The web app's stroke ``{"stroke": [[x, y], ...], "label": 1|0, "radius": r, "z": slice,
    "thin": false}``: its polyline drawn with the brush radius (``thin``: a positive stroke traced
    along a thin structure).

    Raises:
        InputError: a malformed stroke, a bad label or radius, a stroke outside the image, a
            thin stroke that is negative.
    """
    import cv2

    where = f"object {object_index + 1}"
    points = entry.get("stroke")
    label = entry.get("label", 1)
    radius = entry.get("radius", 3)
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_STROKE_POINTS:
        raise InputError(None, f"{where}: a stroke needs 1..{MAX_STROKE_POINTS} points")
    bad_radius = not isinstance(radius, int | float) or not 0 < radius <= MAX_BRUSH_RADIUS
    if label not in (0, 1) or bad_radius:
        raise InputError(
            None, f"{where}: stroke label must be 1 or 0 and radius 1..{MAX_BRUSH_RADIUS}"
        )
    h, w = shape[-2:]
    try:
        xy = np.asarray(points, np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as err:
        raise InputError(None, f"{where}: stroke points must be [x, y] pairs") from err
    outside = (xy < 0).any() or (xy[:, 0] >= w).any() or (xy[:, 1] >= h).any()
    if not np.isfinite(xy).all() or outside:
        raise InputError(None, f"{where}: a stroke lies outside the image")
    z = None
    if len(shape) == 3:
        z = entry.get("z")
        if not isinstance(z, int) or not 0 <= z < shape[0]:
            raise InputError(None, f"{where}: a stroke on a volume needs its slice 'z'")
    canvas = np.zeros((h, w), np.uint8)
    pts = np.round(xy).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [pts], False, 1, thickness=max(1, int(round(2 * radius))))
    cv2.circle(canvas, (int(pts[0, 0, 0]), int(pts[0, 0, 1])), int(round(radius)), 1, -1)
    thin = _thin_flag(entry, label, where)
    kept = {"stroke": xy.tolist(), "label": label, "radius": radius}
    if z is not None:
        kept["z"] = z
    if thin:
        kept["thin"] = True
    stroke = painted_stroke(canvas > 0, label, z)
    return Stroke(stroke.z, stroke.label, stroke.pixels, kept, thin)


def _thin_flag(entry: dict, label: int, where: str) -> bool:
    """The stroke's ``thin`` flag, checked: a positive stroke."""
    thin = entry.get("thin", False)
    if not isinstance(thin, bool):
        raise InputError(None, f"{where}: a stroke's 'thin' must be true or false")
    if thin and label != 1:
        raise InputError(None, f"{where}: a thin-structure stroke must be positive")
    return thin


def stroke_map(strokes: list[Stroke], shape: tuple[int, ...]) -> NDArray[np.int8] | None:
    """An object's strokes as the stroke map ``umedsam predict`` reads (1 object, -1 background;
    a later stroke wins where two cross), or None without strokes. ``shape``: (H, W) or
    (D, H, W)."""
    if not strokes:
        return None
    out = np.zeros(shape, np.int8)
    h, w = shape[-2:]
    for stroke in strokes:
        plane = out if stroke.z is None else out[stroke.z]
        plane.reshape(h * w)[list(stroke.pixels)] = 1 if stroke.label == 1 else -1
    return out


def normalise_clicks(
    clicks: object, num_objects: int, shape: tuple[int, ...]
) -> list[tuple[Prompt, ...]]:
    """Validate client clicks: one list per object of ``[x, y, (z,) label]`` entries.

    An entry may also be a scribble stroke (``{"stroke": [[x, y], ...], "label", "radius",
    "z"}``), which becomes a :class:`Stroke` (:func:`stroke_from_entry`).

    Raises:
        InputError: a malformed click, a label other than 0/1, a click outside the image, or more
            click lists than boxes.
    """
    if clicks is None:
        return [() for _ in range(num_objects)]
    if not isinstance(clicks, list) or len(clicks) > num_objects:
        raise InputError(
            None, f"clicks must be a list with at most one list per box ({num_objects})"
        )
    ndim = len(shape)
    sizes = tuple(reversed(shape))  # x, y(, z)
    out: list[tuple[Prompt, ...]] = []
    for i in range(num_objects):
        entry = clicks[i] if i < len(clicks) else []
        if not isinstance(entry, list):
            raise InputError(None, f"object {i + 1}: clicks must be a list")
        checked: list[Prompt] = []
        for click in entry:
            if isinstance(click, dict):
                checked.append(stroke_from_entry(click, shape, i))
                continue
            if isinstance(click, Stroke):  # from Python callers (the napari plugin)
                checked.append(_checked_stroke(click, shape, i))
                continue
            if not isinstance(click, list) or len(click) != ndim + 1:
                raise InputError(
                    None, f"object {i + 1}: a click is [x, y{', z' if ndim == 3 else ''}, label]"
                )
            try:
                values = [int(round(float(v))) for v in click]
            except (TypeError, ValueError) as err:
                raise InputError(
                    None, f"object {i + 1}: click {click!r} holds a non-number"
                ) from err
            *xyz, label = values
            if label not in (0, 1):
                raise InputError(None, f"object {i + 1}: click label must be 1 or 0; got {label}")
            if any(not 0 <= v < s for v, s in zip(xyz, sizes, strict=True)):
                raise InputError(None, f"object {i + 1}: click {xyz} lies outside the image")
            checked.append(tuple(values))
        out.append(tuple(checked))
    return out


def _checked_stroke(stroke: Stroke, shape: tuple[int, ...], object_index: int) -> Stroke:
    """``stroke`` if it fits an image of ``shape``.

    Raises:
        InputError: no pixel, pixels outside the slice, a bad label or slice.
    """
    h, w = shape[-2:]
    on_volume = len(shape) == 3
    bad_z = (stroke.z is None) if on_volume else (stroke.z is not None)
    if on_volume and stroke.z is not None:
        bad_z = not 0 <= stroke.z < shape[0]
    pixels = np.asarray(stroke.pixels, np.int64)
    if (
        bad_z
        or stroke.label not in (0, 1)
        or (stroke.thin and stroke.label != 1)
        or not pixels.size
        or pixels.min() < 0
        or pixels.max() >= h * w
    ):
        raise InputError(None, f"object {object_index + 1}: a stroke that does not fit the image")
    return stroke


class Corrected(NamedTuple):
    """A corrected object's new state.

    Attributes:
        mask: (H, W) or (D, H, W) bool.
        iou: IoU-head estimate (3D: on the restart slice).
        slice_iou: 3D: (D,) per-slice IoU-head estimates (NaN where the object is absent).
        heat: 2D: uint8 uncertainty map of the new mask (0 certain .. 255 one bit), or None.
        confidence: 2D: per-object confidence of the new mask (entropy and IoU head; the box
            agreement cue is left out because clicks may rightly take the mask beyond the box).
    """

    mask: NDArray[np.bool_]
    iou: float
    slice_iou: NDArray[np.float32] | None = None
    heat: NDArray[np.uint8] | None = None
    confidence: float | None = None


def segment_corrected(
    backend: Backend,
    pixels: NDArray,
    keys: list[ObjectKey],
    previous: Mapping[ObjectKey, Any],
    mask_prompts: bool,
    embeddings: SliceEmbeddingCache | None,
    predictor: Any = None,
    extents: frozenset[tuple[int, ...]] = frozenset(),
    tracer: VolumeTracer | None = None,
) -> list[Corrected]:
    """New masks, IoU estimates and confidence (2D) or per-slice IoU (3D) of objects with clicks
    or strokes.

    Clicks are the model's points; strokes go in as the object's stroke map, as ``umedsam
    predict`` takes a scribble (the same sampling along the strokes, in 2D and 3D).

    Args:
        backend: the engine.
        pixels: the session's image, (H, W, 3) or (D, H, W).
        keys: the objects (box, clicks and strokes) to segment.
        previous: results the session holds; an object's state one prompt earlier, if present,
            is its dense prompt.
        mask_prompts: the model takes the previous mask as a dense prompt.
        embeddings: the volume's slice-embedding cache (3D).
        predictor: the session's 2D predictor, image already set.
        extents: 3D boxes that are their objects' extents (a case's stored boxes, for a model
            with bounded propagation): a correction keeps its boxes inside them.
        tracer: the volume's thin-structure tracer (:mod:`umedsam.inference.thin_volume`), kept
            by the session so that a later thin stroke reuses its filter (None: a new one).
    """
    out: list[Corrected] = []
    is_3d = pixels.ndim == 3 and len(keys[0][0]) == 6
    for box, events in keys:
        earlier = previous.get((box, events[:-1]))
        clicks = [c for c in events if not isinstance(c, Stroke)]
        strokes = [c for c in events if isinstance(c, Stroke)]
        labels = np.array([c[-1] for c in clicks], np.int64)
        if any(stroke.thin for stroke in strokes):
            shape = pixels.shape if is_3d else pixels.shape[:2]
            thin_map = _thin_stroke_map(shape, clicks, strokes)
            if not is_3d:
                out.append(_correct_thin(predictor, shape, box, thin_map))
                continue
            traced = (tracer or VolumeTracer(pixels)).trace(thin_map, np.array(box, np.float64))
            if traced is not None:  # else the model corrects it as any volume object
                out.append(Corrected(traced, float("nan"), np.full(len(pixels), np.nan)))
                continue
        if not is_3d:
            smap = stroke_map(strokes, pixels.shape[:2])
            points = np.array([c[:2] for c in clicks], np.float64).reshape(-1, 2)
            out.append(
                _correct_image(
                    predictor, pixels.shape[:2], box, (points, labels), smap, earlier, mask_prompts
                )
            )
            continue
        zyx = np.array([[c[2], c[1], c[0]] for c in clicks], np.int64).reshape(-1, 3)
        out.append(
            _correct_volume(
                backend,
                pixels,
                box,
                (zyx, labels),
                stroke_map(strokes, pixels.shape),
                None if earlier is None else earlier.mask,
                (mask_prompts, box in extents),
                embeddings,
            )
        )
    return out


def _correct_image(
    predictor: Any,
    orig_hw: tuple[int, int],
    box: tuple[int, ...],
    clicks: tuple[NDArray, NDArray],
    smap: NDArray | None,
    earlier: Any,
    mask_prompts: bool,
) -> Corrected:
    """One 2D object of an ``orig_hw`` image from its box, clicks (xy, labels), stroke map (or
    None) and, as the dense prompt, its earlier mask; prompts that all agree with the earlier
    mask keep it, as ``umedsam predict`` does (:mod:`umedsam.inference.agreement`)."""
    from umedsam.inference import agreement
    from umedsam.inference.prompts import mask_to_logits

    points, labels = clicks
    if (
        agreement.KEEP_AGREEING_2D
        and earlier is not None
        and agreement.prompts_agree(earlier.mask, smap, points, labels)
    ):
        return Corrected(
            earlier.mask, earlier.iou, heat=earlier.heat, confidence=earlier.confidence
        )
    mask_input = None
    if mask_prompts and earlier is not None:
        mask_input = mask_to_logits(earlier.mask, predictor.frame)[None]
    pred = predictor.predict(
        np.array([box]),
        points=[points],
        point_labels=[labels],
        scribbles=None if smap is None else [smap],
        mask_input=mask_input,
        return_logits=False,
    )
    if pred.thin is not None and pred.thin[0]:  # traced (the model could not outline it)
        return Corrected(pred.masks[0], float("nan"))  # no estimate describes a trace
    found = _with_confidence(pred, orig_hw, predictor)
    if earlier is None:
        return found
    settled = agreement.settle_correction(earlier.mask, found.mask, smap, points, labels)
    return found._replace(mask=settled)


def _thin_stroke_map(
    shape: tuple[int, ...], clicks: list[Click], strokes: list[Stroke]
) -> NDArray[np.int8]:
    """The stroke map of a thin-structure object of an image or volume of ``shape``: its strokes,
    and its clicks as dots (a positive one of :data:`THIN_CLICK_RADIUS` on its slice seeds the
    piece it lands on, a negative one cuts a disk of :data:`THIN_CUT_RADIUS` there, a ball of
    that radius on a volume, so it severs a vessel that crosses the slices)."""
    import cv2

    from umedsam.inference.thin import REFERENCE_SIDE

    smap = stroke_map(strokes, shape)
    assert smap is not None
    h, w = shape[-2:]
    cut = int(round(THIN_CUT_RADIUS * max(1.0, max(h, w) / REFERENCE_SIDE)))
    dots = np.zeros((h, w), np.uint8)
    for click in clicks:
        x, y, label = int(click[0]), int(click[1]), click[-1]
        z = int(click[2]) if len(shape) == 3 else 0
        reach = cut if label == 0 and len(shape) == 3 else 0
        for dz in range(-reach, reach + 1):
            if not 0 <= z + dz < (shape[0] if len(shape) == 3 else 1):
                continue
            dots[:] = 0
            radius = THIN_CLICK_RADIUS if label == 1 else int(round(np.sqrt(cut**2 - dz**2)))
            cv2.circle(dots, (x, y), radius, 1, -1)
            plane = smap[z + dz] if len(shape) == 3 else smap
            plane[dots > 0] = 1 if label == 1 else -1
    return smap


def _correct_thin(
    predictor: Any, orig_hw: tuple[int, ...], box: tuple[int, ...], smap: NDArray
) -> Corrected:
    """A 2D object traced as a thin structure: what ``umedsam predict --thin-structures`` gives
    for its box and stroke map (:func:`_thin_stroke_map`), the trace alone without a decoder
    call. If the strokes lie on no ridge, the model's mask of the box and strokes stands.

    The mask comes from the image's ridges, not from the model, so no confidence or IoU
    estimate describes it: both are left unknown (NaN), and "next to check" shows it first.
    """
    traced = predictor.trace_thin(smap, np.array(box, np.float64))
    if traced is not None:
        return Corrected(traced, float("nan"))
    pred = predictor.predict(
        np.array([box]), scribbles=[smap], return_logits=False, thin_strokes=False
    )
    return _with_confidence(pred, (orig_hw[0], orig_hw[1]), predictor)


def _correct_volume(
    backend: Backend,
    pixels: NDArray,
    box: tuple[int, ...],
    clicks: tuple[NDArray, NDArray],
    smap: NDArray | None,
    earlier: NDArray | None,
    flags: tuple[bool, bool],
    embeddings: SliceEmbeddingCache | None,
) -> Corrected:
    """One 3D object by the 3D correction rule of ``umedsam predict``; ``flags``: (mask
    prompts, keep boxes inside the box's extent)."""
    from umedsam.data.npz import SCRIBBLE_BACKGROUND, CasePrompts
    from umedsam.inference.interactive import segment_interactive_volume

    scribbles = None
    if smap is not None:  # the CVPR 2024 map of one object: its label 1, background strokes
        scribbles = np.where(smap == 1, 1, np.where(smap == -1, SCRIBBLE_BACKGROUND, 0))
    prompts = CasePrompts(
        labels=np.array([1]),
        boxes=np.array([box], np.float64),
        start_slices=None,
        clicks=(clicks[0],),
        click_labels=(clicks[1],),
        prev_pred=None if earlier is None else earlier.astype(np.uint8),
        scribbles=scribbles,
    )
    per_slice = np.full((1, pixels.shape[0]), np.nan, np.float32)
    segs, iou = segment_interactive_volume(
        backend,
        pixels,
        prompts,
        mask_prompts=flags[0],
        embeddings=embeddings,
        slice_iou=per_slice,
        clip_to_box=flags[1],
    )
    return Corrected(segs == 1, float(iou[0]), per_slice[0])


def _with_confidence(pred: Any, orig_hw: tuple[int, int], predictor: Predictor) -> Corrected:
    """A 2D prediction of one object with its uncertainty map and confidence (the cue weights
    of the model that made it)."""
    from umedsam.inference.uncertainty_config import cue_weights_of
    from umedsam.ui.heat import object_heat

    heat = object_heat(
        pred.low_res_logits,
        pred.iou,
        predictor.frame.low_res_hw(orig_hw),
        orig_hw,
        weights=cue_weights_of(predictor.backend),
    )
    return Corrected(
        pred.masks[0],
        float(pred.iou[0]),
        heat=None if heat is None else heat[0][0],
        confidence=None if heat is None else float(heat[1][0]),
    )
