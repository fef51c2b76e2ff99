"""The ``umedsam`` console script: one parser, one subcommand per task.

Each subcommand lives in its own module under ``umedsam.cli`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import heavy libraries (torch,
onnxruntime, ...) inside ``run`` only, so ``umedsam --help`` and small commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from umedsam import __version__

# name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("umedsam.cli.predict", "segment every case in a folder from its box prompts"),
    "evaluate": ("umedsam.cli.evaluate", "DSC/NSD of predicted segs against ground truth"),
    "demo": ("umedsam.cli.demo", "predict + evaluate on the bundled example cases"),
    "convert": ("umedsam.cli.convert", "NIfTI/DICOM/image (+ labels or boxes) -> npz case"),
    "train": ("umedsam.cli.train", "fine-tune with the uncertainty-weighted loss (+ SAM)"),
    "ui": ("umedsam.cli.ui", "web app: open an image, draw boxes, download masks"),
    "distill": ("umedsam.cli.distill", "distil LiteMedSAM's encoder into an EfficientViT student"),
    "info": ("umedsam.cli.info", "models, checkpoint location and installed engines"),
    "export": ("umedsam.cli.export", "write ONNX / OpenVINO graphs, checked against PyTorch"),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="umedsam",
        description="Box-prompted medical image segmentation (U-MedSAM / LiteMedSAM) on the CPU.",
    )
    parser.add_argument("--version", action="version", version=f"umedsam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=help_text)
        verbosity = sp.add_mutually_exclusive_group()
        verbosity.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        verbosity.add_argument(
            "-q", "--quiet", action="store_true", help="warnings and errors only"
        )
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.INFO
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif getattr(args, "quiet", False):
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
