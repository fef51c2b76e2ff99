"""``umedsam predict``: segment every challenge case in a folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from umedsam.inference.backends.factory import ENGINES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``umedsam predict``."""
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
        "--format",
        choices=["nifti", "png", "npz"],
        help="mask format (default: from the output suffix)",
    )
    files.add_argument("--modality", help="modality hint, e.g. CT or MR (default: from metadata)")
    files.add_argument("--window", help="CT window preset (soft_tissue, lung, bone, brain, liver)")
    files.add_argument("--level", type=float, help="CT window level (HU), with --width")
    files.add_argument("--width", type=float, help="CT window width (HU), with --level")
    parser.add_argument("--model", default="litemedsam", help="registered model name")
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
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--cache-mb", type=float, default=1024.0, help="bound of the 3D slice-embedding cache"
    )
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


def _set_threads(args: argparse.Namespace) -> None:
    """Thread count and allocator tuning for torch (process-wide, so only the CLI does it).

    Only done when torch will run the model: the ONNX Runtime and OpenVINO engines take their
    thread count from ``--threads`` directly and never import torch.
    """
    if args.engine not in ("torch", "auto") or args.workers or args.scheduler:
        return  # exported engines and Dask workers set their own threads
    from umedsam.inference.backends.factory import AUTO_ORDER, available_engines

    if args.engine == "auto" and AUTO_ORDER[0] in available_engines():
        return
    import torch

    from umedsam.inference.backends.torch import tune_allocator

    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)


def run(args: argparse.Namespace) -> int:
    """Load the model once, predict the folder, print a summary; exit 1 if any case failed."""
    from umedsam.cli.progress import progress_bar
    from umedsam.errors import UmedsamError
    from umedsam.inference.runner import ensure_writable, find_cases, predict_folder

    _set_threads(args)
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
    if args.boxes is not None or (args.input.exists() and not args.input.is_dir()):
        return _run_image_file(args)
    try:
        cases = find_cases(args.input)
        ensure_writable(args.output)
        t0 = time.perf_counter()
        if args.workers or args.scheduler:
            return _run_batch(args, cases, uncertainty)
        backend, sha256 = _make_backend(args)
        load_s = time.perf_counter() - t0
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(
            f"model {args.model} on the {backend.name} engine ready in {load_s:.2f} s; "
            f"{len(cases)} cases"
        )
    from umedsam.inference.manifest import finish_run, start_run

    manifest, plan = start_run(
        cases,
        args.output,
        model=args.model,
        checkpoint_sha256=sha256,
        resume=args.resume,
        required=("segs",) if uncertainty is None else ("segs", "unc"),
    )
    if plan.skipped and not args.quiet:
        print(f"resuming: {len(plan.skipped)} valid outputs kept, {len(plan.todo)} cases to do")
    with progress_bar(total=len(plan.todo), desc="predict", quiet=args.quiet) as bar:

        def on_case(outcome):  # type: ignore[no-untyped-def]
            manifest.record(outcome)
            bar.update(1)
            if not outcome.ok:
                bar.write(f"FAILED {outcome.error}")

        predict_folder(
            backend,
            args.input,
            args.output,
            args.overlay,
            args.cache_mb,
            on_case=on_case,
            cases=plan.todo,
            uncertainty=uncertainty,
        )
    finish_run(manifest, args.output)
    outcomes = manifest.outcomes()
    failed = [o for o in outcomes if not o.ok]
    ok = len(outcomes) - len(failed)
    if not args.quiet:
        for o in outcomes:
            if o.ok:
                print(f"  {o.name:60s} {o.seconds:8.2f} s")
    print(f"{ok}/{len(outcomes)} cases written to {args.output}; times in efficiency.csv")
    if failed:
        print(f"{len(failed)} failed:", file=sys.stderr)
        for o in failed:
            print(f"  {o.error}", file=sys.stderr)
        return 1
    return 0


def _make_backend(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The engine chosen by --engine, and the sha256 of the weights it runs.

    A --checkpoint is read (weights-only) and checked against the model before any engine is
    exported, so a wrong file fails fast with the key report instead of an export error.
    """
    from umedsam.inference.backends.factory import create_backend, weights_sha256

    if args.engine == "torch":
        from umedsam.inference.backends.torch import TorchBackend
        from umedsam.models.pretrained import load_pretrained

        model, report = load_pretrained(args.model, args.checkpoint)
        return TorchBackend(model), report.sha256
    from umedsam.inference.backends.factory import cached_export

    if (
        args.checkpoint is not None
        and cached_export(args.engine, args.model, args.checkpoint) is None
    ):
        from umedsam.models.checkpoint import load_checkpoint
        from umedsam.models.registry import build_model

        load_checkpoint(build_model(args.model), args.checkpoint)
    backend = create_backend(args.engine, args.model, args.checkpoint, threads=args.threads)
    return backend, weights_sha256(args.model, args.checkpoint)


def _run_image_file(args: argparse.Namespace) -> int:
    """Predict one image file with a prompt file; write one mask with the image's geometry."""
    from umedsam.errors import UmedsamError
    from umedsam.inference.runner import predict_image_file

    if args.boxes is None:
        print(
            f"error: {args.input} is an image file: give its box prompts with --boxes FILE",
            file=sys.stderr,
        )
        return 2
    try:
        backend, _ = _make_backend(args)
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    outcome = predict_image_file(
        backend,
        args.input,
        args.boxes,
        args.output,
        fmt=args.format,
        modality=args.modality,
        window=args.window,
        level=args.level,
        width=args.width,
        cache_mb=args.cache_mb,
    )
    if not outcome.ok:
        print(f"error: {outcome.error}", file=sys.stderr)
        return 1
    print(f"{outcome.num_objects} objects segmented in {outcome.seconds:.2f} s -> {args.output}")
    return 0


def _run_batch(args: argparse.Namespace, cases: list[Path], uncertainty) -> int:  # type: ignore[no-untyped-def]
    """``--workers``/``--scheduler``: predict on Dask workers; exit 1 if any case failed.

    ``auto`` is resolved here so every worker runs the same engine, and an exported engine's
    graphs are exported (once) before the workers start.
    """
    import os

    from umedsam.cli.progress import progress_bar
    from umedsam.errors import UmedsamError
    from umedsam.inference.batch import (
        ModelSpec,
        predict_batch,
        prepare_spec_engine,
        resolve_engine,
    )

    checkpoint = None if args.checkpoint is None else str(args.checkpoint.resolve())
    threads = args.threads
    if threads is None and args.scheduler is None:
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    engine = resolve_engine(args.engine)
    try:
        if engine == "torch":
            from umedsam.models.pretrained import load_pretrained

            sha256 = load_pretrained(args.model, args.checkpoint)[1].sha256
        else:
            from umedsam.inference.backends.factory import weights_sha256

            sha256 = weights_sha256(args.model, checkpoint)
        spec = ModelSpec(args.model, checkpoint, sha256, threads=threads, engine=engine)
        spec = prepare_spec_engine(spec)
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    where = args.scheduler or f"{args.workers} local worker processes"
    if not args.quiet:
        print(f"{len(cases)} cases on {where}, {engine} engine")
    with progress_bar(total=len(cases), desc="predict", quiet=args.quiet) as bar:
        seen = [0]

        def on_progress(state):  # type: ignore[no-untyped-def]
            bar.update(state.finished - seen[0])
            seen[0] = state.finished
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(done=state.done, failed=state.failed, skipped=state.skipped)
            if state.last is not None and not state.last.ok:
                bar.write(f"FAILED {state.last.error}")

        try:
            result = predict_batch(
                cases,
                args.output,
                spec,
                workers=args.workers,
                scheduler=args.scheduler,
                retries=args.retries,
                overlay_dir=args.overlay,
                cache_mb=args.cache_mb,
                resume=args.resume,
                progress=on_progress,
                options={"uncertainty": uncertainty} if uncertainty is not None else None,
            )
        except (UmedsamError, OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    state = result.progress
    print(
        f"{state.done} predicted, {state.skipped} kept from an earlier run, {state.failed} failed "
        f"({state.retried} retries after worker crashes); outputs, efficiency.csv and "
        f"manifest.json in {args.output}"
    )
    failed = [o for o in result.outcomes if not o.ok]
    if failed:
        print(f"{len(failed)} failed:", file=sys.stderr)
        for o in failed:
            print(f"  {o.error}", file=sys.stderr)
        return 1
    return 0
