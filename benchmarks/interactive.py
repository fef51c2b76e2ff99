"""Interactive segmentation on dev: the CVPR 2025 click protocol, simulated scribbles, latency.

Protocol (``--protocol clicks``, the CVPR 2025 interactive challenge's ``CVPR25_iter_eval.py``):
step 1 segments every object from its box; steps 2-6 each add one click per object at the
distance-transform maximum of the largest connected error component (prediction XOR ground
truth; 26-connected in 3D, 8-connected in 2D), foreground where the ground truth is the object,
else background (``umedsam.data.interaction.challenge_click``). Every step writes the case in
the challenge's interactive npz format (``boxes``, pickled ``clicks``/``clicks_order``,
``prev_pred``) and reads it back through ``umedsam.data.npz.load_case``, as ``umedsam predict``
does. Per step: DSC and NSD (``umedsam.evaluation.metrics.case_metrics``, the official rules:
NSD 0 where the case DSC <= 0.2); DSC_AUC and NSD_AUC by the trapezoid rule over the 5 click
steps (x = 0..4, at most 4.0); final DSC/NSD; seconds per step. 3D boxes are, by default, the
challenge's own (``--box-format cvpr25``: made from the ground truth as its ``get_boxes.py`` makes
them, ``umedsam.data.interaction.challenge_boxes_3d``: the tight box on the slice of the median
voxel, with a seeded margin of 0-5 px at 256 scale); or the dev boxes (3D extents) as CVPR 2025
dicts (``--box-format dicts``: ``z_mid`` = the middle slice and the extent's x/y range as its box;
step 1 then equals box-only LiteMedSAM) or as the (N, 6) array the format also accepts
(``--box-format array``: every model but the official one then keeps propagated boxes inside
them). 2D boxes are the dev boxes. A volume's slice embeddings are kept across its steps.

Scribbles (``--protocol scribbles``, 2D cases): per object a simulated scribble of each family
(``umedsam.data.interaction.simulate_scribble``, seeded), written as CVPR 2024 scribble cases:
scribble only, scribble + box, positive + background strokes; and the naive baseline of today's
user: a box drawn around the positive strokes, segmented by LiteMedSAM.

Latency (``--protocol latency``): one 2D correction (prompt encoder + decoder, embedding cached),
a first prediction from a scribble without and with the mirror pass (both embeddings cached; the
mirror image's one-off encoding timed apart), and one 3D correction re-propagating 40 slices with
cached embeddings, medians of 7.

Models: ``--model litemedsam --untrained-prompts`` gives LiteMedSAM's own point/mask prompts
(untrained); ``--model umedsam_interactive`` (or ``--checkpoint``) the trained model.

    python benchmarks/interactive.py --protocol clicks --model litemedsam --untrained-prompts
    python benchmarks/interactive.py --protocol clicks --model umedsam_interactive --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DEV = REPO.parent / "shared" / "data" / "dev"


def _engine(args: argparse.Namespace) -> Any:
    from umedsam.inference.engines import EngineSpec, open_engine

    spec = EngineSpec(args.model, args.checkpoint, args.engine, args.threads)
    return open_engine(spec)


def _case_metrics(segs: np.ndarray, gts: np.ndarray, spacing: Any) -> tuple[float, float]:
    from umedsam.evaluation.metrics import case_metrics

    m = case_metrics(segs.astype(np.int64), gts.astype(np.int64), spacing)
    return float(m.dsc), float(m.nsd)


def _boxes_entry(boxes: np.ndarray, is_3d: bool, box_format: str, gts: np.ndarray) -> Any:
    """The case's boxes as the interactive format holds them (3D: the challenge's dicts made
    from the ground truth, the dev boxes as dicts, or the dev boxes as an (N, 6) array)."""
    if not is_3d or box_format == "array":
        return boxes
    if box_format == "cvpr25":
        from umedsam.data.interaction import challenge_boxes_3d

        labels = [int(v) for v in np.unique(gts)[1:]]
        if labels != list(range(1, len(boxes) + 1)):
            raise ValueError(f"labels {labels} are not 1..{len(boxes)}, one per box")
        return [{k: np.int64(v) for k, v in b.items()} for b in challenge_boxes_3d(gts)]
    from umedsam.inference.propagation import key_slices

    mids = key_slices(boxes)
    keys = ("z_mid_x_min", "z_mid_y_min", "z_min", "z_mid_x_max", "z_mid_y_max", "z_max")
    return [
        {**{k: np.int64(v) for k, v in zip(keys, b, strict=True)}, "z_mid": np.int64(z)}
        for b, z in zip(boxes, mids, strict=True)
    ]


def _box_prompts(case: Any) -> Any:
    """A box-only case's boxes as interactive prompts (the same masks as box-only prediction)."""
    from umedsam.data.npz import CasePrompts

    n = case.num_objects
    empty = tuple(np.zeros((0, 3), np.int64) for _ in range(n))
    return CasePrompts(
        labels=np.arange(1, n + 1),
        boxes=case.boxes.astype(np.float64),
        start_slices=None,
        clicks=empty,
        click_labels=tuple(np.zeros(0, np.int64) for _ in range(n)),
    )


def click_protocol(args: argparse.Namespace) -> dict[str, Any]:
    """Run the CVPR 2025 protocol on every dev case; per-case rows and a summary."""
    from umedsam.models.cards import bounded_propagation

    engine = _engine(args)
    clip = bounded_propagation(args.model, args.checkpoint)
    cases = sorted((args.dev / "imgs").glob(f"{args.prefix}*.npz"))[args.offset :: args.every]
    tmp = Path(tempfile.mkdtemp(prefix="umedsam-interactive-"))
    rows = []
    for path in cases:
        rows.append(_click_case(path, args, engine.backend, clip, tmp))
        if not args.quiet:
            print(
                f"{path.name:60s} DSC " + " ".join(f"{d:.3f}" for d in rows[-1]["dsc"]),
                file=sys.stderr,
                flush=True,
            )
    return {"rows": rows, "summary": summarize_clicks(rows)}


def _click_case(  # type: ignore[no-untyped-def]
    path: Path, args: argparse.Namespace, backend, clip: bool, tmp: Path
) -> dict[str, Any]:
    """One case's row of the click protocol: the box, then five clicks on the largest error
    region of each object, each step written as the challenge writes it and predicted."""
    from umedsam.data.interaction import challenge_click
    from umedsam.data.naming import modality_from_name
    from umedsam.data.npz import load_case
    from umedsam.inference.interactive import segment_interactive_case
    from umedsam.inference.propagation import SliceEmbeddingCache
    from umedsam.inference.segment import segment_case

    base = load_case(path)
    with np.load(args.dev / "gts" / path.name) as g:
        gts = g["gts"]
        spacing = g["spacing"] if "spacing" in g.files else None
    n = base.num_objects
    clicks: list[dict[str, list[list[int]]]] = [{"fg": [], "bg": []} for _ in range(n)]
    order: list[list[str]] = [[] for _ in range(n)]
    cache = SliceEmbeddingCache(4096.0) if base.is_3d else None
    prev = None
    dscs, nsds, seconds = [], [], []
    for step in range(6):
        extra: dict[str, Any] = {}
        if step > 0:
            for i in range(n):
                click = challenge_click(prev == i + 1, gts == i + 1)
                if click is not None:
                    kind = "fg" if click.positive else "bg"
                    clicks[i][kind].append(list(click.index))
                    order[i].append(kind)
            extra = {
                "clicks": np.array(clicks, dtype=object),
                "clicks_order": np.array(order, dtype=object),
                "prev_pred": prev,
            }
        step_file = tmp / path.name
        arrays = {
            "imgs": base.imgs,
            "boxes": _boxes_entry(base.boxes, base.is_3d, args.box_format, gts),
        }
        if base.spacing is not None:
            arrays["spacing"] = base.spacing
        np.savez(step_file, **arrays, **extra)
        start = time.perf_counter()
        case = load_case(step_file)
        if case.prompts is None and case.is_3d:  # step 1, array boxes: keep the embeddings
            case = dataclasses.replace(case, prompts=_box_prompts(case))
        if case.prompts is None:  # a 2D step 1: boxes only, the official path
            segs = segment_case(backend, case).segs
        else:
            segs, _ = segment_interactive_case(
                backend,
                case,
                mask_prompts=not args.no_mask_prompt,
                embeddings=cache,
                clip_to_box=clip,
            )
        seconds.append(time.perf_counter() - start)
        dsc, nsd = _case_metrics(segs, gts, spacing)
        dscs.append(dsc)
        nsds.append(nsd)
        prev = segs
    return {
        "case": path.name,
        "modality": modality_from_name(path.name),
        "dsc": dscs,
        "nsd": nsds,
        "seconds": seconds,
        "dsc_auc": float(np.trapezoid(dscs[1:], dx=1.0)),
        "nsd_auc": float(np.trapezoid(nsds[1:], dx=1.0)),
    }


def summarize_clicks(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean DSC/NSD per step, AUCs and seconds, overall and per modality."""

    def block(sel: list[dict[str, Any]]) -> dict[str, Any]:
        dsc = np.array([r["dsc"] for r in sel])
        nsd = np.array([r["nsd"] for r in sel])
        return {
            "cases": len(sel),
            "dsc_per_step": dsc.mean(0).round(4).tolist(),
            "nsd_per_step": nsd.mean(0).round(4).tolist(),
            "dsc_auc": round(float(np.mean([r["dsc_auc"] for r in sel])), 4),
            "nsd_auc": round(float(np.mean([r["nsd_auc"] for r in sel])), 4),
            "final_dsc": round(float(dsc[:, -1].mean()), 4),
            "final_nsd": round(float(nsd[:, -1].mean()), 4),
            "rises_every_click": bool((np.diff(dsc.mean(0)) > 0).all()),
            "seconds_per_step": round(float(np.mean([np.mean(r["seconds"]) for r in sel])), 3),
        }

    out = {"all": block(rows)}
    for mod in sorted({r["modality"] for r in rows}):
        out[mod] = block([r for r in rows if r["modality"] == mod])
    return out


SCRIBBLE_VARIANTS = ("scribble", "scribble_box", "scribble_background", "stroke_box_litemedsam")


def scribble_protocol(args: argparse.Namespace) -> dict[str, Any]:
    """Simulated scribbles on the 2D dev cases: scribble only, + box, + background, baseline."""
    from umedsam.data.interaction import simulate_scribble
    from umedsam.data.naming import modality_from_name
    from umedsam.data.npz import SCRIBBLE_BACKGROUND, load_case
    from umedsam.inference.interactive import segment_interactive_case
    from umedsam.inference.segment import segment_case

    engine = _engine(args)
    box_engine = None
    if args.model != "litemedsam" or args.checkpoint is not None:
        from umedsam.inference.engines import EngineSpec, open_engine

        box_engine = open_engine(EngineSpec("litemedsam", None, args.engine, args.threads))
    tmp = Path(tempfile.mkdtemp(prefix="umedsam-scribbles-"))
    rows = []
    paths = sorted((args.dev / "imgs").glob(f"{args.prefix or '2D'}*.npz"))
    for path in [p for p in paths if p.name.startswith("2D")][args.offset :: args.every]:
        base = load_case(path)
        if base.is_3d:
            continue
        with np.load(args.dev / "gts" / path.name) as g:
            gts = g["gts"]
        n = base.num_objects
        row: dict[str, Any] = {"case": path.name, "modality": modality_from_name(path.name)}
        for family in ("centerline", "curve", "contour"):
            rng = np.random.default_rng([sum(map(ord, path.name)), len(family)])  # seeded
            scribbles = np.zeros(gts.shape, np.int32)
            background = np.zeros(gts.shape, np.int32)
            for i in range(n):
                stroke = simulate_scribble(gts == i + 1, rng, family)
                scribbles[stroke & (scribbles == 0)] = i + 1
                background[simulate_scribble(gts == i + 1, rng, "background") & (gts == 0)] = 1
            present = [i for i in range(n) if (scribbles == i + 1).any()]
            if len(present) < n:  # an object too small for this stroke family: skip the family
                row[family] = None
                continue
            variants = {}
            for name, extra in (
                ("scribble", {}),
                ("scribble_box", {"boxes": base.boxes}),
                ("scribble_background", {"bg": True}),
            ):
                if name not in args.variants:
                    continue
                smap = scribbles.copy()
                if extra.get("bg"):
                    smap[(background > 0) & (smap == 0)] = SCRIBBLE_BACKGROUND
                arrays: dict[str, Any] = {"imgs": base.imgs, "scribbles": smap}
                if "boxes" in extra:
                    arrays["boxes"] = extra["boxes"]
                np.savez(tmp / path.name, **arrays)
                segs, _ = segment_interactive_case(engine.backend, load_case(tmp / path.name))
                variants[name] = _case_metrics(segs, gts, None)[0]
            row[family] = variants
            if "stroke_box_litemedsam" not in args.variants:
                continue
            # today's workaround: a box around the positive strokes, segmented by LiteMedSAM
            boxes = []
            for i in range(n):
                ys, xs = np.nonzero(scribbles == i + 1)
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            np.savez(tmp / path.name, imgs=base.imgs, boxes=np.array(boxes))
            baseline = segment_case((box_engine or engine).backend, load_case(tmp / path.name))
            variants["stroke_box_litemedsam"] = _case_metrics(baseline.segs, gts, None)[0]
        box_only = segment_case(engine.backend, base)
        row["box"] = _case_metrics(box_only.segs, gts, None)[0]
        rows.append(row)
        if not args.quiet:
            print(f"{path.name:60s} box {row['box']:.3f}", file=sys.stderr, flush=True)
    return {"rows": rows, "summary": summarize_scribbles(rows)}


def summarize_scribbles(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean DSC per family and variant, with the box-only DSC of the same cases."""
    out: dict[str, Any] = {}
    for family in ("centerline", "curve", "contour"):
        sel = [r for r in rows if r.get(family)]
        if not sel:
            continue
        out[family] = {
            "cases": len(sel),
            "box": round(float(np.mean([r["box"] for r in sel])), 4),
            **{k: round(float(np.mean([r[family][k] for r in sel])), 4) for k in sel[0][family]},
        }
    return out


def latency(args: argparse.Namespace) -> dict[str, Any]:
    """Median seconds of a 2D correction, a first scribble prediction and a 3D correction."""
    from umedsam.data.npz import CasePrompts, load_case
    from umedsam.inference.interactive import segment_interactive_volume
    from umedsam.inference.predictor import Predictor
    from umedsam.inference.propagation import SliceEmbeddingCache

    engine = _engine(args)
    case2d = load_case(next((args.dev / "imgs").glob("2DBox_US_*.npz")))
    predictor = Predictor(engine.backend)
    predictor.set_image(case2d.imgs)
    box = case2d.boxes[:1]
    first = predictor.predict(box, return_logits=False)
    cx, cy = (box[0, 0] + box[0, 2]) / 2, (box[0, 1] + box[0, 3]) / 2
    times2d = []
    for _ in range(8):
        start = time.perf_counter()
        predictor.predict(
            box,
            points=[np.array([[cx, cy]])],
            point_labels=[np.array([1])],
            mask_input=first.low_res_logits,
            return_logits=False,
        )
        times2d.append(time.perf_counter() - start)
    # a first prediction from a scribble (a stroke across the box's middle), without and with
    # the mirror pass; the mirror image is encoded once per image (timed on its own)
    stroke = np.zeros(case2d.imgs.shape[:2], np.int8)
    stroke[int(cy), int(box[0, 0] + (box[0, 2] - box[0, 0]) / 4) : int(box[0, 2] - 1)] = 1
    start = time.perf_counter()
    predictor.mirror()
    mirror_encode = time.perf_counter() - start
    scribble_times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(8):
        for mirrored in (False, True):
            start = time.perf_counter()
            predictor.predict(scribbles=[stroke], mirror_strokes=mirrored, return_logits=False)
            scribble_times[mirrored].append(time.perf_counter() - start)
    vol_path = max(
        (args.dev / "imgs").glob("3DBox_*.npz"), key=lambda p: load_case(p).imgs.shape[0]
    )
    vol = load_case(vol_path)
    d = vol.imgs.shape[0]
    z0 = max(0, d // 2 - 20)
    box3 = np.array([[*vol.boxes[0, :2], z0, *vol.boxes[0, 3:5], min(d - 1, z0 + 39)]], float)
    cache = SliceEmbeddingCache(8192.0)
    prompts = CasePrompts(
        np.array([1]), box3, None, (np.zeros((0, 3), np.int64),), (np.zeros(0, np.int64),)
    )
    segs, _ = segment_interactive_volume(engine.backend, vol.imgs, prompts, embeddings=cache)
    zc = int(box3[0, 2] + 10)
    ys, xs = np.nonzero(segs[zc])
    click = np.array([[zc, int(ys.mean()), int(xs.mean())]]) if ys.size else np.array([[zc, 0, 0]])
    corrected = CasePrompts(np.array([1]), box3, None, (click,), (np.array([1]),), None, segs)
    times3d = []
    for _ in range(7):
        start = time.perf_counter()
        segment_interactive_volume(engine.backend, vol.imgs, corrected, embeddings=cache)
        times3d.append(time.perf_counter() - start)
    return {
        "engine": engine.name,
        "correction_2d_s": round(statistics.median(times2d[1:]), 4),
        "correction_3d_40_slices_s": round(statistics.median(times3d[1:]), 3),
        "scribble_first_s": round(statistics.median(scribble_times[False][1:]), 4),
        "scribble_first_mirror_s": round(statistics.median(scribble_times[True][1:]), 4),
        "mirror_image_encode_s": round(mirror_encode, 4),
        "volume": vol_path.name,
        "slices": int(box3[0, 5] - box3[0, 2] + 1),
    }


def plot_clicks(results: list[Path], out: Path) -> None:
    """DSC after the box and each click, overall and per modality, one line per result file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [(p.stem, json.loads(p.read_text())["summary"]) for p in results]
    mods = [m for m in data[0][1] if m != "all"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, summary in data:
        axes[0].plot(range(6), summary["all"]["dsc_per_step"], marker="o", label=name)
    axes[0].set_xticks(range(6), ["box", "1", "2", "3", "4", "5"])
    axes[0].set_xlabel("clicks after the box")
    axes[0].set_ylabel("mean DSC, 40 dev cases")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    width = 0.8 / len(data)
    for k, (name, summary) in enumerate(data):
        finals = [summary[m]["final_dsc"] for m in mods]
        axes[1].bar(np.arange(len(mods)) + k * width, finals, width, label=name)
    axes[1].set_xticks(np.arange(len(mods)) + 0.4 - width / 2, mods, rotation=30, fontsize=8)
    axes[1].set_ylabel("DSC after 5 clicks")
    axes[1].grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def markdown_clicks(path: Path) -> str:
    """Markdown table of a click-protocol result: DSC per step, AUC, final DSC/NSD per modality."""
    summary = json.loads(path.read_text())["summary"]
    lines = [
        "| modality (cases) | box | +1 | +2 | +3 | +4 | +5 clicks | DSC_AUC | NSD_AUC | final NSD |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, block in summary.items():
        steps = " | ".join(f"{v:.4f}" for v in block["dsc_per_step"])
        label = f"**all ({block['cases']})**" if name == "all" else f"{name} ({block['cases']})"
        lines.append(
            f"| {label} | {steps} | {block['dsc_auc']:.3f} | {block['nsd_auc']:.3f} | "
            f"{block['final_nsd']:.4f} |"
        )
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """A path as recorded in results: relative to the repository's parent when inside it."""
    try:
        return os.path.relpath(path.resolve(), REPO)
    except ValueError:
        return str(path)


SWITCHES = {
    "click-boxes": (
        "umedsam.inference.interactive",
        "CLICK_BOXES",
        "retry a 3D slice whose mask contradicts its clicks with boxes that agree with them",
    ),
    "thin-strokes": (
        "umedsam.inference.thin",
        "THIN_STROKES",
        "segment first predictions from strokes on a ridge as thin structures",
    ),
    "thin-contradicted": (
        "umedsam.inference.thin",
        "THIN_WHEN_CONTRADICTED",
        "trace a stroke on a ridge as a thin structure when the model's mask covers its "
        "negative strokes",
    ),
    "local-clicks": (
        "umedsam.inference.click_locality",
        "LOCAL_CLICKS_2D",
        "2D: keep only the changes of a correction that touch a click",
    ),
    "local-strokes": (
        "umedsam.inference.click_locality",
        "LOCAL_STROKES_2D",
        "2D: keep only the changes of a correction that touch a stroke",
    ),
    "cut-clicked-start": (
        "umedsam.inference.interactive",
        "CUT_CLICKED_START",
        "3D: cut a correction's start slice at the propagated threshold too",
    ),
    "mirror-slices": (
        "umedsam.inference.interactive",
        "MIRROR_SLICES",
        "3D: decode every slice also on its mirror image and average the two",
    ),
    "keep-agreeing": (
        "umedsam.inference.agreement",
        "KEEP_AGREEING_2D",
        "2D: a correction whose prompts all agree with the previous mask keeps it",
    ),
    "mirror-strokes": (
        "umedsam.inference.predictor",
        "MIRROR_STROKES",
        "average first predictions from strokes over the image and its mirror image",
    ),
}
"""On/off flags of the package's rules: flag -> (module, switch, what it does)."""


def add_switches(parser: argparse.ArgumentParser) -> None:
    """One ``--FLAG on|off`` option per entry of :data:`SWITCHES`, and the two stroke rules."""
    for flag, (_, switch, what) in SWITCHES.items():
        parser.add_argument(
            f"--{flag}", choices=["on", "off"], help=f"{what} (default: the package's {switch})"
        )
    parser.add_argument(
        "--stroke-components",
        choices=["keep", "all"],
        help="first predictions from strokes keep only the mask pieces that hold a positive "
        "stroke, or all of the mask (default: the package's KEEP_STROKE_COMPONENTS)",
    )
    parser.add_argument(
        "--background-strokes",
        choices=["nearest", "all"],
        help="background strokes (id 1000) as negative prompts for the objects nearest to "
        "them or for every object (default: the package's BACKGROUND_STROKES)",
    )


def apply_switches(args: argparse.Namespace) -> None:
    """Set the package's switches and stroke rules the command line names."""
    import importlib

    for flag, (module, switch, _) in SWITCHES.items():
        value = getattr(args, flag.replace("-", "_"))
        if value is not None:
            setattr(importlib.import_module(module), switch, value == "on")
    if args.stroke_components is not None:
        import umedsam.inference.predictor as predictor

        predictor.KEEP_STROKE_COMPONENTS = args.stroke_components == "keep"
    if args.background_strokes is not None:
        import umedsam.data.strokes as strokes

        strokes.BACKGROUND_STROKES = args.background_strokes


def _parser() -> argparse.ArgumentParser:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=["clicks", "scribbles", "latency"], default="clicks")
    parser.add_argument("--dev", type=Path, default=DEFAULT_DEV)
    parser.add_argument("--prefix", default="", help="only cases whose name starts with this")
    parser.add_argument(
        "--every", type=int, default=1, help="every n-th of the sorted cases (scribbles: 2D cases)"
    )
    parser.add_argument("--offset", type=int, default=0, help="with --every: start at this case")
    parser.add_argument("--model", default="umedsam_interactive")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--untrained-prompts",
        action="store_true",
        help="let a box-trained model take clicks and masks (LiteMedSAM's untrained prompts)",
    )
    parser.add_argument(
        "--no-mask-prompt", action="store_true", help="never feed the previous mask back"
    )
    parser.add_argument("--json", type=Path, help="write rows and summary here")
    parser.add_argument(
        "--plot", type=Path, nargs="+", metavar="JSON", help="plot these click-protocol results"
    )
    parser.add_argument("--plot-out", type=Path, default=Path("interactive_clicks.png"))
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=SCRIBBLE_VARIANTS,
        default=list(SCRIBBLE_VARIANTS),
        help="scribble protocol: the variants to run (default: all)",
    )
    parser.add_argument(
        "--box-format",
        choices=["cvpr25", "dicts", "array"],
        default="cvpr25",
        help="3D boxes: the challenge's own (cvpr25, default: made from the ground truth as its "
        "get_boxes.py makes them), the dev boxes as z_mid dicts (dicts: the middle slice, the "
        "extent's x/y range as its box), or the dev boxes as (N, 6) extents (array)",
    )
    _add_rule_flags(parser)
    add_switches(parser)
    parser.add_argument("-q", "--quiet", action="store_true")
    return parser


def _add_rule_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that set the 3D correction rule's constants for one run."""
    parser.add_argument(
        "--click-reach",
        type=int,
        help="slices on each side a 3D click reaches (default: the package's CLICK_REACH)",
    )
    parser.add_argument(
        "--settle-dsc",
        type=float,
        help="a 3D correction stops re-propagating where the new mask agrees this well with the "
        "previous one (default: the package's SETTLE_DSC; 0 or less: propagate to the ends)",
    )
    parser.add_argument(
        "--correction-reach",
        type=int,
        help="slices on each side a 3D correction re-propagates (default: the package's "
        "CORRECTION_REACH; a negative value: no bound)",
    )
    parser.add_argument(
        "--propagated-threshold",
        type=float,
        help="3D: logit threshold of the masks on slices other than an object's start slice "
        "(default: the package's PROPAGATED_THRESHOLD)",
    )


def _set_rule(args: argparse.Namespace) -> None:
    """Set the 3D correction rule's constants the flags name."""
    import umedsam.inference.interactive as interactive

    if args.click_reach is not None:
        interactive.CLICK_REACH = args.click_reach
    if args.settle_dsc is not None:
        interactive.SETTLE_DSC = args.settle_dsc if args.settle_dsc > 0 else None
    if args.correction_reach is not None:
        interactive.CORRECTION_REACH = args.correction_reach if args.correction_reach >= 0 else None
    if args.propagated_threshold is not None:
        interactive.PROPAGATED_THRESHOLD = args.propagated_threshold


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the protocol, print the summary and optionally write JSON."""
    parser = _parser()
    args = parser.parse_args(argv)
    apply_switches(args)
    _set_rule(args)
    if args.plot:
        plot_clicks(args.plot, args.plot_out)
        for path in args.plot:
            print(f"\n{path.stem}\n\n{markdown_clicks(path)}")
        return 0
    from dataclasses import replace

    from umedsam.models.cards import PROMPT_KINDS, card, model_prompts, register_card

    if args.untrained_prompts:
        register_card(replace(card(args.model), prompts=PROMPT_KINDS))
    if args.protocol != "latency" and set(model_prompts(args.model)) != set(PROMPT_KINDS):
        parser.error(f"{args.model} takes {model_prompts(args.model)}; add --untrained-prompts")
    runner = {"clicks": click_protocol, "scribbles": scribble_protocol, "latency": latency}
    result = runner[args.protocol](args)
    result["config"] = {
        k: _shown(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"
    }
    print(json.dumps(result.get("summary", result), indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
