"""Weight merges: the ends are the two models, the middle is the average, other parts untouched."""

import pytest
import torch

from umedsam.training.merge import merge_state_dicts


def _states():
    base = {"mask_decoder.w": torch.zeros(3), "image_encoder.w": torch.ones(2)}
    tuned = {"mask_decoder.w": torch.full((3,), 2.0), "image_encoder.w": torch.ones(2)}
    return base, tuned


def test_merge_interpolates_only_the_named_parts():
    base, tuned = _states()
    for alpha, value in ((0.0, 0.0), (0.25, 0.5), (1.0, 2.0)):
        merged = merge_state_dicts(base, tuned, alpha)
        assert torch.equal(merged["mask_decoder.w"], torch.full((3,), value))
        assert torch.equal(merged["image_encoder.w"], base["image_encoder.w"])
    tuned["image_encoder.w"] = torch.zeros(2)  # outside the parts: the base's tensor is kept
    assert torch.equal(merge_state_dicts(base, tuned, 1.0)["image_encoder.w"], torch.ones(2))


def test_merge_refuses_models_that_do_not_match():
    base, tuned = _states()
    with pytest.raises(ValueError, match="alpha"):
        merge_state_dicts(base, tuned, 1.5)
    with pytest.raises(ValueError, match="different tensors"):
        merge_state_dicts(base, {"mask_decoder.w": torch.zeros(3)}, 0.5)
    tuned["mask_decoder.w"] = torch.zeros(4)
    with pytest.raises(ValueError, match="shapes differ"):
        merge_state_dicts(base, tuned, 0.5)
    with pytest.raises(ValueError, match="no floating-point"):
        merge_state_dicts(*_states(), 0.5, parts=("prompt_encoder",))
