"""End-to-end CPU speed of umedsam engines against a re-creation of the official LiteMedSAM script.

Every timed run is a fresh Python process that imports, loads the model (or opens the cached
export), reads one case, segments it and writes ``segs`` to an npz, exactly what a challenge run of
one case costs. The parent measures the process's wall time and reads its CPU time and peak resident
memory (ru_maxrss) with ``os.wait4``. Per case and engine it prints the median of the runs, the
speed-up of umedsam over the official re-creation (``benchmarks/baseline_official.py``), the peak
memory and the mean per-object DSC against ground truth, plus the smallest per-object DSC between
the engine's masks and the official re-creation's masks ("agree").

Cases: a subset of the dev folder (``--dev-cases``) and generated large cases shaped like the
challenge's slowest (``--synthetic``; deterministic blobs written to a temporary folder, deleted
afterwards):

    big3d    287 x 512 x 512, 6 objects spanning 40-150 slices (like 3DBox_CT_0566)
    ct3d     100 x 512 x 512, 3 objects spanning 30-60 slices (a CT-like volume, issue 36)
    mr3d     115 x 400 x 400, 6 objects (like 3DBox_MR_0621)
    xray2d   1024 x 1024 x 3, 34 boxes (like 2DBox_X-Ray_0053)
    micro2d  1024 x 1024 x 3, 241 small boxes (like 2DBox_Microscope_0016)

``--official-max-slices K`` times the official algorithm on at most K slices per object for the
3D synthetic cases and extrapolates linearly in encoder calls (start-up measured separately); the
table marks such rows with ``~``. ``--accuracy`` instead runs each engine in-process over the whole
dev folder and reports DSC against ground truth and against the official reference outputs.
An engine may name a model, ``MODEL:ENGINE`` (e.g. ``umedsam_effvit_b0:onnx``); a bare engine
runs LiteMedSAM, the official model whose masks the official pipeline's are compared with (the
default model is ``umedsam_newdata:ENGINE``). ``--calls N`` times single engine calls in-process: the median of N encoder calls (one 256-px
slice) and N decoder calls (8 boxes) after a warm-up call.

Examples::

    python benchmarks/infer_speed.py --dev-cases 4 --synthetic all --runs 3
    python benchmarks/infer_speed.py --accuracy --engines openvino,onnx-int8
    python benchmarks/infer_speed.py --calls 8 --engines torch,onnx,openvino,openvino-bf16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = Path(os.environ.get("UMEDSAM_SHARED_DIR", REPO.parent / "shared"))
ENGINES = ("torch", "onnx", "openvino", "onnx-int8", "openvino-bf16")
SYNTHETIC = ("big3d", "ct3d", "mr3d", "xray2d", "micro2d")


# --------------------------------------------------------------------------- synthetic cases


def _ellipsoid_stack(shape, centers, radii, seed):  # type: ignore[no-untyped-def]
    """Volume (D, H, W) uint8 with textured background and labelled ellipsoids; and the label map."""
    d, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = (40 + 30 * np.sin(xx / 57.0) * np.cos(yy / 43.0)).astype(np.float32)
    vol = np.empty(shape, np.uint8)
    gts = np.zeros(shape, np.uint8)
    levels = [90, 130, 170, 210, 150, 110]
    for z in range(d):
        sl = base + rng.normal(0, 8, size=(h, w)).astype(np.float32)
        for i, ((cz, cy, cx), (rz, ry, rx)) in enumerate(
            zip(centers, radii, strict=False), start=1
        ):
            dz = (z - cz) / rz
            if abs(dz) > 1:
                continue
            s = np.sqrt(1 - dz * dz)
            inside = ((yy - cy) / (ry * s + 1e-6)) ** 2 + ((xx - cx) / (rx * s + 1e-6)) ** 2 <= 1
            sl[inside] = levels[(i - 1) % len(levels)] + rng.normal(0, 6, size=int(inside.sum()))
            gts[z][inside] = i
        vol[z] = np.clip(sl, 0, 255).astype(np.uint8)
    return vol, gts


def _boxes_3d(gts: np.ndarray, n: int) -> np.ndarray:
    boxes = []
    for i in range(1, n + 1):
        zz, yy, xx = np.nonzero(gts == i)
        boxes.append([xx.min(), yy.min(), zz.min(), xx.max(), yy.max(), zz.max()])
    return np.asarray(boxes, dtype=np.int64)


def _blobs_2d(hw, centers, radii, seed):  # type: ignore[no-untyped-def]
    h, w = hw
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    img = 50 + 25 * np.sin(xx / 91.0) + rng.normal(0, 10, size=(h, w))
    gts = np.zeros((h, w), np.uint16)
    boxes = []
    for i, ((cy, cx), (ry, rx)) in enumerate(zip(centers, radii, strict=False), start=1):
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        img[inside] = 120 + (i * 37) % 120 + rng.normal(0, 8, size=int(inside.sum()))
        gts[inside] = i
        ys, xs = np.nonzero(gts == i)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    img = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=-1), gts, np.asarray(boxes, dtype=np.int64)


def make_synthetic(name: str, folder: Path) -> Path:
    """Write synthetic case ``name`` to folder/imgs and folder/gts; return the image npz path."""
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    (folder / "gts").mkdir(parents=True, exist_ok=True)
    spacing = np.array([1.0, 1.0, 2.5])
    if name == "big3d":
        extents = [40, 60, 80, 100, 120, 150]
        centers = [
            (40, 150, 150),
            (80, 160, 360),
            (120, 330, 140),
            (143, 340, 370),
            (160, 250, 250),
            (200, 120, 260),
        ]
        radii = [(e / 2, 45 + 6 * k, 55 + 4 * k) for k, e in enumerate(extents)]
        vol, gts = _ellipsoid_stack((287, 512, 512), centers, radii, seed=566)
        fname = "3DBox_Synthetic_big287x512x512.npz"
    elif name == "ct3d":
        extents = [30, 45, 60]
        centers = [(35, 170, 160), (50, 330, 350), (60, 250, 250)]
        radii = [(e / 2, 50 + 8 * k, 60 + 5 * k) for k, e in enumerate(extents)]
        vol, gts = _ellipsoid_stack((100, 512, 512), centers, radii, seed=100)
        fname = "3DBox_Synthetic_ct100x512x512.npz"
    elif name == "mr3d":
        extents = [20, 35, 50, 65, 80, 90]
        centers = [
            (25, 100, 100),
            (40, 110, 290),
            (55, 280, 110),
            (57, 280, 290),
            (60, 200, 200),
            (60, 80, 200),
        ]
        radii = [(e / 2, 30 + 4 * k, 35 + 3 * k) for k, e in enumerate(extents)]
        vol, gts = _ellipsoid_stack((115, 400, 400), centers, radii, seed=621)
        fname = "3DBox_Synthetic_mr115x400x400.npz"
    elif name in ("xray2d", "micro2d"):
        rng = np.random.default_rng(53 if name == "xray2d" else 16)
        if name == "xray2d":
            grid = [(90 + 165 * r, 90 + 165 * c) for r in range(6) for c in range(6)][:34]
            radii = [(rng.uniform(30, 70), rng.uniform(30, 70)) for _ in grid]
        else:
            grid = [(35 + 63 * r, 35 + 63 * c) for r in range(16) for c in range(16)][:241]
            radii = [(rng.uniform(8, 22), rng.uniform(8, 22)) for _ in grid]
        centers = [(cy + rng.uniform(-8, 8), cx + rng.uniform(-8, 8)) for cy, cx in grid]
        img, gts, boxes = _blobs_2d((1024, 1024), centers, radii, seed=len(grid))
        fname = f"2DBox_Synthetic_{name}_{len(boxes)}boxes.npz"
        np.savez(folder / "imgs" / fname, imgs=img, boxes=boxes)
        np.savez(folder / "gts" / fname, gts=gts, boxes=boxes)
        return folder / "imgs" / fname
    else:
        raise ValueError(f"unknown synthetic case {name!r}; expected one of {SYNTHETIC}")
    boxes = _boxes_3d(gts, int(gts.max()))
    np.savez(folder / "imgs" / fname, imgs=vol, boxes=boxes, spacing=spacing)
    np.savez(folder / "gts" / fname, gts=gts, boxes=boxes, spacing=spacing)
    return folder / "imgs" / fname


# --------------------------------------------------------------------------- worker


def worker(engine: str, case: Path, out: Path, threads: int | None) -> int:
    """Child process: what ``umedsam predict --engine ENGINE`` does for one case, with timings.

    ``engine`` may name a model too, ``MODEL:ENGINE`` (e.g. ``umedsam_effvit_b0:onnx``); a bare
    engine runs LiteMedSAM.
    """
    t0 = time.perf_counter()
    from umedsam.data.npz import load_case, save_npz_atomic
    from umedsam.inference.engines import open_engine
    from umedsam.inference.segment import segment_case

    spec = engine_spec(engine, threads)
    engine = spec.engine

    if engine == "torch" or (engine == "auto" and not _exported_runtime()):
        # as the CLI: only the torch engine imports torch and tunes malloc
        import torch

        from umedsam.inference.backends.torch import tune_allocator

        if threads:
            torch.set_num_threads(threads)
        tune_allocator()
    t_import = time.perf_counter() - t0
    backend = open_engine(spec).backend
    t_load = time.perf_counter() - t0 - t_import
    case_ = load_case(case)
    result = segment_case(backend, case_)
    save_npz_atomic(out, segs=result.segs)
    calls = result.stats.encoder_calls if result.stats is not None else 1
    info = {
        "import_s": t_import,
        "load_s": t_load,
        "total_s": time.perf_counter() - t0,
        "encoder_calls": calls,
        "torch_imported": "torch" in sys.modules,
    }
    print(json.dumps(info))
    return 0


def engine_spec(entry: str, threads: int | None):  # type: ignore[no-untyped-def]
    """The EngineSpec of an ``--engines`` entry: ``ENGINE`` or ``MODEL:ENGINE``."""
    from umedsam.inference.engines import EngineSpec

    model, _, engine = entry.rpartition(":")
    return EngineSpec(model=model or "litemedsam", engine=engine, threads=threads)


def _exported_runtime() -> bool:
    """Whether ONNX Runtime or OpenVINO is installed (``auto`` then avoids torch)."""
    import importlib.util

    return any(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "openvino"))


# --------------------------------------------------------------------------- measurement


@dataclass
class Runs:
    """Timed runs of one (case, engine)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    overlay: list[float] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    segs_path: Path | None = None
    extrapolated: str = ""

    @property
    def wall_med(self) -> float:
        return statistics.median(self.wall) if self.wall else float("nan")

    @property
    def cpu_med(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    @property
    def wall_med_no_overlay(self) -> float:
        """Median wall time without the overlay PNG (official re-creation only)."""
        if not self.overlay:
            return self.wall_med
        return statistics.median(w - o for w, o in zip(self.wall, self.overlay, strict=True))


class _Popen(subprocess.Popen):
    """Popen that reaps with os.wait4 so the child's own rusage (CPU, ru_maxrss) is kept."""

    def _try_wait(self, wait_flags):  # type: ignore[no-untyped-def]
        try:
            pid, sts, ru = os.wait4(self.pid, wait_flags)
        except ChildProcessError:  # already reaped elsewhere: no usage to read
            return self.pid, 0
        if pid == self.pid:
            self._umedsam_rusage = (ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0)
        return pid, sts


def run_process(cmd: list[str], timeout: float) -> tuple[float, float, float, dict]:
    """Run ``cmd``; return wall s, CPU s (user + sys), peak RSS MB and its last JSON stdout line."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    start = time.perf_counter()
    proc = _Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    wall = time.perf_counter() - start
    ru = getattr(proc, "_umedsam_rusage", None)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    info = json.loads(lines[-1]) if lines else {}
    if ru is None:
        return wall, float("nan"), float("nan"), info
    return wall, ru[0], ru[1], info


def time_engine(
    engine: str, case: Path, work: Path, runs: int, threads: int | None, timeout: float
) -> Runs:
    """Run the umedsam worker ``runs`` times in fresh processes."""
    res = Runs()
    for k in range(runs):
        out = work / f"{engine}_{case.stem}_{k}.npz"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_worker",
            engine,
            str(case),
            str(out),
        ]
        if threads:
            cmd += ["--threads", str(threads)]
        wall, cpu, rss, info = run_process(cmd, timeout)
        res.wall.append(wall)
        res.cpu.append(cpu)
        res.rss_mb.append(rss)
        res.info = info
        res.segs_path = out
    return res


def time_official(
    case: Path,
    work: Path,
    runs: int,
    threads: int | None,
    timeout: float,
    max_slices: int | None,
    overlay: bool = True,
) -> Runs:
    """Run the official re-creation; with max_slices, extrapolate to the whole case."""
    res = Runs()
    script = str(REPO / "benchmarks" / "baseline_official.py")
    for k in range(runs):
        out = work / f"official_{case.stem}_{k}.npz"
        cmd = [sys.executable, script, str(case), str(out)]
        if threads:
            cmd += ["--threads", str(threads)]
        if max_slices:
            cmd += ["--max-slices", str(max_slices)]
        if overlay:
            cmd += ["--overlay"]
        wall, cpu, rss, info = run_process(cmd, timeout)
        overlay_s = float(info.get("overlay_s", 0.0))
        if max_slices:
            with np.load(case) as npz:
                boxes, d = npz["boxes"], npz["imgs"].shape[0]
            full = int(sum(min(b[5] + 1, d) - max(b[2], 0) for b in boxes))
            done = info["encoder_calls"]
            # interpreter + imports + model load + overlay: not proportional to encoder calls
            start = info["load_s"] + (wall - info["total_s"]) + overlay_s
            scale = full / done
            res.extrapolated = f"~ {done} of {full} encoder calls timed, scaled x{scale:.1f}"
            cpu_start = cpu * start / wall  # assume start-up used CPU at the run's average rate
            cpu = cpu_start + (cpu - cpu_start) * scale
            wall = start + (wall - start) * scale
            info = dict(info, encoder_calls=full)
        res.wall.append(wall)
        res.cpu.append(cpu)
        res.rss_mb.append(rss)
        res.overlay.append(overlay_s)
        res.info = info
        res.segs_path = None if max_slices else out
    return res


def per_object_dsc(segs: np.ndarray, gts: np.ndarray, n: int) -> list[float]:
    """DSC of label i in segs vs label i in gts, i = 1..n (NaN when both are empty)."""
    from umedsam.evaluation.metrics import dice

    return [dice(segs == i, gts == i) for i in range(1, n + 1)]


def _nanmean(values: list[float]) -> float:
    vals = [v for v in values if v == v]
    return float(np.mean(vals)) if vals else float("nan")


def load_avg() -> str:
    """The 1/5/15-minute load averages."""
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def report_case(name: str, gts_path: Path | None, rows: dict[str, Runs]) -> str:
    """Markdown table for one case."""
    gts = None
    n = 0
    if gts_path is not None and gts_path.is_file():
        with np.load(gts_path) as npz:
            gts, n = npz["gts"], len(npz["boxes"])
    official = rows.get("official")
    off_segs = None
    if official is not None and official.segs_path is not None:
        with np.load(official.segs_path) as npz:
            off_segs = npz["segs"]
    lines = [
        f"**{name}**",
        "",
        "| engine | wall s (median) | runs | CPU s | speed-up wall | speed-up wall, official w/o overlay | speed-up CPU | start-up s (imports + model) | peak RSS MB | encoder calls | torch imported | DSC vs GT | agree w/ official (min obj DSC) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for engine, r in rows.items():
        dsc = agree = float("nan")
        if r.segs_path is not None:
            with np.load(r.segs_path) as npz:
                segs = npz["segs"]
            if gts is not None:
                dsc = _nanmean(per_object_dsc(segs, gts, n))
            if off_segs is not None and engine != "official":
                agree = min(
                    (v for v in per_object_dsc(segs, off_segs, n) if v == v), default=float("nan")
                )
        ratio_w = ratio_n = ratio_c = ""
        if official is not None and engine != "official":
            ratio_w = f"{official.wall_med / r.wall_med:.1f}x"
            ratio_n = f"{official.wall_med_no_overlay / r.wall_med:.1f}x"
            ratio_c = f"{official.cpu_med / r.cpu_med:.1f}x"
        elif r.overlay:
            ratio_n = f"(overlay {statistics.median(r.overlay):.2f} s)"
        torch_used = r.info.get("torch_imported", engine == "official")
        start_s = r.info.get("import_s", 0.0) + r.info.get("load_s", 0.0)
        mark = "~" if r.extrapolated else ""
        label = engine + (f" ({r.extrapolated})" if r.extrapolated else "")
        lines.append(
            f"| {label} | {mark}{r.wall_med:.2f} | {len(r.wall)} | {mark}{r.cpu_med:.2f} | {ratio_w} | "
            f"{ratio_n} | {ratio_c} | {start_s:.2f} | {max(r.rss_mb):.0f} | "
            f"{r.info.get('encoder_calls', '')} | "
            f"{'yes' if torch_used else 'no'} | {dsc:.4f} | {agree:.4f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- engine calls


def engine_calls(engines: list[str], calls: int, threads: int) -> str:
    """Markdown table: median seconds of one encoder call and one 8-box decoder call per engine."""
    from umedsam.inference.engines import open_engine

    image = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    boxes = np.array([[30, 30, 120, 140]] * 8, np.float32)
    lines = [
        f"| engine | encoder call (median of {calls}) | decoder call, 8 boxes |",
        "|---|---|---|",
    ]
    for engine in engines:
        if engine == "torch":  # as the CLI does for the torch engine
            import torch

            from umedsam.inference.backends.torch import tune_allocator

            torch.set_num_threads(threads)
            tune_allocator()
        backend = open_engine(engine_spec(engine, threads)).backend
        embedding = backend.encode(image)  # warm-up
        backend.decode(embedding, boxes)
        enc, dec = [], []
        for _ in range(calls):
            t0 = time.perf_counter()
            backend.encode(image)
            enc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            backend.decode(embedding, boxes)
            dec.append(time.perf_counter() - t0)
        lines.append(
            f"| {engine} | {statistics.median(enc):.3f} s | {statistics.median(dec):.3f} s |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


# --------------------------------------------------------------------------- accuracy mode


def accuracy(
    dev: Path, engines: list[str], threads: int | None, reference: Path | None, prefix: str = ""
) -> str:
    """Run each engine in-process over every dev case: DSC vs GT and agreement with the official outputs."""
    import torch

    from umedsam.data.npz import load_case
    from umedsam.inference.engines import open_engine
    from umedsam.inference.segment import segment_case

    if threads:
        torch.set_num_threads(threads)
    cases = sorted((dev / "imgs").glob(f"{prefix}*.npz"))
    lines = [
        "| engine | cases | mean DSC vs GT | official reference mean DSC vs GT | min per-object DSC vs official | cases with an object < 0.999 | cases identical to official | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine in engines:
        t0 = time.perf_counter()
        backend = open_engine(engine_spec(engine, threads)).backend
        dscs, refs, agree, worse, same = [], [], [], 0, 0
        for path in cases:
            case = load_case(path)
            segs = segment_case(backend, case).segs
            with np.load(dev / "gts" / path.name) as npz:
                gts = npz["gts"]
            n = case.num_objects
            dscs.append(_nanmean(per_object_dsc(segs, gts, n)))
            ref_path = reference / path.name if reference else None
            if ref_path is not None and ref_path.is_file():
                with np.load(ref_path) as npz:
                    ref = npz["segs"]
                refs.append(_nanmean(per_object_dsc(ref, gts, n)))
                obj = [v for v in per_object_dsc(segs, ref, n) if v == v]
                agree.append(min(obj) if obj else 1.0)
                worse += int(bool(obj) and min(obj) < 0.999)
                same += int(np.array_equal(segs, ref))
            print(f"  {engine} {path.name} DSC {dscs[-1]:.4f}", file=sys.stderr, flush=True)
        lines.append(
            f"| {engine} | {len(cases)} | {np.mean(dscs):.4f} | {np.mean(refs) if refs else float('nan'):.4f} | "
            f"{min(agree) if agree else float('nan'):.4f} | {worse} | {same} | "
            f"{time.perf_counter() - t0:.0f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _parse(argv: list[str]) -> argparse.Namespace:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev", type=Path, default=DEFAULT_SHARED / "data" / "dev")
    parser.add_argument(
        "--reference", type=Path, default=DEFAULT_SHARED / "reference" / "official_dev" / "segs"
    )
    parser.add_argument(
        "--dev-cases",
        default="4",
        help="number of dev cases (spread over modalities), 'all', or comma-separated names",
    )
    parser.add_argument(
        "--synthetic", default="all", help=f"comma-separated subset of {SYNTHETIC}, 'all' or 'none'"
    )
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--big-engines", default="openvino", help="engines timed on 3D cases")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--big-runs", type=int, default=1, help="runs (umedsam and official) on 3D cases"
    )
    parser.add_argument("--official-runs", type=int, default=3)
    parser.add_argument(
        "--official-max-slices",
        type=int,
        default=6,
        help="slices per object timed for the synthetic 3D cases (0: all)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--official-overlay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the official re-creation also saves its default 300-dpi overlay PNG (timed apart)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument(
        "--accuracy",
        action="store_true",
        help="DSC of each engine on the whole dev folder (in-process)",
    )
    parser.add_argument(
        "--accuracy-prefix", default="", help="only dev cases whose name starts with this"
    )
    parser.add_argument(
        "--calls", type=int, default=0, help="time N single encoder/decoder calls per engine"
    )
    parser.add_argument(
        "--work", type=Path, help="keep generated cases and outputs here (default: temp, deleted)"
    )
    return parser.parse_args(argv)


def _warm_caches(engines: list[str], args: argparse.Namespace) -> None:
    """Open each exported engine once, so that timed runs measure a normal (cached) start."""
    for engine in engines:
        if engine.rpartition(":")[2] != "torch":
            wall, _, _, _ = run_process(
                [
                    sys.executable,
                    "-c",
                    "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from infer_speed import engine_spec; "
                    "from umedsam.inference.engines import open_engine; "
                    f"open_engine(engine_spec({engine!r}, {args.threads}))",
                    str(Path(__file__).resolve().parent),
                ],
                args.timeout,
            )
            print(f"# {engine}: cache ready ({wall:.1f} s incl. any first-use export)", flush=True)


def _chosen_cases(
    args: argparse.Namespace, work: Path
) -> list[tuple[str, Path, Path | None, bool, bool]]:
    """(name, path, gts, is 3D, is synthetic) of the dev cases asked for and the synthetic ones
    (generated here)."""
    cases: list[tuple[str, Path, Path | None, bool, bool]] = []
    all_dev = sorted((args.dev / "imgs").glob("*.npz"))
    if args.dev_cases == "all":
        chosen = all_dev
    elif args.dev_cases.isdigit():
        by_kind: dict[str, Path] = {}
        for p in all_dev:
            by_kind.setdefault("_".join(p.stem.split("_")[:2]), p)
        chosen = list(by_kind.values())[: int(args.dev_cases)]
    else:
        chosen = [args.dev / "imgs" / n for n in args.dev_cases.split(",") if n]
    for p in chosen:
        cases.append((p.name, p, args.dev / "gts" / p.name, p.name.startswith("3D"), False))
    synth = (
        SYNTHETIC
        if args.synthetic == "all"
        else tuple(s for s in args.synthetic.split(",") if s and s != "none")
    )
    for s in synth:
        t0 = time.perf_counter()
        path = make_synthetic(s, work / "synthetic")
        print(f"# generated {path.name} in {time.perf_counter() - t0:.1f} s", flush=True)
        cases.append(
            (path.name, path, work / "synthetic" / "gts" / path.name, s.endswith("3d"), True)
        )
    return cases


def _time_case(case: tuple, engines: list[str], work: Path, args: argparse.Namespace) -> None:
    """Time the official re-creation and the engines on one case; print its report."""
    name, path, gts, big, synthetic = case
    big_engines = [e for e in args.big_engines.split(",") if e]
    rows: dict[str, Runs] = {}
    k = args.official_max_slices if big and synthetic and args.official_max_slices else None
    print(f"# {name}: official (load {load_avg()})", flush=True)
    off_runs = args.big_runs if big or synthetic else args.official_runs
    rows["official"] = time_official(
        path, work, off_runs, args.threads, args.timeout, k, args.official_overlay
    )
    heavy = big or synthetic  # large cases: fewer engines and runs (see --big-*)
    for engine in big_engines if heavy else engines:
        print(f"# {name}: {engine} (load {load_avg()})", flush=True)
        rows[engine] = time_engine(
            engine, path, work, args.big_runs if heavy else args.runs, args.threads, args.timeout
        )
    print(report_case(name, gts, rows) + "\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse flags and run the benchmark (or the worker)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        p = argparse.ArgumentParser()
        p.add_argument("engine")
        p.add_argument("case", type=Path)
        p.add_argument("out", type=Path)
        p.add_argument("--threads", type=int)
        a = p.parse_args(argv[1:])
        return worker(a.engine, a.case, a.out, a.threads)
    args = _parse(argv)
    engines = [e for e in args.engines.split(",") if e]
    print(
        f"# machine: {os.cpu_count()} CPUs, load average {load_avg()}, threads {args.threads}",
        flush=True,
    )
    if args.accuracy:
        print(accuracy(args.dev, engines, args.threads, args.reference, args.accuracy_prefix))
        return 0
    if args.calls:
        print(engine_calls(engines, args.calls, args.threads))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="umedsam-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        _warm_caches(engines, args)
        for case in _chosen_cases(args, work):
            _time_case(case, engines, work, args)
        print(f"# done; load average {load_avg()}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
