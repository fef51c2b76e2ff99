"""``umedsam export``: write the encoder and decoder graphs for ONNX Runtime or OpenVINO."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from umedsam.models.cards import DEFAULT_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``umedsam export``."""
    parser.add_argument(
        "--format", required=True, choices=["onnx", "openvino"], help="graph format to write"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder for the graphs")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"registered model name (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--checkpoint", type=Path, help="weights file (default: bundled weights)")
    parser.add_argument(
        "--int8", action="store_true", help="also write a dynamically quantized encoder (onnx only)"
    )
    parser.add_argument("--threads", type=int, help="threads for the parity check")


def run(args: argparse.Namespace) -> int:
    """Export, check parity against PyTorch and print the largest difference; 1 if parity fails."""
    from umedsam.errors import MissingExtraError, UmedsamError
    from umedsam.inference.engines import weights_sha256
    from umedsam.inference.export import ParityError, describe_parity, export_model, require_runtime
    from umedsam.models.pretrained import load_pretrained

    if args.int8 and args.format != "onnx":
        print("error: --int8 is only available with --format onnx", file=sys.stderr)
        return 2
    try:
        require_runtime(args.format)
        if args.checkpoint is not None:  # a SAM-family file picks its card (as predict does)
            from umedsam.models.checkpoint import model_for_checkpoint

            args.model = model_for_checkpoint(args.model, args.checkpoint)
        model, report = load_pretrained(args.model, args.checkpoint)
        sha = (
            weights_sha256(args.model, args.checkpoint)
            if args.checkpoint is None
            else report.sha256
        )
    except MissingExtraError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        manifest = export_model(
            model,
            args.output,
            args.format,
            model_name=args.model,
            checkpoint_sha256=sha,
            threads=args.threads,
        )
    except ParityError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(describe_parity(manifest))
    if args.int8:
        from umedsam.inference.quantize import ensure_int8_encoder

        path = ensure_int8_encoder(args.output)
        print(f"INT8 encoder: {path.name}")
    files = ", ".join(sorted(p.name for p in args.output.iterdir()))
    print(
        f"{args.format} export of {args.model} written to {args.output} in "
        f"{time.perf_counter() - t0:.1f} s: {files}"
    )
    return 0
