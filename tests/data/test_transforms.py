"""Official LiteMedSAM pre/post-processing, hand-checked."""

from __future__ import annotations

import numpy as np
import torch

from umedsam.data.transforms import (
    boxes_to_model_frame,
    mask_to_model_box,
    normalize_minmax,
    postprocess_logits,
    preprocess_image,
    preprocess_slices,
    resized_hw,
)


def test_resized_hw_rounds_half_up() -> None:
    assert resized_hw((540, 800)) == (173, 256)  # 540 * 0.32 = 172.8
    assert resized_hw((512, 512)) == (256, 256)
    assert resized_hw((877, 1024)) == (219, 256)  # 219.25
    assert resized_hw((26, 52)) == (128, 256)


def test_normalize_minmax_and_constant() -> None:
    img = np.array([[10, 20], [30, 50]], dtype=np.uint8)
    np.testing.assert_allclose(normalize_minmax(img), [[0, 0.25], [0.5, 1.0]])
    assert normalize_minmax(np.full((2, 2), 7, np.uint8)).max() == 0.0


def test_preprocess_image_pads_bottom_right() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100] = 255
    tensor, new_hw = preprocess_image(img)
    assert tensor.shape == (1, 3, 256, 256) and tensor.dtype == torch.float32
    assert new_hw == (128, 256)
    assert tensor[0, :, 128:, :].abs().sum() == 0  # padding
    assert tensor[0, 0, 0, 0] == 1.0 and tensor[0, 0, 0, 255] == 0.0
    grey, _ = preprocess_image(img[:, :, 0])
    torch.testing.assert_close(grey, tensor)


def test_preprocess_slices_equals_per_slice(make_sphere) -> None:
    vol, _ = make_sphere(d=4, h=48, w=40)
    batch, hw = preprocess_slices(vol)
    for z in range(4):
        single, hw1 = preprocess_image(vol[z])
        torch.testing.assert_close(batch[z : z + 1], single)
        assert hw1 == hw


def test_boxes_to_model_frame_truncates() -> None:
    out = boxes_to_model_frame(np.array([[10, 21, 799, 539]]), (540, 800))
    np.testing.assert_array_equal(out, [[3, 6, 255, 172]])  # 0.32 * (10, 21, 799, 539) truncated


def test_mask_to_model_box_margin_and_clip() -> None:
    mask = np.zeros((64, 64), bool)
    mask[10:20, 0:64] = True
    box = mask_to_model_box(mask, label=1, size=256)
    np.testing.assert_array_equal(box, [0, 40 - 3, 256, 79 + 3])  # x_max 255+3 clipped to 256
    assert mask_to_model_box(np.zeros((64, 64), bool)) is None


def test_mask_to_model_box_label_value_matters_for_thin_masks() -> None:
    # INTER_AREA averages; a thin structure survives downscaling only with a larger label value,
    # exactly as in the official code, which resizes the uint8 label map.
    mask = np.zeros((1024, 1024), bool)
    mask[100, 100:200] = True  # one row: 25% coverage of a 4x4 block
    assert mask_to_model_box(mask, label=1) is None
    assert mask_to_model_box(mask, label=3) is not None


def test_postprocess_logits_crop_and_resize() -> None:
    low = torch.zeros(2, 1, 256, 256)
    low[:, :, :128, :] = 5.0
    low[:, :, 128:, :] = -100.0  # padding region must be cropped away
    out = postprocess_logits(low, (128, 256), (100, 200))
    assert out.shape == (2, 1, 100, 200)
    assert (out == 5.0).all()
