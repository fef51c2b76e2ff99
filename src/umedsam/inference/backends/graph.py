"""Shared plumbing of engines that run exported graphs (ONNX Runtime, OpenVINO).

Subclasses implement one encoder call and one decoder call on numpy arrays; this base class
converts tensors, makes arrays contiguous float32 and chunks the boxes of a decoder call.
"""

from __future__ import annotations

import numpy as np
import torch

DECODE_CHUNK = 8  # boxes per call: batching saves no compute; each box holds ~40 MB


class GraphBackend:
    """Backend protocol (``encode``/``decode`` on tensors) over numpy graph calls.

    Attributes:
        name: engine name shown to users.
        image_size: side S of the model input frame.
    """

    name: str
    image_size: int

    def _run_encoder(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _run_decoder(
        self, embedding: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def encode_numpy(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, C, S/4, S/4) float32."""
        return self._run_encoder(np.ascontiguousarray(images, dtype=np.float32))

    def decode_numpy(
        self, embedding: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embedding (1, C, h, w) and boxes (N, 4) -> logits (N, 1, S, S), iou (N, 1); chunked."""
        emb = np.ascontiguousarray(embedding, dtype=np.float32)
        boxes = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
        logits, ious = [], []
        for start in range(0, boxes.shape[0], DECODE_CHUNK):
            lo, iou = self._run_decoder(emb, boxes[start : start + DECODE_CHUNK])
            logits.append(lo)
            ious.append(iou)
        return np.concatenate(logits), np.concatenate(ious)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C, S/4, S/4) float32 on the CPU."""
        return torch.from_numpy(self.encode_numpy(images.detach().cpu().float().numpy()))

    def decode(
        self, embedding: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode all ``boxes`` (N, 4, model frame) against one embedding (1, C, h, w)."""
        lo, iou = self.decode_numpy(
            embedding.detach().cpu().float().numpy(),
            torch.as_tensor(boxes, dtype=torch.float32).numpy(),
        )
        return torch.from_numpy(lo), torch.from_numpy(iou)
