"""3D propagation: same labels as the official per-object algorithm, each slice encoded once."""

from __future__ import annotations

import numpy as np
import torch

from umedsam.data.transforms import boxes_to_model_frame, mask_to_model_box, preprocess_image
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.propagation import (
    PropagationStats,
    SliceEmbeddingCache,
    clip_to_extent,
    key_slices,
    paint_labels,
    propagate,
)
from umedsam.inference.segment import segment_volume_case


class CountingBackend(TorchBackend):
    def __init__(self, model) -> None:
        super().__init__(model)
        self.encoded = 0

    def encode(self, images):
        self.encoded += images.shape[0]
        return super().encode(images)


def official_algorithm(backend, volume, boxes):
    """The official CVPR24 LiteMedSAM 3D loop: objects in order, every slice re-encoded.

    Post-processing is done with torch, as the official code does (F.interpolate, sigmoid > 0.5),
    so this also checks umedsam's numpy post-processing against it.
    """
    d, h, w = volume.shape
    s = backend.image_size
    segs = np.zeros(volume.shape, np.uint8)
    for idx, (x0, y0, z0, x1, y1, z1) in enumerate(boxes, start=1):
        temp = np.zeros(volume.shape, np.uint8)
        mid_box = boxes_to_model_frame(np.array([[x0, y0, x1, y1]]), (h, w), s)[0]
        z_mid = int((z1 - z0) / 2 + z0)

        def seg(z, prev_z, temp=temp, idx=idx, mid_box=mid_box):
            tensor, new_hw = preprocess_image(volume[z], s)
            emb = backend.encode(tensor)
            box = mid_box
            if prev_z is not None:
                b = mask_to_model_box(temp[prev_z] > 0, label=idx, size=s)
                box = mid_box if b is None else b
            lo, _ = backend.decode(emb, box[None])
            lo = torch.from_numpy(lo)[..., : new_hw[0], : new_hw[1]]
            up = torch.nn.functional.interpolate(lo, (h, w), mode="bilinear", align_corners=False)
            return (torch.sigmoid(up) > 0.5)[0, 0].numpy()

        for z in range(z_mid, min(z1 + 1, d)):
            temp[z][seg(z, None if z == z_mid else z - 1)] = idx
        for z in range(z_mid - 1, max(-1, z0 - 1), -1):
            temp[z][seg(z, z + 1)] = idx
        segs[temp > 0] = idx
    return segs


def _volume():
    rng = np.random.default_rng(3)
    vol = rng.integers(0, 80, size=(14, 40, 52)).astype(np.uint8)
    vol[3:12, 10:30, 12:40] += 120
    boxes = np.array(
        [
            [12, 10, 3, 39, 29, 11],
            [20, 12, 5, 30, 25, 9],  # overlaps the first: later label wins
            [0, 0, 0, 51, 39, 13],  # whole volume
            [5, 5, 7, 15, 15, 7],  # single slice
        ]
    )
    return vol, boxes


def test_lockstep_equals_official_and_encodes_each_slice_once(tiny_model) -> None:
    vol, boxes = _volume()
    official = official_algorithm(TorchBackend(tiny_model), vol, boxes)
    backend = CountingBackend(tiny_model)
    result = segment_volume_case(backend, vol, boxes)
    np.testing.assert_array_equal(result.segs, official)
    assert backend.encoded == 14  # union of z-ranges, not the sum of extents (9+5+14+1)
    assert result.stats is not None and result.stats.decoder_boxes == 9 + 5 + 14 + 1


def test_small_cache_still_correct(tiny_model) -> None:
    vol, boxes = _volume()
    full = segment_volume_case(TorchBackend(tiny_model), vol, boxes).segs
    backend = CountingBackend(tiny_model)
    stats = PropagationStats()
    segs = np.zeros(vol.shape, np.uint8)
    # nothing fits in the cache: slices needed twice are re-encoded
    for r in propagate(backend, vol, boxes, cache_mb=0.0, stats=stats):
        for k, i in enumerate(r.object_ids):
            region = r.masks[k] & (segs[r.z] < i + 1)
            segs[r.z][region] = i + 1
    np.testing.assert_array_equal(segs, full)
    assert backend.encoded > 14


def test_generator_order_and_progress(tiny_model) -> None:
    vol, boxes = _volume()
    seen = []
    results = list(propagate(TorchBackend(tiny_model), vol, boxes, progress=seen.append))
    ups = [r.z for r in results if r.direction == "up"]
    downs = [r.z for r in results if r.direction == "down"]
    assert ups == sorted(ups) and downs == sorted(downs, reverse=True)
    assert min(ups) == key_slices(boxes).min()
    assert seen == list(range(1, len(results) + 1))


def test_key_slices_match_official_formula() -> None:
    boxes = np.array([[0, 0, 3, 5, 5, 11], [0, 0, 4, 5, 5, 4], [0, 0, 0, 5, 5, 1]])
    np.testing.assert_array_equal(key_slices(boxes), [7, 4, 0])


def test_start_flags_and_iou_per_slice(tiny_model) -> None:
    vol, boxes = _volume()
    keys = key_slices(boxes)
    starts = {}
    for r in propagate(TorchBackend(tiny_model), vol, boxes):
        assert r.is_start.shape == r.object_ids.shape == r.iou.shape
        for i in r.object_ids[r.is_start]:
            assert int(i) not in starts
            starts[int(i)] = r.z
    assert starts == {i: int(k) for i, k in enumerate(keys)}


def test_start_slice_can_be_chosen(tiny_model) -> None:
    vol, boxes = _volume()
    chosen = np.array([3, 9, 13, 7])  # ends and a middle of each z-range
    results = list(propagate(TorchBackend(tiny_model), vol, boxes, start_slices=chosen))
    for r in results:
        for i, start in zip(r.object_ids, r.is_start, strict=True):
            assert start == (r.z == chosen[i])
            assert boxes[i, 2] <= r.z <= boxes[i, 5]
    covered = {(int(i), r.z) for r in results for i in r.object_ids}
    assert covered == {(i, z) for i, b in enumerate(boxes) for z in range(b[2], b[5] + 1)}
    import pytest

    with pytest.raises(ValueError, match="start_slices"):
        list(propagate(TorchBackend(tiny_model), vol, boxes, start_slices=np.array([0, 9, 13, 7])))


def test_callers_cache_is_reused_across_propagations(tiny_model) -> None:
    """A cache kept for the volume: a second propagation encodes only the slices it lacks."""
    vol, boxes = _volume()
    backend = CountingBackend(tiny_model)
    cache = SliceEmbeddingCache(max_mb=64.0)
    first = np.zeros(vol.shape, np.uint8)
    for r in propagate(backend, vol, boxes[:2], embeddings=cache):
        paint_labels(first[r.z], r.masks, r.object_ids + 1)
    assert backend.encoded == len(cache) == 9  # z 3..11, every slice kept
    second = np.zeros(vol.shape, np.uint8)
    for r in propagate(backend, vol, boxes, embeddings=cache):
        paint_labels(second[r.z], r.masks, r.object_ids + 1)
    assert backend.encoded == 14  # only z 0..2 and 12..13 were new
    fresh = segment_volume_case(TorchBackend(tiny_model), vol, boxes).segs
    np.testing.assert_array_equal(second, fresh)  # cached float32 embeddings change nothing


def test_volume_encoded_ahead_gives_the_same_masks(tiny_model) -> None:
    from umedsam.inference.propagation import encode_volume

    vol, boxes = _volume()
    backend = CountingBackend(tiny_model)
    cache = SliceEmbeddingCache(max_mb=64.0)
    seen = []
    assert encode_volume(backend, vol, cache, progress=seen.append) == 14
    assert seen[-1] == 14 and backend.encoded == 14
    segs = np.zeros(vol.shape, np.uint8)
    for r in propagate(backend, vol, boxes, embeddings=cache):
        paint_labels(segs[r.z], r.masks, r.object_ids + 1)
    assert backend.encoded == 14  # propagation encoded nothing more
    np.testing.assert_array_equal(
        segs, segment_volume_case(TorchBackend(tiny_model), vol, boxes).segs
    )
    stopped = SliceEmbeddingCache(max_mb=64.0)
    assert encode_volume(backend, vol, stopped, should_stop=lambda: len(stopped) >= 3) == 3
    assert sorted(stopped._store) == [6, 7, 8]  # the middle first


class BoxRecordingBackend(TorchBackend):
    def __init__(self, model) -> None:
        super().__init__(model)
        self.boxes: list[np.ndarray] = []

    def decode(self, embedding, boxes):
        self.boxes.append(np.array(boxes))
        return super().decode(embedding, boxes)


def test_clip_to_extent_cuts_to_the_widened_extent_and_the_frame() -> None:
    extent = np.array([10.0, 20.0, 50.0, 60.0])
    np.testing.assert_array_equal(
        clip_to_extent(np.array([0.0, 30.0, 90.0, 62.0]), extent, 256), [7, 30, 53, 62]
    )
    np.testing.assert_array_equal(
        clip_to_extent(np.array([1.0, 1.0, 250.0, 250.0]), np.array([0, 0, 255, 255.0]), 256),
        [1, 1, 250, 250],
    )
    # a box wholly outside the widened extent becomes the widened extent
    np.testing.assert_array_equal(
        clip_to_extent(np.array([100.0, 100.0, 120.0, 120.0]), extent, 256), [7, 17, 53, 63]
    )


def test_bounded_propagation_keeps_every_box_inside_its_3d_box(tiny_model) -> None:
    vol, boxes = _volume()
    boxes = boxes[:2]
    d, h, w = vol.shape
    official = BoxRecordingBackend(tiny_model)
    plain = segment_volume_case(official, vol, boxes).segs
    bounded = BoxRecordingBackend(tiny_model)
    clipped = segment_volume_case(bounded, vol, boxes, clip_to_box=True).segs
    extents = boxes_to_model_frame(boxes[:, [0, 1, 3, 4]], (h, w), bounded.image_size)
    lo, hi = extents[:, :2].min(0) - 3, extents[:, 2:].max(0) + 3
    every = np.concatenate(bounded.boxes)
    assert (every[:, :2] >= lo).all() and (every[:, 2:] <= hi).all()
    # the random-weight model's masks spill over their boxes, so the official rule widens them
    spilled = np.concatenate(official.boxes)
    assert (spilled[:, :2] < lo).any() or (spilled[:, 2:] > hi).any()
    assert not np.array_equal(plain, clipped)


def test_correction_reach_bounds_objects_with_a_previous_mask(tiny_model) -> None:
    """A correction re-propagates an object with a previous mask only near its start slice;
    an object new to the label map propagates over its whole range."""
    from umedsam.inference.propagation import VolumePrompts

    vol, boxes = _volume()
    prev = np.zeros(vol.shape, np.uint8)
    prev[3:12, 12:28, 14:36] = 1  # object 1 has a previous mask, object 2 none
    prompts = VolumePrompts(
        prev_masks=prev, labels=np.array([1, 2]), settle_dsc=None, correction_reach=1
    )
    starts = np.array([7, 7])
    results = list(
        propagate(TorchBackend(tiny_model), vol, boxes[:2], start_slices=starts, prompts=prompts)
    )
    covered = {(int(i), r.z) for r in results for i in r.object_ids}
    assert covered == {(0, 6), (0, 7), (0, 8)} | {(1, z) for z in range(5, 10)}
    unbounded = VolumePrompts(prev_masks=prev, labels=np.array([1, 2]), settle_dsc=None)
    results = list(
        propagate(TorchBackend(tiny_model), vol, boxes[:2], start_slices=starts, prompts=unbounded)
    )
    assert {r.z for r in results if 0 in r.object_ids} == set(range(3, 12))


def test_propagated_threshold_cuts_masks_off_the_start_slice_only(tiny_model) -> None:
    """Slices other than an object's start slice keep the pixels whose logit exceeds the
    threshold; the start slice keeps 0, and the yielded logits stay the decoder's own."""
    from umedsam.data.transforms import low_res_to_masks, resized_hw
    from umedsam.inference.propagation import VolumePrompts

    vol, boxes = _volume()
    d, h, w = vol.shape
    backend = TorchBackend(tiny_model)
    new_hw = resized_hw((h, w), backend.image_size)
    starts = np.array([7, 7])
    plain = list(propagate(backend, vol, boxes[:2], start_slices=starts))
    cut = list(
        propagate(
            backend,
            vol,
            boxes[:2],
            start_slices=starts,
            prompts=VolumePrompts(propagated_threshold=0.5),
        )
    )
    assert [r.z for r in cut] == [r.z for r in plain]
    for res in cut:
        for k in range(len(res.object_ids)):
            t = 0.0 if res.is_start[k] else 0.5
            expected = low_res_to_masks(res.low_res_logits[k : k + 1] - t, new_hw, (h, w))[0]
            np.testing.assert_array_equal(res.masks[k], expected)
    start_plain = [r for r in plain if r.z == 7][0]
    start_cut = [r for r in cut if r.z == 7][0]
    np.testing.assert_array_equal(start_cut.masks, start_plain.masks)
    # off the start slice the cut masks are never larger in total than the uncut ones would be
    assert sum(int(r.masks.sum()) for r in cut) < sum(int(r.masks.sum()) for r in plain)


def test_clicked_start_slice_is_cut_too_when_asked(tiny_model) -> None:
    """With ``cut_clicked_start``, a start slice prompted by clicks is cut at the threshold; an
    object whose start slice has its box alone keeps 0 there."""
    from umedsam.data.transforms import low_res_to_masks, resized_hw
    from umedsam.inference.propagation import VolumePrompts

    vol, boxes = _volume()
    d, h, w = vol.shape
    backend = TorchBackend(tiny_model)
    new_hw = resized_hw((h, w), backend.image_size)
    clicks = {(0, 7): (np.array([[25.0, 20.0]]), np.array([1]))}  # object 0 only
    clicked = []
    for cut in (False, True):
        prompts = VolumePrompts(clicks=clicks, propagated_threshold=0.5, cut_clicked_start=cut)
        results = list(
            propagate(backend, vol, boxes[:2], start_slices=np.array([7, 7]), prompts=prompts)
        )
        start = [r for r in results if r.z == 7][0]
        for k, i in enumerate(start.object_ids):
            t = 0.5 if (cut and i == 0) else 0.0
            expected = low_res_to_masks(start.low_res_logits[k : k + 1] - t, new_hw, (h, w))[0]
            np.testing.assert_array_equal(start.masks[k], expected)
        clicked.append(start.masks[list(start.object_ids).index(0)])
    assert clicked[1].sum() < clicked[0].sum()


def test_mirror_slices_average_each_slice_with_its_mirror_image(tiny_model) -> None:
    """With ``mirror_slices`` every slice is also encoded flipped (kept in the cache's mirror
    store) and its logits are the mean of the two decodings, the mirror's flipped back."""
    from umedsam.data.transforms import preprocess_slices, resized_hw
    from umedsam.inference.prompts import mirror_low_res
    from umedsam.inference.propagation import VolumePrompts

    vol, boxes = _volume()
    d, h, w = vol.shape
    backend = CountingBackend(tiny_model)
    size = backend.image_size
    new_w = resized_hw((h, w), size)[1]
    cache = SliceEmbeddingCache()
    starts = np.array([7, 7])
    prompts = VolumePrompts(mirror_slices=True)
    results = list(
        propagate(backend, vol, boxes[:2], start_slices=starts, embeddings=cache, prompts=prompts)
    )
    slices = {r.z for r in results}
    assert backend.encoded == 2 * len(slices)
    assert len(cache) == len(cache.mirrored()) == len(slices)
    flipped_slice, _ = preprocess_slices(np.ascontiguousarray(vol[7:8, :, ::-1]), size)
    np.testing.assert_allclose(cache.mirrored().get(7), backend.encode(flipped_slice), atol=1e-6)

    key = boxes_to_model_frame(boxes[:2][:, [0, 1, 3, 4]], (h, w), size).astype(np.float32)
    mirrored_key = key.copy()
    mirrored_key[:, [0, 2]] = new_w - key[:, [2, 0]]
    plain, _ = backend.decode(cache.get(7), key)
    mirror, _ = backend.decode(cache.mirrored().get(7), mirrored_key)
    start = [r for r in results if r.z == 7][0]
    expected = (plain + mirror_low_res(mirror, new_w)) / 2
    np.testing.assert_allclose(start.low_res_logits, expected, atol=1e-5)
    # the private cache (mirror embeddings dropped as the downward sweep passes) gives the same
    private = list(propagate(backend, vol, boxes[:2], start_slices=starts, prompts=prompts))
    for got, want in zip(private, results, strict=True):
        np.testing.assert_allclose(got.low_res_logits, want.low_res_logits, atol=1e-5)
    # without the flag nothing is mirrored
    alone = list(propagate(backend, vol, boxes[:2], start_slices=starts))
    assert not np.allclose([r for r in alone if r.z == 7][0].low_res_logits, expected)


class BrightBackend:
    """A stand-in that segments the bright pixels inside its box prompt (it encodes a slice as
    its 16 x 16 brightness), so an object ends where its slices are dark."""

    name = "bright"
    image_size = 64

    def encode(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images[:, :1, ::4, ::4], np.float32)

    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bright = np.kron(embedding[0, 0] > 0.5, np.ones((4, 4), bool))
        centres = np.arange(self.image_size) + 0.5
        logits = np.full((len(boxes), 1, self.image_size, self.image_size), -10.0, np.float32)
        for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
            inside = np.outer((centres >= y0) & (centres <= y1), (centres >= x0) & (centres <= x1))
            logits[i, 0][inside & bright] = 10.0
        return logits, np.ones((len(boxes), 1), np.float32)


def test_open_ends_stop_where_the_mask_vanishes() -> None:
    """A box over every slice propagates each way until its mask vanishes: a bright structure
    further on inside the box (another object) is not taken, and fewer slices are decoded."""
    volume = np.zeros((12, 64, 64), np.uint8)
    volume[3:7, 20:40, 20:40] = 200  # the object: slices 3-6
    volume[9:11, 24:36, 24:36] = 200  # something else, slices 9-10, inside the same box
    boxes = np.array([[16, 16, 0, 44, 44, 11]])
    start = np.array([5])

    def run(open_ends):  # type: ignore[no-untyped-def]
        segs = np.zeros(volume.shape, bool)
        decoded = 0
        for res in propagate(
            BrightBackend(), volume, boxes, start_slices=start, open_ends=open_ends
        ):
            segs[res.z] |= res.masks[0]
            decoded += 1
        return segs, decoded

    official, all_slices = run(None)
    assert official[9:11].any() and all_slices == 12  # the box's rule reaches the other structure
    ends, decoded = run(np.array([True]))
    assert np.flatnonzero(ends.any(axis=(1, 2))).tolist() == [3, 4, 5, 6]
    assert decoded == 6  # 5, 6, 7 (empty: stop) upward; 4, 3, 2 (empty: stop) downward


def test_the_web_app_propagates_a_box_over_every_slice_to_its_ends(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In a session, a drawn box over every slice ("to the ends") stops where its mask
    vanishes; the same box stored with the case keeps the challenge's rule."""
    from umedsam.ui.images import LoadedImage, npz_meta
    from umedsam.ui.session import Session

    volume = np.zeros((12, 64, 64), np.uint8)
    volume[4:9, 20:40, 20:40] = 200  # the object: slices 4-8 (key slice 5 of 0..11)
    volume[10:12, 24:36, 24:36] = 200
    box = [16, 16, 0, 44, 44, 11]
    meta = npz_meta(volume.shape, None, 1)
    drawn = Session("a", LoadedImage("v", volume, meta), tmp_path / "a")
    drawn.segment(BrightBackend(), [box])
    assert drawn.segs is not None
    assert np.flatnonzero(drawn.segs.any(axis=(1, 2))).tolist() == [4, 5, 6, 7, 8]
    stored = Session("b", LoadedImage("v", volume, meta, np.array([box])), tmp_path / "b")
    stored.segment(BrightBackend(), [box])
    assert stored.segs is not None and stored.segs[10:12].any()
