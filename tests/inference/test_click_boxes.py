"""Click-agreeing boxes for 3D corrections: which clicks a mask contradicts, the retry boxes, the
choice among retries, and the rule inside propagation."""

from __future__ import annotations

import numpy as np

import umedsam.inference.interactive as interactive
from umedsam.data.npz import CasePrompts
from umedsam.inference.click_boxes import best_agreeing, candidate_boxes, contradicted
from umedsam.inference.prompts import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, DecoderPrompts


def test_contradicted_clicks() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:6, 2:6] = True
    points = np.array([[3, 3], [8, 8], [4, 4], [9, 0]])  # xy
    labels = np.array([1, 1, 0, 0])
    assert contradicted(mask, points, labels).tolist() == [False, True, True, False]


def test_candidate_boxes_cut_past_a_background_click_and_keep_foreground_clicks() -> None:
    box = np.array([10.0, 10.0, 50.0, 50.0])
    points = np.array([[40.0, 30.0], [20.0, 20.0]])  # a background click, a foreground click
    labels = np.array([0, 1])
    boxes = candidate_boxes(box, points, labels, np.array([True, False]), ratio=1.0)
    # moving x_min or y_min past the background click would drop the foreground click
    assert [b.tolist() for b in boxes] == [[10.0, 10.0, 39.0, 50.0], [10.0, 10.0, 50.0, 29.0]]
    widened = candidate_boxes(box, np.array([[60.0, 30.0]]), np.array([1]), np.array([True]), 2.0)
    assert [b.tolist() for b in widened] == [[10.0, 10.0, 122.0, 62.0]]  # clicks scale by ratio


def test_best_agreeing_changes_the_first_mask_least() -> None:
    first = np.zeros((1, 20, 20), bool)
    first[0, 2:18, 2:18] = True
    small, large, wrong = first.copy(), first.copy(), first.copy()
    small[0, :, 8:] = False
    large[0, :, 15:] = False
    masks = np.concatenate([small, large, wrong])
    points, labels = np.array([[16, 10]]), np.array([0])
    assert best_agreeing(masks, first[0], points, labels) == 1
    assert best_agreeing(wrong, first[0], points, labels) is None


class BoxDecoder:
    """A decoder whose mask is its box: the retry rule, not a model, is under test."""

    name = "box-decoder"
    image_size = 64

    def encode(self, images: np.ndarray) -> np.ndarray:
        return np.zeros((len(images), 1), np.float32)

    def _fill(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.full((len(boxes), 1, 64, 64), -10.0, np.float32)
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            out[k, 0, int(np.ceil(y0)) : int(y1) + 1, int(np.ceil(x0)) : int(x1) + 1] = 10.0
        return out, np.ones((len(boxes), 1), np.float32)

    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._fill(np.asarray(boxes).reshape(-1, 4))

    def decode_prompts(
        self, embedding: np.ndarray, prompts: DecoderPrompts
    ) -> tuple[np.ndarray, np.ndarray]:
        boxes = []
        for coords, labels in zip(prompts.coords, prompts.labels, strict=True):
            tl = coords[labels == BOX_TOP_LEFT][0]
            br = coords[labels == BOX_BOTTOM_RIGHT][0]
            boxes.append([*tl, *br])
        return self._fill(np.asarray(boxes))


def test_a_contradicted_background_click_is_honoured_only_with_click_boxes(monkeypatch) -> None:
    d = 5
    volume = np.zeros((d, 64, 64), np.uint8)
    prev = np.zeros((d, 64, 64), np.uint8)
    prev[:, 12:43, 12:43] = 1
    prompts = CasePrompts(
        np.array([1]),
        np.array([[12.0, 12.0, 0.0, 42.0, 42.0, 4.0]]),
        None,
        (np.array([[2, 30, 40]]),),  # (z, y, x): background, inside the previous mask
        (np.array([0]),),
        prev_pred=prev,
    )
    monkeypatch.setattr(interactive, "CLICK_BOXES", False)
    plain, _ = interactive.segment_interactive_volume(BoxDecoder(), volume, prompts)
    assert plain[2, 30, 40] == 1
    monkeypatch.setattr(interactive, "CLICK_BOXES", True)
    honoured, _ = interactive.segment_interactive_volume(BoxDecoder(), volume, prompts)
    assert honoured[2, 30, 40] == 0 and honoured[2, 30, 38] == 1  # the right side moved in
    assert honoured[2, 12:40, 12:39].all()  # and nothing else of the object was lost
    monkeypatch.setattr(interactive, "CLICK_REACH", 0)  # the click stays on its slice
    local, _ = interactive.segment_interactive_volume(BoxDecoder(), volume, prompts)
    assert local[2, 30, 40] == 0
    assert local[3, 30, 40] == 1 and local[1, 30, 40] == 1  # neighbours box the first mask
