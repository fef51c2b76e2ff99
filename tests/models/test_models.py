"""Model assembly, registry, forward/backward on the tiny model, checkpoint loading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from umedsam.errors import CheckpointError
from umedsam.models.checkpoint import guess_checkpoint_kind, load_checkpoint, read_state_dict
from umedsam.models.registry import build_model, list_models


def test_registry_lists_and_rejects_unknown() -> None:
    assert "litemedsam" in list_models()
    with pytest.raises(ValueError, match="known models: .*litemedsam"):
        build_model("no_such_model")


def test_shipped_registry_has_no_test_models() -> None:
    code = "from umedsam.models.registry import list_models; print(' '.join(list_models()))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    shipped = out.stdout.split()
    assert "litemedsam" in shipped
    assert not [name for name in shipped if name.startswith("test_")]


def test_register_same_definition_again_but_not_another(monkeypatch) -> None:
    from umedsam.models import registry

    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))

    def make_builder():  # one definition: each call returns a new function object
        def builder() -> torch.nn.Module:
            return torch.nn.Identity()

        return builder

    first, second = make_builder(), make_builder()
    assert first is not second
    registry.register_model("dup_model")(first)
    registry.register_model("dup_model")(first)  # the same builder
    registry.register_model("dup_model")(second)  # the same definition imported again
    assert registry._BUILDERS["dup_model"] is second

    def other() -> torch.nn.Module:
        return torch.nn.Identity()

    with pytest.raises(ValueError, match="'dup_model' is already registered"):
        registry.register_model("dup_model")(other)


def test_tiny_forward_shapes(tiny_model) -> None:
    s = tiny_model.image_size
    images = torch.rand(2, 3, s, s)
    emb = tiny_model.encode(images)
    assert emb.shape == (2, 32, s // 4, s // 4)
    boxes = torch.tensor([[4.0, 4.0, 40.0, 30.0], [10.0, 12.0, 50.0, 60.0]])
    logits, iou = tiny_model.decode(emb, boxes)
    assert logits.shape == (2, 1, s, s)
    assert iou.shape == (2, 1)
    shared, _ = tiny_model.decode(emb[:1], boxes)  # one embedding shared by both boxes
    assert shared.shape == (2, 1, s, s)
    torch.testing.assert_close(shared[0], logits[0])
    multi, multi_iou = tiny_model.decode(emb, boxes, multimask=True)
    assert multi.shape == (2, 3, s, s) and multi_iou.shape == (2, 3)


def test_tiny_backward_reaches_every_trainable_parameter(tiny_model) -> None:
    tiny_model.train()
    s = tiny_model.image_size
    logits, iou = tiny_model(
        torch.rand(2, 3, s, s), torch.tensor([[4.0, 4, 40, 30], [8, 8, 60, 60]])
    )
    (logits.mean() + iou.mean()).backward()
    no_grad = [
        n
        for n, p in tiny_model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    # the multimask tokens/heads and the mask-prompt path are unused in single-mask box mode
    unused = (
        "mask_tokens",
        "output_hypernetworks_mlps.1",
        "output_hypernetworks_mlps.2",
        "output_hypernetworks_mlps.3",
        "mask_downscaling",
        "point_embeddings.0",
        "point_embeddings.1",
        "not_a_point_embed",
    )
    assert [n for n in no_grad if not any(u in n for u in unused)] == []
    assert torch.isfinite(logits).all()


def test_frozen_encoder_gets_no_gradients(tiny_model) -> None:
    tiny_model.image_encoder.requires_grad_(False)
    s = tiny_model.image_size
    logits, _ = tiny_model(torch.rand(1, 3, s, s), torch.tensor([[4.0, 4, 40, 30]]))
    logits.sum().backward()
    assert all(p.grad is None for p in tiny_model.image_encoder.parameters())
    assert tiny_model.mask_decoder.output_upscaling[0].weight.grad is not None


def test_checkpoint_round_trip_and_wrappers(tiny_model, tmp_path: Path) -> None:
    state = tiny_model.state_dict()
    other = build_model("test_tiny")
    for i, wrapped in enumerate(
        [
            state,
            {"model": state, "epoch": 3},
            {"state_dict": {f"module.{k}": v for k, v in state.items()}},
        ]
    ):
        path = tmp_path / f"ckpt{i}.pt"
        torch.save(wrapped, path)
        report = load_checkpoint(other, path)
        assert report.num_tensors == len(state)
        for k, v in other.state_dict().items():
            torch.testing.assert_close(v, state[k])


def test_wrong_checkpoint_names_keys_and_guesses(tiny_model, tmp_path: Path) -> None:
    path = tmp_path / "sam_like.pt"
    torch.save(
        {"image_encoder.pos_embed": torch.zeros(1, 64, 64, 768), "x.weight": torch.zeros(2)}, path
    )
    with pytest.raises(CheckpointError, match=r"(?s)ViT-B.*missing keys.*unexpected keys"):
        load_checkpoint(tiny_model, path)


def test_shape_mismatch_reported(tmp_path: Path) -> None:
    full = build_model("litemedsam")
    path = tmp_path / "tiny.pt"
    torch.save(build_model("test_tiny").state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(full, path)


def test_pickle_payload_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # pragma: no cover - never executed by a weights-only load
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)


def test_truncated_checkpoint_clear_error(tiny_model, tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    torch.save(tiny_model.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "absent.pt")


def test_partial_checkpoint(tiny_model, tmp_path: Path) -> None:
    path = tmp_path / "decoder.pt"
    dec = {f"mask_decoder.{k}": v + 1 for k, v in tiny_model.mask_decoder.state_dict().items()}
    torch.save(dec, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(tiny_model, path)  # strict by default
    load_checkpoint(tiny_model, path, partial=True)
    torch.testing.assert_close(
        tiny_model.state_dict()["mask_decoder.iou_token.weight"],
        dec["mask_decoder.iou_token.weight"],
    )
    assert "partial" in guess_checkpoint_kind(dec)


def test_packaged_partial_weights_over_a_base(tmp_path: Path, monkeypatch) -> None:
    from umedsam.models import cards
    from umedsam.models.pretrained import load_pretrained

    donor = build_model("test_tiny")
    base = tmp_path / "base.pt"
    torch.save(donor.state_dict(), base)  # a full checkpoint of the same family
    encoder_only = tmp_path / "encoder.pt"
    torch.save(
        {f"image_encoder.{k}": v * 0 for k, v in donor.image_encoder.state_dict().items()},
        encoder_only,
    )
    base_card = cards.ModelCard("tiny_base", "base", architecture="test_tiny", weights=str(base))
    tuned = cards.ModelCard(
        "tiny_tuned", "tuned", architecture="test_tiny", weights=str(encoder_only), base="tiny_base"
    )
    monkeypatch.setitem(cards._CARDS, "tiny_base", base_card)
    monkeypatch.setitem(cards._CARDS, "tiny_tuned", tuned)
    model, report = load_pretrained("tiny_tuned")
    assert report.partial
    state = model.state_dict()
    torch.testing.assert_close(
        state["mask_decoder.iou_token.weight"], donor.state_dict()["mask_decoder.iou_token.weight"]
    )
    assert all(
        float(v.abs().sum()) == 0
        for k, v in state.items()
        if k.startswith("image_encoder.") and v.is_floating_point()
    )
