"""``umedsam demo``: predict and evaluate the bundled example cases, no flags needed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from umedsam.models.cards import DEFAULT_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``umedsam demo`` (all optional)."""
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("umedsam-demo"), help="output folder"
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"registered model name (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--checkpoint", type=Path, help="weights file (default: bundled weights)")


def run(args: argparse.Namespace) -> int:
    """Run ``predict`` then ``evaluate`` on the examples and print metrics and times."""
    from umedsam.cli.main import main
    from umedsam.examples import examples_dir

    ex = examples_dir()
    out = args.output
    flags = ["-q"] if args.quiet else []
    predict = [
        "predict",
        *flags,
        "-i",
        str(ex / "imgs"),
        "-o",
        str(out / "segs"),
        "--model",
        args.model,
    ]
    if args.checkpoint:
        predict += ["--checkpoint", str(args.checkpoint)]
    code = main(predict)
    if code != 0:
        return code
    evaluate = [
        "evaluate",
        *flags,
        "--segs",
        str(out / "segs"),
        "--gts",
        str(ex / "gts"),
        "--out",
        str(out / "metrics.csv"),
    ]
    code = main(evaluate)
    print(f"outputs in {out}/ (segs/, metrics.csv)", file=sys.stderr)
    return code
