"""Image-embedding cache for training with a frozen image encoder.

With the encoder frozen (the published U-MedSAM setting), an image's embedding never changes, so
it is computed once per (image, flip variant) and reused by every later sample, epoch and run.
The cache knows what it holds: its signature records the model name, a digest of the encoder
weights, the model frame size and the preprocessing version; a disk cache lives in a folder named
by that signature and refuses a ``meta.json`` that disagrees.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umedsam.atomic import atomic_open
from umedsam.data.dataset import PREPROCESS_VERSION

__all__ = ["FrozenEncoderEmbeddingCache", "module_digest"]

logger = logging.getLogger(__name__)


def module_digest(module: nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and values), hex."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class FrozenEncoderEmbeddingCache:
    """Image-encoder embeddings of preprocessed training images by key, for a frozen encoder.

    Computed with ``model.encode`` on demand and reused by every later sample, epoch and run
    (not to be confused with :class:`umedsam.training.teacher_cache.TeacherEmbeddingCache`,
    the distillation teacher's, or the per-volume slice cache of 3D inference).

    Args:
        model: a model with ``encode(images) -> embeddings`` and an ``image_encoder``.
        model_name: registered name (part of the signature).
        cache_dir: optional folder for a persistent cache shared between runs.
        storage_dtype: dtype kept in memory and on disk (float16 halves memory; embeddings are
            returned as float32).
        device: where ``encode`` runs.
    """

    def __init__(
        self,
        model: Any,
        *,
        model_name: str,
        cache_dir: str | Path | None = None,
        storage_dtype: torch.dtype = torch.float16,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model = model
        self.device = torch.device(device)
        self.storage_dtype = storage_dtype
        self.signature: dict[str, Any] = {
            "model_name": model_name,
            "encoder_sha256": module_digest(model.image_encoder),
            "image_size": int(getattr(model, "image_size", 256)),
            "preprocess": PREPROCESS_VERSION,
            "dtype": str(storage_dtype),
        }
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self.encode_seconds = 0.0
        self.folder: Path | None = None
        if cache_dir is not None:
            tag = hashlib.sha256(json.dumps(self.signature, sort_keys=True).encode()).hexdigest()
            self.folder = Path(cache_dir) / tag[:16]
            self.folder.mkdir(parents=True, exist_ok=True)
            meta = self.folder / "meta.json"
            if meta.is_file():
                stored = json.loads(meta.read_text(encoding="utf-8"))
                if stored != self.signature:
                    raise ValueError(
                        f"{meta}: cached embeddings were made for {stored}, not {self.signature}; "
                        "delete the folder or use another cache_dir"
                    )
            else:
                _write_entry(meta, json.dumps(self.signature, indent=1).encode())

    def __len__(self) -> int:
        return len(self._memory)

    def _path(self, key: str) -> Path:
        if self.folder is None:
            raise RuntimeError("embedding cache has no folder")
        return self.folder / (hashlib.sha1(key.encode()).hexdigest() + ".pt")

    def lookup(self, key: str) -> torch.Tensor | None:
        """The stored embedding ``(C, h, w)`` of ``key`` (memory, then disk), or None."""
        if key in self._memory:
            return self._memory[key]
        if self.folder is not None:
            path = self._path(key)
            if path.is_file():
                try:
                    stored = torch.load(path, map_location="cpu", weights_only=True)
                except (RuntimeError, EOFError, OSError) as err:
                    logger.warning("ignoring unreadable cached embedding %s (%s)", path, err)
                    return None
                if isinstance(stored, dict) and stored.get("key") == key:
                    self._memory[key] = stored["embedding"]
                    return stored["embedding"]
        return None

    @torch.no_grad()
    def get(self, keys: Sequence[str], make_image: Callable[[str], torch.Tensor]) -> torch.Tensor:
        """Embeddings for ``keys``, encoding the missing ones in one batch.

        Args:
            keys: image keys (e.g. ``TrainingSample.image_key``).
            make_image: returns the preprocessed ``(3, S, S)`` image of a key (called on misses).

        Returns:
            ``(len(keys), C, h, w)`` float32 embeddings on the cache's device.
        """
        missing = [k for k in dict.fromkeys(keys) if self.lookup(k) is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            start = time.perf_counter()
            was_training = self.model.image_encoder.training
            self.model.image_encoder.eval()
            images = torch.stack([make_image(k) for k in missing]).to(self.device)
            embeddings = self.model.encode(images).to("cpu", self.storage_dtype)
            self.model.image_encoder.train(was_training)
            self.encode_seconds += time.perf_counter() - start
            for key, emb in zip(missing, embeddings, strict=True):
                emb = emb.clone()
                self._memory[key] = emb
                if self.folder is not None:
                    buffer = _tensor_bytes({"key": key, "embedding": emb})
                    _write_entry(self._path(key), buffer)
        return torch.stack([self._memory[k] for k in keys]).to(self.device, torch.float32)


def _tensor_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _write_entry(path: Path, data: bytes) -> None:
    # a cache entry is recomputed if lost, so no fsync: the rename alone keeps files whole
    with atomic_open(path, "wb", fsync=False) as fh:
        fh.write(data)
