"""Predictor: embed an image once, then segment any number of boxes on it (arrays in, arrays out)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray

from umedsam.data.frames import frame_of
from umedsam.data.npz import validate_boxes
from umedsam.errors import InputError
from umedsam.inference import thin
from umedsam.inference.backends.base import Backend
from umedsam.inference.prompts import DecoderPrompts, encode_prompts, mirror_low_res

logger = logging.getLogger(__name__)

UPSAMPLE_CHUNK = 16  # objects upsampled to full resolution at a time

MIRROR_STROKES = True
"""Decode a first prediction from strokes on the image and on its mirror image and average the
two (objects whose prompts hold a scribble and no click and no previous mask; the rule and its
test are in docs/interactive_log.md)."""
CLICK_BOXES_2D = False
"""Decode a 2D object once more with click-agreeing boxes when its mask contradicts one of its
clicks (the 3D rule of :mod:`umedsam.inference.click_boxes`, on images); see
docs/interactive.md, "Clicks that never hurt"."""
STROKE_MASK_LOGIT = 1.0
"""Logit given to pixels a stroke rule adds to a mask (the model's own logit there is <= 0)."""
KEEP_STROKE_COMPONENTS = True
"""In a first prediction from strokes (the objects of :data:`MIRROR_STROKES`), keep only the
connected pieces of the mask that hold a positive stroke pixel (all of it if none does)."""


@dataclass(frozen=True)
class Prediction:
    """Result of Predictor.predict for N boxes on an (H, W) image.

    Attributes:
        masks: (N, H, W) bool.
        iou: (N,) float32, the IoU head's estimate of each mask's quality.
        logits: (N, H, W) float32 logits at original resolution, or None if not requested.
        low_res_logits: (N, 1, L, L) float32 decoder logits (for refinement/uncertainty).
        thin: (N,) bool, the masks traced along the image's ridges by the thin path
            (``thin_strokes``): the model's IoU estimate and logits do not describe them.
    """

    masks: NDArray[np.bool_]
    iou: NDArray[np.float32]
    logits: NDArray[np.float32] | None
    low_res_logits: NDArray[np.float32]
    thin: NDArray[np.bool_] | None = None


def as_backend(model_or_backend: Any) -> Backend:
    """Wrap a torch ``nn.Module`` in a TorchBackend; pass a Backend through.

    torch is only consulted when it is already imported: an object cannot be an ``nn.Module``
    otherwise, and the ONNX Runtime / OpenVINO paths stay free of it.
    """
    # getattr: another thread may be importing torch right now (a partly initialised module)
    nn = getattr(sys.modules.get("torch"), "nn", None)
    module_type = getattr(nn, "Module", None)
    if module_type is not None and isinstance(model_or_backend, module_type):
        from umedsam.inference.backends.torch import TorchBackend

        return TorchBackend(model_or_backend)
    return model_or_backend


def check_image_2d(image: NDArray, source: str | None = None) -> NDArray:
    """Validate a 2D image (H, W) or (H, W, 1|3) with real, finite values.

    Raises:
        InputError: wrong rank/channels, dtype, NaN/inf, empty or constant image.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise InputError(source, f"image must be (H, W) or (H, W, 3); got shape {image.shape}")
    if image.dtype.kind not in "uif":
        raise InputError(source, f"image must be a real numeric array; got dtype {image.dtype}")
    if image.size == 0:
        raise InputError(source, f"image is empty (shape {image.shape})")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InputError(source, "image contains NaN or infinite values")
    return image


class Predictor:
    """Segment-anything-style predictor for LiteMedSAM- and SAM-family models (the backend's
    frame, :mod:`umedsam.data.frames`, says how images and prompts enter the model).

    ``set_image`` computes the image embedding once; ``predict`` decodes one or many boxes against
    it in a batch. Works on (H, W) grey or (H, W, 3) RGB arrays in original pixels.

    Args:
        model: a built model with weights loaded, or any Backend (ONNX Runtime, OpenVINO ...).
    """

    def __init__(self, model: Any) -> None:
        self.backend = as_backend(model)
        self.image_size = self.backend.image_size
        self.frame = frame_of(self.backend)
        self._embedding: NDArray[np.float32] | None = None
        self._orig_hw: tuple[int, int] | None = None
        self._new_hw: tuple[int, int] | None = None
        self._image: NDArray | None = None  # kept for the mirror image, encoded on first need
        self._mirror: Predictor | None = None
        self._ridges: dict[bool, NDArray[np.float32]] = {}  # the thin path's, per polarity

    @property
    def is_image_set(self) -> bool:
        """Whether set_image has been called."""
        return self._embedding is not None

    @property
    def embedding(self) -> NDArray[np.float32]:
        """The current image embedding (1, C, S/4, S/4)."""
        if self._embedding is None:
            raise RuntimeError("call set_image(image) before using the embedding")
        return self._embedding

    def set_image(self, image: NDArray) -> None:
        """Preprocess and encode ``image`` ((H, W) or (H, W, 3), any real dtype)."""
        image = check_image_2d(image)
        array, new_hw = self.frame.preprocess_image(image)
        self._embedding = self.backend.encode(array)
        self._orig_hw = (int(image.shape[0]), int(image.shape[1]))
        self._new_hw = new_hw
        self._image, self._mirror = image, None
        self._ridges = {}

    def mirror(self) -> Predictor:
        """A predictor on the left-right mirror of the current image (encoded once, on first use)."""
        if self._image is None:
            raise RuntimeError("call set_image(image) before using the mirror image")
        if self._mirror is None:
            mirror = Predictor(self.backend)
            mirror.set_image(np.ascontiguousarray(self._image[:, ::-1]))
            self._mirror = mirror
        return self._mirror

    def sharing_embedding(self, backend: Backend) -> Predictor:
        """A predictor on ``backend`` holding this one's image, without encoding it again.

        Only for a backend that runs the same image encoder (for instance a model that changes
        only LiteMedSAM's decoder, see ``umedsam.models.cards.encoder_of``).
        """
        other = Predictor(backend)
        if other.frame != self.frame:
            raise ValueError(f"backends differ in model frame ({other.frame} vs {self.frame})")
        other._embedding, other._orig_hw, other._new_hw = (
            self._embedding,
            self._orig_hw,
            self._new_hw,
        )
        other._image = self._image
        other._ridges = self._ridges  # the same image: its ridge responses are shared
        if self._mirror is not None:
            other._mirror = self._mirror.sharing_embedding(backend)
        return other

    def reset_image(self) -> None:
        """Forget the current image and embedding."""
        self._embedding = self._orig_hw = self._new_hw = None
        self._image = self._mirror = None
        self._ridges = {}

    def predict_model_frame(
        self, boxes_model: NDArray
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Decode boxes already in the model frame: (N, 4) -> logits (N, 1, L, L), IoU (N, 1)."""
        return self.backend.decode(self.embedding, np.asarray(boxes_model, dtype=np.float32))

    def _average_with_mirror(
        self,
        chosen: NDArray[np.int64],
        boxes: NDArray | None,
        scribbles: Sequence[NDArray | None] | NDArray,
        low_res: NDArray[np.float32],
        iou: NDArray[np.float32],
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``low_res`` and ``iou`` with the ``chosen`` objects averaged with their mirror pass."""
        assert self._orig_hw is not None and self._new_hw is not None
        width = self._orig_hw[1]
        mirror = self.mirror()
        mirrored_boxes = None
        if boxes is not None:
            mirrored_boxes = np.asarray(boxes, np.float64).reshape(-1, 4)[chosen].copy()
            mirrored_boxes[:, [0, 2]] = width - mirrored_boxes[:, [2, 0]]
        prompts = encode_prompts(
            self._orig_hw,
            self.frame,
            boxes=mirrored_boxes,
            scribbles=[np.ascontiguousarray(np.asarray(scribbles[i])[:, ::-1]) for i in chosen],
        )
        low_m, iou_m = self.backend.decode_prompts(mirror.embedding, prompts)
        low_m = mirror_low_res(low_m, self._new_hw[1])  # back to the image's frame
        low_res = np.array(low_res, np.float32)
        iou = np.array(iou, np.float32)
        low_res[chosen] = (low_res[chosen] + low_m) / 2
        iou[chosen] = (iou[chosen] + np.asarray(iou_m, np.float32)) / 2
        return low_res, iou

    def _agree_with_clicks(
        self,
        prompts: DecoderPrompts,
        points: Sequence[NDArray | None] | NDArray,
        point_labels: Sequence[NDArray | None] | NDArray,
        low_res: NDArray[np.float32],
        iou: NDArray[np.float32],
    ) -> None:
        """Where an object's mask contradicts one of its clicks, decode it again with boxes that
        say what the clicks say and keep the agreeing mask closest to the first (in place)."""
        from umedsam.inference.click_boxes import best_agreeing, candidate_boxes, contradicted

        assert self._orig_hw is not None and self._new_hw is not None
        ratio = self.frame.scale_xy(self._orig_hw)[0]
        for i in range(len(prompts)):
            pts, labs = points[i], point_labels[i]
            one = prompts.select(np.array([i]))
            corners = one.labels[0] >= 2
            if pts is None or labs is None or not len(pts) or corners.sum() != 2:
                continue
            pts = np.asarray(pts, np.float64).reshape(-1, 2)
            mask = self.frame.low_res_to_masks(low_res[i : i + 1], self._orig_hw)[0]
            wrong = contradicted(mask, pts, labs)
            if not wrong.any():
                continue
            box = one.coords[0, corners].reshape(4).astype(np.float64)
            retries = candidate_boxes(box, pts, labs, wrong, ratio)
            if not retries:
                continue
            found = [
                self.backend.decode_prompts(self.embedding, _with_box(one, b)) for b in retries
            ]
            logits = np.concatenate([f[0] for f in found])
            masks = self.frame.low_res_to_masks(logits, self._orig_hw)
            best = best_agreeing(masks, mask, pts, labs)
            if best is not None:
                low_res[i], iou[i] = logits[best], found[best][1][0]

    def _decode_prompts(
        self,
        boxes: NDArray | None,
        points: Sequence[NDArray | None] | NDArray | None,
        point_labels: Sequence[NDArray | None] | NDArray | None,
        scribbles: Sequence[NDArray | None] | NDArray | None,
        mask_input: NDArray | None,
        switches: tuple[bool | None, bool | None],
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], list[_StrokeObject]]:
        """Low-res logits and IoU of objects with clicks, strokes or masks (see :meth:`predict`;
        ``switches``: its ``mirror_strokes`` and ``thin_strokes``), and the first predictions
        from strokes: their stroke maps and traced thin structures (for :meth:`_stroke_mask`).
        An object traced as a thin structure skips the mirror pass (its mask is the trace)."""
        assert self._orig_hw is not None
        h, w = self._orig_hw
        if boxes is not None:
            boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
            given = ~np.isnan(boxes).all(1)
            if given.any():
                validate_boxes(boxes[given], (h, w), is_3d=False)
        prompts = encode_prompts(
            self._orig_hw,
            self.frame,
            boxes=boxes,
            points=points,
            point_labels=point_labels,
            scribbles=scribbles,
            mask_input=mask_input,
        )
        low_res, iou = self.backend.decode_prompts(self.embedding, prompts)
        if CLICK_BOXES_2D and points is not None and point_labels is not None:
            self._agree_with_clicks(prompts, points, point_labels, low_res, iou)
        chosen = stroke_only_objects(len(low_res), points, scribbles, mask_input)
        if not chosen.size or scribbles is None:
            return low_res, iou, []
        mirror_strokes, thin_strokes = switches
        traced = self._trace_thin(chosen, boxes, scribbles, thin_strokes)
        untraced = np.array([i for i in chosen if int(i) not in traced], np.int64)
        mirrored = MIRROR_STROKES if mirror_strokes is None else mirror_strokes
        if mirrored and self.frame.mirrorable and untraced.size:
            low_res, iou = self._average_with_mirror(untraced, boxes, scribbles, low_res, iou)
        contradicted = (
            thin_strokes is None and not thin.THIN_STROKES and thin.THIN_WHEN_CONTRADICTED
        )
        keep = [
            _StrokeObject(
                int(i),
                np.asarray(scribbles[i]),
                traced.get(int(i)),
                _box_of(boxes, int(i)),
                contradicted,
            )  # fmt: skip
            for i in chosen
        ]
        return low_res, iou, keep

    def _trace_thin(
        self,
        chosen: NDArray[np.int64],
        boxes: NDArray | None,
        scribbles: Sequence[NDArray | None] | NDArray,
        thin_strokes: bool | None,
    ) -> dict[int, NDArray[np.bool_]]:
        """The thin structures (:mod:`umedsam.inference.thin`) the strokes of the ``chosen``
        objects lie on, inside each object's box when it has one; objects whose strokes lie on
        no ridge are left out. Empty unless the thin path is asked for."""
        wanted = thin.THIN_STROKES if thin_strokes is None else thin_strokes
        if not wanted:
            return {}
        traced = {}
        for i in chosen:
            found = self.trace_thin(np.asarray(scribbles[i]), _box_of(boxes, int(i)))
            if found is not None:
                traced[int(i)] = found
        return traced

    def trace_thin(self, strokes: NDArray, box: NDArray | None = None) -> NDArray[np.bool_] | None:
        """The thin structure an object's strokes lie on (:mod:`umedsam.inference.thin`), inside
        its xyxy ``box`` when given, or None when they lie on no ridge; what
        ``predict(..., thin_strokes=True)`` gives such an object, without the decoder.

        Args:
            strokes: (H, W) stroke map, 1 on the object's strokes, -1 on background ones.
            box: the object's box in original pixels, or None.
        """
        if self._image is None:
            raise RuntimeError("call set_image(image) before trace_thin(...)")
        strokes = np.asarray(strokes)
        found = thin.thin_structure_mask(self._image, strokes > 0, strokes < 0, self._ridges)
        if found is None or box is None:
            return found
        return _inside_box(found, box)

    def _stroke_mask(
        self, mask: NDArray[np.bool_], found: _StrokeObject
    ) -> tuple[NDArray[np.bool_], bool]:
        """A first prediction from strokes and whether it is a thin structure: the object's
        traced thin structure (traced here when the model's ``mask`` contradicts the object's
        negative strokes and the rule asks for it), else the mask's pieces a positive stroke
        touches."""
        if found.traced is not None:
            return found.traced, True
        if found.trace_if_contradicted and thin.contradicts_negatives(mask, found.strokes):
            traced = self.trace_thin(found.strokes, found.box)
            if traced is not None:
                return traced, True
        positive = found.strokes > 0
        return (components_touching(mask, positive) if KEEP_STROKE_COMPONENTS else mask), False

    def predict(
        self,
        boxes: NDArray | None = None,
        points: Sequence[NDArray | None] | NDArray | None = None,
        point_labels: Sequence[NDArray | None] | NDArray | None = None,
        scribbles: Sequence[NDArray | None] | NDArray | None = None,
        mask_input: NDArray | None = None,
        *,
        return_logits: bool = True,
        mirror_strokes: bool | None = None,
        thin_strokes: bool | None = None,
    ) -> Prediction:
        """Segment N objects on the current image from any mix of prompts, in one batch.

        Boxes alone take the official LiteMedSAM path (bit for bit); any click, scribble or mask
        prompt goes through the prompt decoder (see :mod:`umedsam.inference.prompts`).

        Args:
            boxes: (N, 4) or (4,) xyxy in original pixels, x_min < x_max <= W, y_min < y_max <= H;
                with other prompts, a row of NaN means "no box" for that object.
            points: per object (K, 2) xy clicks in original pixels (or an (N, K, 2) array).
            point_labels: per object (K,) labels, 1 positive (on the object), 0 negative.
            scribbles: per object an (H, W) map, 1 on positive strokes, -1 on negative ones.
            mask_input: (N, 1, L, L) ``low_res_logits`` of an earlier prediction (a refinement);
                a NaN-filled entry means "none" for that object.
            return_logits: also return full-resolution logits (N x H x W float32).
            mirror_strokes: average an object prompted by strokes (a scribble, no click, no
                mask_input) over the image and its mirror image; None takes the package's rule
                :data:`MIRROR_STROKES`.
            thin_strokes: segment such an object as the thin structure its strokes lie on
                when they lie on a ridge (:mod:`umedsam.inference.thin`); False never; None
                takes the package's rules (:data:`umedsam.inference.thin.THIN_STROKES`, else
                :data:`~umedsam.inference.thin.THIN_WHEN_CONTRADICTED`: only an object whose
                model mask covers its negative strokes).

        Returns:
            A Prediction with masks (N, H, W) bool and IoU estimates (N,).

        Raises:
            RuntimeError: set_image was not called.
            InputError: malformed or out-of-image prompts, or an object without any prompt.
        """
        if self._embedding is None or self._orig_hw is None or self._new_hw is None:
            raise RuntimeError("call set_image(image) before predict(...)")
        h, w = self._orig_hw
        keep: list[_StrokeObject] = []  # objects of the stroke rules
        if points is None and scribbles is None and mask_input is None:
            if boxes is None:
                raise InputError(None, "no prompts: give boxes, points, scribbles or mask_input")
            checked = validate_boxes(np.asarray(boxes), (h, w), is_3d=False)
            boxes_model = self.frame.boxes_to_frame(checked, self._orig_hw)
            low_res, iou = self.predict_model_frame(boxes_model)
        else:
            low_res, iou, keep = self._decode_prompts(
                boxes, points, point_labels, scribbles, mask_input, (mirror_strokes, thin_strokes)
            )
        return self._prediction(low_res, iou, keep, return_logits)

    def _prediction(
        self,
        low_res: NDArray[np.float32],
        iou: NDArray[np.float32],
        keep: list[_StrokeObject],
        return_logits: bool,
    ) -> Prediction:
        """The Prediction of decoded objects at the image's size, the stroke rules applied to
        the objects in ``keep`` (full-resolution logits only when ``return_logits``)."""
        assert self._orig_hw is not None
        h, w = self._orig_hw
        n = low_res.shape[0]
        iou_out = np.asarray(iou)[:, 0].astype(np.float32)
        traced = np.zeros(n, bool)
        if not return_logits:  # masks only: interpolate just where a mask pixel is possible
            masks = self.frame.low_res_to_masks(low_res, (h, w))
            for found in keep:
                i = found.object_index
                masks[i], traced[i] = self._stroke_mask(masks[i], found)
            return Prediction(
                masks=masks, iou=iou_out, logits=None, low_res_logits=low_res, thin=traced
            )
        masks = np.zeros((n, h, w), dtype=bool)
        logits = np.zeros((n, h, w), dtype=np.float32)
        for start in range(0, n, UPSAMPLE_CHUNK):
            chunk, chunk_masks = self.frame.full_logits(
                low_res[start : start + UPSAMPLE_CHUNK], (h, w)
            )
            masks[start : start + chunk.shape[0]] = chunk_masks[:, 0]
            logits[start : start + chunk.shape[0]] = chunk[:, 0]
        for found in keep:
            i = found.object_index
            masks[i], traced[i] = self._stroke_mask(masks[i], found)
            logits[i][~masks[i] & (logits[i] > 0)] = 0.0  # dropped pieces: logits agree with masks
            logits[i][masks[i] & (logits[i] <= 0)] = STROKE_MASK_LOGIT  # added thin pixels
        return Prediction(
            masks=masks, iou=iou_out, logits=logits, low_res_logits=low_res, thin=traced
        )


def _with_box(prompts: DecoderPrompts, box: NDArray) -> DecoderPrompts:
    """One object's prompts (a batch of one) with its box corners moved to ``box`` (xyxy)."""
    coords = prompts.coords.copy()
    corners = prompts.labels[0] >= 2
    coords[0, corners] = np.asarray(box, np.float32).reshape(2, 2)
    return DecoderPrompts(
        coords, prompts.labels, prompts.mask_input, prompts.has_mask, prompts.num_tokens
    )


class _StrokeObject(NamedTuple):
    """An object prompted by strokes alone: its index, stroke map (1 object, -1 background),
    the thin structure traced from them (None: not traced), its box (None: none) and whether
    a model mask that contradicts its negative strokes is to be traced instead."""

    object_index: int
    strokes: NDArray
    traced: NDArray[np.bool_] | None
    box: NDArray | None
    trace_if_contradicted: bool


def _box_of(boxes: NDArray | None, index: int) -> NDArray | None:
    """Object ``index``'s xyxy box, or None (no boxes, or a NaN row: no box)."""
    if boxes is None:
        return None
    rows = np.asarray(boxes, np.float64).reshape(-1, 4)
    row = rows[index if len(rows) > 1 else 0]
    return row if np.isfinite(row).all() else None


def _inside_box(mask: NDArray[np.bool_], box: NDArray) -> NDArray[np.bool_]:
    """``mask`` with everything outside the xyxy ``box`` (max exclusive) cleared."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    inside = np.zeros_like(mask)
    inside[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return mask & inside


def stroke_only_objects(
    n: int,
    points: Sequence[NDArray | None] | NDArray | None,
    scribbles: Sequence[NDArray | None] | NDArray | None,
    mask_input: NDArray | None,
) -> NDArray[np.int64]:
    """Indices of the objects whose prompts hold a scribble stroke and no click and no mask."""
    chosen = []
    for i in range(n):
        scribble = None if scribbles is None else scribbles[i]
        if scribble is None or not np.any(np.asarray(scribble) != 0):
            continue
        clicks = None if points is None else points[i]
        if clicks is not None and len(clicks):
            continue
        if mask_input is not None and np.isfinite(mask_input[i]).all():
            continue
        chosen.append(i)
    return np.array(chosen, np.int64)


def components_touching(mask: NDArray[np.bool_], stroke: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The 8-connected pieces of ``mask`` that hold a ``stroke`` pixel (``mask`` if none does)."""
    count, pieces = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    hit = np.unique(pieces[stroke & mask])
    hit = hit[hit > 0]
    return np.isin(pieces, hit) if hit.size else mask
