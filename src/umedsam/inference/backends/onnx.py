"""ONNX Runtime engine: the exported encoder and decoder graphs on the CPU execution provider."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umedsam.errors import MissingExtraError

logger = logging.getLogger(__name__)

DECODE_CHUNK = 8  # boxes per call: batching saves no compute; each box holds ~40 MB


def import_onnxruntime() -> Any:
    """Import onnxruntime or raise MissingExtraError naming the ``onnx`` extra."""
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingExtraError("onnxruntime", "onnx", "the onnx engine") from err
    return onnxruntime


class OnnxBackend:
    """Runs ``encoder.onnx`` and ``decoder.onnx`` (see umedsam.inference.export) in ONNX Runtime.

    Args:
        encoder_path: graph (B, 3, S, S) -> (B, C, S/4, S/4).
        decoder_path: graph (embedding (1, C, h, w), boxes (N, 4)) -> (logits (N, 1, S, S), iou (N, 1)).
        image_size: side S of the model input frame.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        name: engine name shown to users.

    Raises:
        MissingExtraError: onnxruntime is not installed.
        FileNotFoundError: a graph file is missing.
    """

    def __init__(
        self,
        encoder_path: str | Path,
        decoder_path: str | Path,
        image_size: int,
        threads: int | None = None,
        name: str = "onnx",
    ) -> None:
        ort = import_onnxruntime()
        for path in (encoder_path, decoder_path):
            if not Path(path).is_file():
                raise FileNotFoundError(f"ONNX graph not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._encoder = ort.InferenceSession(str(encoder_path), options, providers=providers)
        self._decoder = ort.InferenceSession(str(decoder_path), options, providers=providers)
        self.name = name
        self.image_size = int(image_size)

    def encode_numpy(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, C, S/4, S/4) float32."""
        x = np.ascontiguousarray(images, dtype=np.float32)
        return self._encoder.run(None, {"images": x})[0]

    def decode_numpy(
        self, embedding: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embedding (1, C, h, w) and boxes (N, 4) -> logits (N, 1, S, S), iou (N, 1); chunked."""
        emb = np.ascontiguousarray(embedding, dtype=np.float32)
        boxes = np.ascontiguousarray(boxes, dtype=np.float32).reshape(-1, 4)
        logits, ious = [], []
        for start in range(0, boxes.shape[0], DECODE_CHUNK):
            lo, iou = self._decoder.run(
                None, {"embedding": emb, "boxes": boxes[start : start + DECODE_CHUNK]}
            )
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
