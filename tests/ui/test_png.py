"""Indexed PNGs of the web app decode to the colours the RGBA pictures had."""

import cv2
import numpy as np
import pytest

from umedsam.inference.overlay import label_color
from umedsam.ui.png import heat_png, indexed_png, mask_png


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_mask_png_colours_labels_and_keeps_background_transparent(dtype):
    labels = np.zeros((37, 53), dtype=dtype)
    labels[5:20, 10:40] = 1
    labels[25:30, 3:9] = 7
    bgra = _decode(mask_png(labels))
    assert bgra.shape == (37, 53, 4)
    for label in (1, 7):
        r, g, b = label_color(label)
        assert (bgra[labels == label] == (b, g, r, 255)).all()
    assert (bgra[labels == 0] == 0).all()


def test_mask_png_with_more_labels_than_a_palette_holds():
    labels = np.zeros((8, 9), dtype=np.uint16)
    labels[0, :3] = 300
    labels[5, 5] = 2
    bgra = _decode(mask_png(labels))
    r, g, b = label_color(300)
    assert (bgra[0, :3] == (b, g, r, 255)).all()
    assert (bgra[labels == 0] == 0).all()


def test_heat_png_is_inferno_with_alpha_equal_to_the_uncertainty():
    heat = np.random.default_rng(0).integers(0, 256, size=(21, 34), dtype=np.uint8)
    expected = np.dstack([cv2.applyColorMap(heat, cv2.COLORMAP_INFERNO), heat])
    assert np.array_equal(_decode(heat_png(heat)), expected)


def test_indexed_png_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="uint8"):
        indexed_png(np.zeros((4, 4), np.uint16), np.zeros((2, 4), np.uint8))
    with pytest.raises(ValueError, match="palette"):
        indexed_png(np.zeros((4, 4), np.uint8), np.zeros((300, 4), np.uint8))
