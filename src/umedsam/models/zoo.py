"""Builders beyond LiteMedSAM itself: the EfficientViT students.

The students pair EfficientViT image encoders with the LiteMedSAM prompt encoder and decoder and
are trained by distillation (``umedsam distill``). The fine-tuned LiteMedSAM models
(``umedsam_litemedsam``, ``umedsam_merged``, ``umedsam_interactive``) are LiteMedSAM's network
with other weights: their cards (:mod:`umedsam.models.cards`) name the ``litemedsam`` builder and
their shipped files. See docs/models.md.
"""

from __future__ import annotations

from umedsam.models.encoders.efficient_vit import (
    efficientvit_b0_256,
    efficientvit_b1_256,
)
from umedsam.models.medsam_lite import (
    MedSAMLite,
    build_sam_mask_decoder,
    build_sam_prompt_encoder,
)
from umedsam.models.registry import register_model

__all__ = ["umedsam_effvit_b0", "umedsam_effvit_b1"]


@register_model("umedsam_effvit_b0")
def umedsam_effvit_b0() -> MedSAMLite:
    """EfficientViT-B0-sized student encoder (0.76 M params, ~0.28 GMACs at 256 px) + SAM heads."""
    return MedSAMLite(efficientvit_b0_256(), build_sam_prompt_encoder(), build_sam_mask_decoder())


@register_model("umedsam_effvit_b1")
def umedsam_effvit_b1() -> MedSAMLite:
    """EfficientViT-B1-sized student encoder (5.0 M params, ~1.23 GMACs at 256 px) + SAM heads."""
    return MedSAMLite(efficientvit_b1_256(), build_sam_prompt_encoder(), build_sam_mask_decoder())
