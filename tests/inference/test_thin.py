"""Thin structures from a stroke: the ridge test, the mask, and the rule inside the predictor."""

from __future__ import annotations

import numpy as np
import pytest

import umedsam.inference.thin as thin
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.predictor import Predictor
from umedsam.inference.thin import ridge_channel, thin_structure_mask


def _vessels(size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a dark two-pixel vessel tree (a trunk and a branch) on a noisy field,
    a separate dark line nobody strokes, and the tree's mask."""
    rng = np.random.default_rng(0)
    image = 180.0 + rng.normal(0.0, 3.0, (size, size))
    tree = np.zeros((size, size), bool)
    tree[20:140, 60:62] = True  # trunk
    for k in range(60):  # branch leaving the trunk at row 80
        tree[80 + k // 2, 62 + k : 64 + k] = True
    stray = np.zeros((size, size), bool)
    stray[20:140, 140:142] = True
    image[tree | stray] -= 60.0
    return np.clip(image, 0, 255).astype(np.uint8), tree


def test_a_stroke_on_a_vessel_gives_the_tree_it_touches_and_not_the_stray_line() -> None:
    image, tree = _vessels()
    stroke = np.zeros_like(tree)
    stroke[30:70, 60:62] = True  # part of the trunk only
    mask = thin_structure_mask(image, stroke)
    assert mask is not None
    dice = 2 * (mask & tree).sum() / (mask.sum() + tree.sum())
    assert dice > 0.7
    assert mask[120, 60:62].any() and mask[25, 60:62].any()  # the trunk beyond the stroke
    assert not mask[:, 130:].any()  # the stray line is not touched by the stroke


def test_a_negative_stroke_removes_its_pixels() -> None:
    image, tree = _vessels()
    stroke = np.zeros_like(tree)
    stroke[30:70, 60:62] = True
    negative = np.zeros_like(tree)
    negative[100:140, 55:67] = True
    mask = thin_structure_mask(image, stroke, negative)
    assert mask is not None and not mask[negative].any()


def test_a_stroke_inside_a_flat_blob_is_not_thin() -> None:
    rng = np.random.default_rng(1)
    image = 60.0 + rng.normal(0.0, 3.0, (160, 160))
    yy, xx = np.mgrid[:160, :160]
    image[(yy - 80) ** 2 + (xx - 80) ** 2 < 40**2] = 200.0
    stroke = np.zeros((160, 160), bool)
    stroke[80, 60:100] = True  # through the middle of the blob
    assert thin_structure_mask(image.astype(np.uint8), stroke) is None
    assert thin_structure_mask(image.astype(np.uint8), np.zeros((160, 160), bool)) is None


def test_ridge_channel_takes_green_of_a_colour_image() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 7
    assert ridge_channel(rgb).max() == 7 and ridge_channel(rgb[..., 0]).shape == (4, 4)


@pytest.mark.parametrize("logits", [False, True])
def test_predictor_first_prediction_from_strokes_takes_the_thin_path(
    tiny_model, monkeypatch, logits: bool
) -> None:
    image, tree = _vessels()
    strokes = np.zeros(tree.shape, np.int8)
    strokes[30:70, 60:62] = 1
    predictor = Predictor(TorchBackend(tiny_model))
    predictor.set_image(np.repeat(image[..., None], 3, axis=2))
    no_box = np.full((1, 4), np.nan)
    monkeypatch.setattr(thin, "THIN_STROKES", True)
    found = predictor.predict(no_box, scribbles=[strokes], return_logits=logits)
    expected = thin_structure_mask(np.repeat(image[..., None], 3, axis=2), strokes > 0)
    assert expected is not None and np.array_equal(found.masks[0], expected)
    assert found.thin is not None and found.thin.tolist() == [True]
    if logits:
        assert found.logits is not None and np.array_equal(found.logits[0] > 0, found.masks[0])
    monkeypatch.setattr(thin, "THIN_STROKES", False)
    model_only = predictor.predict(no_box, scribbles=[strokes], return_logits=False)
    assert not np.array_equal(model_only.masks[0], expected)
    assert model_only.thin is not None and model_only.thin.tolist() == [False]


def test_a_negative_stroke_across_a_branch_cuts_it_off() -> None:
    """A negative stroke drawn across the branch near the trunk removes the whole branch beyond
    it (severed from the positive stroke), and leaves the trunk."""
    from vessel_picture import vessel_picture

    image, _ = vessel_picture()
    stroke = np.zeros((160, 160), bool)
    stroke[30:70, 59:62] = True
    whole = thin_structure_mask(image, stroke)
    assert whole is not None and whole[110:125, 100:115].any()  # the branch, far from the cut
    negative = np.zeros((160, 160), bool)
    negative[84:100, 70:76] = True  # across the branch, about 12 px from the trunk
    cut = thin_structure_mask(image, stroke, negative)
    assert cut is not None and not cut[95:, 78:].any()
    assert cut[120, 58:63].any() and cut[25, 58:63].any()  # the trunk stays


def test_with_a_box_the_thin_mask_stays_inside_it(tiny_model) -> None:
    image, tree = _vessels()
    strokes = np.zeros(tree.shape, np.int8)
    strokes[30:70, 60:62] = 1
    predictor = Predictor(TorchBackend(tiny_model))
    predictor.set_image(image)
    box = np.array([[40, 10, 100, 100]])
    found = predictor.predict(box, scribbles=[strokes], return_logits=False, thin_strokes=True)
    whole = thin_structure_mask(image, strokes > 0)
    assert whole is not None and whole[100:140].any()
    assert found.thin is not None and found.thin[0]
    assert np.array_equal(found.masks[0][10:100, 40:100], whole[10:100, 40:100])
    assert found.masks[0].sum() == found.masks[0][10:100, 40:100].sum()


def test_a_large_image_is_filtered_smaller_and_still_follows_the_vessel(monkeypatch) -> None:
    image, tree = _vessels()
    monkeypatch.setattr(thin, "MAX_SIDE", 100)  # the 160-px image is filtered at 100 px
    stroke = np.zeros_like(tree)
    stroke[30:70, 60:62] = True
    mask = thin_structure_mask(image, stroke)
    assert mask is not None and mask.shape == tree.shape
    assert (mask & tree).sum() > 0.5 * tree[20:140, 60:62].sum() and not mask[:, 130:].any()


def test_a_later_stroke_on_the_same_image_reuses_the_ridge_response(
    tiny_model, monkeypatch
) -> None:
    """The predictor keeps the image's ridge response (per polarity): a second stroke, or a
    predictor sharing the image's embedding (the app's corrector), does not filter again; a
    new image does."""
    image, tree = _vessels()
    calls = []
    original = thin.ridge_response
    monkeypatch.setattr(thin, "ridge_response", lambda *a: calls.append(1) or original(*a))
    strokes = np.zeros(tree.shape, np.int8)
    strokes[30:70, 60:62] = 1
    predictor = Predictor(TorchBackend(tiny_model))
    predictor.set_image(image)
    first = predictor.predict(None, scribbles=[strokes], return_logits=False, thin_strokes=True)
    assert predictor._mirror is None  # a traced object skips the mirror pass (no second encode)
    strokes[100:130, 60:62] = 1
    sharing = predictor.sharing_embedding(predictor.backend)
    second = sharing.predict(None, scribbles=[strokes], return_logits=False, thin_strokes=True)
    assert len(calls) == 1 and first.thin is not None and second.thin is not None
    expected = thin_structure_mask(image, strokes > 0)
    assert expected is not None and np.array_equal(second.masks[0], expected)
    predictor.set_image(image)
    predictor.predict(None, scribbles=[strokes], return_logits=False, thin_strokes=True)
    assert len(calls) == 3  # (the expected mask above filtered once, outside the predictor)


def test_in_the_apps_a_click_on_a_traced_object_seeds_or_cuts(tiny_model, tmp_path) -> None:
    """A thin-structure stroke traces the tree; a negative click across the branch cuts it off
    (a dot of THIN_CLICK_RADIUS); a positive click on the stray line adds it."""
    from umedsam.ui.images import LoadedImage, npz_meta
    from umedsam.ui.session import Session
    from vessel_picture import vessel_picture

    grey, _ = vessel_picture(stray=True)
    pixels = np.repeat(grey[..., None], 3, 2)
    session = Session("s", LoadedImage("v", pixels, npz_meta((160, 160), None, 3)), tmp_path)
    backend = TorchBackend(tiny_model)
    box = [0, 0, 160, 160]
    stroke = {"stroke": [[60, 30], [60, 70]], "label": 1, "radius": 1, "thin": True}
    session.segment(backend, [box], [[stroke]])
    assert session.segs is not None
    traced = session.segs == 1
    assert traced[110:125, 100:115].any() and not traced[:, 135:].any()
    session.segment(backend, [box], [[stroke, [75, 92, 0]]])
    cut = session.segs == 1
    assert not cut[100:, 85:].any() and cut[120, 58:63].any()
    session.segment(backend, [box], [[stroke, [75, 92, 0], [141, 100, 1]]])
    assert (session.segs == 1)[60:120, 140:143].any()


def test_in_the_apps_a_contradicted_first_stroke_is_traced_without_estimate(
    tiny_model, tmp_path, monkeypatch
) -> None:
    """A box and ordinary strokes at once: when the rule traces the object, its row has no IoU
    estimate and no confidence (they would describe the model's mask, not the trace)."""
    from umedsam.ui.images import LoadedImage, npz_meta
    from umedsam.ui.session import Session
    from vessel_picture import vessel_picture

    grey, _ = vessel_picture()
    pixels = np.repeat(grey[..., None], 3, 2)
    session = Session("s", LoadedImage("v", pixels, npz_meta((160, 160), None, 3)), tmp_path)
    monkeypatch.setattr(thin, "THIN_CONTRADICTION", 0.0)  # any negative stroke counts as covered
    strokes = [
        {"stroke": [[60, 30], [60, 70]], "label": 1, "radius": 1},
        {"stroke": [[100, 40], [100, 60]], "label": 0, "radius": 1},
    ]
    summary = session.segment(TorchBackend(tiny_model), [[0, 0, 160, 160]], [strokes])
    (row,) = summary["objects"]
    assert row["iou"] is None and row["confidence"] is None
    assert session.segs is not None and (session.segs == 1)[110:125, 100:115].any()  # the branch


def test_contradicts_negatives_counts_the_negative_pixels_inside_the_mask() -> None:
    mask = np.zeros((20, 20), bool)
    mask[:, :10] = True
    strokes = np.zeros((20, 20), np.int8)
    strokes[5, 2:8] = 1
    assert not thin.contradicts_negatives(mask, strokes)  # no negative stroke
    strokes[15, 4:14] = -1  # 6 of 10 negative pixels inside the mask
    assert thin.contradicts_negatives(mask, strokes)
    strokes[15, 4:14] = 0
    strokes[15, 6:16] = -1  # 4 of 10
    assert not thin.contradicts_negatives(mask, strokes)


def test_a_model_mask_over_the_negative_stroke_is_traced_instead(tiny_model, monkeypatch) -> None:
    """The rule's wiring: the trace replaces the model's mask only where the rule is on, the
    object has a negative stroke its model mask covers, and no caller said thin_strokes=False."""
    from vessel_picture import vessel_picture

    image, _ = vessel_picture()
    strokes = np.zeros((160, 160), np.int8)
    strokes[30:70, 59:62] = 1
    strokes[40:60, 100:103] = -1  # between the vessels
    predictor = Predictor(TorchBackend(tiny_model))
    predictor.set_image(image)
    no_box = np.full((1, 4), np.nan)
    trace = thin_structure_mask(image, strokes > 0, strokes < 0)
    monkeypatch.setattr(thin, "THIN_WHEN_CONTRADICTED", True)
    monkeypatch.setattr(thin, "THIN_CONTRADICTION", 0.0)  # any negative stroke counts as covered
    found = predictor.predict(no_box, scribbles=[strokes], return_logits=False)
    assert trace is not None and found.thin is not None and found.thin[0]
    assert np.array_equal(found.masks[0], trace)
    for never in (
        {"thin_strokes": False},  # the caller's word wins
        {"scribbles": [np.where(strokes < 0, 0, strokes)]},  # no negative stroke: nothing to cover
    ):
        kwargs = {"scribbles": [strokes], **never}
        other = predictor.predict(no_box, return_logits=False, **kwargs)  # type: ignore[arg-type]
        assert other.thin is not None and not other.thin[0]
    monkeypatch.setattr(thin, "THIN_CONTRADICTION", 1.01)  # never covered enough
    model = predictor.predict(no_box, scribbles=[strokes], return_logits=False)
    assert model.thin is not None and not model.thin[0]
