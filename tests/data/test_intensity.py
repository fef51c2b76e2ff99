"""CT windows and the challenge's percentile clipping, with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.data.intensity import (
    CT_WINDOWS,
    apply_window,
    clip_percentiles,
    to_rgb,
    to_uint8,
    window_for,
)


def test_window_maps_bounds_and_truncates() -> None:
    hu = np.array([-1000, -160, 40, 239, 240, 3000], dtype=np.int16)
    out = apply_window(hu, level=40, width=400)  # [-160, 240]
    # (40 + 160) / 400 * 255 = 127.5 -> 127 (truncated like np.uint8); 239 -> 254.36 -> 254
    assert out.tolist() == [0, 0, 127, 254, 255, 255]
    assert out.dtype == np.uint8


@pytest.mark.parametrize(
    ("preset", "level", "width"),
    [("soft_tissue", 40, 400), ("abdomen", 40, 400), ("lung", -600, 1500), ("bone", 400, 1800),
     ("brain", 40, 80), ("liver", 30, 150)],
)  # fmt: skip
def test_presets(preset: str, level: float, width: float) -> None:
    assert window_for(preset) == (level, width)
    assert window_for(preset.upper().replace("_", "-")) == (level, width)


def test_unknown_preset_lists_known() -> None:
    with pytest.raises(ValueError, match="lung"):
        window_for("kidney")


def test_percentile_clip_matches_challenge_formula() -> None:
    rng = np.random.default_rng(0)
    image = rng.gamma(2.0, 300.0, size=(6, 20, 20)).astype(np.float32)
    image[:, :4] = 0
    fg = image[image > 0]
    lo, hi = np.percentile(fg, 0.5), np.percentile(fg, 99.5)
    clipped = np.clip(image, lo, hi)
    expected = (clipped - clipped.min()) / (clipped.max() - clipped.min()) * 255.0
    expected[image == 0] = 0
    out = clip_percentiles(image)
    np.testing.assert_array_equal(out, np.uint8(expected))
    assert out[:, :4].max() == 0
    assert out.max() == 255


def test_percentile_edge_cases() -> None:
    assert clip_percentiles(np.zeros((3, 3))).tolist() == np.zeros((3, 3), np.uint8).tolist()
    assert clip_percentiles(np.full((3, 3), 7.0)).max() == 0
    with pytest.raises(ValueError, match="NaN"):
        clip_percentiles(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="percentiles"):
        clip_percentiles(np.ones(3), lower=50, upper=10)


def test_to_uint8_rules() -> None:
    ct = np.array([[-1000, 40], [240, 1000]], dtype=np.int16)
    assert to_uint8(ct, modality="CT").tolist() == [[0, 127], [255, 255]]  # soft tissue default
    assert (
        to_uint8(ct, modality="ct", window="lung").tolist()
        == apply_window(ct, level=-600, width=1500).tolist()
    )
    np.testing.assert_array_equal(
        to_uint8(ct, level=0, width=2000), apply_window(ct, level=0, width=2000)
    )
    eight = np.array([[3, 250]], dtype=np.uint8)
    assert to_uint8(eight) is eight  # 8-bit input passes through untouched
    deep = np.array([[0, 1000, 2000, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(to_uint8(deep), clip_percentiles(deep))
    with pytest.raises(ValueError, match="not both"):
        to_uint8(ct, window="lung", level=1, width=2)
    with pytest.raises(ValueError, match="go together"):
        to_uint8(ct, level=1)
    with pytest.raises(ValueError, match="width > 0"):
        to_uint8(ct, level=1, width=0)
    with pytest.raises(ValueError, match="numeric"):
        to_uint8(np.zeros(3, dtype=bool))


def test_to_rgb() -> None:
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    rgb = to_rgb(grey)
    assert rgb.shape == (2, 3, 3)
    assert np.array_equal(rgb[..., 2], grey)
    assert to_rgb(np.zeros((2, 2, 4), np.uint8)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(np.zeros((2, 2), np.float32))


def test_every_preset_is_valid() -> None:
    for level, width in CT_WINDOWS.values():
        assert width > 0
        assert -1100 < level < 1100
