"""Training checkpoints and the CSV logs.

A training checkpoint is a dict of tensors and plain values only, so ``torch.load(...,
weights_only=True)`` reads it and ``umedsam.models.checkpoint.load_checkpoint`` (which unwraps the
``model`` key) loads it for prediction. Keys: ``format_version``, ``model_name``, ``config``
(``asdict`` of the TrainConfig), ``model`` (full model state dict), ``loss``, ``optimizer``,
``scheduler``, ``scaler``, ``epoch`` and ``batch_in_epoch`` (where to continue), ``step``,
``best_metric``, ``loss_weights`` (readable copy) and ``rng`` (torch RNG states).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from umedsam.atomic import atomic_open
from umedsam.errors import CheckpointError

__all__ = ["FORMAT_VERSION", "CsvLog", "load_training_checkpoint", "save_atomic"]

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model_name", "config", "model", "epoch", "step")


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    with atomic_open(path, "wb", fsync=False) as fh:
        torch.save(obj, fh)
    return path


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint safely (``weights_only=True``) and check its format.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, not a training checkpoint, or a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types; all mean "unusable"
        raise CheckpointError(f"{path}: not a readable training checkpoint ({err})") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict; got {type(ckpt).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(
            f"{path}: not a umedsam training checkpoint (missing {missing}); "
            "weights-only files can be used as model.checkpoint, not for resuming"
        )
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {ckpt['format_version']} is newer than this umedsam "
            f"supports ({FORMAT_VERSION}); upgrade umedsam"
        )
    return ckpt


class CsvLog:
    """Append-only CSV with a fixed header; on resume, rows past the checkpoint are dropped.

    Args:
        path: the CSV file.
        columns: column names (the first must be ``step`` for :meth:`truncate_after`).
    """

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)

    def start(self, resume_step: int | None) -> None:
        """Create the file with its header, or keep rows with ``step <= resume_step``.

        Raises:
            ValueError: if an existing file has another header.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None or not self.path.is_file():
            with self.path.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(self.columns)
            return
        with self.path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows or rows[0] != self.columns:
            raise ValueError(f"{self.path}: header {rows[:1]} differs from {self.columns}")
        keep = [r for r in rows[1:] if r and int(r[0]) <= resume_step]
        with self.path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.columns)
            writer.writerows(keep)

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row (missing columns stay empty; floats with 6 significant digits)."""
        values = []
        for col in self.columns:
            value = row.get(col, "")
            values.append(f"{value:.6g}" if isinstance(value, float) else value)
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow(values)


def save_packaged_weights(
    checkpoint: str | Path, out: str | Path, parts: tuple[str, ...] = ("mask_decoder",)
) -> dict[str, Any]:
    """Write the trained ``parts`` of a training checkpoint as a packaged weights file.

    Only the tensors of ``parts`` (e.g. ``prompt_encoder``, ``mask_decoder``) are kept, stored as
    float16 (the model computes in float32); ``load_pretrained`` loads them on top of the bundled
    LiteMedSAM weights (``register_weights(name, file, base="litemedsam")``). Every other tensor
    must still equal LiteMedSAM's, or the file would not reproduce the trained model.

    Returns:
        ``tensors``, ``max_abs_change`` (largest change from LiteMedSAM) and ``bytes``.

    Raises:
        RuntimeError: tensors outside ``parts`` changed in training.
    """
    from umedsam.models.pretrained import load_pretrained

    state = load_training_checkpoint(checkpoint)["model"]
    base = load_pretrained("litemedsam")[0].state_dict()
    prefixes = tuple(f"{p}." for p in parts)
    kept = {k: v.to(torch.float16) for k, v in state.items() if k.startswith(prefixes)}
    frozen = [
        k for k, v in state.items() if not k.startswith(prefixes) and not torch.equal(v, base[k])
    ]
    if frozen:
        raise RuntimeError(f"{checkpoint}: tensors outside {parts} changed, e.g. {frozen[0]}")
    changed = max(float((state[k] - base[k]).abs().max()) for k in kept)
    path = save_atomic(kept, out)
    return {"tensors": len(kept), "max_abs_change": changed, "bytes": path.stat().st_size}
