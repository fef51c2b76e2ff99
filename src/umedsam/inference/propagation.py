"""3D segmentation by slice-wise propagation: the only 3D loop (CLI, web app, corrections).

As the official LiteMedSAM code does it, but with every slice encoded at most once and all objects
on a slice decoded in one batch. Each 3D box starts on its key slice, by default the middle slice
``int((z_max - z_min) / 2 + z_min)`` (:func:`key_slices`), segmented with the box's 2D extent;
then the mask propagates upward to z_max and downward to z_min (both inclusive). Each next slice
is prompted by the box of this object's previous-slice mask (model frame, widened by 3 px); an
empty previous mask falls back to the original box. Models other than the official one may also
keep that box inside the object's 3D box (``clip_boxes``): a 3D box bounds the object on every
slice, and without the bound a mask that spills over on one slice widens every box after it.
All objects advance in lock-step: one upward sweep over slices, then one downward sweep.

Embeddings: by default a private cache keeps the upward sweep's embeddings that the downward sweep
will need, and frees them as it goes. A caller that will propagate again on the same volume (the
web app, 3D corrections) passes its own :class:`SliceEmbeddingCache`: every encoded slice is then
kept there (up to its bound) and later propagations encode only the slices it lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.data.frames import frame_of
from umedsam.data.transforms import NEXT_SLICE_BOX_MARGIN
from umedsam.inference.backends.base import Backend
from umedsam.inference.click_boxes import best_agreeing, candidate_boxes, contradicted
from umedsam.inference.prompts import (
    ObjectPrompt,
    mirror_low_res,
    mirror_prompt,
    model_frame_prompts,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliceResult:
    """Masks of the objects active on one slice.

    Attributes:
        z: slice index.
        direction: "up" (start slice and above) or "down".
        object_ids: (K,) 0-based indices of the boxes segmented on this slice.
        masks: (K, H, W) bool.
        iou: (K,) IoU-head estimates.
        low_res_logits: (K, 1, S, S) model-frame logits.
        is_start: (K,) whether ``z`` is the object's start (key) slice.
    """

    z: int
    direction: str
    object_ids: NDArray[np.int64]
    masks: NDArray[np.bool_]
    iou: NDArray[np.float32]
    low_res_logits: NDArray[np.float32]
    is_start: NDArray[np.bool_]


@dataclass
class PropagationStats:
    """Counters of one propagation run (for tests and benchmarks)."""

    encoder_calls: int = 0
    decoder_boxes: int = 0
    cache_hits: int = 0
    cache_peak_mb: float = 0.0


@dataclass
class SliceEmbeddingCache:
    """Bounded store of one volume's slice embeddings; refuses new entries once ``max_mb`` is full.

    ``dtype`` float16 halves the memory but rounds the embeddings, which can move mask edges;
    the default float32 keeps the masks identical to recomputing the embedding. The embeddings
    of the slices' mirror images (``VolumePrompts.mirror_slices``) live in :meth:`mirrored`, a
    second store with the same bound.
    """

    max_mb: float = 1024.0
    dtype: type[np.floating] = np.float32
    _store: dict[int, NDArray] = field(default_factory=dict)
    _bytes: int = 0
    _mirrored: SliceEmbeddingCache | None = None

    def mirrored(self) -> SliceEmbeddingCache:
        """The store of the mirror images' embeddings (made on first use)."""
        if self._mirrored is None:
            self._mirrored = SliceEmbeddingCache(self.max_mb, self.dtype)
        return self._mirrored

    def get(self, z: int) -> NDArray[np.float32] | None:
        """The embedding of slice z as float32, or None."""
        emb = self._store.get(z)
        return None if emb is None else emb.astype(np.float32, copy=False)

    def put(self, z: int, embedding: NDArray) -> bool:
        """Store if there is room (a slice already held is kept); returns whether it is held."""
        if z in self._store:
            return True
        stored = np.asarray(embedding).astype(self.dtype, copy=True)
        if self._bytes + stored.nbytes > self.max_mb * 2**20:
            return False
        self._store[z] = stored
        self._bytes += stored.nbytes
        return True

    def discard(self, z: int) -> None:
        """Drop slice z if present."""
        emb = self._store.pop(z, None)
        if emb is not None:
            self._bytes -= emb.nbytes

    def __contains__(self, z: object) -> bool:
        return z in self._store

    def __len__(self) -> int:
        return len(self._store)

    @property
    def megabytes(self) -> float:
        """Current size in MiB, the mirror images' store included."""
        mirrored = 0 if self._mirrored is None else self._mirrored._bytes
        return (self._bytes + mirrored) / 2**20


@dataclass(frozen=True)
class VolumePrompts:
    """Interactive prompts of a volume's N objects for :func:`propagate` (original pixels).

    Attributes:
        clicks: (object, z) -> ((K, 2) xy clicks on slice z, (K,) labels 1/0); applied when the
            propagation reaches slice z.
        prev_masks: (D, H, W) previous label map; each object's mask on a slice becomes that
            slice's dense prompt (as pseudo-logits), and on its start slice gives its box.
        labels: (N,) label of each object in ``prev_masks``.
        has_box: (N,) False for objects without a box: they are prompted by clicks and their
            previous mask only, and stop propagating where their mask vanishes.
        mask_prompts: feed ``prev_masks`` as dense prompts (a model trained for it); False keeps
            them for start-slice boxes only.
        settle_dsc: with ``prev_masks``, an object stops propagating in a direction once its new
            mask on a slice agrees with the previous one there (DSC at least this): a correction
            re-propagates only as far as it changes something, and the previous masks stand
            beyond (None: propagate to the ends).
        click_boxes: a slice whose mask contradicts its clicks is decoded again with boxes that
            agree with them (:mod:`umedsam.inference.click_boxes`); the next slice's box still
            comes from the first mask, so the retry changes that slice only.
        correction_reach: with ``prev_masks``, an object that has a previous mask re-propagates
            at most this many slices on each side of its start slice, and its previous masks
            stand beyond (None: no bound).
        propagated_threshold: logit above which a pixel is on an object's mask on a slice
            other than its start slice (the start slice keeps 0); the next slice's box comes
            from the cut mask, and ``SliceResult.low_res_logits`` stay the decoder's own. A slice
            decoded again by ``click_boxes`` keeps 0 for its retry (as measured).
        cut_clicked_start: an object's start slice prompted by more than its box (clicks, a
            previous mask) is cut at ``propagated_threshold`` too; one prompted by its box alone
            keeps 0.
        mirror_slices: decode every slice also on its left-right mirror image (prompts flipped
            with it; one more encoding per slice) and average the two low-resolution logits
            before the mask is cut; a ``click_boxes`` retry decodes the slice itself only.
    """

    clicks: Mapping[tuple[int, int], tuple[NDArray, NDArray]] = field(default_factory=dict)
    prev_masks: NDArray | None = None
    labels: NDArray | None = None
    has_box: NDArray | None = None
    mask_prompts: bool = True
    settle_dsc: float | None = 0.9
    click_boxes: bool = True
    correction_reach: int | None = None
    propagated_threshold: float = 0.0
    cut_clicked_start: bool = False
    mirror_slices: bool = False


def encode_volume(
    backend: Backend,
    volume: NDArray,
    cache: SliceEmbeddingCache,
    progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    lock: AbstractContextManager[Any] | None = None,
) -> int:
    """Encode the slices of ``volume`` into ``cache`` ahead of any prompt, middle slice first.

    Slices are taken from the middle outwards (where boxes are usually drawn); slices the cache
    already holds are skipped, and the loop ends when the cache is full or ``should_stop()``.
    The embeddings are exactly those :func:`propagate` computes (same preprocessing). ``lock``
    is held around each slice's encoding and storing (a web app serialises engine use with it,
    so prompts run between two slices).

    Returns:
        The number of slices the cache holds afterwards.
    """
    d = volume.shape[0]
    middle = d // 2
    order = sorted(range(d), key=lambda z: (abs(z - middle), z))
    for z in order:
        if should_stop is not None and should_stop():
            break
        with lock if lock is not None else nullcontext():
            if z not in cache:
                array, _ = frame_of(backend).preprocess_slices(volume[z : z + 1])
                if not cache.put(z, backend.encode(array)):
                    break
        if progress:
            progress(len(cache))
    return len(cache)


def key_slices(boxes_3d: NDArray) -> NDArray[np.int64]:
    """Middle slice of each (N, 6) box, as the official code computes it."""
    z_min, z_max = boxes_3d[:, 2], boxes_3d[:, 5]
    return np.array(
        [int((hi - lo) / 2 + lo) for lo, hi in zip(z_min, z_max, strict=True)], dtype=np.int64
    )


def propagate(
    backend: Backend,
    volume: NDArray,
    boxes_3d: NDArray,
    *,
    start_slices: NDArray | None = None,
    embeddings: SliceEmbeddingCache | None = None,
    cache_mb: float = 1024.0,
    stats: PropagationStats | None = None,
    progress: Callable[[int], None] | None = None,
    prompts: VolumePrompts | None = None,
    clip_boxes: NDArray | None = None,
    open_ends: NDArray | None = None,
) -> Iterator[SliceResult]:
    """Yield per-slice results of propagating every box through ``volume``.

    Args:
        backend: the engine (encode/decode).
        volume: (D, H, W) array.
        boxes_3d: (N, 6) validated boxes x_min, y_min, z_min, x_max, y_max, z_max.
        start_slices: (N,) slice each object starts from, within its z-range (default: the key
            slice of :func:`key_slices`). The box's 2D extent prompts it there.
        embeddings: a cache the caller keeps for this volume: every encoded slice is stored in it
            (up to its bound) and never dropped, and slices it holds are not encoded again.
            None: a private cache of ``cache_mb`` holding only what the downward sweep needs.
        cache_mb: bound of the private cache.
        stats: optional counters, updated in place.
        progress: called with the number of slices finished after each slice.
        prompts: clicks, a previous label map and box-less objects (interactive correction);
            None: boxes only, exactly the official algorithm.
        clip_boxes: (N, 4) xyxy extents in original pixels (usually each 3D box's own x/y
            range): a box taken from a neighbour's mask is kept inside its object's extent,
            widened by the same 3 px (:func:`clip_to_extent`); a NaN row leaves that object
            unbounded. None: the official rule.
        open_ends: (N,) bool: these objects stop propagating in a direction at the first slice
            where their mask is empty (a box drawn over every slice: "until the mask vanishes"),
            instead of falling back to their box there. None: none do (the official rule).

    Yields:
        SliceResult for each slice of the upward sweep (ascending z), then of the downward sweep
        (descending z).

    Raises:
        ValueError: a start slice outside its box's z-range.
    """
    run = _Propagation(
        backend,
        volume,
        boxes_3d,
        start_slices=start_slices,
        embeddings=embeddings,
        cache_mb=cache_mb,
        stats=stats or PropagationStats(),
        prompts=prompts or VolumePrompts(),
        clip_boxes=clip_boxes,
        open_ends=open_ends,
    )
    done = 0
    for result in run.sweep_up():
        done += 1
        if progress:
            progress(done)
        yield result
    for result in run.sweep_down():
        done += 1
        if progress:
            progress(done)
        yield result


class _Propagation:
    """The state of one :func:`propagate` call: slices, objects, prompts, cache and the sweeps."""

    def __init__(
        self,
        backend: Backend,
        volume: NDArray,
        boxes_3d: NDArray,
        *,
        start_slices: NDArray | None,
        embeddings: SliceEmbeddingCache | None,
        cache_mb: float,
        stats: PropagationStats,
        prompts: VolumePrompts,
        clip_boxes: NDArray | None,
        open_ends: NDArray | None,
    ) -> None:
        self.backend, self.volume, self.stats, self.vp = backend, volume, stats, prompts
        self.keep_all = embeddings is not None
        self.cache = embeddings if embeddings is not None else SliceEmbeddingCache(cache_mb)
        _, h, w = volume.shape
        self.hw = (h, w)
        self.frame = frame = frame_of(backend)
        self.new_w = frame.resized_hw((h, w))[1]
        n = self.n = boxes_3d.shape[0]
        self.z_lo = boxes_3d[:, 2].astype(np.int64)
        self.z_hi = boxes_3d[:, 5].astype(np.int64)
        z_key = key_slices(boxes_3d) if start_slices is None else np.asarray(start_slices, np.int64)
        if z_key.shape != (n,) or ((z_key < self.z_lo) | (z_key > self.z_hi)).any():
            raise ValueError(
                f"start_slices must be (N,) = ({n},) slices inside each box's z-range; got {z_key}"
            )
        self.z_key = z_key
        self.key_boxes = frame.boxes_to_frame(boxes_3d[:, [0, 1, 3, 4]], (h, w))
        self.extents = None if clip_boxes is None else frame.boxes_to_frame(clip_boxes, (h, w))
        self.labels = np.arange(1, n + 1)
        self.down_needed = {z for i in range(n) for z in range(int(self.z_lo[i]), int(z_key[i]))}
        vp = prompts
        self.has_box = np.ones(n, bool) if vp.has_box is None else np.asarray(vp.has_box, bool)
        self.ends_at_empty = ~self.has_box | (
            np.zeros(n, bool) if open_ends is None else np.asarray(open_ends)
        )
        self.ratio = frame.scale_xy((h, w))[0]
        self.bounded = (
            self.has_box if self.extents is None else self.has_box & ~np.isnan(self.extents).any(1)
        )
        self.bounded_reach = np.zeros(n, bool)  # objects whose correction has a bounded reach
        if vp.correction_reach is not None and vp.prev_masks is not None and vp.labels is not None:
            self.bounded_reach = np.asarray(np.isin(vp.labels, vp.prev_masks), bool)
        self.unretried: dict[int, NDArray] = {}  # first masks of retried slices: next box's source
        self.key_masks: dict[int, NDArray] = {}

    def embed(self, z: int, direction: str, mirrored: bool = False) -> NDArray[np.float32]:
        """Slice z's embedding, from the cache or encoded (and cached when it is needed again)."""
        store = self.cache.mirrored() if mirrored else self.cache
        cached = store.get(z)
        if cached is not None:
            self.stats.cache_hits += 1
            return cached
        image = self.volume[z : z + 1, :, ::-1] if mirrored else self.volume[z : z + 1]
        array, _ = self.frame.preprocess_slices(np.ascontiguousarray(image))
        emb = self.backend.encode(array)
        self.stats.encoder_calls += 1
        wanted = self.keep_all or (direction == "up" and z in self.down_needed)
        if wanted and store.put(z, emb):
            self.stats.cache_peak_mb = max(self.stats.cache_peak_mb, self.cache.megabytes)
        return emb

    def prev_mask(self, i: int, z: int) -> NDArray | None:
        """Object i's previous mask on slice z (corrections), or None."""
        vp = self.vp
        if vp.prev_masks is None or vp.labels is None:
            return None
        mask = vp.prev_masks[z] == vp.labels[i]
        return mask if mask.any() else None

    def object_prompt(self, i: int, z: int, prev: dict[int, NDArray]) -> ObjectPrompt:
        """Object i's prompt on slice z: the box of its neighbour's mask (else its box), its
        clicks there and its previous mask as the dense prompt."""
        frame, extents = self.frame, self.extents
        box = None
        if i in prev:
            box = frame.mask_to_box(prev[i], label=int(self.labels[i]))
            if box is not None and extents is not None and self.bounded[i]:
                box = clip_to_extent(box, extents[i], frame.size, frame.box_margin())
        if box is None and self.has_box[i]:
            box = self.key_boxes[i]
        points = self.vp.clicks.get((i, z))
        dense = None
        if self.vp.mask_prompts and (previous := self.prev_mask(i, z)) is not None:
            dense = frame.mask_prompt(previous)
        return ObjectPrompt(
            box_model=box,
            points=None if points is None else points[0],
            point_labels=None if points is None else points[1],
            mask_logits=dense,
        )

    def within_reach(self, i: int, z: int) -> bool:
        """Whether a correction of object i re-propagates to slice z (``correction_reach``)."""
        reach = int(self.vp.correction_reach or 0)
        return not self.bounded_reach[i] or abs(z - int(self.z_key[i])) <= reach

    def settled(self, i: int, z: int, mask: NDArray) -> bool:
        """Whether object i's new mask on slice z agrees with its previous one (corrections)."""
        vp = self.vp
        if vp.prev_masks is None or vp.settle_dsc is None or z == self.z_key[i]:
            return False
        earlier = vp.prev_masks[z] == vp.labels[i]  # type: ignore[index]
        total = int(earlier.sum()) + int(mask.sum())
        agreement = 1.0 if total == 0 else 2.0 * int((earlier & mask).sum()) / total
        return agreement >= vp.settle_dsc

    def stops(self, i: int, z: int, mask: NDArray) -> bool:
        """Whether object i stops propagating in this direction after slice z."""
        return bool(self.ends_at_empty[i] and not mask.any()) or self.settled(i, z, mask)

    def agreeing_retry(
        self, emb: NDArray, item: ObjectPrompt, mask: NDArray
    ) -> tuple[NDArray, NDArray, NDArray] | None:
        """Logits, IoU and mask of a retry whose box agrees with the slice's clicks, or None."""
        points, point_labels = item.points, item.point_labels
        if item.box_model is None or points is None or point_labels is None or not len(points):
            return None
        wrong = contradicted(mask, points, point_labels)
        if not wrong.any():
            return None
        boxes = candidate_boxes(item.box_model, points, point_labels, wrong, self.ratio)
        if not boxes:
            return None
        retry = [replace(item, box_model=b) for b in boxes]
        prompts = model_frame_prompts(retry, self.frame, self.hw)
        logits, scores = self.backend.decode_prompts(emb, prompts)
        self.stats.decoder_boxes += len(retry)
        found = self.frame.low_res_to_masks(logits, self.hw)
        best = best_agreeing(found, mask, points, point_labels)
        return None if best is None else (logits[best], scores[best], found[best])

    def decode_items(
        self, emb: NDArray, items: list[ObjectPrompt]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Low-resolution logits and IoU of one slice's objects (box-only ones: the official path)."""
        side = self.frame.low_res
        plain = [k for k, item in enumerate(items) if item.box_only]
        rest = [k for k, item in enumerate(items) if not item.box_only]
        low_res = np.zeros((len(items), 1, side, side), np.float32)
        iou = np.zeros((len(items), 1), np.float32)
        if plain:
            boxes = np.stack([np.asarray(items[k].box_model) for k in plain])
            low_res[plain], iou[plain] = self.backend.decode(emb, boxes)
        if rest:
            group = model_frame_prompts([items[k] for k in rest], self.frame, self.hw)
            low_res[rest], iou[rest] = self.backend.decode_prompts(emb, group)
        self.stats.decoder_boxes += len(items)
        return low_res, iou

    def run_slice(
        self, z: int, active: list[int], prev: dict[int, NDArray], direction: str
    ) -> SliceResult:
        """Decode slice z for the ``active`` objects (mirror pass, cut, click retries)."""
        vp, frame = self.vp, self.frame
        emb = self.embed(z, direction)
        items = [self.object_prompt(i, z, prev) for i in active]
        low_res, iou = self.decode_items(emb, items)
        if vp.mirror_slices and frame.mirrorable:
            flipped = [mirror_prompt(item, self.hw[1], self.new_w) for item in items]
            low_m, iou_m = self.decode_items(self.embed(z, direction, mirrored=True), flipped)
            low_res = ((low_res + mirror_low_res(low_m, self.new_w)) / 2).astype(np.float32)
            iou = ((iou + iou_m) / 2).astype(np.float32)
        uncut = [
            z == self.z_key[i] and (item.box_only or not vp.cut_clicked_start)
            for i, item in zip(active, items, strict=True)
        ]
        shift = np.array([0.0 if u else vp.propagated_threshold for u in uncut], np.float32)
        masks = frame.low_res_to_masks(low_res - shift[:, None, None, None], self.hw)
        if vp.click_boxes:
            for k, item in enumerate(items):
                redo = None if item.box_only else self.agreeing_retry(emb, item, masks[k])
                if redo is not None:
                    self.unretried[active[k]] = masks[k].copy()
                    low_res[k], iou[k], masks[k] = redo
        return SliceResult(
            z=z,
            direction=direction,
            object_ids=np.asarray(active, dtype=np.int64),
            masks=masks,
            iou=np.asarray(iou)[:, 0].astype(np.float32),
            low_res_logits=low_res,
            is_start=np.array([z == self.z_key[i] for i in active], dtype=bool),
        )

    def sweep_up(self) -> Iterator[SliceResult]:
        """From the lowest start slice up to the highest z_max; keeps each start slice's mask."""
        prev: dict[int, NDArray] = {}
        stopped: set[int] = set()
        for z in range(int(self.z_key.min()), int(self.z_hi.max()) + 1):
            active = [
                i
                for i in range(self.n)
                if self.z_key[i] <= z <= self.z_hi[i]
                and i not in stopped
                and self.within_reach(i, z)
            ]
            if not active:
                continue
            for i in active:
                if z == self.z_key[i]:
                    prev.pop(i, None)
            result = self.run_slice(z, active, prev, "up")
            for k, i in enumerate(active):
                prev[i] = self.unretried.pop(i, result.masks[k])
                if z == self.z_key[i]:
                    self.key_masks[i] = prev[i]
                if self.stops(i, z, result.masks[k]):
                    stopped.add(i)
            yield result

    def sweep_down(self) -> Iterator[SliceResult]:
        """From below the highest start slice down to the lowest z_min, from the start masks."""
        prev = dict(self.key_masks)
        stopped = {
            i
            for i in range(self.n)
            if self.ends_at_empty[i] and not self.key_masks.get(i, np.ones(1)).any()
        }
        mirrored = self.vp.mirror_slices and self.frame.mirrorable
        for z in range(int(self.z_key.max()) - 1, int(self.z_lo.min()) - 1, -1):
            active = [
                i
                for i in range(self.n)
                if self.z_lo[i] <= z < self.z_key[i]
                and i not in stopped
                and self.within_reach(i, z)
            ]
            if not active:
                continue
            result = self.run_slice(z, active, prev, "down")
            if not self.keep_all:
                self.cache.discard(z)
                if mirrored:
                    self.cache.mirrored().discard(z)
            for k, i in enumerate(active):
                prev[i] = self.unretried.pop(i, result.masks[k])
                if self.stops(i, z, result.masks[k]):
                    stopped.add(i)
            yield result


def extent_rows(boxes_3d: NDArray, extents: Collection[tuple[int, ...]]) -> NDArray | None:
    """``clip_boxes`` for :func:`propagate`: the x/y range of each (N, 6) box found in
    ``extents`` (boxes known to be their objects' extents), NaN for the others; None if none."""
    rows = [tuple(int(v) for v in b) in extents for b in boxes_3d]
    if not any(rows):
        return None
    out = np.asarray(boxes_3d, np.float64)[:, [0, 1, 3, 4]].copy()
    out[~np.asarray(rows)] = np.nan
    return out


def clip_to_extent(
    box: NDArray, extent: NDArray, size: int, margin: float = NEXT_SLICE_BOX_MARGIN
) -> NDArray[np.float32]:
    """``box`` (model frame) cut to ``extent`` widened by ``margin`` px and to the frame.

    A box that lies wholly outside the widened extent becomes the widened extent.
    """
    lo = np.clip(np.asarray(extent[:2], np.float32) - margin, 0, size)
    hi = np.clip(np.asarray(extent[2:], np.float32) + margin, 0, size)
    out = np.concatenate([np.maximum(box[:2], lo), np.minimum(box[2:], hi)])
    if (out[2:] <= out[:2]).any():
        out = np.concatenate([lo, hi])
    return out.astype(np.float32)


def paint_labels(target: NDArray, masks: NDArray[np.bool_], labels: NDArray) -> None:
    """Write ``labels`` into ``target`` where ``masks`` are set; the highest label wins overlaps.

    This equals painting objects in ascending label order, whatever order the masks arrive in.
    """
    for mask, label in zip(masks, labels, strict=True):
        region = mask & (target < label)
        target[region] = label
