"""Shared plumbing of engines that run exported graphs (ONNX Runtime, OpenVINO).

Subclasses implement one encoder call and one decoder call on numpy arrays; this base class
makes arrays contiguous float32 and chunks the boxes of a decoder call. Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np

from umedsam.inference.prompts import DecoderPrompts, decode_grouped

DECODE_CHUNK = 8  # boxes per call: batching saves no compute; each box holds ~40 MB


class GraphBackend:
    """Backend protocol (``encode``/``decode`` on arrays) over one-call graph runners.

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

    def _run_prompt_decoder(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def run_prompt_decoder(
        self,
        embedding: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray,
        has_mask: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One call of the prompt-decoder graph (inputs made contiguous float32)."""
        inputs = [
            np.ascontiguousarray(a, dtype=np.float32)
            for a in (embedding, coords, labels, mask_input, has_mask)
        ]
        return self._run_prompt_decoder(inputs)

    def decode_prompts(
        self, embedding: np.ndarray, prompts: DecoderPrompts
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode N objects' prompts, grouped by token count, DECODE_CHUNK at a time."""
        return decode_grouped(self.run_prompt_decoder, embedding, prompts, DECODE_CHUNK)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, C, S/4, S/4) float32."""
        return self._run_encoder(np.ascontiguousarray(images, dtype=np.float32))

    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embedding (1, C, h, w) and boxes (N, 4) -> logits (N, 1, S, S), iou (N, 1); chunked."""
        emb = np.ascontiguousarray(embedding, dtype=np.float32)
        boxes = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
        logits, ious = [], []
        for start in range(0, boxes.shape[0], DECODE_CHUNK):
            lo, iou = self._run_decoder(emb, boxes[start : start + DECODE_CHUNK])
            logits.append(lo)
            ious.append(iou)
        return np.concatenate(logits), np.concatenate(ious)
