"""SAM-family models with a ViT image encoder: SAM ViT-B/L/H and MedSAM (ViT-B).

The network is segment-anything's: a ViT encoder at 1024 px (64 x 64 embedding), the SAM prompt
encoder and the SAM mask decoder (the same heads LiteMedSAM uses), wired by
:class:`~umedsam.models.medsam_lite.MedSAMLite`. No weights ship: users bring the checkpoints as
distributed (``sam_vit_b_01ec64.pth``, ``medsam_vit_b.pth``, or a state dict saved from a
training wrapper). How images and prompts enter each family's frame is the cards' business
(:mod:`umedsam.models.cards`, :mod:`umedsam.data.frames`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from umedsam.models.encoders.vit import (
    VIT_B,
    VIT_H,
    VIT_L,
    ImageEncoderViT,
    ViTConfig,
    vit_config_from_state,
)
from umedsam.models.medsam_lite import MedSAMLite, build_sam_mask_decoder, build_sam_prompt_encoder
from umedsam.models.registry import register_model

__all__ = ["build_sam_vit", "sam_vit_b", "sam_vit_h", "sam_vit_l", "sam_vit_from_state"]


def build_sam_vit(config: ViTConfig) -> MedSAMLite:
    """A SAM-family model with the ViT encoder ``config`` (random weights)."""
    stride = config.patch_size
    return MedSAMLite(
        ImageEncoderViT(config),
        build_sam_prompt_encoder(image_size=config.img_size, stride=stride),
        build_sam_mask_decoder(),
    )


@register_model("sam_vit_b")
def sam_vit_b() -> MedSAMLite:
    """SAM (and MedSAM) ViT-B: 12 blocks of width 768 at 1024 px (93.7 M params)."""
    return build_sam_vit(VIT_B)


@register_model("sam_vit_l")
def sam_vit_l() -> MedSAMLite:
    """SAM ViT-L: 24 blocks of width 1024 at 1024 px (312 M params)."""
    return build_sam_vit(VIT_L)


@register_model("sam_vit_h")
def sam_vit_h() -> MedSAMLite:
    """SAM ViT-H: 32 blocks of width 1280 at 1024 px (641 M params)."""
    return build_sam_vit(VIT_H)


def sam_vit_from_state(state: Mapping[str, torch.Tensor]) -> MedSAMLite:
    """A SAM-family model shaped like ``state`` (any ViT width, depth, window; random weights).

    Raises:
        ValueError: the state holds no SAM ViT image encoder.
    """
    config = vit_config_from_state(state)
    if config is None:
        raise ValueError("the state dict holds no SAM ViT image encoder (image_encoder.pos_embed)")
    return build_sam_vit(config)
