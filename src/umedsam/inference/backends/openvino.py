"""OpenVINO engine: the exported encoder and decoder IR compiled for the CPU in f32 precision.

OpenVINO picks bf16 (or f16) inference on CPUs that support it, which changes embeddings by a few
percent; this engine sets the f32 precision hint so masks match PyTorch. Compiled models are cached
in ``cache_dir`` (OpenVINO's CACHE_DIR), which turns the compile step of later starts into a load.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from umedsam.data.frames import Frame
from umedsam.extras import import_optional
from umedsam.inference.backends.graph import GraphBackend

logger = logging.getLogger(__name__)


def import_openvino() -> Any:
    """Import openvino or raise MissingExtraError naming the ``openvino`` extra."""
    return import_optional(
        "openvino", package="openvino", extra="openvino", purpose="the openvino engine"
    )


class OpenVINOBackend(GraphBackend):
    """Runs ``encoder.xml`` and ``decoder.xml`` (see umedsam.inference.export) with OpenVINO on the CPU.

    Args:
        encoder_path: IR or ONNX graph (B, 3, S, S) -> (B, C, S/4, S/4).
        decoder_path: IR or ONNX graph (embedding (1, C, h, w), boxes (N, 4)) -> (logits, iou).
        prompt_path: graph of interactive prompts (see ``PromptDecoderGraph``), compiled on first
            use; None: this engine decodes boxes only.
        image_size: side S of the model input frame.
        threads: inference threads (None: OpenVINO's default, all cores).
        cache_dir: compiled-model cache folder (None: no cache).
        precision: inference precision hint: "f32" (default, matches PyTorch) or "bf16"/"f16".
        decoder_precision: the decoders' hint when it differs from the encoder's (None: the
            same). bf16 decoders behind an f32 encoder: the per-prompt cost falls by about 40%
            while the embedding stays exact.
        name: engine name shown to users.

    Raises:
        MissingExtraError: openvino is not installed.
        FileNotFoundError: a graph file is missing.
    """

    def __init__(
        self,
        encoder_path: str | Path,
        decoder_path: str | Path,
        image_size: int,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        precision: str = "f32",
        name: str = "openvino",
        prompt_path: str | Path | None = None,
        decoder_precision: str | None = None,
    ) -> None:
        ov = import_openvino()
        for path in (encoder_path, decoder_path):
            if not Path(path).is_file():
                raise FileNotFoundError(f"OpenVINO graph not found: {path}")
        core = ov.Core()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        t0 = time.perf_counter()
        self._encoder = core.compile_model(str(encoder_path), "CPU", config)
        decoder_config = {**config, "INFERENCE_PRECISION_HINT": decoder_precision or precision}
        self._decoder = core.compile_model(str(decoder_path), "CPU", decoder_config)
        self.compile_seconds = time.perf_counter() - t0
        logger.debug(
            "compiled OpenVINO graphs in %.2f s (cache %s)", self.compile_seconds, cache_dir
        )
        self._core, self._decoder_config = core, decoder_config
        self._prompt_path = None if prompt_path is None else Path(prompt_path)
        self._prompt_request: Any = None  # compiled on first use: box-only runs never pay for it
        self._enc_request = self._encoder.create_infer_request()
        self._dec_request = self._decoder.create_infer_request()
        self.name = name
        self.image_size = int(image_size)
        self.frame = Frame(self.image_size)  # open_engine sets the model card's frame
        self.cue_weights: tuple[tuple[str, float], ...] | None = None  # and its cue weights

    def _run_encoder(self, images: np.ndarray) -> np.ndarray:
        self._enc_request.infer({0: images})
        return self._enc_request.get_output_tensor(0).data.copy()

    def _run_decoder(
        self, embedding: np.ndarray, boxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        self._dec_request.infer({0: embedding, 1: boxes})
        return (
            self._dec_request.get_output_tensor(0).data.copy(),
            self._dec_request.get_output_tensor(1).data.copy(),
        )

    def _run_prompt_decoder(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self._prompt_request is None:
            if self._prompt_path is None or not self._prompt_path.is_file():
                raise FileNotFoundError(
                    f"this OpenVINO export has no prompt decoder ({self._prompt_path}); "
                    "export again"
                )
            compiled = self._core.compile_model(str(self._prompt_path), "CPU", self._decoder_config)
            self._prompt_request = compiled.create_infer_request()
        self._prompt_request.infer(dict(enumerate(inputs)))
        return (
            self._prompt_request.get_output_tensor(0).data.copy(),
            self._prompt_request.get_output_tensor(1).data.copy(),
        )
