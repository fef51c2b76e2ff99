"""LiteMedSAM: an image encoder, the SAM prompt encoder and the SAM mask decoder, wired together.

``MedSAMLite`` owns no sizes: it receives its three parts. Builders at the end of the file fix the
sizes of each registered variant.
"""

from __future__ import annotations

import torch
from torch import nn

from umedsam.models.encoders.tiny_vit import tiny_vit_5m_256
from umedsam.models.mask_decoder import MaskDecoder, TwoWayTransformer
from umedsam.models.prompt_encoder import PromptEncoder
from umedsam.models.registry import register_model


class MedSAMLite(nn.Module):
    """Box-prompted segmenter: ``encode`` an image once, ``decode`` many boxes against it.

    Args:
        image_encoder: (B, 3, S, S) float in [0, 1] -> (B, C, S/4, S/4).
        prompt_encoder: SAM prompt encoder for the S x S frame.
        mask_decoder: SAM mask decoder with transformer dim C.
    """

    def __init__(
        self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    @property
    def image_size(self) -> int:
        """Side S of the square model input frame (256 for LiteMedSAM)."""
        return int(self.prompt_encoder.input_image_size[0])

    @property
    def low_res_size(self) -> int:
        """Side L of the decoder's low-resolution logits and mask prompts: four times the
        embedding grid (256 for LiteMedSAM, whose frame it equals, and for SAM's 1024 frame)."""
        return 4 * int(self.prompt_encoder.image_embedding_size[0])

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings (B, C, S/4, S/4) of preprocessed images (B, 3, S, S)."""
        return self.image_encoder(images)

    def decode(
        self,
        embeddings: torch.Tensor,
        boxes: torch.Tensor,
        multimask: bool = False,
        mask_input: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits for boxes.

        Args:
            embeddings: (1 or N, C, h, w); a batch of one is shared by all boxes.
            boxes: (N, 4) xyxy in the S x S model frame.
            multimask: return SAM's 3 ambiguity masks instead of one.
            mask_input: optional dense prompt (N, 1, S, S) logits.

        Returns:
            low-res logits (N, 1 or 3, S, S) and predicted IoU (N, 1 or 3).
        """
        boxes = boxes.to(dtype=torch.float32, device=embeddings.device).reshape(-1, 4)
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes, masks=mask_input)
        return self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    def decode_prompts(
        self,
        embeddings: torch.Tensor,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits for labelled points (clicks, scribble points, box corners) and mask prompts.

        The form every interactive prompt is reduced to (see ``umedsam.inference.prompts``).
        A box given as corner points labelled 2 and 3, with ``has_mask`` 0, decodes exactly as
        :meth:`decode` with that box.

        Args:
            embeddings: (1 or N, C, h, w); a batch of one is shared by all objects.
            coords: (N, P, 2) xy in the S x S model frame.
            labels: (N, P): -1 padding, 0 negative, 1 positive, 2/3 box corners.
            mask_input: (N, 1, S, S) previous low-resolution logits (any values where unused).
            has_mask: (N,) 1 where ``mask_input`` is a prompt, else 0.

        Returns:
            low-res logits (N, 1, S, S) and predicted IoU (N, 1).
        """
        sparse = self.prompt_encoder.embed_labelled_points(coords, labels)
        dense = self.prompt_encoder.embed_dense(mask_input.to(torch.float32), has_mask)
        return self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )

    def forward(
        self, images: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``images`` (B, 3, S, S) and decode one box per image, (B, 4)."""
        return self.decode(self.encode(images), boxes)


def build_sam_prompt_encoder(
    embed_dim: int = 256, image_size: int = 256, mask_in_chans: int = 16, stride: int = 4
) -> PromptEncoder:
    """SAM prompt encoder for a square ``image_size`` frame and an embedding ``stride`` times
    smaller (4 for LiteMedSAM's 256 px, 16 for SAM's ViT at 1024 px)."""
    return PromptEncoder(
        embed_dim=embed_dim,
        image_embedding_size=(image_size // stride, image_size // stride),
        input_image_size=(image_size, image_size),
        mask_in_chans=mask_in_chans,
    )


def build_sam_mask_decoder(
    dim: int = 256, mlp_dim: int = 2048, num_heads: int = 8, iou_hidden: int = 256
) -> MaskDecoder:
    """SAM mask decoder (two-way transformer of depth 2, 3+1 mask tokens, IoU head)."""
    return MaskDecoder(
        transformer_dim=dim,
        transformer=TwoWayTransformer(
            depth=2, embedding_dim=dim, num_heads=num_heads, mlp_dim=mlp_dim
        ),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=iou_hidden,
    )


@register_model("litemedsam")
def litemedsam() -> MedSAMLite:
    """LiteMedSAM: TinyViT-5M at 256 px + SAM prompt encoder + SAM mask decoder (9.8 M params)."""
    return MedSAMLite(tiny_vit_5m_256(), build_sam_prompt_encoder(), build_sam_mask_decoder())
