"""The plain ViT image encoder of SAM and MedSAM (Kirillov et al. 2023; Ma et al. 2024).

A 1024-px image is cut into 16-px patches (a 64 x 64 token grid) with an absolute position
embedding; transformer blocks attend inside 14 x 14 windows except a few global ones, with
decomposed relative position terms (one table per axis); a neck of a 1x1 and a 3x3 convolution,
each followed by a channel LayerNorm, maps the grid to a 256-channel embedding.

Parameter names follow the official checkpoints (``patch_embed.proj``, ``pos_embed``,
``blocks.N.attn.qkv``, ``blocks.N.attn.rel_pos_h``, ``neck.0`` ...), so SAM's and MedSAM's files
load strictly. :func:`vit_config_from_state` reads the configuration back from a state dict's
shapes (width, depth, heads, window, which blocks are global), so any SAM-family ViT loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from umedsam.models.layers import LayerNorm2d


@dataclass(frozen=True)
class ViTConfig:
    """Sizes of a SAM-family ViT encoder.

    Attributes:
        embed_dim: token width (768 ViT-B, 1024 ViT-L, 1280 ViT-H).
        depth: number of transformer blocks.
        num_heads: attention heads per block.
        global_blocks: indices of the blocks that attend over the whole grid.
        window_size: side of the attention window of the other blocks.
        img_size: input side in pixels.
        patch_size: patch side in pixels.
        out_chans: channels of the output embedding.
        mlp_ratio: hidden width of the MLP over ``embed_dim``.
    """

    embed_dim: int
    depth: int
    num_heads: int
    global_blocks: tuple[int, ...]
    window_size: int = 14
    img_size: int = 1024
    patch_size: int = 16
    out_chans: int = 256
    mlp_ratio: int = 4

    @property
    def grid(self) -> int:
        """Side of the token grid (64 for a 1024-px input and 16-px patches)."""
        return self.img_size // self.patch_size


VIT_B = ViTConfig(768, 12, 12, (2, 5, 8, 11))
VIT_L = ViTConfig(1024, 24, 16, (5, 11, 17, 23))
VIT_H = ViTConfig(1280, 32, 16, (7, 15, 23, 31))
OFFICIAL_VITS = {"vit_b": VIT_B, "vit_l": VIT_L, "vit_h": VIT_H}
"""The three configurations segment-anything publishes (MedSAM is ViT-B)."""


def relative_table(table: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size, C) embeddings of the offsets ``i - j`` between query i and key j of one axis.

    ``table`` holds one row per offset, from ``-(size - 1)`` to ``size - 1``.
    """
    offsets = torch.arange(size)[:, None] - torch.arange(size)[None, :] + (size - 1)
    return table[offsets]


class Attention(nn.Module):
    """Multi-head self-attention on a (B, H, W, C) grid with decomposed relative positions.

    Args:
        dim: token width.
        num_heads: heads.
        grid: side of the (square) grid it attends over: the window, or the whole token grid.
    """

    def __init__(self, dim: int, num_heads: int, grid: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * heads, h * w, c // heads).unbind(0)
        scores = (q * self.scale) @ k.transpose(-2, -1)
        grid_q = q.reshape(b * heads, h, w, c // heads)
        along_h = torch.einsum("bhwc,hkc->bhwk", grid_q, relative_table(self.rel_pos_h, h))
        along_w = torch.einsum("bhwc,wkc->bhwk", grid_q, relative_table(self.rel_pos_w, w))
        scores = (
            scores.view(b * heads, h, w, h, w) + along_h[:, :, :, :, None] + along_w[:, :, :, None]
        ).view(b * heads, h * w, h * w)
        out = (scores.softmax(dim=-1) @ v).view(b, heads, h, w, c // heads)
        return self.proj(out.permute(0, 2, 3, 1, 4).reshape(b, h, w, c))


def to_windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * windows, size, size, C), zero-padded to whole windows; padded (H, W)."""
    b, h, w, c = x.shape
    pad_h, pad_w = (size - h % size) % size, (size - w % size) % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // size, size, wp // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size, size, c), (hp, wp)


def from_windows(
    windows: torch.Tensor, size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`to_windows`: (B * windows, size, size, C) -> (B, H, W, C)."""
    hp, wp = padded_hw
    b = windows.shape[0] // ((hp // size) * (wp // size))
    x = windows.view(b, hp // size, wp // size, size, size, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, : hw[0], : hw[1]].contiguous()


class MLPBlock(nn.Module):
    """Linear, exact GELU, linear (children ``lin1``, ``lin2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class Block(nn.Module):
    """Pre-norm transformer block, windowed (``window_size`` > 0) or global (0)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, window_size: int, grid: int):
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, window_size if window_size > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            hw = (x.shape[1], x.shape[2])
            windows, padded = to_windows(x, self.window_size)
            x = from_windows(self.attn(windows), self.window_size, padded, hw)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection to a channels-last grid (child ``proj``)."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """SAM's image encoder: (B, 3, S, S) -> (B, out_chans, S/16, S/16)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        dim, grid = config.embed_dim, config.grid
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        self.blocks = nn.ModuleList(
            Block(
                dim,
                config.num_heads,
                config.mlp_ratio,
                0 if i in config.global_blocks else config.window_size,
                grid,
            )
            for i in range(config.depth)
        )
        out = config.out_chans
        self.neck = nn.Sequential(
            nn.Conv2d(dim, out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


def vit_config_from_state(
    state: Mapping[str, torch.Tensor], prefix: str = "image_encoder."
) -> ViTConfig | None:
    """The :class:`ViTConfig` a SAM-family state dict was saved from, read from its shapes.

    Width from ``pos_embed``, patch side from the patch projection, depth from the block
    indices, head width from the relative-position tables, the window from a windowed block's
    table and the global blocks from the tables as long as the whole grid. None when the state
    holds no SAM ViT encoder under ``prefix``.
    """
    pos = state.get(f"{prefix}pos_embed")
    proj = state.get(f"{prefix}patch_embed.proj.weight")
    if pos is None or proj is None or pos.ndim != 4 or proj.ndim != 4:
        return None
    dim, grid, patch = int(pos.shape[-1]), int(pos.shape[1]), int(proj.shape[-1])
    tables: dict[int, int] = {}
    head_dim = 0
    for key, value in state.items():
        if key.startswith(f"{prefix}blocks.") and key.endswith(".attn.rel_pos_h"):
            tables[int(key[len(prefix) + 7 :].split(".")[0])] = int(value.shape[0])
            head_dim = int(value.shape[1])
    if not tables or head_dim == 0 or sorted(tables) != list(range(len(tables))):
        return None
    global_blocks = tuple(i for i, n in sorted(tables.items()) if n == 2 * grid - 1)
    windowed = [n for n in tables.values() if n != 2 * grid - 1]
    window = (windowed[0] + 1) // 2 if windowed else 14
    neck = state.get(f"{prefix}neck.0.weight")
    return ViTConfig(
        embed_dim=dim,
        depth=len(tables),
        num_heads=dim // head_dim,
        global_blocks=global_blocks,
        window_size=window,
        img_size=grid * patch,
        patch_size=patch,
        out_chans=int(neck.shape[0]) if neck is not None else 256,
        mlp_ratio=int(state[f"{prefix}blocks.0.mlp.lin1.weight"].shape[0]) // dim
        if f"{prefix}blocks.0.mlp.lin1.weight" in state
        else 4,
    )


def official_name(config: ViTConfig) -> str | None:
    """``vit_b``/``vit_l``/``vit_h`` when ``config`` is one of segment-anything's, else None."""
    for name, known in OFFICIAL_VITS.items():
        if known == config:
            return name
    return None


def describe(config: ViTConfig) -> str:
    """A short human description: width, depth, heads, global blocks, input side."""
    return (
        f"ViT width {config.embed_dim}, {config.depth} blocks, {config.num_heads} heads, "
        f"global blocks {list(config.global_blocks)}, {config.img_size} px"
    )
