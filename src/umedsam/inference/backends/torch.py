"""PyTorch engine: eager model under inference_mode, decoder calls chunked to bound memory."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Any

import numpy as np
import torch

from umedsam.data.frames import Frame
from umedsam.inference.prompts import DecoderPrompts, decode_grouped

logger = logging.getLogger(__name__)

DECODE_CHUNK = 32  # boxes per decoder call; each box costs ~4 MB of activations at 256 px


_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4


def tune_allocator(trim_threshold_mb: int = 1024) -> bool:
    """Stop glibc from returning PyTorch's large activations to the OS after every forward pass.

    By default glibc serves blocks above 128 KiB-32 MiB with mmap and unmaps them on free, so each
    encoder call page-faults its ~0.5 GB of activations in again (measured here: ~450k minor
    faults and a third of the CPU time of an eager TinyViT encode). Disabling mmap for malloc and
    raising the trim threshold keeps that memory in the heap for reuse. Process-wide: call it
    once from an entry point (the CLI or a benchmark), like the thread count, never from library
    code. ONNX Runtime and OpenVINO have their own arenas and are unaffected.

    Args:
        trim_threshold_mb: free memory kept at the top of the heap before it is given back.

    Returns:
        Whether the settings were applied (False on non-glibc platforms).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20))
    logger.debug("glibc malloc tuned for large reused blocks: %s", ok)
    return ok


class TorchBackend:
    """Runs a MedSAMLite-style model (``encode``/``decode`` methods) on the CPU or a GPU.

    Args:
        model: a model with ``encode(images)``, ``decode(embedding, boxes)`` and ``image_size``.
        device: where to run; inputs are moved there and outputs returned on the CPU.
        frame: the model family's frame (:mod:`umedsam.data.frames`); LiteMedSAM's if None.
    """

    name = "torch"

    def __init__(
        self, model: Any, device: str | torch.device = "cpu", frame: Frame | None = None
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = int(self.model.image_size)
        # LiteMedSAM's frame unless given; open_engine sets the one of the model's card
        self.frame = frame if frame is not None else Frame(self.image_size)
        self.cue_weights: tuple[tuple[str, float], ...] | None = None  # set by open_engine

    @torch.inference_mode()
    def encode_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) tensor -> (B, C, S/4, S/4) float32 tensor on the CPU."""
        return self.model.encode(images.to(self.device, torch.float32)).float().cpu()

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 array -> (B, C, S/4, S/4) float32 array."""
        return self.encode_tensor(torch.as_tensor(np.asarray(images, dtype=np.float32))).numpy()

    @torch.inference_mode()
    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode all ``boxes`` (N, 4) against one embedding, DECODE_CHUNK at a time."""
        emb = torch.as_tensor(np.asarray(embedding, dtype=np.float32)).to(self.device)
        box_t = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
        logits, ious = [], []
        for start in range(0, box_t.shape[0], DECODE_CHUNK):
            lo, iou = self.model.decode(emb, box_t[start : start + DECODE_CHUNK].to(self.device))
            logits.append(lo.float().cpu())
            ious.append(iou.float().cpu())
        return torch.cat(logits).numpy(), torch.cat(ious).numpy()

    @torch.inference_mode()
    def run_prompt_decoder(
        self,
        embedding: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray,
        has_mask: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One prompt-decoder call (see ``MedSAMLite.decode_prompts``) on numpy arrays."""
        emb = torch.as_tensor(np.asarray(embedding, dtype=np.float32)).to(self.device)

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float32)).to(self.device)

        lo, iou = self.model.decode_prompts(
            emb, tensor(coords), tensor(labels), tensor(mask_input), tensor(has_mask)
        )
        return lo.float().cpu().numpy(), iou.float().cpu().numpy()

    def decode_prompts(
        self, embedding: np.ndarray, prompts: DecoderPrompts
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode N objects' prompts, grouped by token count, DECODE_CHUNK at a time."""
        return decode_grouped(self.run_prompt_decoder, embedding, prompts, DECODE_CHUNK)
