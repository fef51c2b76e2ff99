"""Endurance: predict many small generated cases in one process and watch resident memory.

The run goes through the same path as ``umedsam predict`` without ``--workers``: the run manifest
(:func:`umedsam.inference.runner.run_cases` on the local executor) with one model loaded once, atomic ``segs`` writes, ``efficiency.csv``. Cases are generated
deterministically into a temporary folder (deleted afterwards): alternately a 2D image with 1-3
disks and a small 3D volume with 1-2 spheres, with sizes that vary so buffers of different
shapes are allocated.

Resident memory (RSS, from /proc or psutil) is sampled every ``--sample-every`` cases. The first
``--warmup`` cases are warm-up (allocator pools, lazily built kernels); the result is the growth
from the RSS at the end of warm-up to the largest RSS afterwards, and to the final RSS. The check
passes when the growth stays under ``--max-growth`` (10 %).

Examples::

    python benchmarks/soak.py                      # 1,000 cases, tiny random model
    python benchmarks/soak.py --model litemedsam --cases 300
    python benchmarks/soak.py --json soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def make_cases(folder: Path, n: int, seed: int = 0) -> None:
    """Write ``n`` small challenge cases (2D and 3D alternately) into ``folder``."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        if i % 2 == 0:
            h, w = int(rng.integers(48, 129)), int(rng.integers(48, 129))
            img = rng.integers(0, 60, size=(h, w), dtype=np.uint8)
            boxes = []
            for _ in range(int(rng.integers(1, 4))):
                r = int(rng.integers(4, max(5, min(h, w) // 4)))
                cy, cx = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
                yy, xx = np.ogrid[:h, :w]
                img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
                boxes.append(
                    [max(cx - r, 0), max(cy - r, 0), min(cx + r + 1, w), min(cy + r + 1, h)]
                )
            np.savez_compressed(
                folder / f"2DBox_Soak_{i:04d}.npz",
                imgs=np.repeat(img[:, :, None], 3, axis=2),
                boxes=np.array(boxes),
            )
        else:
            d, h, w = int(rng.integers(4, 9)), int(rng.integers(32, 65)), int(rng.integers(32, 65))
            vol = rng.integers(0, 40, size=(d, h, w), dtype=np.uint8)
            boxes = []
            for _ in range(int(rng.integers(1, 3))):
                r = int(rng.integers(3, max(4, min(h, w) // 5)))
                cz = int(rng.integers(1, d - 1))
                cy, cx = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
                zz, yy, xx = np.ogrid[:d, :h, :w]
                vol[((zz - cz) * 4) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 220
                z0, z1 = max(cz - r // 4, 0), min(cz + r // 4, d - 1)
                boxes.append(
                    [max(cx - r, 0), max(cy - r, 0), z0, min(cx + r + 1, w), min(cy + r + 1, h), z1]
                )
            np.savez_compressed(
                folder / f"3DBox_Soak_{i:04d}.npz",
                imgs=vol,
                boxes=np.array(boxes),
                spacing=np.array([1.0, 1.0, 2.5]),
            )


def soak(args: argparse.Namespace) -> dict:
    """Generate the cases, predict them with samples of RSS, return the measurements."""
    import torch

    from umedsam.inference.cases import find_cases
    from umedsam.inference.engines import EngineSpec, open_engine
    from umedsam.inference.runner import run_cases
    from umedsam.models.registry import build_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="umedsam-soak-") as tmp:
        root = Path(tmp)
        inp, out = root / "in", root / "out"
        inp.mkdir()
        t0 = time.perf_counter()
        make_cases(inp, args.cases)
        gen_s = time.perf_counter() - t0
        checkpoint = args.checkpoint
        if args.model.startswith("test_"):  # test-only models live with the tests
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            import tiny_models  # noqa: F401 - registers test_tiny

        if checkpoint is None and args.model == "test_tiny":
            torch.manual_seed(0)
            checkpoint = root / "tiny.pt"
            torch.save(build_model("test_tiny").state_dict(), checkpoint)
        engine = open_engine(EngineSpec(args.model, checkpoint, "torch", args.threads))
        cases = find_cases(inp)
        samples: list[tuple[int, float, float]] = [(0, time.perf_counter() - t0, rss_mb())]
        count = [0]
        start = time.perf_counter()

        def on_case(state) -> None:  # type: ignore[no-untyped-def]
            if state.last is None:
                return
            count[0] += 1
            if count[0] % args.sample_every == 0 or count[0] == len(cases):
                samples.append((count[0], time.perf_counter() - start, rss_mb()))
                if not args.quiet:
                    print(
                        f"{count[0]:5d} cases  {samples[-1][1]:7.1f} s  RSS {samples[-1][2]:7.1f} MiB",
                        file=sys.stderr,
                    )

        result = run_cases(cases, out, engine, progress=on_case)
        elapsed = time.perf_counter() - start
        counts = result.manifest.counts()
    after = [s for s in samples if s[0] >= args.warmup]
    base = after[0][2]
    peak = max(s[2] for s in after)
    final = samples[-1][2]
    return {
        "model": args.model,
        "cases": args.cases,
        "threads": args.threads,
        "generate_s": round(gen_s, 1),
        "predict_s": round(elapsed, 1),
        "ms_per_case": round(1000 * elapsed / max(1, args.cases), 1),
        "done": counts["done"],
        "failed": counts["failed"],
        "warmup_cases": after[0][0],
        "rss_start_mb": round(samples[0][2], 1),
        "rss_after_warmup_mb": round(base, 1),
        "rss_peak_after_warmup_mb": round(peak, 1),
        "rss_final_mb": round(final, 1),
        "growth_peak_pct": round(100 * (peak - base) / base, 2),
        "growth_final_pct": round(100 * (final - base) / base, 2),
        "samples": [
            {"cases": n, "seconds": round(t, 1), "rss_mb": round(r, 1)} for n, t, r in samples
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print the numbers; exit 1 if memory grew too much or a case failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100, help="cases before the baseline sample")
    parser.add_argument("--sample-every", type=int, default=50)
    parser.add_argument(
        "--model", default="test_tiny", help="registered model (default: tiny random)"
    )
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-growth", type=float, default=10.0, help="percent")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.warmup >= args.cases:
        parser.error("--warmup must be smaller than --cases")
    result = soak(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=1))
    ok = result["failed"] == 0 and result["growth_peak_pct"] < args.max_growth
    print(
        f"{'PASS' if ok else 'FAIL'}: RSS {result['rss_after_warmup_mb']} MiB after "
        f"{result['warmup_cases']} cases, peak {result['rss_peak_after_warmup_mb']} MiB, final "
        f"{result['rss_final_mb']} MiB (growth {result['growth_peak_pct']} % peak, "
        f"{result['growth_final_pct']} % final; limit {args.max_growth} %)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
