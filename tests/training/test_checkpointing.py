"""Packaged weights from a training checkpoint (real LiteMedSAM weights as the base)."""

from __future__ import annotations

import pytest
import torch

from umedsam.models.checkpoint import load_checkpoint
from umedsam.training.checkpointing import save_atomic, save_packaged_weights

pytestmark = pytest.mark.realweights


def test_trained_parts_become_a_float16_file_over_litemedsam(real_model, tmp_path) -> None:
    state = {k: v.clone() for k, v in real_model.state_dict().items()}
    state["mask_decoder.iou_token.weight"] += 0.5
    state["prompt_encoder.point_embeddings.0.weight"] -= 0.25
    meta = {"format_version": 1, "model_name": "litemedsam", "config": {}, "epoch": 1, "step": 1}
    save_atomic({"model": state, **meta}, tmp_path / "last.pt")
    info = save_packaged_weights(
        tmp_path / "last.pt", tmp_path / "w.pt", parts=("prompt_encoder", "mask_decoder")
    )
    assert info["max_abs_change"] == pytest.approx(0.5)
    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    assert all(k.startswith(("prompt_encoder.", "mask_decoder.")) for k in saved)
    assert all(v.dtype == torch.float16 for v in saved.values())
    load_checkpoint(real_model, tmp_path / "w.pt", partial=True)
    assert torch.allclose(
        real_model.state_dict()["mask_decoder.iou_token.weight"],
        state["mask_decoder.iou_token.weight"],
        atol=1e-2,
    )
    state["image_encoder.neck.0.weight"] += 1.0  # a frozen part that changed: refused
    save_atomic({"model": state, **meta}, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="outside"):
        save_packaged_weights(tmp_path / "bad.pt", tmp_path / "w2.pt", parts=("mask_decoder",))
