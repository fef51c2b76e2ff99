"""Interactive prompts of one 2D image: boxes, clicks, scribbles and previous masks, per object.

Every prompt of an object is reduced to what the SAM prompt encoder embeds: labelled points in
the model frame (clicks; points sampled along scribble strokes; a box as its two corners,
labels 2 and 3) and an optional dense prompt (the object's previous low-resolution logits).
:func:`encode_prompts` validates the prompts of N objects once, in original pixels, and returns
:class:`DecoderPrompts`, the arrays every engine decodes.

Conventions (original pixels, as for boxes): points are ``(x, y)`` with labels 1 (positive, on
the object) and 0 (negative, not on it); scribbles are (H, W) maps with 1 on positive stroke
pixels, -1 on negative ones and 0 elsewhere; ``mask_input`` is the (1, S, S) ``low_res_logits``
of an earlier prediction of the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from umedsam.data.frames import MASK_PROMPT_LOGIT as MASK_PROMPT_LOGIT  # noqa: PLC0414 (re-exported)
from umedsam.data.frames import Frame, as_frame
from umedsam.errors import InputError

POSITIVE, NEGATIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT, PADDING = 1, 0, 2, 3, -1
SCRIBBLE_POINTS = 8
"""Points sampled along the positive strokes of a scribble, and as many along the negative ones."""


@dataclass(frozen=True)
class DecoderPrompts:
    """The prompts of N objects as the decoder takes them (model frame).

    Attributes:
        coords: (N, P, 2) float32 xy.
        labels: (N, P) float32: -1 padding, 0 negative, 1 positive, 2/3 box corners.
        mask_input: (N, 1, S, S) float32 previous logits (zeros where unused).
        has_mask: (N,) float32, 1 where ``mask_input`` is a prompt.
        num_tokens: (N,) int64 tokens of each object (the rest of its row is batch padding);
            SAM's "not a point" token of an object without a box counts as one of its tokens.
    """

    coords: NDArray[np.float32]
    labels: NDArray[np.float32]
    mask_input: NDArray[np.float32]
    has_mask: NDArray[np.float32]
    num_tokens: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def select(self, index: NDArray | slice) -> DecoderPrompts:
        """The prompts of some objects."""
        return DecoderPrompts(
            self.coords[index],
            self.labels[index],
            self.mask_input[index],
            self.has_mask[index],
            self.num_tokens[index],
        )

    def groups(self) -> list[tuple[NDArray[np.int64], DecoderPrompts]]:
        """Objects grouped by token count, each group without batch padding.

        Decoding each group on its own makes an object's mask independent of the objects it is
        decoded with (extra padding tokens would change it).
        """
        out = []
        for count in np.unique(self.num_tokens):
            index = np.flatnonzero(self.num_tokens == count)
            group = self.select(index)
            out.append(
                (
                    index,
                    DecoderPrompts(
                        np.ascontiguousarray(group.coords[:, :count]),
                        np.ascontiguousarray(group.labels[:, :count]),
                        group.mask_input,
                        group.has_mask,
                        group.num_tokens,
                    ),
                )
            )
        return out


def decode_grouped(
    run: Callable[..., tuple[NDArray, NDArray]],
    embedding: NDArray,
    prompts: DecoderPrompts,
    chunk: int,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Decode N objects' prompts with ``run`` (one engine call), by token-count group and chunk.

    Args:
        run: ``run(embedding, coords, labels, mask_input, has_mask) -> (logits, iou)``.
        embedding: (1, C, h, w).
        prompts: the objects' prompts.
        chunk: most objects per call (bounds memory).

    Returns:
        logits (N, 1, S, S) and iou (N, 1) float32, in the objects' order.
    """
    n = len(prompts)
    logits: NDArray[np.float32] | None = None
    iou = np.zeros((n, 1), np.float32)
    for index, group in prompts.groups():
        for start in range(0, len(index), chunk):
            part = group.select(slice(start, start + chunk))
            lo, io = run(embedding, part.coords, part.labels, part.mask_input, part.has_mask)
            if logits is None:
                logits = np.zeros((n, *np.shape(lo)[1:]), np.float32)
            logits[index[start : start + chunk]] = lo
            iou[index[start : start + chunk]] = np.reshape(io, (-1, 1))
    assert logits is not None  # n >= 1: encode_prompts refuses empty prompts
    return logits, iou


def sample_stroke_points(stroke: NDArray[np.bool_], count: int = SCRIBBLE_POINTS) -> NDArray:
    """Up to ``count`` points spread along the pixels of a stroke map (farthest-point sampling).

    Deterministic: starts at the stroke pixel with the smallest (y, x), then repeatedly takes the
    pixel farthest from those already taken.

    Returns:
        (K, 2) float64 xy pixel indices, K = min(count, stroke pixels).
    """
    ys, xs = np.nonzero(stroke)
    if ys.size == 0:
        return np.zeros((0, 2))
    pts = np.stack([xs, ys], 1).astype(np.float64)
    if pts.shape[0] > 4096:  # thin the candidates; strokes are lines, this keeps their extent
        pts = pts[np.linspace(0, pts.shape[0] - 1, 4096).astype(np.int64)]
    chosen = [0]
    dist = np.linalg.norm(pts - pts[0], axis=1)
    for _ in range(min(count, pts.shape[0]) - 1):
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0:
            break
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(pts - pts[nxt], axis=1))
    return pts[chosen]


def _as_list(value: object, n: int, name: str) -> list:
    if value is None:
        return [None] * n
    if isinstance(value, np.ndarray) and value.dtype != object:
        if value.shape[0] != n:
            raise InputError(
                None, f"{name} must have one entry per object ({n}); got {value.shape}"
            )
        return list(value)
    items = list(value)  # type: ignore[call-overload]
    if len(items) != n:
        raise InputError(None, f"{name} must have one entry per object ({n}); got {len(items)}")
    return items


def count_objects(
    boxes: NDArray | None,
    points: object,
    scribbles: object,
    mask_input: NDArray | None,
) -> int:
    """Number of objects the prompts describe (the first given prompt kind decides)."""
    for value in (boxes, points, scribbles, mask_input):
        if value is not None:
            return len(value)  # type: ignore[arg-type]
    return 0


def encode_prompts(
    orig_hw: tuple[int, int],
    size: Frame | int,
    *,
    boxes: NDArray | None = None,
    points: Sequence[NDArray | None] | NDArray | None = None,
    point_labels: Sequence[NDArray | None] | NDArray | None = None,
    scribbles: Sequence[NDArray | None] | NDArray | None = None,
    mask_input: NDArray | None = None,
    scribble_points: int = SCRIBBLE_POINTS,
    source: str | None = None,
) -> DecoderPrompts:
    """Validate the prompts of N objects on an (H, W) image and put them in the model frame.

    Args:
        orig_hw: (H, W) of the image.
        size: the model frame (:mod:`umedsam.data.frames`), or LiteMedSAM's frame side S.
        boxes: (N, 4) xyxy, or None; a row of NaN means "no box" for that object.
        points: per object (K, 2) xy clicks (or an (N, K, 2) array), or None.
        point_labels: per object (K,) 1/0 labels matching ``points``.
        scribbles: per object an (H, W) map (1 positive, -1 negative, 0 none), or None.
        mask_input: (N, 1, L, L) previous logits; NaN-filled entries mean "no mask prompt".
        scribble_points: points sampled along the positive strokes, and along the negative ones.
        source: file named in errors.

    Returns:
        DecoderPrompts; objects without a box and with only negative points get a padding token
        as SAM adds one when no box is given.

    Raises:
        InputError: an object with no prompt at all, points outside the image, a label other
            than 0/1, a scribble of the wrong shape or with no stroke, inconsistent counts.
    """
    h, w = int(orig_hw[0]), int(orig_hw[1])
    frame = as_frame(size)
    n = count_objects(boxes, points, scribbles, mask_input)
    if n == 0:
        raise InputError(source, "no prompts: give boxes, points, scribbles or mask_input")
    box_list = _as_list(None if boxes is None else np.asarray(boxes, np.float64), n, "boxes")
    point_list = _as_list(points, n, "points")
    label_list = _as_list(point_labels, n, "point_labels")
    scribble_list = _as_list(scribbles, n, "scribbles")
    tokens = []
    for i in range(n):
        box = box_list[i]
        if box is not None and np.isnan(np.asarray(box, np.float64)).all():
            box = None
        sparse = _click_tokens(i, point_list[i], label_list[i], (h, w), source)
        sparse += _stroke_tokens(i, scribble_list[i], (h, w), scribble_points, source)
        mask_given = mask_input is not None and np.isfinite(mask_input[i]).all()
        if not sparse and box is None and not mask_given:
            raise InputError(source, f"object {i + 1} has no prompt (box, point or scribble)")
        tokens.append(_in_frame(frame, (h, w), sparse, box))
    num_tokens = np.array([t[0].shape[0] for t in tokens], np.int64)
    p = int(num_tokens.max())
    coords_arr = np.zeros((n, p, 2), np.float32)
    labels_arr = np.full((n, p), PADDING, np.float32)
    for i, (c, lab) in enumerate(tokens):
        coords_arr[i, : len(c)] = c
        labels_arr[i, : len(lab)] = lab
    masks, has_mask = _dense_prompts(mask_input, n, frame.low_res, source)
    return DecoderPrompts(coords_arr, labels_arr, masks, has_mask, num_tokens)


_Tokens = list[tuple[NDArray, NDArray]]
"""(coords (K, 2), labels (K,)) groups of one object's sparse prompts, in image pixels."""


def _click_tokens(
    i: int, pts: NDArray | None, labs: NDArray | None, hw: tuple[int, int], source: str | None
) -> _Tokens:
    """Object ``i``'s clicks as one token group (none without clicks), validated."""
    if pts is None or not len(pts):
        return []
    h, w = hw
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    if labs is None:
        raise InputError(source, f"object {i + 1}: points need point_labels (1 or 0)")
    labs = np.asarray(labs).reshape(-1)
    if labs.shape[0] != pts.shape[0]:
        raise InputError(
            source, f"object {i + 1}: {pts.shape[0]} points but {labs.shape[0]} point labels"
        )
    if not np.isin(labs, (0, 1)).all():
        raise InputError(
            source, f"object {i + 1}: point labels must be 1 or 0; got {np.unique(labs)}"
        )
    outside = (pts < 0).any() or (pts[:, 0] >= w).any() or (pts[:, 1] >= h).any()
    if not np.isfinite(pts).all() or outside:
        raise InputError(
            source,
            f"object {i + 1}: points must lie inside the {w}x{h} image "
            f"(0 <= x < {w}, 0 <= y < {h}); got {pts.round(1).tolist()}",
        )
    return [(pts, labs.astype(np.float64))]


def _stroke_tokens(
    i: int, scribble: NDArray | None, hw: tuple[int, int], count: int, source: str | None
) -> _Tokens:
    """Object ``i``'s stroke map as points sampled along its positive and negative strokes."""
    if scribble is None:
        return []
    smap = np.asarray(scribble)
    if smap.shape != hw:
        raise InputError(source, f"object {i + 1}: scribble must be {hw}; got {smap.shape}")
    if not (smap != 0).any():
        raise InputError(source, f"object {i + 1}: the scribble has no stroke")
    groups = []
    for value, label in ((1, POSITIVE), (-1, NEGATIVE)):
        sampled = sample_stroke_points(smap == value, count)
        if len(sampled):
            groups.append((sampled, np.full(len(sampled), label, np.float64)))
    return groups


def _in_frame(
    frame: Frame, hw: tuple[int, int], sparse: _Tokens, box: NDArray | None
) -> tuple[NDArray, NDArray]:
    """One object's tokens in the model frame: clicks and stroke points, then the box corners
    as the family's official pipeline scales them (LiteMedSAM truncates), else SAM's padding
    token (the prompt encoder adds the half-pixel; points keep sub-pixels)."""
    coords = [c for c, _ in sparse]
    labels = [lab for _, lab in sparse]
    if box is not None:
        coords.append(np.asarray(box, np.float64).reshape(2, 2))
        labels.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], np.float64))
    all_coords = np.concatenate(coords) if coords else np.zeros((0, 2))
    all_labels = np.concatenate(labels) if labels else np.zeros(0)
    model = frame.points_to_frame(all_coords, hw)
    if box is not None:
        corners = frame.boxes_to_frame(np.asarray(box, np.float64).reshape(1, 4), hw)
        model[-2:] = corners.reshape(2, 2)
        return model, all_labels
    return np.concatenate([model, np.zeros((1, 2))]), np.concatenate([all_labels, [PADDING]])


def _dense_prompts(
    mask_input: NDArray | None, n: int, side: int, source: str | None
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(N, 1, L, L) previous logits (zeros where none) and the (N,) flags of the given ones."""
    masks = np.zeros((n, 1, side, side), np.float32)
    has_mask = np.zeros(n, np.float32)
    if mask_input is None:
        return masks, has_mask
    mask_input = np.asarray(mask_input, np.float32)
    if mask_input.shape != (n, 1, side, side):
        raise InputError(
            source, f"mask_input must be (N, 1, {side}, {side}); got {mask_input.shape}"
        )
    for i in range(n):
        if np.isfinite(mask_input[i]).all():
            masks[i], has_mask[i] = mask_input[i], 1.0
    return masks, has_mask


def mask_to_logits(mask: NDArray, size: Frame | int) -> NDArray[np.float32]:
    """A binary mask in original pixels as a dense prompt: (1, L, L) pseudo-logits.

    Used where only a previous label map is known (``prev_pred``), not its logits: the mask is
    resized like the image (nearest neighbour), padded, and mapped to +/-MASK_PROMPT_LOGIT
    (:meth:`umedsam.data.frames.Frame.mask_prompt`; ``size``: the frame, or LiteMedSAM's side).
    """
    return as_frame(size).mask_prompt(mask)


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompt on one slice, ready for the model frame.

    Attributes:
        box_model: (4,) xyxy box in the model frame, or None.
        points: (K, 2) xy clicks in original pixels, or None.
        point_labels: (K,) 1/0 labels of ``points``.
        mask_logits: (1, S, S) dense prompt, or None.
    """

    box_model: NDArray | None = None
    points: NDArray | None = None
    point_labels: NDArray | None = None
    mask_logits: NDArray | None = None

    @property
    def box_only(self) -> bool:
        """Whether the prompt is a box and nothing else (the official decoder path)."""
        return (
            self.box_model is not None
            and (self.points is None or len(self.points) == 0)
            and self.mask_logits is None
        )


def model_frame_prompts(
    items: Sequence[ObjectPrompt], frame: Frame, orig_hw: tuple[int, int]
) -> DecoderPrompts:
    """DecoderPrompts of per-object prompts whose boxes are already in the model frame.

    Clicks (original pixels of an ``orig_hw`` image) are scaled into ``frame``; an object
    without a box gets SAM's padding token.
    """
    tokens = []
    for item in items:
        coords: list[NDArray] = []
        labels: list[NDArray] = []
        if item.points is not None and len(item.points):
            coords.append(frame.points_to_frame(np.asarray(item.points).reshape(-1, 2), orig_hw))
            labels.append(np.asarray(item.point_labels, np.float64).reshape(-1))
        if item.box_model is not None:
            coords.append(np.asarray(item.box_model, np.float64).reshape(2, 2))
            labels.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], np.float64))
        else:
            coords.append(np.zeros((1, 2)))
            labels.append(np.array([PADDING], np.float64))
        tokens.append((np.concatenate(coords), np.concatenate(labels)))
    n = len(items)
    num_tokens = np.array([len(t[1]) for t in tokens], np.int64)
    p = int(num_tokens.max())
    coords_arr = np.zeros((n, p, 2), np.float32)
    labels_arr = np.full((n, p), PADDING, np.float32)
    masks = np.zeros((n, 1, frame.low_res, frame.low_res), np.float32)
    has_mask = np.zeros(n, np.float32)
    for i, ((c, lab), item) in enumerate(zip(tokens, items, strict=True)):
        coords_arr[i, : len(c)] = c
        labels_arr[i, : len(lab)] = lab
        if item.mask_logits is not None:
            masks[i], has_mask[i] = item.mask_logits, 1.0
    return DecoderPrompts(coords_arr, labels_arr, masks, has_mask, num_tokens)


def mirror_low_res(low_res: NDArray, new_w: int) -> NDArray[np.float32]:
    """Model-frame logits or dense prompts (..., S, S) of an image flipped left-right, or flipped
    back: the image's ``new_w`` columns are reversed, the padding stays on the right."""
    out = np.array(low_res, np.float32)
    out[..., :new_w] = out[..., :new_w][..., ::-1]
    return out


def mirror_prompt(item: ObjectPrompt, width: int, new_w: int) -> ObjectPrompt:
    """``item`` on the left-right mirror image of an image ``width`` pixels wide (``new_w`` in the
    model frame): box, clicks and dense prompt flipped with it."""
    box = None
    if item.box_model is not None:
        b = np.asarray(item.box_model, np.float64)
        box = np.array([new_w - b[2], b[1], new_w - b[0], b[3]], np.float32)
    points = None
    if item.points is not None:
        points = np.asarray(item.points, np.float64).reshape(-1, 2).copy()
        points[:, 0] = width - 1 - points[:, 0]
    mask = None if item.mask_logits is None else mirror_low_res(item.mask_logits, new_w)
    return ObjectPrompt(box, points, item.point_labels, mask)
