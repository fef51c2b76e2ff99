"""Teacher image embeddings cached on disk for distillation.

Teacher embeddings are expensive (LiteMedSAM's TinyViT keeps 65,536 tokens in its first stage),
so each (image, flips) embedding is computed once and stored in float16. The cache knows what it
holds: a :class:`CacheSignature` (teacher name, checkpoint sha256, model frame size,
preprocessing version, dtype) names its folder and is checked against ``meta.json`` on opening,
and every entry records its key and the signature, so a cache made by another teacher or another
preprocessing is refused. Its size is bounded.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from umedsam.atomic import atomic_open
from umedsam.data.dataset import PREPROCESS_VERSION, SegmentationDataset

__all__ = [
    "CacheSignature",
    "TeacherEmbeddingCache",
    "fill_cache",
    "select_items",
    "teacher_signature",
]

logger = logging.getLogger(__name__)

_MB = 1 << 20


@dataclass(frozen=True)
class CacheSignature:
    """What a teacher-embedding cache holds; every field must match to reuse it.

    Attributes:
        teacher: registered teacher model name.
        checkpoint_sha256: sha256 of the teacher checkpoint file (``random:<digest>`` for a
            teacher with random weights, as in tests).
        image_size: model frame side S.
        preprocess: preprocessing version (``umedsam.data.dataset.PREPROCESS_VERSION``).
        dtype: storage dtype of the embeddings.
    """

    teacher: str
    checkpoint_sha256: str
    image_size: int
    preprocess: str = PREPROCESS_VERSION
    dtype: str = "float16"

    @property
    def tag(self) -> str:
        """sha256 of the signature (hex); names the cache folder and is stored in each entry."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def teacher_signature(name: str, checkpoint: str, teacher: nn.Module) -> CacheSignature:
    """The cache signature of a teacher built from ``checkpoint``.

    Args:
        name: registered model name of the teacher.
        checkpoint: ``"default"`` (bundled LiteMedSAM weights), ``"none"`` (random weights) or
            a checkpoint path.
        teacher: the teacher model (used for ``"none"``: a digest of its weights).

    Returns:
        The :class:`CacheSignature`.
    """
    from umedsam.models.checkpoint import default_checkpoint_path, file_sha256

    if checkpoint == "default":
        digest = file_sha256(default_checkpoint_path())
    elif checkpoint == "none":
        sha = hashlib.sha256()
        for key, tensor in sorted(teacher.state_dict().items()):
            sha.update(key.encode())
            sha.update(tensor.detach().float().contiguous().numpy().tobytes())
        digest = "random:" + sha.hexdigest()
    else:
        digest = file_sha256(checkpoint)
    size = int(getattr(teacher, "image_size", 256))
    return CacheSignature(teacher=name, checkpoint_sha256=digest, image_size=size)


class TeacherEmbeddingCache:
    """Teacher image embeddings on disk, one float16 file per image key, bounded in size.

    The cache lives in ``root/<first 16 hex of the signature tag>/`` with a ``meta.json`` holding
    the signature; opening a folder whose ``meta.json`` disagrees raises ``ValueError``. Each
    entry also records its key and the signature tag, and an entry that does not match is
    treated as missing (and overwritten on the next ``put``).

    Args:
        root: parent folder of caches (one sub-folder per signature).
        signature: what the cache holds.
        max_bytes: the most bytes of entries kept; ``put`` refuses new entries beyond it.

    Raises:
        ValueError: non-positive ``max_bytes`` or a ``meta.json`` with another signature.
    """

    def __init__(self, root: str | Path, signature: CacheSignature, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0; got {max_bytes}")
        self.signature = signature
        self.max_bytes = int(max_bytes)
        self.folder = Path(root) / signature.tag[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "meta.json"
        expected = asdict(signature)
        if meta.is_file():
            stored = json.loads(meta.read_text(encoding="utf-8"))
            if stored != expected:
                raise ValueError(
                    f"{meta}: cache was made for {stored}, not {expected}; delete the folder "
                    "or use another cache_dir"
                )
        else:
            _write_entry(meta, json.dumps(expected, indent=1, sort_keys=True).encode())
        self.nbytes = sum(p.stat().st_size for p in self.folder.glob("*.pt"))

    def path(self, key: str) -> Path:
        """File of the entry for ``key``."""
        return self.folder / (hashlib.sha1(key.encode()).hexdigest() + ".pt")

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    @property
    def full(self) -> bool:
        """True when no further entry of typical size fits."""
        return self.nbytes >= self.max_bytes

    def get(self, key: str) -> torch.Tensor | None:
        """The float16 embedding ``(C, h, w)`` for ``key``, or None if absent or not matching."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError) as err:
            logger.warning("ignoring unreadable cache entry %s (%s)", path, err)
            return None
        if (
            not isinstance(stored, dict)
            or stored.get("key") != key
            or stored.get("signature") != self.signature.tag
            or not isinstance(stored.get("embedding"), torch.Tensor)
        ):
            logger.warning("ignoring cache entry %s: made for another key or signature", path)
            return None
        return stored["embedding"]

    def put(self, key: str, embedding: torch.Tensor) -> bool:
        """Store ``embedding`` ``(C, h, w)`` (as float16) for ``key``.

        Returns:
            False (and stores nothing) when the entry would exceed ``max_bytes``.

        Raises:
            ValueError: if the embedding is not 3-dimensional.
        """
        if embedding.ndim != 3:
            raise ValueError(f"embedding must be (C, h, w); got shape {tuple(embedding.shape)}")
        buffer = io.BytesIO()
        entry = {
            "key": key,
            "signature": self.signature.tag,
            "embedding": embedding.detach().to("cpu", torch.float16).clone(),
        }
        torch.save(entry, buffer)
        data = buffer.getvalue()
        path = self.path(key)
        old = path.stat().st_size if path.is_file() else 0
        if self.nbytes - old + len(data) > self.max_bytes:
            return False
        _write_entry(path, data)
        self.nbytes += len(data) - old
        return True


def select_items(
    dataset: SegmentationDataset,
    *,
    max_images: int | None = None,
    flip_variants: Sequence[tuple[str, ...]] = ((),),
) -> list[tuple[int, tuple[str, ...]]]:
    """Which (item, flips) images to distil on, in priority order.

    Items are interleaved so that any prefix of the list is balanced: round-robin over
    modalities, and within a modality round-robin over cases (slice 1 of every volume, then
    slice 2, ...). All items come first without flips, then under each further flip variant.

    Args:
        dataset: the training items.
        max_images: keep at most this many (item, flips) pairs (None: all).
        flip_variants: flip combinations to include, e.g. ``[(), ("horizontal",)]``.

    Returns:
        ``(item index, flips)`` pairs.

    Raises:
        ValueError: on an empty ``flip_variants`` or a non-positive ``max_images``.
    """
    if not flip_variants:
        raise ValueError("flip_variants must hold at least one variant, e.g. [()]")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1 or None; got {max_images}")
    by_modality: dict[str, dict[str, list[int]]] = {}
    for index, ref in enumerate(dataset.refs):
        case = f"{ref.source}:{ref.case}"
        by_modality.setdefault(ref.modality, {}).setdefault(case, []).append(index)
    queues: list[list[int]] = []
    for modality in sorted(by_modality):
        cases = [by_modality[modality][c] for c in sorted(by_modality[modality])]
        depth = max(len(c) for c in cases)
        queues.append([c[d] for d in range(depth) for c in cases if d < len(c)])
    order: list[int] = []
    depth = max(len(q) for q in queues)
    for d in range(depth):
        order.extend(q[d] for q in queues if d < len(q))
    items = [(index, tuple(flips)) for flips in flip_variants for index in order]
    return items if max_images is None else items[:max_images]


class ExportedTeacher:
    """A teacher's image encoder on an exported f32 engine (``onnx``, ``openvino``), called as
    the model is (``encode``), so that :func:`fill_cache` takes it in place of the model.

    Args:
        name: registered model name.
        checkpoint: ``default`` (the bundled weights) or a weights file.
        engine: the exported engine.
    """

    def __init__(self, name: str, checkpoint: str, engine: str) -> None:
        from umedsam.inference.engines import EngineSpec, open_engine

        weights = None if checkpoint == "default" else Path(checkpoint)
        self.backend = open_engine(
            EngineSpec(model=name, checkpoint=weights, engine=engine)
        ).backend

    def eval(self) -> ExportedTeacher:
        """Nothing to switch (the engine only infers); for the model's interface."""
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) preprocessed images -> (B, C, h, w) embeddings."""
        return torch.from_numpy(np.ascontiguousarray(self.backend.encode(images.numpy())))


@torch.inference_mode()
def fill_cache(
    teacher: Any,
    dataset: SegmentationDataset,
    cache: TeacherEmbeddingCache,
    items: Sequence[tuple[int, tuple[str, ...]]],
    *,
    batch_size: int = 1,
    time_budget_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    known: Callable[[str], torch.Tensor | None] | None = None,
) -> int:
    """Encode the images of ``items`` missing from ``cache`` with the teacher and store them.

    Stops early when the cache is full or ``time_budget_s`` has passed; rerunning continues
    where it stopped.

    Args:
        teacher: model with ``encode(images (B, 3, S, S)) -> (B, C, h, w)``.
        dataset: provides the preprocessed images.
        cache: where embeddings go.
        items: ``(item index, flips)`` pairs, in priority order.
        batch_size: images per teacher call.
        time_budget_s: stop after this many seconds (None: no limit).
        progress: called with (items done or found, total items).
        known: returns the teacher's embedding of a key when it was computed elsewhere (e.g.
            :meth:`umedsam.training.embeddings.FrozenEncoderEmbeddingCache.lookup` of a
            ``umedsam train`` cache of the same teacher), so it is copied, not recomputed.

    Returns:
        Number of newly encoded images (copied ones not counted).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    teacher.eval()
    keys = [dataset.image_key(i, f) for i, f in items]
    missing = [(k, it) for k, it in zip(keys, items, strict=True) if k not in cache]
    if known is not None:
        copied = 0
        for key, _ in missing:
            embedding = known(key)
            if embedding is not None and cache.put(key, embedding):
                copied += 1
        missing = [(k, it) for k, it in missing if k not in cache]
        logger.info("copied %d teacher embeddings from an existing cache", copied)
    done = len(keys) - len(missing)
    if progress is not None:
        progress(done, len(keys))
    start = time.perf_counter()
    added = 0
    for begin in range(0, len(missing), batch_size):
        if time_budget_s is not None and time.perf_counter() - start >= time_budget_s:
            logger.info("cache fill stopped by its time budget after %d new images", added)
            break
        chunk = missing[begin : begin + batch_size]
        images = torch.stack([dataset.image_tensor(i, f)[0] for _, (i, f) in chunk])
        embeddings = teacher.encode(images)
        for (key, _), emb in zip(chunk, embeddings, strict=True):
            if not cache.put(key, emb):
                logger.warning(
                    "teacher cache %s is full (%.0f MB); %d images not cached",
                    cache.folder,
                    cache.max_bytes / _MB,
                    len(missing) - added,
                )
                return added
            added += 1
        done += len(chunk)
        if progress is not None:
            progress(done, len(keys))
    return added


def _write_entry(path: Path, data: bytes) -> None:
    # a cache entry is recomputed if lost, so no fsync: the rename alone keeps files whole
    with atomic_open(path, "wb", fsync=False) as fh:
        fh.write(data)
