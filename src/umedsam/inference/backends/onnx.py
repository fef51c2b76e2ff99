"""ONNX Runtime engine: the exported encoder and decoder graphs on the CPU execution provider."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from umedsam.data.frames import Frame
from umedsam.extras import import_optional
from umedsam.inference.backends.graph import GraphBackend

logger = logging.getLogger(__name__)


def import_onnxruntime() -> Any:
    """Import onnxruntime or raise MissingExtraError naming the ``onnx`` extra."""
    return import_optional(
        "onnxruntime", package="onnxruntime", extra="onnx", purpose="the onnx engine"
    )


class OnnxBackend(GraphBackend):
    """Runs ``encoder.onnx`` and ``decoder.onnx`` (see umedsam.inference.export) in ONNX Runtime.

    Args:
        encoder_path: graph (B, 3, S, S) -> (B, C, S/4, S/4).
        decoder_path: graph (embedding (1, C, h, w), boxes (N, 4)) -> (logits (N, 1, S, S), iou (N, 1)).
        prompt_path: graph of interactive prompts (see ``PromptDecoderGraph``), opened on first
            use; None: this engine decodes boxes only.
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
        prompt_path: str | Path | None = None,
    ) -> None:
        ort = import_onnxruntime()
        for path in (encoder_path, decoder_path):
            if not Path(path).is_file():
                raise FileNotFoundError(f"ONNX graph not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # No busy-waiting after a run: on a laptop's few cores the spinning threads slow the numpy
        # and PyTorch work between decoder calls (a web-app box took 61-93 ms instead of 45 ms on
        # 2 cores), and batch prediction of the dev set took the same time either way.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._encoder = ort.InferenceSession(str(encoder_path), options, providers=providers)
        self._decoder = ort.InferenceSession(str(decoder_path), options, providers=providers)
        self._session_args = (options, providers)
        self._prompt_path = None if prompt_path is None else Path(prompt_path)
        self._prompt_decoder: Any = None  # opened on first use: box-only runs never pay for it
        self.name = name
        self.image_size = int(image_size)
        self.frame = Frame(self.image_size)  # open_engine sets the model card's frame
        self.cue_weights: tuple[tuple[str, float], ...] | None = None  # and its cue weights

    def _run_encoder(self, images: np.ndarray) -> np.ndarray:
        return self._encoder.run(None, {"images": images})[0]

    def _run_decoder(
        self, embedding: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        lo, iou = self._decoder.run(None, {"embedding": embedding, "boxes": boxes})
        return lo, iou

    def _run_prompt_decoder(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self._prompt_decoder is None:
            if self._prompt_path is None or not self._prompt_path.is_file():
                raise FileNotFoundError(
                    f"this ONNX export has no prompt decoder ({self._prompt_path}); export again"
                )
            ort = import_onnxruntime()
            options, providers = self._session_args
            self._prompt_decoder = ort.InferenceSession(
                str(self._prompt_path), options, providers=providers
            )
        names = ["embedding", "coords", "labels", "mask_input", "has_mask"]
        lo, iou = self._prompt_decoder.run(None, dict(zip(names, inputs, strict=True)))
        return lo, iou
