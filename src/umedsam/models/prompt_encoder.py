"""SAM prompt encoder: boxes (first-class), points and a dense mask prompt.

Coordinates are in the model input frame (pixels of the padded S x S image); the encoder adds 0.5
to move to pixel centres, as SAM does.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from umedsam.models.layers import LayerNorm2d


class RandomFourierPositionEncoding(nn.Module):
    """Fourier features of normalised (x, y) through a fixed random Gaussian matrix."""

    def __init__(self, num_feats: int, scale: float = 1.0) -> None:
        super().__init__()
        self.positional_encoding_gaussian_matrix: torch.Tensor
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn(2, num_feats)
        )

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """coords in [0, 1], (..., 2) -> (..., 2 * num_feats)."""
        proj = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def grid(self, hw: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an (h, w) grid of cell centres -> (C, h, w)."""
        h, w = hw
        device = self.positional_encoding_gaussian_matrix.device
        ones = torch.ones((h, w), device=device, dtype=torch.float32)
        y = (ones.cumsum(dim=0) - 0.5) / h
        x = (ones.cumsum(dim=1) - 0.5) / w
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates (..., 2) as (x, y) in an image of size ``image_hw``."""
        coords = coords.clone()
        coords[..., 0] = coords[..., 0] / image_hw[1]
        coords[..., 1] = coords[..., 1] / image_hw[0]
        return self._encode(coords.to(torch.float32))


class PromptEncoder(nn.Module):
    """Embeds boxes/points into sparse tokens and an optional mask into a dense map.

    Args:
        embed_dim: token / embedding channels.
        image_embedding_size: (h, w) of the image embedding (input size / 4 ... / 16).
        input_image_size: (H, W) of the model input frame.
        mask_in_chans: hidden channels of the mask downscaler.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = RandomFourierPositionEncoding(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, (1, C, h, w)."""
        return self.pe_layer.grid(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5
        if pad:
            points = torch.cat([points, torch.zeros_like(points[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        emb = self.pe_layer.points(points, self.input_image_size)
        lab = labels[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight.expand_as(emb), emb)
        emb = emb + (lab == 0) * self._point_weight(0)
        emb = emb + (lab == 1) * self._point_weight(1)
        return emb

    def embed_labelled_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sparse tokens (N, P, C) of points with labels, boxes included as two corner points.

        Labels: -1 padding (not a point), 0 negative click, 1 positive click, 2 box top-left,
        3 box bottom-right. A box given as its two corners gives the same tokens as ``boxes=``;
        no padding token is added (callers add one, label -1, where SAM would: no box).

        Args:
            coords: (N, P, 2) xy in the model frame.
            labels: (N, P) integer or float labels.
        """
        lab = labels.to(coords.dtype)[..., None]
        emb = self.pe_layer.points(coords.to(torch.float32) + 0.5, self.input_image_size)
        emb = torch.where(lab == -1, self.not_a_point_embed.weight.expand_as(emb), emb)
        for k in range(4):
            emb = emb + (lab == k) * self._point_weight(k)
        return emb

    def embed_dense(self, masks: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
        """Dense embedding (N, C, h, w): each object's mask prompt where ``has_mask``, else none.

        Args:
            masks: (N, 1, 4h, 4w) mask logits (ignored where ``has_mask`` is 0).
            has_mask: (N,) 1 where the object has a mask prompt, else 0.
        """
        flag = has_mask.to(masks.dtype).reshape(-1, 1, 1, 1)
        h, w = self.image_embedding_size
        none = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(masks.shape[0], -1, h, w)
        return flag * self.mask_downscaling(masks) + (1 - flag) * none

    def _point_weight(self, index: int) -> torch.Tensor:
        """Weight (1, C) of point embedding ``index`` (0 negative, 1 positive, 2/3 box corners)."""
        return cast(nn.Embedding, self.point_embeddings[index]).weight

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes.reshape(-1, 2, 2) + 0.5).to(torch.float32)
        emb = self.pe_layer.points(corners, self.input_image_size)
        emb[:, 0, :] += self._point_weight(2)[0]
        emb[:, 1, :] += self._point_weight(3)[0]
        return emb

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts.

        Args:
            points: (coords (B, P, 2) xy, labels (B, P) with 1 positive, 0 negative, -1 padding).
            boxes: (B, 4) or (B, 1, 4) xyxy.
            masks: (B, 1, 4h, 4w) mask logits.

        Returns:
            sparse (B, T, C) tokens and dense (B, C, h, w) embedding.
        """
        if points is not None:
            batch = points[0].shape[0]
        elif boxes is not None:
            batch = boxes.shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        device = self._point_weight(0).device
        tokens = [torch.empty((batch, 0, self.embed_dim), device=device)]
        if points is not None:
            coords, labels = points
            tokens.append(self._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            tokens.append(self._embed_boxes(boxes))
        sparse = torch.cat(tokens, dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)
        return sparse, dense
