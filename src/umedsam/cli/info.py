"""``umedsam info``: version, models, weights location and installed engines."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``umedsam info [--checkpoint PATH]``."""
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="say what a weights file holds and which model it runs as (SAM, MedSAM, LiteMedSAM)",
    )


def describe_checkpoint(path: Path) -> int:
    """Print the architecture a checkpoint holds and the model it runs as; 2 if unusable."""
    from umedsam.errors import CheckpointError
    from umedsam.models.cards import DEFAULT_MODEL, card
    from umedsam.models.checkpoint import checkpoint_family

    try:
        family = checkpoint_family(path)
    except (CheckpointError, FileNotFoundError) as err:
        print(f"umedsam: {err}")
        return 2
    if family.model is None:
        if family.found.startswith(("not a SAM-family", "an unknown")):
            print(
                f"umedsam: {path} matches no model umedsam runs: expected a LiteMedSAM (TinyViT), "
                f"EfficientViT-student or SAM/MedSAM ViT-B/L/H state dict; found {family.found}"
            )
            return 2
        print(f"{path}: {family.found}; runs as --model {DEFAULT_MODEL} (or the one you name)")
        return 0
    facts = card(family.model)
    print(f"{path}: SAM-family {family.found}")
    print(
        f"  runs as {family.model}: {facts.description}; prompts {'/'.join(facts.prompts)}; "
        f"{facts.preprocessing} preprocessing at {facts.input_size} px"
    )
    other = "sam_vit_b" if family.model == "medsam_vit_b" else "medsam_vit_b"
    if family.model in ("medsam_vit_b", "sam_vit_b"):
        family_name = {"sam": "SAM", "medsam": "MedSAM"}[card(other).preprocessing]
        print(f"  (a ViT-B file: --model {other} runs it with {family_name}'s preprocessing)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Print what is installed, or what ``--checkpoint`` holds."""
    if args.checkpoint is not None:
        return describe_checkpoint(args.checkpoint)
    from umedsam import __version__
    from umedsam.errors import CheckpointError
    from umedsam.models.checkpoint import default_checkpoint_path
    from umedsam.models.registry import list_models

    print(f"umedsam {__version__}")
    from umedsam.models.cards import DEFAULT_MODEL, INTERACTIVE_MODEL, available_models, card

    print(f"default model: {DEFAULT_MODEL} (--model litemedsam: the official model); cases with")
    print(f"  clicks, scribbles or a previous mask: {INTERACTIVE_MODEL}")
    print("models (their cards, docs/models.md):")
    for name in available_models():
        facts = card(name)
        fp = facts.reduced_precision or "float32 only"
        if facts.confidence_weights:
            fp += "; confidence from " + ", ".join(c for c, _ in facts.confidence_weights)
        print(f"  {name:20s} {facts.description}")
        print(
            f"  {'':20s} prompts {'/'.join(facts.prompts)}; {facts.input_size} px; encoder "
            f"{facts.encoder}; 3D propagation {facts.propagation}; {fp}"
        )
    from umedsam.models.cards import SAM_FAMILY

    print(
        f"with your own checkpoint (--checkpoint FILE): {', '.join(SAM_FAMILY)}; "
        "`umedsam info --checkpoint FILE` says what a file runs as"
    )
    print("builders: " + ", ".join(list_models()))
    try:
        print(f"LiteMedSAM weights: {default_checkpoint_path()} (sha256 verified)")
    except CheckpointError as err:
        print(f"LiteMedSAM weights: not available ({err})")
    for module, extra in [
        ("onnxruntime", "onnx"),
        ("openvino", "openvino"),
        ("nibabel", "nifti"),
        ("pydicom", "dicom"),
        ("starlette", "ui"),
        ("dask", "dist"),
    ]:
        found = importlib.util.find_spec(module) is not None
        print(f"{module:12s} {'installed' if found else f'missing (pip install umedsam[{extra}])'}")
    return 0
