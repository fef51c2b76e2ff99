"""Interactive prompts: validation, the model-frame form, batching, every engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.errors import InputError
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.predictor import Predictor
from umedsam.inference.prompts import PADDING, encode_prompts, sample_stroke_points


@pytest.fixture
def image(make_disk) -> np.ndarray:
    img, _ = make_disk(60, 80, center=(30, 40), radius=14)
    return img


def test_box_as_corner_points_decodes_exactly_like_a_box(tiny_model, image) -> None:
    predictor = Predictor(tiny_model)
    predictor.set_image(image)
    boxes = np.array([[20, 10, 60, 50], [5, 5, 70, 55]])
    plain = predictor.predict(boxes)
    prompts = encode_prompts(
        image.shape[:2], 64, boxes=boxes, mask_input=np.full((2, 1, 64, 64), np.nan)
    )
    assert prompts.labels.tolist() == [[2, 3], [2, 3]] and not prompts.has_mask.any()
    logits, iou = predictor.backend.decode_prompts(predictor.embedding, prompts)
    np.testing.assert_array_equal(logits, plain.low_res_logits)
    np.testing.assert_array_equal(iou[:, 0], plain.iou)


def test_model_frame_form(image) -> None:
    h, w = image.shape[:2]
    scribble = np.zeros((h, w), np.int8)
    scribble[30, 10:50] = 1
    scribble[5, 0:20] = -1
    prompts = encode_prompts(
        (h, w),
        64,
        boxes=np.array([[20, 10, 60, 50], [np.nan] * 4]),
        points=[np.array([[40, 30]]), np.array([[10, 10], [70, 50]])],
        point_labels=[np.array([0]), np.array([1, 0])],
        scribbles=[None, scribble],
    )
    ratio = 64 / 80
    # object 1: a negative click, then the box corners (truncated like boxes)
    assert prompts.num_tokens.tolist() == [3, 2 + 8 + 8 + 1]
    assert prompts.labels[0, :3].tolist() == [0, 2, 3]
    np.testing.assert_allclose(prompts.coords[0, 0], [40 * ratio, 30 * ratio])
    np.testing.assert_array_equal(
        prompts.coords[0, 1:3], np.trunc(np.array([[20, 10], [60, 50]]) * ratio)
    )
    # object 2: clicks, 8 points on each stroke, SAM's padding token (no box)
    labels = prompts.labels[1]
    assert labels[:2].tolist() == [1, 0]
    assert (labels[2:10] == 1).all() and (labels[10:18] == 0).all() and labels[18] == PADDING
    assert prompts.coords[1, 2:10, 1] == pytest.approx(30 * ratio)
    assert (prompts.labels[0, 3:] == PADDING).all()  # batch padding beyond its 3 tokens


def test_stroke_sampling_spreads_along_the_stroke() -> None:
    stroke = np.zeros((20, 100), bool)
    stroke[10, 5:95] = True
    pts = sample_stroke_points(stroke, 4)
    assert sorted(pts[:, 0].tolist()) == [5, 35, 64, 94] or np.ptp(pts[:, 0]) == 89
    assert np.array_equal(pts, sample_stroke_points(stroke, 4))  # deterministic
    assert sample_stroke_points(np.zeros((4, 4), bool)).shape == (0, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": [np.array([[80, 5]])], "point_labels": [np.array([1])]}, "inside the 80x60"),
        ({"points": [np.array([[8, 5]])], "point_labels": [np.array([2])]}, "must be 1 or 0"),
        ({"points": [np.array([[8, 5]])]}, "need point_labels"),
        ({"points": [np.array([[8, 5]])], "point_labels": [np.array([1, 0])]}, "1 points but 2"),
        ({"scribbles": [np.zeros((60, 80), np.int8)]}, "no stroke"),
        ({"scribbles": [np.ones((6, 8), np.int8)]}, r"must be \(60, 80\)"),
        ({"boxes": np.full((1, 4), np.nan), "points": [None]}, "has no prompt"),
        ({"points": [None, None], "boxes": np.zeros((1, 4))}, "one entry per object"),
    ],
)
def test_bad_prompts_are_refused_clearly(kwargs, message) -> None:
    with pytest.raises(InputError, match=message):
        encode_prompts((60, 80), 64, **kwargs)


def test_objects_decode_independently_of_their_batch(tiny_model, image) -> None:
    predictor = Predictor(tiny_model)
    predictor.set_image(image)
    points = [np.array([[40, 30]]), np.array([[10, 10], [70, 50], [40, 30]]), np.array([[5, 5]])]
    labels = [np.array([1]), np.array([1, 0, 1]), np.array([0])]
    boxes = np.array([[20, 10, 60, 50], [np.nan] * 4, [2, 2, 30, 30]])
    together = predictor.predict(boxes, points, labels, return_logits=False)
    for i in range(3):
        alone = predictor.predict(boxes[i : i + 1], [points[i]], [labels[i]], return_logits=False)
        # equal up to the rounding of a different batch size (padding tokens would move it far)
        np.testing.assert_allclose(alone.low_res_logits[0], together.low_res_logits[i], atol=1e-5)


def test_previous_logits_refine(tiny_model, image) -> None:
    predictor = Predictor(tiny_model)
    predictor.set_image(image)
    first = predictor.predict(np.array([[20, 10, 60, 50]]))
    again = predictor.predict(
        np.array([[20, 10, 60, 50]]),
        points=[np.array([[40, 30]])],
        point_labels=[np.array([1])],
        mask_input=first.low_res_logits,
    )
    assert again.masks.shape == (1, 60, 80)
    assert not np.array_equal(again.low_res_logits, first.low_res_logits)
    only_mask = predictor.predict(mask_input=first.low_res_logits)
    assert only_mask.masks.shape == (1, 60, 80)


def test_strokes_alone_are_averaged_with_the_mirror_image(tiny_model, image) -> None:
    h, w = image.shape[:2]
    stroke = np.zeros((h, w), np.int8)
    stroke[28:31, 30:52] = 1
    stroke[2, 2:12] = -1
    boxes = np.array([[np.nan] * 4, [20, 10, 60, 50], [20, 10, 60, 50]])
    scribbles = [stroke, stroke, stroke]
    points = [None, None, np.array([[40, 30]])]  # the third object has a click: no mirror pass
    labels = [None, None, np.array([1])]
    predictor = Predictor(tiny_model)
    predictor.set_image(image)
    kwargs = {"points": points, "point_labels": labels, "scribbles": scribbles}
    on = predictor.predict(boxes, mirror_strokes=True, return_logits=False, **kwargs)
    off = predictor.predict(boxes, mirror_strokes=False, return_logits=False, **kwargs)

    mirror = Predictor(tiny_model)
    mirror.set_image(np.ascontiguousarray(image[:, ::-1]))
    np.testing.assert_array_equal(mirror.embedding, predictor.mirror().embedding)
    mirrored_boxes = boxes[:2].copy()
    mirrored_boxes[:, [0, 2]] = w - boxes[:2, [2, 0]]
    flipped = mirror.predict(
        mirrored_boxes, scribbles=[stroke[:, ::-1]] * 2, mirror_strokes=False
    ).low_res_logits
    new_w = 64  # the 80-pixel side fills the 64-pixel model frame
    flipped[..., :new_w] = flipped[..., :new_w][..., ::-1]
    np.testing.assert_allclose(
        on.low_res_logits[:2], (off.low_res_logits[:2] + flipped) / 2, atol=1e-5
    )
    np.testing.assert_array_equal(on.low_res_logits[2], off.low_res_logits[2])
    assert predictor.sharing_embedding(predictor.backend).mirror() is not None


def test_components_touching_keeps_the_pieces_a_stroke_touches() -> None:
    from umedsam.inference.predictor import components_touching

    mask = np.zeros((20, 30), bool)
    mask[2:6, 2:6] = True  # piece with the stroke
    mask[10:15, 20:28] = True  # piece without
    stroke = np.zeros_like(mask)
    stroke[3, 3:5] = True
    np.testing.assert_array_equal(components_touching(mask, stroke), mask & (np.arange(30) < 10))
    elsewhere = np.zeros_like(mask)
    elsewhere[18, 0] = True  # a stroke the mask misses: the mask stays whole
    np.testing.assert_array_equal(components_touching(mask, elsewhere), mask)


def test_first_predictions_from_strokes_can_keep_only_stroke_pieces(
    tiny_model, image, monkeypatch: pytest.MonkeyPatch
) -> None:
    import umedsam.inference.predictor as predictor_module
    from umedsam.inference.predictor import components_touching

    stroke = np.zeros(image.shape[:2], np.int8)
    stroke[28:31, 30:52] = 1
    boxes = np.array([[np.nan] * 4, [20, 10, 60, 50]])
    predictor = Predictor(tiny_model)
    predictor.set_image(image)
    kwargs = {"points": [None, np.array([[40, 30]])], "point_labels": [None, np.array([1])]}
    monkeypatch.setattr(predictor_module, "KEEP_STROKE_COMPONENTS", False)
    plain = predictor.predict(boxes, scribbles=[stroke, stroke], **kwargs)
    monkeypatch.setattr(predictor_module, "KEEP_STROKE_COMPONENTS", True)
    for return_logits in (True, False):
        kept = predictor.predict(
            boxes, scribbles=[stroke, stroke], return_logits=return_logits, **kwargs
        )
        expected = components_touching(plain.masks[0], stroke > 0)
        assert expected.sum() < plain.masks[0].sum()  # the random model's mask has stray pieces
        np.testing.assert_array_equal(kept.masks[0], expected)
        if return_logits:
            np.testing.assert_array_equal(kept.logits[0] > 0, kept.masks[0])
        np.testing.assert_array_equal(kept.masks[1], plain.masks[1])  # a click: left alone


@pytest.mark.parametrize(
    ("engine", "runtime"),
    [
        pytest.param("onnx", "onnxruntime", marks=pytest.mark.onnx),
        pytest.param("openvino", "openvino", marks=pytest.mark.openvino),
    ],
)
def test_exported_engines_decode_prompts_like_torch(
    engine, runtime, tiny_model, image, tmp_path: Path
) -> None:
    pytest.importorskip(runtime)
    from umedsam.inference.engines import EngineSpec, open_engine

    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), ckpt)
    exported = open_engine(EngineSpec("test_tiny", ckpt, engine=engine, threads=1)).backend
    reference = TorchBackend(tiny_model)
    scribble = np.zeros(image.shape[:2], np.int8)
    scribble[28:32, 30:50] = 1
    kwargs = {
        "boxes": np.array([[20, 10, 60, 50], [np.nan] * 4]),
        "points": [np.array([[5, 5]]), np.array([[40, 30]])],
        "point_labels": [np.array([0]), np.array([1])],
        "scribbles": [None, scribble],
    }
    results = []
    for backend in (reference, exported):
        predictor = Predictor(backend)
        predictor.set_image(image)
        first = predictor.predict(**kwargs)
        results.append(predictor.predict(**kwargs, mask_input=first.low_res_logits))
    np.testing.assert_allclose(results[1].low_res_logits, results[0].low_res_logits, atol=2e-3)
    np.testing.assert_allclose(results[1].iou, results[0].iou, atol=2e-3)


def test_mirror_prompt_flips_box_clicks_and_dense_prompt_and_back() -> None:
    from umedsam.inference.prompts import ObjectPrompt, mirror_low_res, mirror_prompt

    rng = np.random.default_rng(0)
    dense = rng.normal(size=(1, 16, 16)).astype(np.float32)
    item = ObjectPrompt(
        box_model=np.array([2.0, 3.0, 7.0, 9.0]),
        points=np.array([[0.0, 4.0], [9.0, 1.0]]),
        point_labels=np.array([1, 0]),
        mask_logits=dense,
    )
    flipped = mirror_prompt(item, width=20, new_w=10)
    np.testing.assert_array_equal(flipped.box_model, [3.0, 3.0, 8.0, 9.0])
    np.testing.assert_array_equal(flipped.points, [[19.0, 4.0], [10.0, 1.0]])
    np.testing.assert_array_equal(flipped.point_labels, [1, 0])
    assert flipped.mask_logits is not None
    np.testing.assert_array_equal(flipped.mask_logits[..., :10], dense[..., :10][..., ::-1])
    np.testing.assert_array_equal(flipped.mask_logits[..., 10:], dense[..., 10:])  # padding
    back = mirror_prompt(flipped, width=20, new_w=10)
    np.testing.assert_array_equal(back.box_model, item.box_model)
    np.testing.assert_array_equal(back.points, item.points)
    np.testing.assert_array_equal(back.mask_logits, dense)
    np.testing.assert_array_equal(mirror_low_res(mirror_low_res(dense, 10), 10), dense)
    assert mirror_prompt(ObjectPrompt(), 20, 10) == ObjectPrompt()
