"""Models beyond LiteMedSAM itself: fine-tuned LiteMedSAM and the EfficientViT students.

``umedsam_litemedsam`` is LiteMedSAM with the mask decoder fine-tuned by the U-MedSAM recipe
(``benchmarks/ablation.py``); its packaged file holds only the decoder and goes on top of the
bundled LiteMedSAM weights; ``umedsam_merged`` averages that decoder with LiteMedSAM's
(``benchmarks/merge.py``). The students pair EfficientViT image encoders with the LiteMedSAM
prompt encoder and decoder and are trained by distillation (``umedsam distill``). Weights shipped
in ``umedsam/weights`` are declared here with ``register_weights``, so
``load_pretrained("umedsam_effvit_b0")`` and ``umedsam predict --model umedsam_effvit_b0`` use
them. See docs/models.md for the model cards.
"""

from __future__ import annotations

from umedsam.models.capabilities import WEIGHT_FILES, WEIGHTS_DIR, shipped_weights
from umedsam.models.encoders.efficient_vit import (
    efficientvit_b0_256,
    efficientvit_b1_256,
)
from umedsam.models.medsam_lite import (
    MedSAMLite,
    build_sam_mask_decoder,
    build_sam_prompt_encoder,
    litemedsam,
)
from umedsam.models.registry import register_model, register_weights

__all__ = [
    "WEIGHTS_DIR",
    "umedsam_effvit_b0",
    "umedsam_effvit_b1",
    "umedsam_interactive",
    "umedsam_litemedsam",
    "umedsam_merged",
]


@register_model("umedsam_litemedsam")
def umedsam_litemedsam() -> MedSAMLite:
    """LiteMedSAM (TinyViT encoder) whose mask decoder was fine-tuned with the U-MedSAM recipe."""
    return litemedsam()


@register_model("umedsam_merged")
def umedsam_merged() -> MedSAMLite:
    """LiteMedSAM whose mask decoder is the half-way merge of its own and the fine-tuned one."""
    return litemedsam()


@register_model("umedsam_interactive")
def umedsam_interactive() -> MedSAMLite:
    """LiteMedSAM whose prompt encoder and mask decoder learned clicks, scribbles and corrections."""
    return litemedsam()


@register_model("umedsam_effvit_b0")
def umedsam_effvit_b0() -> MedSAMLite:
    """EfficientViT-B0-sized student encoder (0.76 M params, ~0.28 GMACs at 256 px) + SAM heads."""
    return MedSAMLite(efficientvit_b0_256(), build_sam_prompt_encoder(), build_sam_mask_decoder())


@register_model("umedsam_effvit_b1")
def umedsam_effvit_b1() -> MedSAMLite:
    """EfficientViT-B1-sized student encoder (5.0 M params, ~1.23 GMACs at 256 px) + SAM heads."""
    return MedSAMLite(efficientvit_b1_256(), build_sam_prompt_encoder(), build_sam_mask_decoder())


# Shipped weights (see umedsam.models.capabilities.shipped_weights for what ships and its base).
for _name in WEIGHT_FILES:
    _found = shipped_weights(_name)
    if _found is not None:
        register_weights(_name, _found[1], base=_found[0])
