"""``umedsam predict``: segment every challenge case in a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from umedsam.inference.engines import ENGINES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``umedsam predict``."""
    _add_input_arguments(parser)
    _add_model_arguments(parser)
    _add_uncertainty_arguments(parser)
    _add_batch_arguments(parser)


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Input and output: a case folder, or an image file with its prompts."""
    parser.add_argument(
        "-i",
        "--input",
        required=True,
        type=Path,
        help="folder of challenge *.npz cases, or one image (NIfTI, NRRD, DICOM file or series "
        "folder, PNG/JPEG/TIFF/BMP) together with --boxes",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=Path,
        help="folder for segs *.npz (folder input), or the mask file (image input)",
    )
    files = parser.add_argument_group("image-file input (NIfTI, DICOM, PNG ...)")
    files.add_argument("--boxes", type=Path, help="JSON or CSV box prompts (see docs/usage.md)")
    files.add_argument(
        "--prompts",
        type=Path,
        help="JSON of boxes, clicks, scribbles and a previous mask (see docs/interactive.md)",
    )
    files.add_argument(
        "--format",
        choices=["nifti", "png", "npz", "dicom-seg"],
        help="mask format (default: from the output suffix)",
    )
    files.add_argument("--modality", help="modality hint, e.g. CT or MR (default: from metadata)")
    files.add_argument("--window", help="CT window preset (soft_tissue, lung, bone, brain, liver)")
    files.add_argument("--level", type=float, help="CT window level (HU), with --width")
    files.add_argument("--width", type=float, help="CT window width (HU), with --level")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, its engine and how it runs."""
    parser.add_argument(
        "--model",
        help="registered model name (default: umedsam_newdata; litemedsam is the official "
        "model; umedsam_interactive for case folders that hold clicks, scribbles or previous "
        "masks)",
    )
    parser.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="inference engine (default auto: the fastest installed engine whose export "
        "passed parity with PyTorch; onnx-int8 and openvino-bf16 are faster on some CPUs but "
        "change masks slightly; see docs/performance.md)",
    )
    parser.add_argument("--checkpoint", type=Path, help="weights file (default: bundled weights)")
    parser.add_argument("--overlay", type=Path, metavar="DIR", help="also write PNG overlays here")
    parser.add_argument(
        "--thin-structures",
        action="store_true",
        help="scribbles drawn along a thin, branching structure (vessels; 2D and 3D) segment "
        "that structure at full resolution (an object whose stroke lies on no ridge keeps the "
        "model's mask; see docs/interactive.md)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--cache-mb", type=float, default=1024.0, help="bound of the 3D slice-embedding cache"
    )


def _add_uncertainty_arguments(parser: argparse.ArgumentParser) -> None:
    """``--uncertainty`` and its decoder ensemble."""
    unc = parser.add_argument_group("uncertainty (see docs/uncertainty.md)")
    unc.add_argument(
        "--uncertainty",
        action="store_true",
        help="add 'unc' (uint8 per-pixel uncertainty) to each npz and write confidence.csv; "
        "segs are unchanged",
    )
    unc.add_argument(
        "--ensemble",
        type=int,
        default=0,
        metavar="K",
        help="with --uncertainty: K extra decoder passes per object with jittered boxes "
        "(default 0; each costs about one decoder pass per object)",
    )
    unc.add_argument(
        "--ensemble-masks",
        action="store_true",
        help="with --uncertainty: use the ensemble-mean mask as segs (changes segs; "
        "implies --ensemble 4 if --ensemble is 0)",
    )


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Dask workers, retries and resume for case folders."""
    batch = parser.add_argument_group("batch runs (case folders; see docs/scaling.md)")
    batch.add_argument(
        "--workers",
        type=_count(1),
        metavar="N",
        help="predict on a local Dask cluster of N worker processes "
        "(needs umedsam[dist]; default: this process only)",
    )
    batch.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="send the cases to a running Dask scheduler, e.g. tcp://host:8786 "
        "(input and output folders must be visible to every worker)",
    )
    batch.add_argument(
        "--retries",
        type=_count(0),
        default=2,
        metavar="K",
        help="resubmit a case whose worker died up to K times, then record it "
        "as failed (default 2)",
    )
    batch.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep outputs of an earlier run that validate and predict only the "
        "rest (default); --no-resume predicts every case again",
    )


def _count(minimum: int):  # type: ignore[no-untyped-def]
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}; got {value}")
        return value

    return parse


def _uncertainty_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """UncertaintyConfig from the flags, or None when --uncertainty is off."""
    if not args.uncertainty:
        if args.ensemble or args.ensemble_masks:
            raise ValueError("--ensemble and --ensemble-masks need --uncertainty")
        return None
    from umedsam.inference.uncertainty_config import UncertaintyConfig

    k = args.ensemble or (4 if args.ensemble_masks else 0)
    return UncertaintyConfig(ensemble=k, ensemble_masks=args.ensemble_masks)


def _choose_model(
    args: argparse.Namespace, cases: list[Path] | None, prompted: bool = False
) -> str:
    """``--model``, else the interactive model when a case holds clicks/scribbles/masks."""
    from umedsam.models.cards import DEFAULT_MODEL, INTERACTIVE_MODEL, shipped

    if args.model:
        return str(args.model)
    if prompted and shipped(INTERACTIVE_MODEL):
        if not args.quiet:
            print(f"a prompt file: using {INTERACTIVE_MODEL} (--model chooses another)")
        return INTERACTIVE_MODEL
    if cases and shipped(INTERACTIVE_MODEL):
        from umedsam.data.npz import holds_interactive_prompts

        interactive = sum(holds_interactive_prompts(c) for c in cases)
        if interactive:
            if not args.quiet:
                print(
                    f"{interactive} of {len(cases)} cases hold clicks, scribbles or previous "
                    f"masks: using {INTERACTIVE_MODEL} (--model chooses another)"
                )
            return INTERACTIVE_MODEL
    return DEFAULT_MODEL


def _engine_spec(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """EngineSpec from the flags; Dask workers on this machine share its cores."""
    import os

    from umedsam.inference.engines import EngineSpec

    threads = args.threads
    if threads is None and args.workers and args.scheduler is None:
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    checkpoint = None if args.checkpoint is None else args.checkpoint.resolve()
    return EngineSpec(model=args.model, checkpoint=checkpoint, engine=args.engine, threads=threads)


def _tune_torch(spec) -> None:  # type: ignore[no-untyped-def]
    """Allocator tuning when this process will run the model in PyTorch (process-wide)."""
    from umedsam.inference.engines import torch_runs_model

    if torch_runs_model(spec):
        from umedsam.inference.backends.torch import tune_allocator

        tune_allocator()


def run(args: argparse.Namespace) -> int:
    """Predict a case folder (or one image file); print a summary; exit 1 if any case failed."""
    from umedsam.errors import UmedsamError

    try:
        uncertainty = _uncertainty_config(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if uncertainty is not None and args.boxes is not None:
        print(
            "error: --uncertainty works on challenge case folders (not with --boxes)",
            file=sys.stderr,
        )
        return 2
    if (
        args.boxes is not None
        or args.prompts is not None
        or (args.input.exists() and not args.input.is_dir())
    ):
        args.model = _choose_model(args, None, prompted=args.prompts is not None)
        return _run_image_file(args, _engine_spec(args))
    try:
        planned = _plan_folder_run(args, uncertainty)
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        result = _run_with_progress(args, *planned)
    except (UmedsamError, FileNotFoundError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return _report(args, result)


def _plan_folder_run(args: argparse.Namespace, uncertainty):  # type: ignore[no-untyped-def]
    """(cases, engine spec, case options, executor) of a case-folder run."""
    from umedsam.inference.cases import CaseOptions, find_cases
    from umedsam.inference.runner import Executor, LocalExecutor

    cases = find_cases(args.input)
    args.model = _choose_model(args, cases)
    spec = _engine_spec(args)
    options = CaseOptions(
        overlay_dir=args.overlay,
        uncertainty=uncertainty,
        cache_mb=args.cache_mb,
        prompt_kinds=spec.card.prompts,
        clip_to_box=spec.card.propagation == "bounded",
        thin_strokes=args.thin_structures or None,
    )
    executor: Executor
    if args.workers or args.scheduler:
        from umedsam.inference.dask_executor import DaskExecutor

        executor = DaskExecutor(
            workers=args.workers, scheduler=args.scheduler, retries=args.retries
        )
    else:
        _tune_torch(spec)
        executor = LocalExecutor()
    return cases, spec, options, executor


def _run_with_progress(args: argparse.Namespace, cases, spec, options, executor):  # type: ignore[no-untyped-def]
    """Run the cases with a progress bar (the engine line first, failures as they come)."""
    from umedsam.cli.progress import progress_bar
    from umedsam.inference.runner import run_cases

    with progress_bar(total=len(cases), desc="predict", quiet=args.quiet) as bar:
        seen = [0]

        def on_progress(state) -> None:  # type: ignore[no-untyped-def]
            if state.last is None:
                if not args.quiet:
                    bar.write(
                        f"model {args.model} on the {state.engine} engine "
                        f"({state.engine_seconds:.2f} s to prepare); {state.total} cases on "
                        f"{state.where}"
                        + (f"; {state.skipped} valid outputs kept" if state.skipped else "")
                    )
            elif not state.last.ok:
                bar.write(f"FAILED {state.last.error}")
            bar.update(state.finished - seen[0])
            seen[0] = state.finished

        return run_cases(
            cases,
            args.output,
            spec,
            options,
            executor=executor,
            resume=args.resume,
            progress=on_progress,
        )


def _report(args: argparse.Namespace, result) -> int:  # type: ignore[no-untyped-def]
    """Print the run's summary and failures; 1 if any case failed, else 0."""
    state = result.progress
    if not args.quiet:
        for o in result.new_outcomes:
            if o.ok:
                print(f"  {o.name:60s} {o.seconds:8.2f} s")
    print(
        f"{state.done} predicted, {state.skipped} kept from an earlier run, {state.failed} failed"
        + (f" ({state.retried} retries after worker crashes)" if state.retried else "")
        + f"; outputs, efficiency.csv and manifest.json in {args.output}"
    )
    if result.failed:
        print(f"{len(result.failed)} failed:", file=sys.stderr)
        for o in result.failed:
            print(f"  {o.error}", file=sys.stderr)
        return 1
    return 0


def _run_image_file(args: argparse.Namespace, spec) -> int:  # type: ignore[no-untyped-def]
    """Predict one image file with a prompt file; write one mask with the image's geometry."""
    from umedsam.errors import UmedsamError
    from umedsam.inference.cases import predict_image_file
    from umedsam.inference.engines import open_engine

    if args.boxes is None and args.prompts is None:
        print(
            f"error: {args.input} is an image file: give its prompts with --boxes FILE or "
            "--prompts FILE",
            file=sys.stderr,
        )
        return 2
    try:
        _tune_torch(spec)
        engine = open_engine(spec)
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    outcome = predict_image_file(
        engine.backend,
        args.input,
        args.boxes,
        args.output,
        fmt=args.format,
        modality=args.modality,
        window=args.window,
        level=args.level,
        width=args.width,
        cache_mb=args.cache_mb,
        prompts_path=args.prompts,
        prompt_kinds=spec.card.prompts,
        clip_to_box=spec.card.propagation == "bounded",
        thin_strokes=args.thin_structures or None,
    )
    if not outcome.ok:
        print(f"error: {outcome.error}", file=sys.stderr)
        return 1
    print(f"{outcome.num_objects} objects segmented in {outcome.seconds:.2f} s -> {args.output}")
    return 0
