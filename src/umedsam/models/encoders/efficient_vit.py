"""EfficientViT image encoder (Cai et al., ICCV 2023) with a SAM-style neck, as a distillation student.

The backbone follows the EfficientViT-B family: a convolutional stem with depthwise-separable
blocks, two stages of inverted-residual MBConv blocks, and two stages where each block pairs
*multi-scale linear attention* (ReLU linear attention over query/key/value tokens aggregated
at several scales by small depthwise convolutions) with an MBConv. Linear attention costs
O(N d^2) instead of softmax's O(N^2 d), and every operator is a convolution, a matmul or an
elementwise op, all cheap on a CPU and easy for ONNX/OpenVINO to fuse.

The neck replaces the classification head: it projects the stride-8, -16 and -32 features to a
common width, adds them at stride 8, refines them, upsamples to stride 4 where it adds the
stride-4 stage output, and ends with a 1x1 projection to ``out_chans`` and a channel LayerNorm,
like the TinyViT neck whose embeddings the student learns to reproduce. A 256-px input gives a
(B, 256, 64, 64) embedding, the LiteMedSAM mask decoder's input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "EfficientViTBackbone",
    "EfficientViTEncoder",
    "LiteMLA",
    "SamNeck",
    "efficientvit_b0_256",
    "efficientvit_b1_256",
]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of (B, C, H, W), numerically as SAM's LayerNorm2d (eps 1e-6).

    Implemented with ``F.layer_norm`` on a channels-last view: the broadcasting form of
    LayerNorm2d is ~10x slower on CPU for channels-last tensors.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.normalized_shape = (num_channels,)  # a constant, so ONNX export sees no shape ops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps
        )
        return y.permute(0, 3, 1, 2)


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + optional Hardswish; ``padding`` keeps the size / stride."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__(
            nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_chans),
        )
        if act:
            self.add_module("act", nn.Hardswish())


class DSConv(nn.Module):
    """Depthwise-separable conv: depthwise k x k (norm, act) then pointwise (norm, no act)."""

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1) -> None:
        super().__init__()
        self.depth = ConvNormAct(in_chans, in_chans, 3, stride, groups=in_chans)
        self.point = ConvNormAct(in_chans, out_chans, act=False)
        self.residual = stride == 1 and in_chans == out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.point(self.depth(x))
        return x + out if self.residual else out


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (act), 3x3 depthwise (act, ``stride``), 1x1 project.

    A residual connection is added when the block keeps the shape.
    """

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1, expand: float = 4) -> None:
        super().__init__()
        mid = round(in_chans * expand)
        self.inverted = ConvNormAct(in_chans, mid)
        self.depth = ConvNormAct(mid, mid, 3, stride, groups=mid)
        self.point = ConvNormAct(mid, out_chans, act=False)
        self.residual = stride == 1 and in_chans == out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.point(self.depth(self.inverted(x)))
        return x + out if self.residual else out


class LiteMLA(nn.Module):
    """Multi-scale ReLU linear attention (EfficientViT's "lightweight multi-scale attention").

    A 1x1 conv makes q, k, v for ``heads`` heads of width ``head_dim``. For each aggregation
    scale s, a depthwise s x s conv followed by a grouped 1x1 conv mixes nearby tokens of q, k and
    v, producing another set of heads; all heads attend with ReLU linear attention

        out_i = sum_j (relu(q_i) . relu(k_j)) v_j / sum_j (relu(q_i) . relu(k_j)),

    computed as ``relu(q) @ (relu(k)^T @ [v, 1])`` in O(N head_dim^2). A 1x1 conv (with norm)
    projects the concatenated heads back to ``dim``.

    Args:
        dim: input/output channels.
        head_dim: channels per head.
        scales: kernel sizes of the multi-scale token aggregation.
        eps: guards the normaliser.
    """

    def __init__(
        self, dim: int, head_dim: int = 16, scales: Sequence[int] = (5,), eps: float = 1e-15
    ) -> None:
        super().__init__()
        if dim % head_dim != 0:
            raise ValueError(f"dim {dim} must be a multiple of head_dim {head_dim}")
        self.heads = dim // head_dim
        self.head_dim = head_dim
        self.eps = eps
        total = self.heads * head_dim
        self.qkv = ConvNormAct(dim, 3 * total, act=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total, 3 * total, s, padding=s // 2, groups=3 * total, bias=False),
                nn.Conv2d(3 * total, 3 * total, 1, groups=3 * self.heads, bias=False),
            )
            for s in scales
        )
        self.proj = ConvNormAct(total * (1 + len(scales)), dim, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        qkv = self.qkv(x)
        multi = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        # (B, groups*3*head_dim, H, W) -> (B, groups, N, 3*head_dim), heads as groups
        multi = multi.reshape(b, -1, 3 * self.head_dim, h * w).transpose(-1, -2)
        q, k, v = multi.split(self.head_dim, dim=-1)
        q, k = F.relu(q), F.relu(k)
        v = F.pad(v, (0, 1), value=1.0)  # extra ones column gives the normaliser
        kv = k.transpose(-1, -2) @ v  # (B, G, d, d+1)
        out = q @ kv  # (B, G, N, d+1)
        out = out[..., :-1] / (out[..., -1:] + self.eps)
        out = out.transpose(-1, -2).reshape(b, -1, h, w)
        return self.proj(out)


class EfficientViTBlock(nn.Module):
    """Context (multi-scale linear attention) then local (MBConv) mixing, both residual."""

    def __init__(self, dim: int, head_dim: int = 16, expand: float = 4) -> None:
        super().__init__()
        self.context = LiteMLA(dim, head_dim)
        self.local = MBConv(dim, dim, 1, expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.context(x)
        return self.local(x)  # MBConv adds its own residual


class EfficientViTBackbone(nn.Module):
    """EfficientViT-B backbone returning the stride-4, -8, -16 and -32 feature maps.

    Args:
        widths: channels of the stem and of the four stages (5 values).
        depths: blocks of the stem and of the four stages (5 values); the first block of each
            stage downsamples by 2.
        head_dim: channels per attention head in stages 3 and 4.
        expand: MBConv expansion ratio.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 128, 256),
        depths: Sequence[int] = (1, 2, 3, 3, 4),
        head_dim: int = 16,
        expand: float = 4,
    ) -> None:
        super().__init__()
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError(f"widths and depths need 5 values; got {widths}, {depths}")
        if min(depths) < 1:
            raise ValueError(f"every depth must be >= 1; got {depths}")
        self.widths = tuple(int(w) for w in widths)
        stem: list[nn.Module] = [ConvNormAct(3, widths[0], 3, 2)]
        stem += [DSConv(widths[0], widths[0]) for _ in range(depths[0])]
        self.stem = nn.Sequential(*stem)
        self.stages = nn.ModuleList()
        for i in range(1, 5):
            blocks: list[nn.Module] = [MBConv(widths[i - 1], widths[i], 2, expand)]
            if i <= 2:
                blocks += [MBConv(widths[i], widths[i], 1, expand) for _ in range(depths[i] - 1)]
            else:
                blocks += [EfficientViTBlock(widths[i], head_dim, expand) for _ in range(depths[i])]
            self.stages.append(nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at strides 4, 8, 16 and 32 of a (B, 3, H, W) input."""
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class SamNeck(nn.Module):
    """Fuse backbone features into a SAM image embedding at 1/4 of the input resolution.

    Stride-8/16/32 features are projected to ``dim`` channels, upsampled to stride 8 and summed,
    refined by ``mid_blocks`` MBConvs, upsampled to stride 4 and added to the projected stride-4
    features, refined by ``high_blocks`` MBConvs, then projected to ``out_chans`` and
    channel-normalised (LayerNorm2d, as the TinyViT neck ends).

    Args:
        in_widths: channels of the stride-4, -8, -16, -32 features.
        dim: neck width.
        out_chans: embedding channels (the decoder's transformer dim).
        mid_blocks: MBConv blocks at stride 8.
        high_blocks: MBConv blocks at stride 4.
        expand: MBConv expansion ratio in the neck.
    """

    def __init__(
        self,
        in_widths: Sequence[int],
        dim: int,
        out_chans: int = 256,
        mid_blocks: int = 1,
        high_blocks: int = 1,
        expand: float = 1,
    ) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvNormAct(w, dim, act=False) for w in in_widths)
        self.mid = nn.Sequential(*[MBConv(dim, dim, 1, expand) for _ in range(mid_blocks)])
        self.high = nn.Sequential(*[MBConv(dim, dim, 1, expand) for _ in range(high_blocks)])
        self.out = nn.Conv2d(dim, out_chans, 1)
        self.norm = ChannelLayerNorm(out_chans)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, out_chans, H/4, W/4) from the four backbone feature maps."""
        f4, f8, f16, f32 = (lat(f) for lat, f in zip(self.lateral, features, strict=True))
        size8 = f8.shape[-2:]
        x = f8
        x = x + F.interpolate(f16, size=size8, mode="bilinear", align_corners=False)
        x = x + F.interpolate(f32, size=size8, mode="bilinear", align_corners=False)
        x = self.mid(x)
        x = F.interpolate(x, size=f4.shape[-2:], mode="bilinear", align_corners=False) + f4
        x = self.high(x)
        return self.norm(self.out(x))


class EfficientViTEncoder(nn.Module):
    """EfficientViT backbone + SAM neck: (B, 3, S, S) in [0, 1] -> (B, out_chans, S/4, S/4).

    Args:
        widths, depths, head_dim, expand: see :class:`EfficientViTBackbone`.
        neck_dim, mid_blocks, high_blocks, neck_expand: see :class:`SamNeck`.
        out_chans: embedding channels.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 128, 256),
        depths: Sequence[int] = (1, 2, 3, 3, 4),
        head_dim: int = 16,
        expand: float = 4,
        neck_dim: int = 128,
        mid_blocks: int = 1,
        high_blocks: int = 1,
        neck_expand: float = 1,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        self.backbone = EfficientViTBackbone(widths, depths, head_dim, expand)
        self.neck = SamNeck(widths[1:], neck_dim, out_chans, mid_blocks, high_blocks, neck_expand)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings (B, out_chans, S/4, S/4) of images (B, 3, S, S); S divisible by 32."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, S, S); got shape {tuple(images.shape)}")
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(
                f"image height and width must be multiples of 32; got {tuple(images.shape[-2:])}"
            )
        # channels-last makes CPU depthwise convolutions several times faster
        images = images.contiguous(memory_format=torch.channels_last)
        return self.neck(self.backbone(images)).contiguous()

    @torch.no_grad()
    def set_output_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the final LayerNorm's affine parameters to per-channel target statistics.

        Distillation starts from outputs with the teacher's per-channel mean and spread.

        Args:
            mean: (out_chans,) channel means of the target embeddings.
            std: (out_chans,) channel standard deviations of the target embeddings.
        """
        norm = self.neck.norm
        if mean.shape != norm.bias.shape or std.shape != norm.weight.shape:
            raise ValueError(
                f"expected ({norm.bias.numel()},) statistics; got {tuple(mean.shape)}, "
                f"{tuple(std.shape)}"
            )
        norm.bias.copy_(mean)
        norm.weight.copy_(std)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def efficientvit_b0_256(out_chans: int = 256) -> EfficientViTEncoder:
    """EfficientViT-B0-sized student for 256-px inputs (widths 8-128, depths 1/2/2/2/2)."""
    return EfficientViTEncoder(
        widths=(8, 16, 32, 64, 128),
        depths=(1, 2, 2, 2, 2),
        neck_dim=64,
        mid_blocks=1,
        high_blocks=1,
        neck_expand=2,
        out_chans=out_chans,
    )


def efficientvit_b1_256(out_chans: int = 256) -> EfficientViTEncoder:
    """EfficientViT-B1-sized student for 256-px inputs (widths 16-256, depths 1/2/3/3/4)."""
    return EfficientViTEncoder(
        widths=(16, 32, 64, 128, 256),
        depths=(1, 2, 3, 3, 4),
        neck_dim=128,
        mid_blocks=2,
        high_blocks=1,
        neck_expand=2,
        out_chans=out_chans,
    )
