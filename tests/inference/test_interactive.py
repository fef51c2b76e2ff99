"""Interactive cases on arrays: 2D batches, 3D corrections, box-less objects, 3D scribbles."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.data.npz import CasePrompts
from umedsam.errors import InputError
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.interactive import (
    _volume_prompts,
    carried_slices,
    segment_interactive_image,
    segment_interactive_volume,
)
from umedsam.inference.propagation import PropagationStats, SliceEmbeddingCache


def _no_clicks(n: int, ndim: int):
    return tuple(np.zeros((0, ndim), np.int64) for _ in range(n)), tuple(
        np.zeros(0, np.int64) for _ in range(n)
    )


def test_2d_case_labels_follow_the_prompt_ids(tiny_model, make_disk) -> None:
    img, mask = make_disk(48, 64, center=(24, 30), radius=10)
    scribbles = np.zeros((48, 64), np.int32)
    scribbles[24, 25:35] = 9
    clicks, labels = _no_clicks(1, 2)
    prompts = CasePrompts(np.array([9]), None, None, clicks, labels, scribbles)
    segs, iou = segment_interactive_image(TorchBackend(tiny_model), img, prompts)
    assert segs.shape == (48, 64) and set(np.unique(segs)) <= {0, 9} and iou.shape == (1,)


def test_correction_restarts_on_the_newest_click_and_extends_the_range() -> None:
    d, h, w = 12, 32, 32
    box = np.array([[4.0, 4.0, 3.0, 20.0, 20.0, 6.0]])
    clicks = (np.array([[5, 10, 10], [9, 12, 12]]),)  # the second (newest) lies beyond z_max
    prompts = CasePrompts(np.array([1]), box, np.array([4]), clicks, (np.array([1, 0]),))
    boxes, starts, per_slice, has_box = _volume_prompts(prompts, (d, h, w))
    assert has_box.tolist() == [True]
    assert boxes[0, 2] == 3 and boxes[0, 5] == 6  # a negative click does not extend the range
    assert starts.tolist() == [6]  # the newest click's slice, clipped into the range
    assert set(per_slice) == {(0, 5), (0, 9)}
    fg = CasePrompts(
        np.array([1]), box, np.array([4]), (np.array([[9, 12, 12]]),), (np.array([1]),)
    )
    boxes, starts, _, _ = _volume_prompts(fg, (d, h, w))
    assert boxes[0, 5] == 9 and starts.tolist() == [9]  # a foreground click extends it


def test_a_click_reaches_the_neighbours_where_the_previous_mask_is_wrong_the_same_way() -> None:
    previous = np.zeros((10, 8, 8), bool)
    previous[2:7, 3, 3] = True  # the previous mask covers (3, 3) on slices 2..6
    # a negative click on slice 4 contradicts the mask there: copied while the mask is on
    assert carried_slices(previous, 4, 3, 3, 0, reach=2) == [3, 2, 5, 6]
    assert carried_slices(previous, 4, 3, 3, 0, reach=1) == [3, 5]
    assert carried_slices(previous, 6, 3, 3, 0, reach=3) == [5, 4, 3]  # slice 7 is already off
    # a positive click off the mask is copied to neighbours where the mask is off too
    assert carried_slices(previous, 8, 3, 3, 1, reach=2) == [7, 9]
    # a click that agrees with the previous mask, no previous mask, or no reach: its slice only
    assert carried_slices(previous, 4, 3, 3, 1, reach=2) == []
    assert carried_slices(None, 4, 3, 3, 0, reach=2) == []
    assert carried_slices(previous, 4, 3, 3, 0, reach=0) == []


def test_carried_clicks_join_the_neighbour_slices_prompts() -> None:
    d, h, w = 12, 32, 32
    box = np.array([[4.0, 4.0, 2.0, 20.0, 20.0, 9.0]])
    prev = np.zeros((d, h, w), np.uint8)
    prev[3:8, 6:16, 6:16] = 1
    clicks = (np.array([[5, 10, 10]]),)
    prompts = CasePrompts(np.array([1]), box, None, clicks, (np.array([0]),), None, prev)
    _, _, per_slice, _ = _volume_prompts(prompts, (d, h, w), click_reach=2)
    assert set(per_slice) == {(0, 3), (0, 4), (0, 5), (0, 6), (0, 7)}
    assert per_slice[(0, 4)][1].tolist() == [0]
    _, _, per_slice, _ = _volume_prompts(prompts, (d, h, w), click_reach=0)
    assert set(per_slice) == {(0, 5)}


def test_boxless_object_and_cached_embeddings(tiny_model) -> None:
    d, h, w = 10, 32, 32
    vol = np.random.default_rng(1).integers(0, 255, (d, h, w)).astype(np.uint8)
    prompts = CasePrompts(np.array([1]), None, None, (np.array([[5, 16, 16]]),), (np.array([1]),))
    cache = SliceEmbeddingCache(64.0)
    stats = PropagationStats()
    backend = TorchBackend(tiny_model)
    segs, _ = segment_interactive_volume(backend, vol, prompts, embeddings=cache, stats=stats)
    assert segs.shape == (d, h, w)
    first = stats.encoder_calls
    again = PropagationStats()
    segment_interactive_volume(backend, vol, prompts, embeddings=cache, stats=again)
    assert again.encoder_calls == 0 and first >= 1  # a second step encodes nothing
    nothing = CasePrompts(np.array([1]), None, None, (np.array([[5, 16, 16]]),), (np.array([0]),))
    with pytest.raises(InputError, match="nothing says where it is"):
        segment_interactive_volume(backend, vol, nothing)


def test_3d_scribbles_become_points_on_their_slices(tiny_model) -> None:
    d, h, w = 8, 32, 32
    scribbles = np.zeros((d, h, w), np.int32)
    scribbles[3, 10, 5:25] = 1
    scribbles[5, 2, 0:10] = 1000
    clicks, labels = _no_clicks(1, 3)
    prompts = CasePrompts(np.array([1]), None, None, clicks, labels, scribbles)
    _, starts, per_slice, has_box = _volume_prompts(prompts, (d, h, w))
    assert not has_box[0] and starts.tolist() == [3]
    xy, lab = per_slice[(0, 3)]
    assert len(xy) == 8 and (lab == 1).all() and (xy[:, 1] == 10).all()
    assert (per_slice[(0, 5)][1] == 0).all()  # background strokes: negative points


def test_extents_take_in_foreground_clicks_and_strokes_outside_the_box() -> None:
    from umedsam.inference.interactive import _extents

    boxes = np.array([[10.0, 10, 0, 20, 20, 4], [30.0, 30, 0, 40, 40, 4]])
    scribbles = np.zeros((5, 64, 64), np.int64)
    scribbles[2, 50, 45] = 2  # object 2's stroke, right of and below its box
    scribbles[2, 5, 5] = 1000  # background strokes widen nothing
    prompts = CasePrompts(
        labels=np.array([1, 2]),
        boxes=boxes,
        start_slices=None,
        clicks=(np.array([[1, 25, 3], [1, 2, 2]]), np.zeros((0, 3), np.int64)),
        click_labels=(np.array([1, 0]), np.zeros(0, np.int64)),
        scribbles=scribbles,
    )
    np.testing.assert_array_equal(_extents(boxes, prompts), [[3, 10, 20, 25], [30, 30, 45, 50]])


def test_bounded_propagation_only_for_models_other_than_the_official_one() -> None:
    from umedsam.models.cards import bounded_propagation

    assert not bounded_propagation("litemedsam")
    assert bounded_propagation("litemedsam", checkpoint="fine-tuned.pt")
    assert bounded_propagation("umedsam_merged") and bounded_propagation("umedsam_interactive")


def test_mirror_slices_only_for_models_that_take_mask_prompts(tiny_model, monkeypatch) -> None:
    import umedsam.inference.interactive as interactive

    d, h, w = 8, 32, 32
    vol = np.random.default_rng(2).integers(0, 255, (d, h, w)).astype(np.uint8)
    box = np.array([[4.0, 4.0, 2.0, 20.0, 20.0, 5.0]])
    prompts = CasePrompts(np.array([1]), box, None, (np.zeros((0, 3), np.int64),), (np.zeros(0),))
    backend = TorchBackend(tiny_model)
    calls = {}
    for mirrored in (False, True):
        monkeypatch.setattr(interactive, "MIRROR_SLICES", mirrored)
        for mask_prompts in (False, True):
            stats = PropagationStats()
            segment_interactive_volume(
                backend, vol, prompts, mask_prompts=mask_prompts, stats=stats
            )
            calls[mirrored, mask_prompts] = stats.encoder_calls
    assert calls[False, True] == calls[False, False] == calls[True, False] == 4  # slices 2-5
    assert calls[True, True] == 8
