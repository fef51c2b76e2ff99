"""Teacher (LiteMedSAM TinyViT) against the EfficientViT students: cost, speed and accuracy.

Sections (each optional):

``--cost``      parameters of each image encoder and of the full model, and MACs of one 256-px
                encoder call and of one decoder call, counted with
                ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2).
``--latency``   encoder latency per 256-px slice: median of ``--runs`` calls after warm-up, for
                each model on each engine of ``--engines`` (torch, onnx, openvino: whatever is
                installed), all in this process, one after the other.
``--profile``   where the time of whole cases goes (encoder calls, decoder calls, the rest),
                in process, per model and engine.
``--accuracy``  DSC/NSD on the dev folder (``umedsam predict`` + ``umedsam evaluate`` in-process)
                per modality for each model, and end-to-end seconds per case.

A student without packaged weights (or ``--checkpoint NAME=PATH``) runs with random weights in
``--cost``/``--latency`` (speed does not depend on the values) and is skipped in ``--accuracy``.
The teacher's dev accuracy can be read from the official reference outputs instead of being
recomputed (``--teacher-reference``).

Examples::

    python benchmarks/student.py --cost --latency --engines torch,openvino --threads 1
    python benchmarks/student.py --accuracy --models umedsam_effvit_b0 --teacher-reference
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = Path(os.environ.get("UMEDSAM_SHARED_DIR", REPO.parent / "shared"))
TEACHER = "litemedsam"
STUDENTS = ("umedsam_effvit_b0", "umedsam_effvit_b1")


def _weights_for(name: str, overrides: dict[str, str], tmp: Path) -> tuple[str | None, bool]:
    """(checkpoint path or None for packaged weights, trained?) of a model."""
    import torch

    from umedsam.models.registry import build_model, default_weights
    from umedsam.training.distill import export_student_weights

    if name in overrides:
        return overrides[name], True
    if name == TEACHER:
        return None, True
    try:
        default_weights(name)
        return None, True
    except ValueError:
        path = tmp / f"{name}-random.pt"
        if not path.is_file():
            export_student_weights(build_model(name).state_dict(), path, dtype=torch.float32)
        return str(path), False


def cost(names: list[str]) -> list[dict[str, float | str]]:
    """Parameters and MACs of each model's encoder (256 px) and of one decoder call."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from umedsam.models.registry import build_model

    rows = []
    for name in names:
        model = build_model(name).eval()
        image = torch.rand(1, 3, model.image_size, model.image_size)
        with torch.inference_mode():
            with FlopCounterMode(display=False) as enc_counter:
                emb = model.encode(image)
            box = torch.tensor([[30.0, 40.0, 150.0, 170.0]])
            with FlopCounterMode(display=False) as dec_counter:
                model.decode(emb, box)
        rows.append(
            {
                "model": name,
                "encoder_params_M": sum(p.numel() for p in model.image_encoder.parameters()) / 1e6,
                "total_params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                "encoder_GMACs": enc_counter.get_total_flops() / 2e9,
                "decoder_GMACs_per_box": dec_counter.get_total_flops() / 2e9,
            }
        )
    teacher = next((r for r in rows if r["model"] == TEACHER), None)
    for row in rows:
        if teacher is not None:
            row["MACs_vs_teacher"] = float(teacher["encoder_GMACs"]) / float(row["encoder_GMACs"])
    return rows


def _installed(engines: list[str]) -> list[str]:
    """The engines of ``engines`` whose runtime is installed (the others are reported)."""
    from umedsam.inference.engines import available_engines

    installed = available_engines()
    for engine in engines:
        if engine not in installed:
            print(f"[skip] engine {engine} is not installed", file=sys.stderr)
    return [e for e in engines if e in installed]


def latency(
    names: list[str],
    engines: list[str],
    runs: int,
    threads: int | None,
    weights: dict[str, str | None],
) -> list[dict[str, float | str]]:
    """Median encoder seconds per 256-px slice for each (model, engine)."""
    import torch

    from umedsam.inference.engines import EngineSpec, open_engine

    image = torch.rand(1, 3, 256, 256).numpy()
    rows = []
    for engine in _installed(engines):
        for name in names:
            try:
                ckpt = weights.get(name)
                spec = EngineSpec(name, None if ckpt is None else Path(ckpt), engine, threads)
                backend = open_engine(spec).backend
            except Exception as err:  # noqa: BLE001 - report and continue with the next engine
                print(f"[skip] {name} on {engine}: {err}", file=sys.stderr)
                continue
            for _ in range(2):
                backend.encode(image)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                backend.encode(image)
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "model": name,
                    "engine": engine,
                    "encoder_s": statistics.median(times),
                    "runs": runs,
                }
            )
    by_engine: dict[str, float] = {
        str(r["engine"]): float(r["encoder_s"]) for r in rows if r["model"] == TEACHER
    }
    teacher_best = min(by_engine.values()) if by_engine else None
    for row in rows:
        if str(row["engine"]) in by_engine:
            row["speedup_same_engine"] = by_engine[str(row["engine"])] / float(row["encoder_s"])
        if teacher_best is not None:
            row["speedup_vs_teacher_best"] = teacher_best / float(row["encoder_s"])
    return rows


def profile(
    names: list[str],
    engines: list[str],
    cases: list[Path],
    runs: int,
    threads: int | None,
    weights: dict[str, str | None],
) -> list[dict[str, float | str]]:
    """Where one case's in-process time goes: encoder calls, decoder calls, the rest.

    Each (model, engine, case) is segmented ``runs`` times after one warm-up run (the same
    function as ``umedsam predict``: ``segment_case``); encoder and decoder calls are timed by
    wrapping the backend. Medians over the runs.
    """
    from umedsam.data.npz import load_case
    from umedsam.inference.engines import EngineSpec, open_engine
    from umedsam.inference.segment import segment_case
    from umedsam.models.cards import bounded_propagation

    rows = []
    for engine in _installed(engines):
        for name in names:
            ckpt = weights.get(name)
            spec = EngineSpec(name, None if ckpt is None else Path(ckpt), engine, threads)
            backend = open_engine(spec).backend
            timers = _wrap_timers(backend)
            for path in cases:
                case = load_case(path)
                samples: list[dict[str, float]] = []
                for run in range(runs + 1):
                    for t in timers.values():
                        t[:] = [0.0, 0.0]
                    start = time.perf_counter()
                    segment_case(backend, case, clip_to_box=bounded_propagation(name, ckpt))
                    total = time.perf_counter() - start
                    if run == 0:
                        continue  # warm-up
                    samples.append(
                        {
                            "total_s": total,
                            "encoder_s": timers["encode"][0],
                            "encoder_calls": timers["encode"][1],
                            "decoder_s": timers["decode"][0] + timers["decode_prompts"][0],
                            "decoder_calls": timers["decode"][1] + timers["decode_prompts"][1],
                        }
                    )
                med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                rows.append(
                    {
                        "model": name,
                        "engine": engine,
                        "case": path.stem[:40],
                        "objects": len(case.boxes),
                        **med,
                        "other_s": med["total_s"] - med["encoder_s"] - med["decoder_s"],
                        "ms_per_encode": 1000 * med["encoder_s"] / max(med["encoder_calls"], 1),
                        "ms_per_decode": 1000 * med["decoder_s"] / max(med["decoder_calls"], 1),
                    }
                )
    return rows


def _wrap_timers(backend: object) -> dict[str, list[float]]:
    """Replace the backend's encode/decode methods by timed ones; [seconds, calls] per method."""
    timers: dict[str, list[float]] = {}
    for method in ("encode", "decode", "decode_prompts"):
        original = getattr(backend, method, None)
        timers[method] = [0.0, 0.0]
        if original is None:
            continue

        def timed(*a, _f=original, _t=timers[method], **k):  # noqa: ANN001, ANN002, ANN003
            start = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                _t[0] += time.perf_counter() - start
                _t[1] += 1

        setattr(backend, method, timed)
    return timers


def _per_modality(metrics_csv: Path) -> dict[str, tuple[float, float, int]]:
    from umedsam.data.naming import modality_from_name

    groups: dict[str, list[tuple[float, float]]] = {}
    with metrics_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault(modality_from_name(row["case"]), []).append(
                (float(row["dsc"]), float(row["nsd"]))
            )
    out = {
        m: (statistics.mean(d for d, _ in v), statistics.mean(n for _, n in v), len(v))
        for m, v in groups.items()
    }
    every = [x for v in groups.values() for x in v]
    out["ALL"] = (
        statistics.mean(d for d, _ in every),
        statistics.mean(n for _, n in every),
        len(every),
    )
    return out


def accuracy(
    names: list[str],
    dev: Path,
    out_root: Path,
    engine: str,
    threads: int | None,
    weights: dict[str, str | None],
    trained: dict[str, bool],
    teacher_reference: Path | None,
) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Per-modality mean DSC/NSD on ``dev`` (and seconds per case) for each model."""
    from umedsam.cli.main import main as cli

    results: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name in names:
        if name == TEACHER and teacher_reference is not None:
            results[f"{name} (official reference)"] = _per_modality(teacher_reference)
            continue
        if not trained.get(name, False):
            print(f"[skip] {name}: no trained weights", file=sys.stderr)
            continue
        out = out_root / name
        argv = ["predict", "-q", "-i", str(dev / "imgs"), "-o", str(out), "--model", name]
        argv += ["--engine", engine] if engine != "torch" else []
        if weights.get(name):
            argv += ["--checkpoint", str(weights[name])]
        if threads:
            argv += ["--threads", str(threads)]
        start = time.perf_counter()
        if cli(argv) != 0:
            print(f"[fail] predict with {name}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - start
        n_cases = len(list((dev / "imgs").glob("*.npz")))
        metrics = out / "metrics.csv"
        cli(
            ["evaluate", "-q", "--segs", str(out), "--gts", str(dev / "gts"), "--out", str(metrics)]
        )
        results[name] = _per_modality(metrics)
        print(f"{name}: {seconds:.1f} s for {n_cases} dev cases ({seconds / n_cases:.2f} s/case)")
    return results


def _print_table(rows: list[dict[str, float | str]]) -> None:
    if not rows:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    print(" | ".join(cols))
    for r in rows:
        print(
            " | ".join(
                f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols
            )
        )
    print()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the chosen sections."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join((TEACHER, *STUDENTS)))
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument(
        "--profile",
        nargs="+",
        type=Path,
        metavar="CASE",
        help="cases (npz) to profile: encoder, decoder and other seconds per model and engine",
    )
    parser.add_argument("--engines", default="torch,onnx,openvino")
    parser.add_argument("--accuracy-engine", default="torch")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--dev", type=Path, default=DEFAULT_SHARED / "data" / "dev")
    parser.add_argument(
        "--out", type=Path, help="prediction folder for --accuracy (default: temporary)"
    )
    parser.add_argument(
        "--teacher-reference",
        action="store_true",
        help="take the teacher's dev metrics from the official reference metrics.csv",
    )
    args = parser.parse_args(argv)
    if not (args.cost or args.latency or args.accuracy or args.profile):
        parser.error("choose at least one of --cost, --latency, --accuracy, --profile")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.models.split(",") if n]
    overrides = dict(item.split("=", 1) for item in args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        resolved = {n: _weights_for(n, overrides, tmp) for n in names}
        weights = {n: w for n, (w, _) in resolved.items()}
        trained = {n: t for n, (_, t) in resolved.items()}
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), cpu count {os.cpu_count()}"
        )
        if args.cost:
            print("## cost (256-px input)")
            _print_table(cost(names))
        if args.latency:
            print(f"## encoder latency per slice (median of {args.runs})")
            _print_table(latency(names, args.engines.split(","), args.runs, args.threads, weights))
        if args.profile:
            print(f"## where the time goes, in process (median of {args.runs} after a warm-up)")
            _print_table(
                profile(
                    names, args.engines.split(","), args.profile, args.runs, args.threads, weights
                )
            )
        if args.accuracy:
            ref = DEFAULT_SHARED / "reference" / "official_dev" / "metrics.csv"
            out_root = args.out or tmp / "pred"
            results = accuracy(
                names,
                args.dev,
                out_root,
                args.accuracy_engine,
                args.threads,
                weights,
                trained,
                ref if args.teacher_reference and ref.is_file() else None,
            )
            print("## dev accuracy: mean DSC / NSD (cases) per modality")
            modalities = sorted({m for r in results.values() for m in r} - {"ALL"}) + ["ALL"]
            print("model | " + " | ".join(modalities))
            for name, per in results.items():
                cells = [
                    f"{per[m][0]:.4f} / {per[m][1]:.4f} ({per[m][2]})" if m in per else "-"
                    for m in modalities
                ]
                print(f"{name} | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
