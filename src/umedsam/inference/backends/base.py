"""The small interface every inference engine implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Backend(Protocol):
    """An engine that encodes preprocessed images and decodes box prompts against embeddings.

    Attributes:
        name: engine name shown to users ("torch", "onnx", "openvino", ...).
        image_size: side S of the square model input frame.
    """

    name: str
    image_size: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float32 in [0, 1] -> embeddings (B, C, S/4, S/4) float32."""
        ...

    def decode(
        self, embedding: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding (1, C, h, w) and boxes (N, 4) in the model frame -> logits (N, 1, S, S), IoU (N, 1)."""
        ...
