"""Prompts that agree with the mask change nothing: the test, and the rule in ``umedsam predict``
and the apps' corrections (one rule for both)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import umedsam.inference.agreement as agreement
from umedsam.data.npz import SCRIBBLE_BACKGROUND, CasePrompts
from umedsam.inference.agreement import prompts_agree
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.interactive import segment_interactive_image


def _disk() -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    return (yy - 32) ** 2 + (xx - 32) ** 2 < 15**2


def test_strokes_and_clicks_agree_only_when_every_pixel_does() -> None:
    mask = _disk()
    strokes = np.zeros((64, 64), np.int8)
    strokes[30:34, 25:40] = 1  # inside
    strokes[2:4, 2:20] = -1  # outside
    assert prompts_agree(mask, strokes)
    poking = strokes.copy()
    poking[32, 10:20] = 1  # leaves the mask at x < 18
    assert not prompts_agree(mask, poking)
    wrong_negative = strokes.copy()
    wrong_negative[32, 30] = -1
    assert not prompts_agree(mask, wrong_negative)
    inside, outside = np.array([[32.0, 32.0]]), np.array([[2.0, 2.0]])
    assert prompts_agree(mask, None, inside, np.array([1]))
    assert prompts_agree(mask, strokes, outside, np.array([0]))
    assert not prompts_agree(mask, strokes, outside, np.array([1]))
    assert not prompts_agree(mask, None, inside, np.array([0]))
    assert not prompts_agree(mask)  # no prompt: nothing agrees
    assert not prompts_agree(mask, np.zeros((64, 64), np.int8), np.zeros((0, 2)), np.zeros(0))


def _case(previous: np.ndarray, scribble: np.ndarray) -> CasePrompts:
    return CasePrompts(
        labels=np.array([1]),
        boxes=np.array([[10, 10, 54, 54]], np.float64),
        start_slices=None,
        clicks=(np.zeros((0, 2), np.int64),),
        click_labels=(np.zeros(0, np.int64),),
        scribbles=scribble,
        prev_pred=previous.astype(np.uint8),
    )


@pytest.mark.parametrize("agrees", [True, False])
def test_umedsam_predict_keeps_the_previous_mask_for_agreeing_strokes(
    tiny_model, monkeypatch, agrees: bool
) -> None:
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    previous = _disk()
    scribble = np.zeros((64, 64), np.int16)
    scribble[30:34, 25:40] = 1
    scribble[2:4, 2:20] = SCRIBBLE_BACKGROUND
    if not agrees:
        scribble[32, 5:20] = 1
    backend = TorchBackend(tiny_model)
    monkeypatch.setattr(agreement, "KEEP_AGREEING_2D", False)
    model_only, _ = segment_interactive_image(backend, image, _case(previous, scribble))
    monkeypatch.setattr(agreement, "KEEP_AGREEING_2D", True)
    found, _ = segment_interactive_image(backend, image, _case(previous, scribble))
    assert not np.array_equal(model_only == 1, previous)  # the random model redraws the mask
    expected = previous if agrees else model_only == 1
    assert np.array_equal(found == 1, expected)


def test_the_apps_correction_keeps_the_mask_for_an_agreeing_stroke(
    tiny_model, monkeypatch, tmp_path: Path
) -> None:
    """The web app (and napari, through the same session): a stroke that agrees with the box's
    mask leaves it as it is; the same stroke gives the CLI's mask (the box's)."""
    from umedsam.ui.images import LoadedImage, npz_meta
    from umedsam.ui.session import Session

    monkeypatch.setattr(agreement, "KEEP_AGREEING_2D", True)
    pixels = np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)
    session = Session("s", LoadedImage("noise", pixels, npz_meta((64, 64), None, 3)), tmp_path)
    backend = TorchBackend(tiny_model)
    box = [8, 8, 56, 56]
    session.segment(backend, [box], [[]])
    assert session.segs is not None
    boxed = session.segs == 1
    ys, xs = np.nonzero(boxed)
    assert len(ys) > 10
    stroke = {"stroke": [[int(xs[0]), int(ys[0])]], "label": 1, "radius": 0.5}
    session.segment(backend, [box], [[stroke]])
    assert np.array_equal(session.segs == 1, boxed)
    off_mask = np.argwhere(~boxed)[0]
    outside = {"stroke": [[int(off_mask[1]), int(off_mask[0])]], "label": 1, "radius": 0.5}
    session.segment(backend, [box], [[stroke, outside]])
    assert not np.array_equal(session.segs == 1, boxed)  # a disagreeing stroke: the model


def test_settle_correction_applies_the_rules_in_one_order(monkeypatch) -> None:
    """Agreeing prompts keep the previous mask; otherwise only the changes a stroke touches
    stand; with no previous mask the model's mask stands."""
    import umedsam.inference.click_locality as local

    monkeypatch.setattr(agreement, "KEEP_AGREEING_2D", True)
    monkeypatch.setattr(local, "LOCAL_STROKES_2D", True)
    previous = np.zeros((40, 40), bool)
    previous[10:20, 10:20] = True
    new = previous.copy()
    new[10:20, 20:26] = True  # grown across the stroke
    new[30:35, 30:35] = True  # a piece far from it
    inside = np.zeros((40, 40), np.int8)
    inside[15, 12:18] = 1
    assert np.array_equal(agreement.settle_correction(previous, new, inside), previous)
    across = np.zeros((40, 40), np.int8)
    across[15, 14:24] = 1
    settled = agreement.settle_correction(previous, new, across)
    assert settled[10:20, 20:26].all() and not settled[30:35, 30:35].any()
    empty = np.zeros((40, 40), bool)
    assert np.array_equal(agreement.settle_correction(empty, new, across), new)
