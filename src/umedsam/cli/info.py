"""``umedsam info``: version, models, weights location and installed engines."""

from __future__ import annotations

import argparse
import importlib.util


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``umedsam info`` has no flags of its own."""


def run(args: argparse.Namespace) -> int:
    """Print what is installed."""
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
        print(f"  {name:20s} {facts.description}")
        print(
            f"  {'':20s} prompts {'/'.join(facts.prompts)}; {facts.input_size} px; encoder "
            f"{facts.encoder}; 3D propagation {facts.propagation}; {fp}"
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
