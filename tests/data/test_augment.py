"""Flips and box jitter."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.data.augment import apply_flips, flip_variant_name, jitter_box, random_flips


def test_apply_flips() -> None:
    a = np.arange(6).reshape(2, 3)
    assert apply_flips(a, ()) is a
    np.testing.assert_array_equal(apply_flips(a, ["horizontal"]), [[2, 1, 0], [5, 4, 3]])
    np.testing.assert_array_equal(apply_flips(a, ["vertical"]), [[3, 4, 5], [0, 1, 2]])
    rgb = np.stack([a, a + 10, a + 20], axis=-1)
    out = apply_flips(rgb, ["horizontal", "vertical"])
    np.testing.assert_array_equal(out[..., 1], a[::-1, ::-1] + 10)


def test_flip_names() -> None:
    assert flip_variant_name(()) == "none"
    assert flip_variant_name(["horizontal", "vertical"]) == "vh"
    with pytest.raises(ValueError, match=r"unknown flip\(s\) \['diagonal'\]"):
        apply_flips(np.zeros((2, 2)), ["diagonal"])


def test_random_flips_deterministic_and_probabilities() -> None:
    a = [random_flips(np.random.default_rng(s), ("horizontal", "vertical")) for s in range(200)]
    b = [random_flips(np.random.default_rng(s), ("horizontal", "vertical")) for s in range(200)]
    assert a == b
    share = sum("horizontal" in f for f in a) / len(a)
    assert 0.35 < share < 0.65
    assert random_flips(np.random.default_rng(0), ("horizontal",), p=0.0) == ()
    assert random_flips(np.random.default_rng(0), ("horizontal",), p=1.0) == ("horizontal",)
    with pytest.raises(ValueError, match="flip probability"):
        random_flips(np.random.default_rng(0), (), p=2.0)


def test_jitter_box_range_and_clipping() -> None:
    rng = np.random.default_rng(0)
    box = np.array([10, 20, 30, 40])
    seen = set()
    for _ in range(300):
        out = jitter_box(box, rng, 5, (256, 256))
        d = out - box
        assert (d[:2] <= 0).all()
        assert (d[:2] >= -5).all()
        assert (d[2:] >= 0).all()
        assert (d[2:] <= 5).all()
        seen.update(d.astype(int).tolist())
    assert seen == set(range(-5, 6))
    clipped = jitter_box(np.array([0, 1, 99, 49]), np.random.default_rng(1), 5, (50, 100))
    assert clipped[0] == 0
    assert clipped[2] == 99
    assert clipped[3] == 49
    np.testing.assert_array_equal(jitter_box(box, rng, 0, (256, 256)), box)


def test_jitter_box_bad_inputs() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="box must have 4 values"):
        jitter_box(np.zeros(6), rng, 5, (10, 10))
    with pytest.raises(ValueError, match="max_shift must be >= 0"):
        jitter_box(np.zeros(4), rng, -1, (10, 10))
    with pytest.raises(ValueError, match="bounds_hw must be positive"):
        jitter_box(np.zeros(4), rng, 1, (0, 10))
