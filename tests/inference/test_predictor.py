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
