"""PyTorch engine: eager model under inference_mode, decoder calls chunked to bound memory."""

from __future__ import annotations

import torch
from torch import nn

DECODE_CHUNK = 32  # boxes per decoder call; each box costs ~4 MB of activations at 256 px


class TorchBackend:
    """Runs a MedSAMLite-style model (``encode``/``decode`` methods) on the CPU or a GPU.

    Args:
        model: a model with ``encode(images)``, ``decode(embedding, boxes)`` and ``image_size``.
        device: where to run; inputs are moved there and outputs returned on the CPU.
    """

    name = "torch"

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = int(model.image_size)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C, S/4, S/4) on the CPU."""
        return self.model.encode(images.to(self.device, torch.float32)).float().cpu()

    @torch.inference_mode()
    def decode(
        self, embedding: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode all ``boxes`` (N, 4) against one embedding, DECODE_CHUNK at a time."""
        emb = embedding.to(self.device, torch.float32)
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        logits, ious = [], []
        for start in range(0, boxes.shape[0], DECODE_CHUNK):
            lo, iou = self.model.decode(emb, boxes[start : start + DECODE_CHUNK].to(self.device))
            logits.append(lo.float().cpu())
            ious.append(iou.float().cpu())
        return torch.cat(logits), torch.cat(ious)
