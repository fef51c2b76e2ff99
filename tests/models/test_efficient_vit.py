"""EfficientViT student encoder: shapes, linear attention, gradients, cost, registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from umedsam.models.encoders.efficient_vit import (
    ChannelLayerNorm,
    EfficientViTEncoder,
    LiteMLA,
    efficientvit_b0_256,
    efficientvit_b1_256,
)
from umedsam.models.layers import LayerNorm2d
from umedsam.models.registry import build_model, list_models

TINYVIT_GMACS = 36.0  # LiteMedSAM TinyViT-5M at 256 px (BACKGROUND.md section 7)


def _tiny_encoder() -> EfficientViTEncoder:
    torch.manual_seed(0)
    return EfficientViTEncoder(
        widths=(4, 8, 8, 16, 16), depths=(1, 1, 1, 1, 1), head_dim=8, neck_dim=8, out_chans=32
    )


def test_tiny_encoder_output_shape_and_finite() -> None:
    enc = _tiny_encoder().eval()
    with torch.inference_mode():
        out = enc(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 32, 16, 16)
    assert torch.isfinite(out).all()
    assert out.is_contiguous()


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (3, 64, 64), (1, 3, 60, 64)])
def test_encoder_rejects_bad_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="must be"):
        _tiny_encoder()(torch.rand(shape))


def test_every_parameter_gets_a_gradient() -> None:
    enc = _tiny_encoder().train()
    enc(torch.rand(2, 3, 64, 64)).square().mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters())


def _reference_relu_linear_attention(q, k, v):
    """out_i = sum_j (q_i . k_j) v_j / sum_j (q_i . k_j) with ReLU features, by explicit sums."""
    q, k = F.relu(q), F.relu(k)
    weights = q @ k.transpose(-1, -2)  # (..., N, N)
    return (weights @ v) / (weights.sum(-1, keepdim=True) + 1e-15)


def test_lite_mla_equals_explicit_linear_attention() -> None:
    torch.manual_seed(1)
    mla = LiteMLA(dim=16, head_dim=8, scales=(3,)).eval()
    x = torch.randn(2, 16, 5, 6)
    with torch.no_grad():
        got = mla(x)
        qkv = mla.qkv(x)
        multi = torch.cat([qkv, mla.aggreg[0](qkv)], dim=1)
        heads = multi.reshape(2, -1, 24, 30).transpose(-1, -2)
        q, k, v = heads[..., :8], heads[..., 8:16], heads[..., 16:]
        out = _reference_relu_linear_attention(q, k, v)
        expected = mla.proj(out.transpose(-1, -2).reshape(2, -1, 5, 6))
    assert heads.shape[1] == 4  # 2 heads, doubled by one aggregation scale
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_lite_mla_rejects_bad_head_dim() -> None:
    with pytest.raises(ValueError, match="multiple of head_dim"):
        LiteMLA(dim=12, head_dim=8)


def test_channel_layer_norm_matches_layernorm2d() -> None:
    torch.manual_seed(2)
    ref, ours = LayerNorm2d(6), ChannelLayerNorm(6)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 4, 5).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_set_output_statistics() -> None:
    enc = _tiny_encoder().eval()
    mean, std = torch.linspace(-1, 1, 32), torch.full((32,), 0.25)
    enc.set_output_statistics(mean, std)
    with torch.inference_mode():
        out = enc(torch.rand(4, 3, 64, 64))
    # per position the output is mean + std * (unit-variance, zero-mean over channels)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)).mean(), mean.mean(), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match=r"expected \(32,\) statistics"):
        enc.set_output_statistics(torch.zeros(3), torch.ones(3))


@pytest.mark.parametrize("builder", [efficientvit_b0_256, efficientvit_b1_256])
def test_students_map_256_images_with_8x_fewer_macs_than_tinyvit(builder) -> None:
    enc = builder().eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        out = enc(torch.rand(1, 3, 256, 256))
    assert out.shape == (1, 256, 64, 64)
    gmacs = counter.get_total_flops() / 2e9
    assert 0.05 < gmacs <= TINYVIT_GMACS / 8


def test_students_registered_and_pair_with_sam_heads() -> None:
    names = list_models()
    assert {"umedsam_effvit_b0", "umedsam_effvit_b1", "test_tiny_effvit"} <= set(names)
    model = build_model("test_tiny_effvit").eval()
    assert model.image_size == 64
    with torch.inference_mode():
        emb = model.encode(torch.rand(1, 3, 64, 64))
        logits, iou = model.decode(emb, torch.tensor([[8.0, 8.0, 40.0, 40.0], [0, 0, 20, 30]]))
    assert logits.shape == (2, 1, 64, 64)
    assert iou.shape == (2, 1)


def test_tiny_student_matches_tiny_teacher_heads() -> None:
    teacher, student = build_model("test_tiny"), build_model("test_tiny_effvit")
    for part in ("prompt_encoder", "mask_decoder"):
        getattr(student, part).load_state_dict(getattr(teacher, part).state_dict())


@pytest.mark.parametrize(
    ("name", "max_mib"), [("umedsam_effvit_b0", 16), ("umedsam_effvit_b1", 24)]
)
def test_shipped_student_weights_load(name: str, max_mib: int) -> None:
    from umedsam.models.pretrained import load_pretrained
    from umedsam.models.registry import default_weights

    base, path = default_weights(name)
    assert base is None
    assert path.stat().st_size < max_mib * 2**20
    model, report = load_pretrained(name)
    assert not report.partial
    assert model.image_encoder.neck.norm.weight.dtype == torch.float32


@pytest.mark.onnx
def test_tiny_student_exports_to_onnx_with_parity(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from umedsam.inference.export import export_model

    torch.manual_seed(0)
    model = build_model("test_tiny_effvit").eval()
    manifest = export_model(model, tmp_path / "onnx", fmt="onnx", model_name="test_tiny_effvit")
    assert manifest is not None
    assert any((tmp_path / "onnx").glob("*.onnx"))
