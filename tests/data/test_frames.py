"""Model frames: LiteMedSAM's is the transforms module unchanged; SAM's and MedSAM's scale per
axis, and their fast mask path equals their full-resolution logits (parity with the authors'
code: tests/models/test_sam_family.py)."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.data import transforms as T
from umedsam.data.frames import (
    Frame,
    MedSAMFrame,
    SamFrame,
    as_frame,
    as_uint8_rgb,
    frame_of,
    make_frame,
)
from umedsam.inference.prompts import mask_to_logits
from umedsam.models.cards import ModelCard, card


def _image(h: int = 90, w: int = 130) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((h, w)) * 200).astype(np.uint8)


def test_litemedsams_frame_is_the_official_pipeline() -> None:
    frame, image = Frame(256), _image()
    array, new_hw = frame.preprocess_image(image)
    expected, expected_hw = T.preprocess_image(image, 256)
    np.testing.assert_array_equal(array, expected)
    assert new_hw == expected_hw == frame.low_res_hw(image.shape)
    boxes = np.array([[10.5, 20.2, 80.9, 70.1]])
    np.testing.assert_array_equal(
        frame.boxes_to_frame(boxes, image.shape), T.boxes_to_model_frame(boxes, image.shape, 256)
    )
    low = np.random.default_rng(1).normal(0, 3, (2, 1, 256, 256)).astype(np.float32)
    np.testing.assert_array_equal(
        frame.low_res_to_masks(low, image.shape),
        T.low_res_to_masks(low, new_hw, image.shape),
    )
    mask = np.zeros(image.shape, bool)
    mask[30:60, 40:90] = True
    np.testing.assert_array_equal(frame.mask_to_box(mask, 1), T.mask_to_model_box(mask, 1, 256))
    assert frame.mask_prompt(mask).shape == (1, 256, 256)
    assert mask_to_logits(mask, 256).shape == (1, 256, 256)  # a side still means LiteMedSAM
    assert as_frame(64) == Frame(64) and frame_of(object()) == Frame(256)


@pytest.mark.parametrize("frame", [SamFrame(1024, 256), MedSAMFrame(1024, 256)])
def test_sam_family_frames_scale_per_axis_and_keep_sub_pixels(frame) -> None:
    h, w = 300, 217
    boxes = np.array([[10.5, 20.25, 100.0, 250.0]])
    framed = frame.boxes_to_frame(boxes, (h, w))
    sx, sy = frame.scale_xy((h, w))
    np.testing.assert_allclose(framed[0], boxes[0] * [sx, sy, sx, sy], rtol=1e-6)
    if frame.kind == "medsam":  # stretched: each axis to 1024
        assert (sx, sy) == (1024 / w, 1024 / h) and frame.resized_hw((h, w)) == (1024, 1024)
    else:  # longest side to 1024, the other by SAM's rounding
        assert frame.resized_hw((h, w)) == (1024, 741) and sx == 741 / w
    assert frame.low_res_hw((h, w))[0] == 256


@pytest.mark.parametrize("frame", [Frame(256), SamFrame(256, 64), MedSAMFrame(256, 64)])
def test_the_fast_mask_path_equals_the_full_logits(frame) -> None:
    rng = np.random.default_rng(2)
    side = frame.low_res
    low = rng.normal(0, 4, (3, 1, side, side)).astype(np.float32)
    low[1] -= 30  # an object with no pixel on
    _, full = frame.full_logits(low, (123, 97))
    np.testing.assert_array_equal(frame.low_res_to_masks(low, (123, 97)), full[:, 0])
    assert not full[1].any() and full[0].any()


def test_sam_frame_normalises_and_pads_like_sam() -> None:
    frame = SamFrame(256, 64)
    array, new_hw = frame.preprocess_image(_image(90, 130))
    assert array.shape == (1, 3, 256, 256) and new_hw == (177, 256)
    assert (array[0, :, 177:] == 0).all()  # padding after normalisation
    assert array.min() < -1.5  # mean/std normalised, not [0, 1]


def test_a_box_propagated_in_a_sam_frame_stays_inside_it_and_is_widened() -> None:
    frame = SamFrame(1024, 256)
    mask = np.zeros((300, 217), bool)
    mask[100:150, 0:40] = True
    box = frame.mask_to_box(mask)
    tight = frame.boxes_to_frame(np.array([[0, 100, 39, 149]]), mask.shape)[0]
    assert box[0] == 0 and box[1] == pytest.approx(tight[1] - 12)
    assert box[3] == pytest.approx(tight[3] + 12) and (box <= 1024).all()
    assert frame.mask_to_box(np.zeros_like(mask)) is None


def test_non_uint8_images_become_uint8_rgb() -> None:
    image = np.linspace(-1000, 3000, 60, dtype=np.float32).reshape(6, 10)
    rgb = as_uint8_rgb(image)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 10, 3)
    assert rgb.min() == 0 and rgb.max() == 255


def test_frames_come_from_cards_and_unknown_ones_are_refused() -> None:
    assert card("medsam_vit_b").frame == MedSAMFrame(1024, 256)
    assert card("sam_vit_h").frame == SamFrame(1024, 256)
    assert card("umedsam_newdata").frame == Frame(256)
    with pytest.raises(ValueError, match="preprocessing"):
        ModelCard("x", "x", architecture="x", preprocessing="clip")
    with pytest.raises(ValueError, match="unknown preprocessing"):
        make_frame("clip", 224)


def test_medsams_stretch_channel_by_channel_equals_the_three_channel_call() -> None:
    """The speed-up of :func:`stretch_like_medsam` changes no value (flat regions, stripes at 0
    and 255 whose bicubic overshoots wrap, odd sizes; RGB and grey)."""
    from skimage.transform import resize

    from umedsam.data.frames import stretch_like_medsam

    rng = np.random.default_rng(3)
    rgb = (rng.random((97, 61, 3)) * 255).astype(np.uint8)
    rgb[10:40, 5:30] = [200, 100, 30]
    rgb[::7] = 255
    rgb[:, ::5] = 0
    grey = np.repeat(rgb[..., :1], 3, axis=-1)
    for image in (rgb, grey):
        joint = resize(image, (256, 256), order=3, preserve_range=True, anti_aliasing=True)
        np.testing.assert_array_equal(stretch_like_medsam(image, 256), joint.astype(np.uint8))
