"""TinyViT image encoder as used by LiteMedSAM (Wu et al. 2022; LiteMedSAM variant at 256 px).

LiteMedSAM's TinyViT differs from the ImageNet one: the patch embedding is two 1x1 convolutions with
stride 1 (the first stage runs at full input resolution), the last patch merging keeps the resolution
(stride 1), and a SAM-style neck maps the last stage to a 256-channel embedding at 1/4 of the input.
Parameter names follow the official checkpoint (``patch_embed.seq``, ``layers.N.blocks``, ``neck``),
so ``lite_medsam.pth`` loads strictly.

Layout: convolutional stage 0 works on (B, C, H, W); attention stages work on tokens (B, H*W, C) and
carry their spatial size explicitly, so any input size divisible by 4 works (tests use 64 px).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from umedsam.models.layers import LayerNorm2d


class Conv2dBN(nn.Sequential):
    """Convolution without bias followed by BatchNorm (children named ``c`` and ``bn``)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module(
            "c",
            nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False),
        )
        bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two pointwise Conv-BN layers with a GELU between; keeps the input resolution."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = Conv2dBN(hidden, dim, bn_weight_init=0.0)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv1(x))
        y = self.act(self.conv2(y))
        y = self.conv3(y)
        return self.act(x + y)


class PatchMerging(nn.Module):
    """Pointwise, depthwise-strided and pointwise Conv-BN; returns tokens (B, H'*W', C')."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks on (B, C, H, W), then patch merging."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio) for _ in range(depth)])
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class Mlp(nn.Module):
    """Pre-norm two-layer MLP with GELU."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def _relative_offset_index(window: int) -> tuple[torch.Tensor, int]:
    """Index of the |dy|, |dx| offset between every pair of positions in a window.

    Offsets are numbered in order of first appearance when scanning pairs row-major, which is the
    numbering the pretrained ``attention_biases`` tables use.
    """
    points = list(itertools.product(range(window), range(window)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(off, len(offsets)))
    n = len(points)
    return torch.tensor(idxs, dtype=torch.long).view(n, n), len(offsets)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window with a learned relative-position bias."""

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        index, n_offsets = _relative_offset_index(window)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, n_offsets))
        self.attention_bias_idxs: torch.Tensor
        self.register_buffer("attention_bias_idxs", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=3)
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


def _window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, int, int]:
    """(B, H, W, C) -> (B*nH*nW, window*window, C), zero-padding bottom/right."""
    b, h, w, c = x.shape
    pad_b, pad_r = (-h) % window, (-w) % window
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    ph, pw = h + pad_b, w + pad_r
    x = x.view(b, ph // window, window, pw // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c), ph, pw


def _window_merge(x: torch.Tensor, window: int, b: int, ph: int, pw: int) -> torch.Tensor:
    """Inverse of :func:`_window_partition` up to the padded size (B, pH, pW, C)."""
    c = x.shape[-1]
    x = x.view(b, ph // window, pw // window, window, window, c).transpose(2, 3)
    return x.reshape(b, ph, pw, c)


class TinyViTBlock(nn.Module):
    """Window attention, depthwise 3x3 Conv-BN, MLP; residuals around attention and MLP."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, n, c = x.shape
        if h == self.window and w == self.window:
            attn = self.attn(x)
        else:
            windows, ph, pw = _window_partition(x.view(b, h, w, c), self.window)
            merged = _window_merge(self.attn(windows), self.window, b, ph, pw)
            attn = merged[:, :h, :w].reshape(b, n, c)
        x = x + attn
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class AttentionStage(nn.Module):
    """Stages 1-3: TinyViT blocks on tokens, then an optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        downsample: PatchMerging | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            [TinyViTBlock(dim, num_heads, window, mlp_ratio) for _ in range(depth)]
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (B, C, H, W) to (B, C', H', W')."""
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens, (h, w))
        x = tokens.transpose(1, 2).reshape(b, c, h, w)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """LiteMedSAM's TinyViT: (B, 3, S, S) in [0, 1] -> (B, out_chans, S/4, S/4).

    Args:
        embed_dims: channels of the four stages.
        depths: blocks per stage (stage 0 is MBConv, the rest attention).
        num_heads: attention heads of stages 1-3 (index 0 unused).
        window_sizes: attention window of stages 1-3 (index 0 unused).
        merge_strides: stride of the patch merging after stages 0, 1, 2.
        out_chans: channels of the neck output (the decoder's transformer dim).
    """

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        merge_strides: Sequence[int] = (2, 2, 1),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        in_chans: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        n = len(embed_dims)
        if not (
            len(depths) == len(num_heads) == len(window_sizes) == n and len(merge_strides) == n - 1
        ):
            raise ValueError("embed_dims, depths, num_heads, window_sizes need equal lengths")
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        layers: list[nn.Module] = []
        for i in range(n):
            merge = (
                PatchMerging(embed_dims[i], embed_dims[i + 1], merge_strides[i])
                if i < n - 1
                else None
            )
            if i == 0:
                assert merge is not None
                layers.append(ConvStage(embed_dims[0], depths[0], mbconv_expand_ratio, merge))
            else:
                layers.append(
                    AttentionStage(
                        embed_dims[i], depths[i], num_heads[i], window_sizes[i], mlp_ratio, merge
                    )
                )
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def tiny_vit_5m_256(out_chans: int = 256) -> TinyViT:
    """The LiteMedSAM encoder: TinyViT-5M at 256 px (dims 64/128/160/320, depths 2/2/6/2)."""
    return TinyViT(out_chans=out_chans)
