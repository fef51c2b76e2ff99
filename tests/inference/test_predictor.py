"""Predictor API on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.data.npz import label_dtype
from umedsam.errors import InputError
from umedsam.inference.predictor import Predictor
from umedsam.inference.segment import segment_image


def test_predict_before_set_image_raises(tiny_model) -> None:
    with pytest.raises(RuntimeError, match="set_image"):
        Predictor(tiny_model).predict(np.array([[1, 1, 5, 5]]))


def test_predict_shapes_and_batch_equivalence(tiny_model, make_disk) -> None:
    img, mask = make_disk()
    p = Predictor(tiny_model)
    p.set_image(img)
    boxes = np.array([[40, 28, 80, 68], [10, 10, 50, 50], [0, 0, 128, 96]])
    pred = p.predict(boxes)
    assert pred.masks.shape == (3, 96, 128) and pred.masks.dtype == bool
    assert pred.iou.shape == (3,) and pred.logits is not None and pred.logits.shape == (3, 96, 128)
    np.testing.assert_array_equal(pred.masks, pred.logits > 0)
    one = p.predict(boxes[1])
    np.testing.assert_allclose(one.logits[0], pred.logits[1], atol=1e-4)


def test_grey_and_rgb_agree(tiny_model, make_disk) -> None:
    img, _ = make_disk()
    p = Predictor(tiny_model)
    p.set_image(img[:, :, 0])
    a = p.predict(np.array([[40, 28, 80, 68]])).logits
    p.set_image(img)
    b = p.predict(np.array([[40, 28, 80, 68]])).logits
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 4, 4), np.uint8), "shape"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((8, 8), complex), "dtype"),
    ],
)
def test_bad_images(tiny_model, image, match) -> None:
    with pytest.raises(InputError, match=match):
        Predictor(tiny_model).set_image(image)


def test_bad_boxes(tiny_model, make_disk) -> None:
    img, _ = make_disk()
    p = Predictor(tiny_model)
    p.set_image(img)
    with pytest.raises(InputError, match="outside"):
        p.predict(np.array([[0, 0, 500, 10]]))
    with pytest.raises(InputError, match="inverted"):
        p.predict(np.array([[10, 10, 5, 20]]))


def test_segment_image_labels_and_dtype(tiny_model, make_disk) -> None:
    img, _ = make_disk()
    res = segment_image(
        tiny_model_backend(tiny_model), img, np.array([[0, 0, 128, 96], [40, 28, 80, 68]])
    )
    assert res.segs.dtype == np.uint8 and set(np.unique(res.segs)) <= {0, 1, 2}
    assert label_dtype(255) is np.uint8 and label_dtype(256) is np.uint16


def tiny_model_backend(model):
    from umedsam.inference.backends.torch import TorchBackend

    return TorchBackend(model)


def test_as_backend_tolerates_torch_being_imported_by_another_thread(monkeypatch) -> None:
    """A web-app thread met a partly initialised torch module (no ``nn`` yet) and crashed."""
    import sys
    import types

    from umedsam.inference.predictor import as_backend

    backend = object()
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))  # no attributes yet
    assert as_backend(backend) is backend


class BoxOnlyBackend:
    """A stand-in that segments exactly its box and ignores clicks: the model a background
    click inside the box cannot move."""

    name = "box-only"
    image_size = 64

    def encode(self, images: np.ndarray) -> np.ndarray:
        return np.zeros((len(images), 8, 16, 16), np.float32)

    def decode_prompts(self, embedding: np.ndarray, prompts) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        centres = np.arange(self.image_size) + 0.5
        logits = np.full((len(prompts), 1, self.image_size, self.image_size), -10.0, np.float32)
        for i in range(len(prompts)):
            corners = prompts.coords[i][prompts.labels[i] >= 2]
            if len(corners) == 2:
                (x0, y0), (x1, y1) = corners
                inside = np.outer(
                    (centres >= y0) & (centres <= y1), (centres >= x0) & (centres <= x1)
                )
                logits[i, 0][inside] = 10.0
        return logits, np.ones((len(prompts), 1), np.float32)


def test_2d_click_boxes_make_the_mask_agree_with_a_click(monkeypatch) -> None:
    """With the 2D click-box rule, a background click inside the box that the model ignored is
    honoured by a retry with the box's side moved past it; without it the mask keeps it."""
    import umedsam.inference.predictor as predictor_module

    predictor = Predictor(BoxOnlyBackend())
    predictor.set_image(np.full((64, 64, 3), 100, np.uint8))
    box = np.array([[10, 10, 50, 50]])
    kwargs = {"points": [np.array([[46.0, 30.0]])], "point_labels": [np.array([0])]}
    monkeypatch.setattr(predictor_module, "CLICK_BOXES_2D", False)
    ignored = predictor.predict(box, **kwargs, return_logits=False).masks[0]
    assert ignored[30, 46]
    monkeypatch.setattr(predictor_module, "CLICK_BOXES_2D", True)
    honoured = predictor.predict(box, **kwargs, return_logits=False).masks[0]
    assert not honoured[30, 46]
    assert (
        honoured[30, 20] and honoured[:, :45].sum() == ignored[:, :45].sum()
    )  # the right side moved
