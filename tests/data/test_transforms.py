"""Official LiteMedSAM pre/post-processing, hand-checked."""

from __future__ import annotations

import numpy as np
import torch

from umedsam.data.transforms import (
    MASK_LOGIT_THRESHOLD,
    boxes_to_model_frame,
    logits_to_mask,
    low_res_to_masks,
    mask_to_model_box,
    normalize_minmax,
    postprocess_logits,
    preprocess_image,
    preprocess_slices,
    resize_bilinear,
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
    array, new_hw = preprocess_image(img)
    assert array.shape == (1, 3, 256, 256) and array.dtype == np.float32
    assert array.flags.c_contiguous
    assert new_hw == (128, 256)
    assert np.abs(array[0, :, 128:, :]).sum() == 0  # padding
    assert array[0, 0, 0, 0] == 1.0 and array[0, 0, 0, 255] == 0.0
    grey, _ = preprocess_image(img[:, :, 0])
    np.testing.assert_array_equal(grey, array)


def test_preprocess_slices_equals_per_slice(make_sphere) -> None:
    vol, _ = make_sphere(d=4, h=48, w=40)
    batch, hw = preprocess_slices(vol)
    for z in range(4):
        single, hw1 = preprocess_image(vol[z])
        np.testing.assert_array_equal(batch[z : z + 1], single)
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
    low = np.zeros((2, 1, 256, 256), np.float32)
    low[:, :, :128, :] = 5.0
    low[:, :, 128:, :] = -100.0  # padding region must be cropped away
    out = postprocess_logits(low, (128, 256), (100, 200))
    assert out.shape == (2, 1, 100, 200)
    assert (out == 5.0).all()


def _torch_resize(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    t = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=out_hw, mode="bilinear", align_corners=False
    )
    return t.numpy()


def test_resize_bilinear_equals_torch_when_enlarging() -> None:
    # The official code upsamples logits with F.interpolate; the numpy version must agree bit
    # for bit, so the masks do too (sizes of the dev cases and awkward ratios).
    rng = np.random.default_rng(0)
    for (h, w), out in [
        ((173, 256), (540, 800)),
        ((256, 256), (512, 512)),
        ((219, 256), (877, 1024)),
        ((200, 256), (1023, 1280)),
        ((256, 256), (256, 256)),
    ]:
        x = (rng.standard_normal((3, 1, h, w)) * 8).astype(np.float32)
        np.testing.assert_array_equal(resize_bilinear(x, out), _torch_resize(x, out))


def test_resize_bilinear_close_to_torch_when_shrinking() -> None:
    rng = np.random.default_rng(1)
    for (h, w), out in [((256, 167), (52, 34)), ((256, 256), (100, 100)), ((128, 256), (37, 75))]:
        x = (rng.standard_normal((2, 1, h, w)) * 8).astype(np.float32)
        ref = _torch_resize(x, out)
        np.testing.assert_allclose(resize_bilinear(x, out), ref, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(logits_to_mask(resize_bilinear(x, out)), ref > 0)


def _blobs(rng: np.random.Generator, n: int, size: int = 256) -> np.ndarray:
    """Logits like the decoder's: a very negative field with a few positive blobs per object."""
    yy, xx = np.mgrid[:size, :size]
    out = np.full((n, 1, size, size), -20.0, np.float32)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(1, 20)
            blob = (12 * (1 - np.hypot(yy - cy, xx - cx) / r)).astype(np.float32)
            out[i, 0] = np.maximum(out[i, 0], blob)
    return out


def test_low_res_to_masks_equals_full_resize_then_threshold() -> None:
    # The mask-only path interpolates near candidate pixels only; the masks must not change.
    rng = np.random.default_rng(3)
    for new_hw, orig_hw in [
        ((256, 256), (1024, 1024)),
        ((173, 256), (540, 800)),
        ((219, 256), (877, 1024)),
        ((256, 167), (52, 34)),  # shrinking
        ((256, 256), (256, 256)),
    ]:
        low = _blobs(rng, 6)
        low[0] = rng.standard_normal((1, 256, 256)).astype(np.float32) * 8  # dense, noisy
        low[1] = -5.0  # empty
        low[2] = 3.0  # full
        low[3, 0, 200:, 200:] = 40.0  # positive in the padding only: cropped away
        expected = logits_to_mask(postprocess_logits(low, new_hw, orig_hw))[:, 0]
        got = low_res_to_masks(low, new_hw, orig_hw)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    assert not got[1].any()
    assert got[2].all()


def test_low_res_to_masks_at_the_threshold() -> None:
    # Sources just below / at / above the sigmoid threshold next to huge negatives: the margin
    # must keep every pixel whose interpolated logit reaches the threshold.
    t = MASK_LOGIT_THRESHOLD
    below = np.nextafter(t, np.float32(-1))
    low = np.full((4, 1, 64, 64), -60.0, np.float32)
    low[0, 0, 10, 10] = t
    low[1, 0, 20, 30] = below
    low[2, 0, 5:7, 40:43] = [[t, below, 1e-7], [0.0, t, 2e-7]]
    low[3, 0, 63, 63] = 50.0  # a corner pixel
    for orig_hw in [(256, 256), (250, 251), (64, 64), (1000, 640)]:
        expected = logits_to_mask(postprocess_logits(low, (64, 64), orig_hw))[:, 0]
        np.testing.assert_array_equal(low_res_to_masks(low, (64, 64), orig_hw), expected)
    ref = torch.sigmoid(torch.from_numpy(_torch_resize(low, (256, 256)))) > 0.5
    np.testing.assert_array_equal(low_res_to_masks(low, (64, 64), (256, 256)), ref.numpy()[:, 0])


def test_logits_to_mask_matches_torch_sigmoid_threshold() -> None:
    # float32 sigmoid rounds tiny positive logits to exactly 0.5: not quite "logits > 0"
    t = MASK_LOGIT_THRESHOLD
    below = np.nextafter(t, np.float32(0))
    x = np.array([-1.0, 0.0, 1e-9, below, t, 2 * t, 1e-6, 3.0], dtype=np.float32)
    x = np.concatenate([x, np.linspace(-1e-6, 1e-6, 20001, dtype=np.float32)])
    expected = (torch.sigmoid(torch.from_numpy(x)) > 0.5).numpy()
    np.testing.assert_array_equal(logits_to_mask(x), expected)


def test_low_res_to_masks_with_a_speck_no_output_pixel_reads() -> None:
    # Shrinking 256 -> 52 reads 2 of about 5 source cells per output: a speck that lies between
    # the read cells cannot reach any output pixel (this raised IndexError before).
    from umedsam.data.transforms import _bilinear_axis

    r0, r1, _, _ = _bilinear_axis(256, 52)
    unread = sorted(set(range(256)) - set(r0.tolist()) - set(r1.tolist()))
    low = np.full((1, 1, 256, 256), -20.0, np.float32)
    low[0, 0, unread[3], unread[3]] = 15.0
    expected = logits_to_mask(postprocess_logits(low, (256, 256), (52, 52)))[:, 0]
    got = low_res_to_masks(low, (256, 256), (52, 52))
    np.testing.assert_array_equal(got, expected)
    assert not got.any()
