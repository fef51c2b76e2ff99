"""Click corrections in the web app: validate the clients' clicks and segment corrected objects.

An object of the app is its box plus the clicks added to it, in order. A corrected object is
segmented with all its clicks and, as the dense prompt, the mask it had one click earlier (the
refinement the interactive model was trained for); a volume goes through the same 3D correction
rule as ``umedsam predict`` (restart on the newest click's slice, re-propagate), on the
session's slice-embedding cache, so a correction only runs the decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from umedsam.errors import InputError
from umedsam.inference.backends.base import Backend
from umedsam.inference.propagation import SliceEmbeddingCache

Click = tuple[int, ...]
"""``(x, y, label)`` in 2D or ``(x, y, z, label)`` in 3D; label 1 positive, 0 negative."""
ObjectKey = tuple[tuple[int, ...], tuple[Click, ...]]
"""An object of the app: its box and its clicks, in the order they were added."""


MAX_STROKE_POINTS = 2000
MAX_BRUSH_RADIUS = 50


def stroke_points(entry: dict, shape: tuple[int, ...], object_index: int) -> list[Click]:
    """A scribble stroke as the points the model takes: the stroke drawn with its brush radius,
    then points spread along it (``umedsam.inference.prompts.sample_stroke_points``).

    ``entry``: ``{"stroke": [[x, y], ...], "label": 1|0, "radius": r, "z": slice (3D)}``.

    Raises:
        InputError: a malformed stroke, a bad label or radius, a stroke outside the image.
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
    return painted_stroke_points(canvas > 0, label, z)


def painted_stroke_points(painted: NDArray[np.bool_], label: int, z: int | None) -> list[Click]:
    """The clicks of one painted stroke (a 2D map of its pixels): points spread along it
    (``sample_stroke_points``). The web app's strokes (drawn here from their polyline) and the
    napari plugin's painted strokes both become clicks through this one function."""
    from umedsam.inference.prompts import sample_stroke_points

    sampled = sample_stroke_points(np.asarray(painted, bool))
    return [
        (int(x), int(y), label) if z is None else (int(x), int(y), z, label) for x, y in sampled
    ]


def normalise_clicks(
    clicks: object, num_objects: int, shape: tuple[int, ...]
) -> list[tuple[Click, ...]]:
    """Validate client clicks: one list per object of ``[x, y, (z,) label]`` entries.

    An entry may also be a scribble stroke (``{"stroke": [[x, y], ...], "label", "radius",
    "z"}``), which becomes the points the model takes for it (:func:`stroke_points`).

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
    out: list[tuple[Click, ...]] = []
    for i in range(num_objects):
        entry = clicks[i] if i < len(clicks) else []
        if not isinstance(entry, list):
            raise InputError(None, f"object {i + 1}: clicks must be a list")
        checked: list[Click] = []
        for click in entry:
            if isinstance(click, dict):
                checked.extend(stroke_points(click, shape, i))
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
) -> list[Corrected]:
    """New masks, IoU estimates and confidence (2D) or per-slice IoU (3D) of objects with clicks.

    Args:
        backend: the engine.
        pixels: the session's image, (H, W, 3) or (D, H, W).
        keys: the objects (box, clicks) to segment.
        previous: results the session holds; an object's state one click earlier, if present,
            is its dense prompt.
        mask_prompts: the model takes the previous mask as a dense prompt.
        embeddings: the volume's slice-embedding cache (3D).
        predictor: the session's 2D predictor, image already set.
        extents: 3D boxes that are their objects' extents (a case's stored boxes, for a model
            with bounded propagation): a correction keeps its boxes inside them.
    """
    from umedsam.data.npz import CasePrompts
    from umedsam.inference.interactive import segment_interactive_volume
    from umedsam.inference.prompts import mask_to_logits

    out: list[Corrected] = []
    is_3d = pixels.ndim == 3 and len(keys[0][0]) == 6
    for box, clicks in keys:
        earlier = previous.get((box, clicks[:-1]))
        labels = np.array([c[-1] for c in clicks], np.int64)
        if not is_3d:
            points = np.array([c[:2] for c in clicks], np.float64)
            mask_input = None
            if mask_prompts and earlier is not None:
                mask_input = mask_to_logits(earlier.mask, predictor.image_size)[None]
            pred = predictor.predict(
                np.array([box]),
                points=[points],
                point_labels=[labels],
                mask_input=mask_input,
                return_logits=False,
            )
            out.append(_with_confidence(pred, pixels.shape[:2], predictor.image_size))
            continue
        zyx = np.array([[c[2], c[1], c[0]] for c in clicks], np.int64)
        prev = None if earlier is None else earlier.mask.astype(np.uint8)
        prompts = CasePrompts(
            labels=np.array([1]),
            boxes=np.array([box], np.float64),
            start_slices=None,
            clicks=(zyx,),
            click_labels=(labels,),
            prev_pred=prev,
        )
        per_slice = np.full((1, pixels.shape[0]), np.nan, np.float32)
        segs, iou = segment_interactive_volume(
            backend,
            pixels,
            prompts,
            mask_prompts=mask_prompts,
            embeddings=embeddings,
            slice_iou=per_slice,
            clip_to_box=box in extents,
        )
        out.append(Corrected(segs == 1, float(iou[0]), per_slice[0]))
    return out


def _with_confidence(pred: Any, orig_hw: tuple[int, int], image_size: int) -> Corrected:
    """A 2D prediction of one object with its uncertainty map and confidence."""
    from umedsam.data.transforms import resized_hw
    from umedsam.ui.heat import object_heat

    heat = object_heat(pred.low_res_logits, pred.iou, resized_hw(orig_hw, image_size), orig_hw)
    return Corrected(
        pred.masks[0],
        float(pred.iou[0]),
        heat=None if heat is None else heat[0][0],
        confidence=None if heat is None else float(heat[1][0]),
    )
