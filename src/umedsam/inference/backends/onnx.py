"""ONNX Runtime engine: the exported encoder and decoder graphs on the CPU execution provider."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from umedsam.errors import MissingExtraError
from umedsam.inference.backends.graph import GraphBackend

logger = logging.getLogger(__name__)


def import_onnxruntime() -> Any:
    """Import onnxruntime or raise MissingExtraError naming the ``onnx`` extra."""
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingExtraError("onnxruntime", "onnx", "the onnx engine") from err
    return onnxruntime


class OnnxBackend(GraphBackend):
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

    def _run_encoder(self, images: np.ndarray) -> np.ndarray:
        return self._encoder.run(None, {"images": images})[0]

    def _run_decoder(
        self, embedding: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        lo, iou = self._decoder.run(None, {"embedding": embedding, "boxes": boxes})
        return lo, iou
