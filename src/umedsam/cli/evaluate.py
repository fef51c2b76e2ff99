"""``umedsam evaluate``: DSC/NSD of predicted segs against ground truth, as the challenge computes them.

Two inputs: ``--segs`` and ``--gts`` (challenge npz folders of predictions and ground truth), or
labelled data to benchmark a model on (``--images`` and ``--masks`` folders matched by file stem,
or ``--nnunet`` a raw dataset): each case is then segmented with ``--model`` from boxes drawn from
its masks by the challenge's rule (:mod:`umedsam.evaluation.benchmark`) and scored the same way.

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
    parser.add_argument("--segs", type=Path, help="folder of predicted <case>.npz")
    parser.add_argument("--gts", type=Path, help="folder of ground-truth <case>.npz")
    data = parser.add_argument_group("benchmark a model on labelled data (instead of --segs/--gts)")
    data.add_argument("--images", type=Path, help="folder of images (PNG, JPEG, TIFF, BMP)")
    data.add_argument("--masks", type=Path, help="folder of masks with the images' file stems")
    data.add_argument("--ignore", type=Path, help="folder of field-of-view masks (0 = not scored)")
    data.add_argument(
        "--objects",
        choices=("labels", "components"),
        default="labels",
        help="one object per mask label, or per connected component (default labels)",
    )
    data.add_argument(
        "--modality", default="Image", help="modality named in the table (default Image)"
    )
    data.add_argument(
        "--min-size",
        type=int,
        default=0,
        help="drop mask components smaller than this many pixels (default 0: keep all)",
    )
    data.add_argument("--nnunet", type=Path, help="an nnU-Net v2 raw dataset folder")
    data.add_argument(
        "--split", choices=("Tr", "Ts"), default="Tr", help="nnU-Net images/labels Tr or Ts"
    )
    data.add_argument(
        "--cases", type=Path, help="text file of the case names to evaluate (one per line)"
    )
    data.add_argument("--model", default=None, help="model to benchmark (default: the default)")
    data.add_argument("--checkpoint", type=Path, help="weights file (default: bundled weights)")
    data.add_argument(
        "--engine",
        default="auto",
        help="inference engine, as for 'umedsam predict' (default auto)",
    )
    data.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
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


def _input_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the chosen inputs, or None."""
    labelled = args.images is not None or args.masks is not None or args.nnunet is not None
    if labelled and (args.segs is not None or args.gts is not None):
        return "give --segs/--gts (predictions) or --images/--masks or --nnunet (data), not both"
    if labelled:
        if args.nnunet is not None and (args.images is not None or args.masks is not None):
            return "give --images/--masks or --nnunet, not both"
        if args.nnunet is None and (args.images is None or args.masks is None):
            return "--images and --masks go together"
        for name, folder in (("--images", args.images), ("--masks", args.masks),
                             ("--nnunet", args.nnunet), ("--ignore", args.ignore)):  # fmt: skip
            if folder is not None and not folder.is_dir():
                return f"{name} folder not found: {folder}"
        return None
    if args.segs is None or args.gts is None:
        return "give --segs and --gts, or --images and --masks (or --nnunet) with a --model"
    for name, folder in (("--segs", args.segs), ("--gts", args.gts)):
        if not folder.is_dir():
            return f"{name} folder not found: {folder}"
    return None


def _benchmark(args: argparse.Namespace, on_failure, progress):  # type: ignore[no-untyped-def]
    """Segment the labelled data with the model and score it (see evaluation.benchmark)."""
    from umedsam.data.nnunet import NnUNetRawSource
    from umedsam.data.sources import CaseSource, ImageMaskFolderSource, read_case_list
    from umedsam.evaluation.benchmark import evaluate_source
    from umedsam.inference.engines import EngineSpec, open_engine
    from umedsam.models.cards import DEFAULT_MODEL

    cases = None if args.cases is None else read_case_list(args.cases)
    source: CaseSource
    if args.nnunet is not None:
        source = NnUNetRawSource(
            args.nnunet, cases=cases, objects=args.objects, images=f"images{args.split}"
        )
    else:
        source = ImageMaskFolderSource(
            args.images,
            args.masks,
            modality=args.modality,
            objects=args.objects,
            ignore=args.ignore,
            cases=cases,
            min_size=args.min_size,
        )
    model = args.model or DEFAULT_MODEL
    checkpoint = None if args.checkpoint is None else args.checkpoint.resolve()
    spec = EngineSpec(model=model, checkpoint=checkpoint, engine=args.engine, threads=args.threads)
    engine = open_engine(spec)
    print(f"{source.name}: {len(source.case_names())} case(s), model {model} ({engine.name})")
    result = evaluate_source(
        engine.backend,
        source,
        clip_to_box=spec.card.propagation == "bounded",
        tolerance=args.tolerance,
        progress=progress,
        on_failure=on_failure,
    )
    from umedsam.evaluation.report import Failure

    listed = [Failure(source.name, problem) for problem in source.problems]
    for failure in listed:
        on_failure(failure)
    result.failures[:0] = listed
    return result, len(source.case_names())


def _usage_error(args: argparse.Namespace) -> str | None:
    """What makes the flags unusable (checked before any work), or None."""
    if args.tolerance < 0:
        return f"--tolerance must be >= 0; got {args.tolerance}"
    if args.plots is not None and importlib.util.find_spec("matplotlib") is None:
        return "--plots needs the 'matplotlib' package: pip install 'umedsam[plots]'"
    if args.confidence is not None and not args.confidence.is_file():
        return f"confidence file not found: {args.confidence}"
    return _input_error(args)


def _score(args: argparse.Namespace, on_failure, progress):  # type: ignore[no-untyped-def]
    """The evaluation result and the number of cases expected (folders, or a model's run)."""
    from umedsam.evaluation import report as rep

    if args.segs is None:
        return _benchmark(args, on_failure, progress)
    result = rep.evaluate_folders(
        args.segs,
        args.gts,
        tolerance=args.tolerance,
        spacing_order=args.spacing_order,
        progress=progress,
        on_failure=on_failure,
    )
    return result, len(list(args.gts.glob("*.npz")))


def _confidence(args: argparse.Namespace, result, failures, written, summary):  # type: ignore[no-untyped-def]
    """Score ``--confidence`` against the true per-object DSCs; print it; the report or None."""
    from umedsam.evaluation import confidence as conf
    from umedsam.evaluation import report as rep

    try:
        confidence_rows = conf.read_confidence_csv(args.confidence)
    except (OSError, ValueError) as err:
        failures.append(rep.Failure(args.confidence.name, str(err)))
        _error(str(err))
        return None
    true_dsc = conf.true_dsc_from_label_rows(
        [
            {"case": r.case, "label": m.label, "dsc": m.dsc}
            for r in result.rows
            for m in r.metrics.labels
        ]
    )
    report = conf.confidence_report(confidence_rows, true_dsc)
    objects_path = args.out.with_name(f"{args.out.stem}_confidence.csv")
    rep.write_csv_atomic(objects_path, report.object_dicts(), conf.OBJECT_COLUMNS)
    written.append(objects_path)
    summary["confidence"] = {"file": str(args.confidence), **report.to_dict()}
    print()
    print(report.format_text())
    return report


def _plots(folder: Path, result, confidence_report) -> list[Path]:  # type: ignore[no-untyped-def]
    """Write the PNG plots; their paths."""
    from umedsam.evaluation import plots

    jobs: list[tuple[str, Any, Any]] = []
    if result.rows:
        jobs.append(("modality_boxplot.png", plots.plot_modality_boxplots, result.rows))
    if confidence_report is not None and confidence_report.n_objects:
        jobs.append(("risk_coverage.png", plots.plot_risk_coverage, confidence_report))
        jobs.append(("reliability.png", plots.plot_reliability, confidence_report))
    return [plot(data, folder / filename) for filename, plot, data in jobs]


def run(args: argparse.Namespace) -> int:
    """Evaluate ``args.segs`` against ``args.gts`` (or benchmark a model on labelled data);
    return 0, or 1 if any case failed."""
    from umedsam.errors import UmedsamError
    from umedsam.evaluation import report as rep

    problem = _usage_error(args)
    if problem is not None:
        _error(problem)
        return 2
    bar: Any = None
    if not getattr(args, "quiet", False) and sys.stderr.isatty() and args.gts is not None:
        from tqdm import tqdm

        bar = tqdm(total=len(list(args.gts.glob("*.npz"))), unit="case", desc="evaluate")

    def on_failure(failure: rep.Failure) -> None:
        message = f"{failure.case}: {failure.problem}"
        if bar is not None:
            bar.write(f"error: {message}", file=sys.stderr)
        else:
            _error(message)

    try:
        result, n_gts = _score(args, on_failure, bar.update if bar is not None else None)
    except (UmedsamError, ValueError, FileNotFoundError) as err:
        _error(str(err))
        return 2
    finally:
        if bar is not None:
            bar.close()

    failures = list(result.failures)
    rep.write_csv_atomic(args.out, (r.as_dict() for r in result.rows), rep.CASE_COLUMNS)
    written = [args.out]
    if args.per_label is not None:
        rep.write_csv_atomic(args.per_label, result.label_dicts(), rep.LABEL_COLUMNS)
        written.append(args.per_label)
    inputs = (
        {"segs": str(args.segs), "gts": str(args.gts)}
        if args.segs is not None
        else {
            "images": str(args.images or args.nnunet),
            "masks": str(args.masks or args.nnunet),
            "model": args.model,
            "engine": args.engine,
        }  # fmt: skip
    )
    summary: dict[str, Any] = {
        **inputs,
        "tolerance": args.tolerance,
        "spacing_order": args.spacing_order,
        "n_cases": len(result.rows),
        **rep.summary_to_dict(result.summary),
    }
    print(rep.format_table(result.summary))
    report = None
    if args.confidence is not None:
        report = _confidence(args, result, failures, written, summary)
    if args.plots is not None:
        written.extend(_plots(args.plots, result, report))
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
        _error(f"no case to evaluate in {args.gts or args.masks or args.nnunet}")
        return 1
    return 0
