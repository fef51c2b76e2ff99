"""The small interface every inference engine implements (numpy arrays in, numpy arrays out).

Arrays keep the inference pipeline free of torch: the ONNX Runtime and OpenVINO engines run a
whole case without importing it, which is most of the start-up time of a small case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from umedsam.data.frames import Frame
    from umedsam.inference.prompts import DecoderPrompts


@runtime_checkable
class Backend(Protocol):
    """An engine that encodes preprocessed images and decodes prompts against embeddings.

    ``decode`` takes boxes only (the official LiteMedSAM path, kept bit for bit);
    ``decode_prompts`` takes any mix of clicks, scribble points, boxes and mask prompts.

    Attributes:
        name: engine name shown to users ("torch", "onnx", "openvino", ...).
        image_size: side S of the square model input frame.
        frame: how images, prompts and logits enter and leave the model
            (:mod:`umedsam.data.frames`); ``open_engine`` sets it from the model's card.
        cue_weights: the model's confidence cue weights (its card's ``confidence_weights``,
            set by ``open_engine``); None: equal weights.
    """

    name: str
    image_size: int
    frame: Frame
    cue_weights: tuple[tuple[str, float], ...] | None

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 in [0, 1] -> embeddings (B, C, S/4, S/4) float32."""
        ...

    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embedding (1, C, h, w) and boxes (N, 4) in the model frame -> logits (N, 1, S, S), IoU (N, 1)."""
        ...

    def decode_prompts(
        self, embedding: np.ndarray, prompts: DecoderPrompts
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embedding (1, C, h, w) and N objects' prompts (model frame) -> logits (N, 1, S, S), IoU (N, 1)."""
        ...
