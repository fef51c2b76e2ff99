"""``umedsam evaluate``: DSC/NSD of predicted segs against ground truth, as the challenge computes them.

Writes ``--out`` (one row per case, the official columns ``case, dsc, nsd`` plus modality, dims
and label count) and a JSON summary beside it (same stem, ``.json``); prints the per-modality
table and the overall mean. Each missing, extra or unreadable file is reported on one line, the
other cases still finish, and the exit code is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options to ``parser``."""
    parser.add_argument("--segs", required=True, type=Path, help="folder of predicted <case>.npz")
    parser.add_argument("--gts", required=True, type=Path, help="folder of ground-truth <case>.npz")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="per-case metrics CSV (a .json summary goes beside it)",
    )
    parser.add_argument(
        "--spacing-order",
        choices=("official", "axis"),
        default="official",
        help="3D spacing: 'official' uses the stored (x, y, z) spacing as the challenge does; "
        "'axis' reverses it to the (z, y, x) array order (default: official)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        help="NSD tolerance, mm in 3D, pixels in 2D (default 2)",
    )
    parser.add_argument("--per-label", type=Path, metavar="CSV", help="also write per-label rows")
    parser.add_argument(
        "--plots", type=Path, metavar="DIR", help="write PNG plots (needs matplotlib)"
    )
    parser.add_argument(
        "--confidence",
        type=Path,
        metavar="CSV",
        help="confidence.csv from 'umedsam predict --uncertainty': report how well it predicts "
        "the true per-object DSC (writes <out stem>_confidence.csv)",
    )


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.segs`` against ``args.gts``; return 0, or 1 if any case failed."""
    from umedsam.evaluation import report as rep

    if args.tolerance < 0:
        _error(f"--tolerance must be >= 0; got {args.tolerance}")
        return 2
    if args.plots is not None and importlib.util.find_spec("matplotlib") is None:
        _error("--plots needs the 'matplotlib' package: pip install 'umedsam[plots]'")
        return 2
    if args.confidence is not None and not args.confidence.is_file():
        _error(f"confidence file not found: {args.confidence}")
        return 2
    for name, folder in (("--segs", args.segs), ("--gts", args.gts)):
        if not folder.is_dir():
            _error(f"{name} folder not found: {folder}")
            return 2

    n_gts = len(list(args.gts.glob("*.npz")))
    bar: Any = None
    if not getattr(args, "quiet", False) and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=n_gts, unit="case", desc="evaluate", file=sys.stderr)

    def on_failure(failure: rep.Failure) -> None:
        message = f"{failure.case}: {failure.problem}"
        if bar is not None:
            bar.write(f"error: {message}", file=sys.stderr)
        else:
            _error(message)

    try:
        result = rep.evaluate_folders(
            args.segs,
            args.gts,
            tolerance=args.tolerance,
            spacing_order=args.spacing_order,
            progress=bar.update if bar is not None else None,
            on_failure=on_failure,
        )
    finally:
        if bar is not None:
            bar.close()

    failures = list(result.failures)
    rep.write_csv_atomic(args.out, (r.as_dict() for r in result.rows), rep.CASE_COLUMNS)
    written = [args.out]
    if args.per_label is not None:
        rep.write_csv_atomic(args.per_label, result.label_dicts(), rep.LABEL_COLUMNS)
        written.append(args.per_label)

    summary: dict[str, Any] = {
        "segs": str(args.segs),
        "gts": str(args.gts),
        "tolerance": args.tolerance,
        "spacing_order": args.spacing_order,
        "n_cases": len(result.rows),
        **rep.summary_to_dict(result.summary),
    }

    print(rep.format_table(result.summary))
    confidence_text = None
    confidence_report = None
    if args.confidence is not None:
        from umedsam.evaluation import confidence as conf

        try:
            confidence_rows = conf.read_confidence_csv(args.confidence)
        except (OSError, ValueError) as err:
            failures.append(rep.Failure(args.confidence.name, str(err)))
            _error(str(err))
        else:
            true_dsc = conf.true_dsc_from_label_rows(
                [
                    {"case": r.case, "label": m.label, "dsc": m.dsc}
                    for r in result.rows
                    for m in r.metrics.labels
                ]
            )
            confidence_report = conf.confidence_report(confidence_rows, true_dsc)
            objects_path = args.out.with_name(f"{args.out.stem}_confidence.csv")
            rep.write_csv_atomic(
                objects_path, confidence_report.object_dicts(), conf.OBJECT_COLUMNS
            )
            written.append(objects_path)
            summary["confidence"] = {"file": str(args.confidence), **confidence_report.to_dict()}
            confidence_text = confidence_report.format_text()
            print()
            print(confidence_text)

    if args.plots is not None:
        from umedsam.evaluation import plots

        jobs: list[tuple[str, Any, Any]] = []
        if result.rows:
            jobs.append(("modality_boxplot.png", plots.plot_modality_boxplots, result.rows))
        if confidence_report is not None and confidence_report.n_objects:
            jobs.append(("risk_coverage.png", plots.plot_risk_coverage, confidence_report))
            jobs.append(("reliability.png", plots.plot_reliability, confidence_report))
        for filename, plot, data in jobs:
            written.append(plot(data, args.plots / filename))

    summary["failures"] = [{"case": f.case, "problem": f.problem} for f in failures]
    json_path = args.out.with_suffix(".json")
    rep.write_json_atomic(json_path, summary)
    written.append(json_path)
    print(f"\nwrote {', '.join(str(p) for p in written)}")

    if failures:
        print(
            f"{len(failures)} problem(s); {len(result.rows)} of {n_gts} case(s) evaluated:",
            file=sys.stderr,
        )
        for failure in failures:
            print(f"  {failure.case}: {failure.problem}", file=sys.stderr)
        return 1
    if not result.rows:
        _error(f"no *.npz ground truth in {args.gts}")
        return 1
    return 0
