"""Benchmark: does the per-object confidence predict the true DSC, and what does it cost?

Runs LiteMedSAM once per case of a challenge folder (``imgs/`` + ``gts/``) and records, per object,
every score the confidence variants need (IoU head, entropy score, jittered-box ensemble agreement
for the first k members, mirrored-image agreement), the true DSC of the base mask and of the
ensemble-mean mask, and the time of each step. Records are cached in ``<out>/records.json`` (one
entry per case), so variants are compared without predicting again; ``--analyze-only`` re-reads it.

Usage (from the repository root)::

    python benchmarks/uncertainty.py --data ../shared/data/dev --out bench_unc --ensemble 4 --flip

Prints a markdown table (variant, Spearman, failure AUROC, added time per object, added time as a
share of prediction time on 2D cases) and writes it to ``<out>/summary.md`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umedsam.data.npz import load_case
from umedsam.data.transforms import boxes_to_model_frame, preprocess_image, resized_hw
from umedsam.evaluation.confidence import FAILURE_DSC, failure_auroc, spearman
from umedsam.evaluation.metrics import dice
from umedsam.inference import uncertainty as U
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.predictor import Predictor
from umedsam.inference.propagation import paint_labels
from umedsam.inference.segment import (
    add_image_uncertainty,
    label_dtype,
    segment_volume_case,
)
from umedsam.models.pretrained import load_pretrained

logger = logging.getLogger("benchmarks.uncertainty")

MEMBER_COUNTS = (1, 2, 4, 8)


def _dsc_per_label(segs: np.ndarray, gts: np.ndarray, n: int) -> list[float]:
    return [float(dice(segs == i, gts == i)) for i in range(1, n + 1)]


def _mean_mask_dsc(
    base: torch.Tensor, members: torch.Tensor, orig_hw: tuple[int, int], gts: np.ndarray
) -> list[float]:
    """True DSC per object when the ensemble-mean probability (> 0.5) is the mask."""
    mean, _ = U.ensemble_mean_var(torch.cat([base[None], members]))
    segs = np.zeros(orig_hw, dtype=label_dtype(mean.shape[0]))
    for lo in range(0, mean.shape[0], 16):
        up = torch.nn.functional.interpolate(
            mean[lo : lo + 16, None], size=orig_hw, mode="bilinear", align_corners=False
        )
        paint_labels(segs, (up[:, 0] > 0.5).numpy(), np.arange(lo + 1, lo + 1 + up.shape[0]))
    return _dsc_per_label(segs, gts, mean.shape[0])


def run_2d(backend: TorchBackend, case: Any, gts: np.ndarray, k: int, flip: bool) -> dict[str, Any]:
    """Predict one 2D case and record every score and timing."""
    image, boxes = case.imgs, case.boxes
    n = len(boxes)
    t0 = time.perf_counter()
    predictor = Predictor(backend)
    predictor.set_image(image)
    pred = predictor.predict(boxes, return_logits=False)
    segs = np.zeros(image.shape[:2], dtype=label_dtype(n))
    paint_labels(segs, pred.masks, np.arange(1, n + 1))
    t_pred = time.perf_counter() - t0

    t0 = time.perf_counter()
    default = add_image_uncertainty(predictor, image, boxes, pred, segs, U.UncertaintyConfig())
    t_default = time.perf_counter() - t0
    assert default.uncertainty is not None
    assert np.array_equal(default.segs, segs)

    orig_hw = (int(image.shape[0]), int(image.shape[1]))
    new_hw = resized_hw(orig_hw, predictor.image_size)
    boxes_model = boxes_to_model_frame(boxes, orig_hw, predictor.image_size)
    base = U.crop_to_content(pred.low_res_logits[:, 0], new_hw).float()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    jit = U.decode_ensemble(
        backend, predictor.embedding, boxes_model, new_hw, U.UncertaintyConfig(ensemble=k), rng
    )
    t_jitter = time.perf_counter() - t0
    record: dict[str, Any] = {}
    if flip:
        t0 = time.perf_counter()
        array, _ = preprocess_image(np.ascontiguousarray(image[:, ::-1]), predictor.image_size)
        flipped = backend.encode(array)
        fl = U.decode_ensemble(
            backend,
            predictor.embedding,
            boxes_model,
            new_hw,
            U.UncertaintyConfig(flip=True),
            rng,
            flipped,
        )
        record["t_flip"] = time.perf_counter() - t0
        record["agree_flip"] = U.mask_agreement(base > 0, fl).tolist()
        record["dsc_mean_flip"] = _mean_mask_dsc(base, torch.cat([jit, fl]), orig_hw, gts)
    for m in MEMBER_COUNTS:
        if m <= k:
            record[f"agree_{m}"] = U.mask_agreement(base > 0, jit[:m]).tolist()
    record["dsc_mean_jitter"] = _mean_mask_dsc(base, jit, orig_hw, gts)
    unc = default.uncertainty
    record.update(
        case=case.name,
        is_3d=False,
        n=n,
        t_pred=t_pred,
        t_default=t_default,
        t_jitter=t_jitter,
        k=k,
        iou=unc.predicted_iou.tolist(),
        entropy=unc.scores.entropy_confidence.tolist(),
        expected_dice=unc.scores.expected_dice.tolist(),
        box=unc.scores.box_agreement.tolist(),
        area=unc.area.tolist(),
        dsc=_dsc_per_label(segs, gts, n),
    )
    return record


def run_3d(backend: TorchBackend, case: Any, gts: np.ndarray) -> dict[str, Any]:
    """Predict one 3D case with uncertainty (entropy only in 3D); the added time is measured
    inside (``CaseUncertainty.seconds``), the prediction time is the rest."""
    t0 = time.perf_counter()
    res = segment_volume_case(backend, case.imgs, case.boxes, uncertainty=U.UncertaintyConfig())
    t_total = time.perf_counter() - t0
    assert res.uncertainty is not None
    n = len(case.boxes)
    return {
        "case": case.name,
        "is_3d": True,
        "n": n,
        "t_pred": t_total - res.uncertainty.seconds,
        "t_default": res.uncertainty.seconds,
        "iou": res.uncertainty.predicted_iou.tolist(),
        "iou_key": res.iou.tolist(),
        "entropy": res.uncertainty.scores.entropy_confidence.tolist(),
        "expected_dice": res.uncertainty.scores.expected_dice.tolist(),
        "box": res.uncertainty.scores.box_agreement.tolist(),
        "area": res.uncertainty.area.tolist(),
        "dsc": _dsc_per_label(res.segs, gts, n),
    }


def collect(
    data: Path,
    out: Path,
    k: int,
    flip: bool,
    limit: int | None,
    shard: tuple[int, int] = (0, 1),
    pattern: str = "*.npz",
) -> list[dict[str, Any]]:
    """Run (or reuse from ``out/records-<shard>.json``) the cases of ``data/imgs``.

    ``shard = (i, n)`` takes every n-th case from the i-th, so n processes can share the work.
    """
    tag = "" if pattern == "*.npz" else "-" + "".join(c for c in pattern if c.isalnum())
    cache_path = out / f"records{tag}-{shard[0]}of{shard[1]}.json"
    records: dict[str, dict[str, Any]] = {}
    if cache_path.is_file():
        records = {r["case"]: r for r in json.loads(cache_path.read_text())}
    model, _ = load_pretrained("litemedsam")
    backend = TorchBackend(model)
    paths = sorted((data / "imgs").glob(pattern))[:limit][shard[0] :: shard[1]]
    for i, path in enumerate(paths):
        if path.name in records and (records[path.name]["is_3d"] or records[path.name]["k"] >= k):
            continue
        case = load_case(path)
        with np.load(data / "gts" / path.name) as g:
            gts = g["gts"]
        rec = run_3d(backend, case, gts) if case.is_3d else run_2d(backend, case, gts, k, flip)
        records[path.name] = rec
        cache_path.write_text(json.dumps(list(records.values())))
        logger.info(
            "%d/%d %s: %d objects, predict %.2f s, default +%.3f s",
            i + 1,
            len(paths),
            path.name,
            rec["n"],
            rec["t_pred"],
            rec["t_default"],
        )
    return [records[p.name] for p in paths if p.name in records]


def _flat(records: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.asarray([v for r in records for v in r[key]], dtype=np.float64)


def variant_scores(records: list[dict[str, Any]], k: int) -> dict[str, np.ndarray]:
    """Confidence per object for every variant the records support (k = ensemble members)."""
    cues = {name: _flat(records, name) for name in ("iou", "entropy", "expected_dice", "box")}
    no_box = {c: v for c, v in cues.items() if c != "box"}
    out = {
        "IoU head alone": U.combine_confidence(cues, "iou"),
        "entropy alone": U.combine_confidence(cues, "entropy"),
        "expected Dice alone": U.combine_confidence(cues, "expected_dice"),
        "box agreement alone": U.combine_confidence(cues, "box"),
        "IoU head x expected Dice": U.combine_confidence(no_box, "combined"),
        "IoU head x entropy": np.sqrt(np.clip(cues["iou"], 0, 1) * cues["entropy"]),
        "IoU head x expected Dice x box (default)": U.combine_confidence(cues, "combined"),
    }
    agreements = {f"{m} jittered": f"agree_{m}" for m in MEMBER_COUNTS if m <= k}
    if k > 0 and all("agree_flip" in r for r in records):
        agreements["mirrored"] = "agree_flip"
    for label, key in agreements.items():
        agree = _flat(records, key)
        out[f"ensemble agreement alone, {label}"] = agree
        out[f"default x agreement, {label}"] = U.combine_confidence(
            {**cues, "agreement": agree}, "combined"
        )
    return out


def _added_seconds(name: str, records: list[dict[str, Any]]) -> float:
    """Added time of a variant over the 2D records (3D records add only the default work)."""
    default = sum(r["t_default"] for r in records)
    if name == "IoU head alone":
        return 0.0
    if " jittered" in name:
        m = int(name.split(" jittered")[0].split()[-1])
        return default + sum(r["t_jitter"] * m / r["k"] for r in records if r.get("k"))
    if "mirrored" in name:
        return default + sum(r.get("t_flip", 0.0) for r in records)
    return default


def variant_table(records: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Spearman, failure AUROC and added time of every variant on ``records``."""
    dsc = _flat(records, "dsc")
    two_d = [r for r in records if not r["is_3d"]]
    n2d = sum(r["n"] for r in two_d)
    t_pred_2d = sum(r["t_pred"] for r in two_d)
    rows = []
    for name, conf in variant_scores(records, k).items():
        rho, _ = spearman(conf, dsc)
        auc, _ = failure_auroc(conf, dsc)
        added = _added_seconds(name, two_d)
        rows.append(
            {
                "variant": name,
                "spearman": rho,
                "auroc": auc,
                "added_s_per_object_2d": added / max(n2d, 1),
                "added_share_2d": added / t_pred_2d if t_pred_2d else math.nan,
            }
        )
    return rows


def _subset_info(records: list[dict[str, Any]]) -> dict[str, Any]:
    dsc = _flat(records, "dsc")
    return {
        "n_cases": len(records),
        "n_objects": int(dsc.size),
        "n_failed": int((dsc < FAILURE_DSC).sum()),
    }


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """All objects: the default variants; the 2D cases run with an ensemble: every variant."""
    two_d = [r for r in records if not r["is_3d"]]
    ens = [r for r in two_d if r.get("k", 0) > 0]
    k = min((r["k"] for r in ens), default=0)
    t_pred_2d = sum(r["t_pred"] for r in two_d)
    t_default_2d = sum(r["t_default"] for r in two_d)
    per_case_share = [r["t_default"] / r["t_pred"] for r in two_d]
    summary: dict[str, Any] = {
        "all": {**_subset_info(records), "variants": variant_table(records, 0)},
        "t_pred_2d_s": t_pred_2d,
        "t_default_2d_s": t_default_2d,
        "default_share_2d_total": t_default_2d / t_pred_2d if t_pred_2d else math.nan,
        "default_share_2d_max_case": max(per_case_share, default=math.nan),
    }
    three_d = [r for r in records if r["is_3d"]]
    if three_d:
        summary["default_share_3d_total"] = sum(r["t_default"] for r in three_d) / sum(
            r["t_pred"] for r in three_d
        )
    if ens:
        flips = [r["t_flip"] for r in ens if "t_flip" in r]
        summary["ensemble"] = {
            **_subset_info(ens),
            "k": k,
            "cases": [r["case"] for r in ens],
            "variants": variant_table(ens, k),
            "jitter_member_s_per_object": sum(r["t_jitter"] for r in ens)
            / sum(r["k"] * r["n"] for r in ens),
            "flip_s_per_case": float(np.mean(flips)) if flips else math.nan,
            "mean_dsc_base": float(_flat(ens, "dsc").mean()),
            "mean_dsc_ensemble_mean_mask": float(_flat(ens, "dsc_mean_jitter").mean()),
        }
        if all("dsc_mean_flip" in r for r in ens):
            summary["ensemble"]["mean_dsc_ensemble_mean_mask_with_flip"] = float(
                _flat(ens, "dsc_mean_flip").mean()
            )
    return summary


def _f(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.3f}"


def _table(info: dict[str, Any]) -> list[str]:
    lines = [
        f"{info['n_objects']} objects in {info['n_cases']} cases, {info['n_failed']} failed "
        f"(DSC < {FAILURE_DSC}).",
        "",
        "| variant | Spearman | failure AUROC | added s/object (2D) | added / prediction (2D) |",
        "|---|---|---|---|---|",
    ]
    for row in info["variants"]:
        lines.append(
            f"| {row['variant']} | {_f(row['spearman'])} | {_f(row['auroc'])} | "
            f"{row['added_s_per_object_2d']:.4f} | {100 * row['added_share_2d']:.1f}% |"
        )
    return lines


def format_markdown(summary: dict[str, Any]) -> str:
    """The results as markdown tables plus notes."""
    lines = ["### All cases (2D and 3D)", "", *_table(summary["all"]), ""]
    lines.append(
        f"- 2D prediction time {summary['t_pred_2d_s']:.1f} s; the default uncertainty adds "
        f"{summary['t_default_2d_s']:.2f} s ({100 * summary['default_share_2d_total']:.1f}%), "
        f"worst case {100 * summary['default_share_2d_max_case']:.1f}%."
    )
    if "default_share_3d_total" in summary:
        lines.append(
            f"- 3D: the default uncertainty adds {100 * summary['default_share_3d_total']:.1f}% "
            "of prediction time."
        )
    ens = summary.get("ensemble")
    if ens:
        lines += ["", f"### 2D cases run with the ensemble ({ens['k']} jittered members)", ""]
        lines += _table(ens)
        lines += [
            "",
            f"- one jittered member: {ens['jitter_member_s_per_object']:.3f} s per object; "
            f"the mirrored member: {_f(ens['flip_s_per_case'])} s per case.",
            f"- mean DSC: base mask {_f(ens['mean_dsc_base'])}, ensemble-mean mask "
            f"(base + {ens['k']} jittered) {_f(ens['mean_dsc_ensemble_mean_mask'])}"
            + (
                f", with the mirrored member {_f(ens['mean_dsc_ensemble_mean_mask_with_flip'])}"
                if "mean_dsc_ensemble_mean_mask_with_flip" in ens
                else ""
            )
            + ".",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with imgs/ and gts/")
    parser.add_argument("--out", type=Path, required=True, help="records and summary go here")
    parser.add_argument("--ensemble", type=int, default=8, help="jittered members to record")
    parser.add_argument("--flip", action="store_true", help="also record the mirrored member")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, help="first N cases only")
    parser.add_argument("--shard", default="0/1", help="I/N: run every N-th case from the I-th")
    parser.add_argument("--pattern", default="*.npz", help="case file pattern in imgs/")
    parser.add_argument(
        "--extra-records",
        type=Path,
        help="with --analyze-only: a folder of records from an ensemble run of the same model; "
        "its ensemble fields are merged into the matching cases",
    )
    parser.add_argument(
        "--analyze-only", action="store_true", help="summarize all records-*.json in --out"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.analyze_only:
        by_case = {
            r["case"]: r
            for p in sorted(args.out.glob("records*.json"))
            for r in json.loads(p.read_text())
        }
        records = [by_case[c] for c in sorted(by_case)]
        if args.extra_records is not None:
            extra = {
                r["case"]: r
                for p in sorted(args.extra_records.glob("records*.json"))
                for r in json.loads(p.read_text())
            }
            for r in records:
                old = extra.get(r["case"], {})
                if old.get("k", 0) > 0 and not r.get("k"):
                    if old["dsc"] != r["dsc"]:
                        raise SystemExit(f"{r['case']}: extra records come from other masks")
                    keep = ("k", "t_jitter", "t_flip", "dsc_mean_jitter", "dsc_mean_flip")
                    r.update({f: v for f, v in old.items() if f.startswith("agree_") or f in keep})
    else:
        i, n = (int(v) for v in args.shard.split("/"))
        records = collect(
            args.data, args.out, args.ensemble, args.flip, args.limit, (i, n), args.pattern
        )
    summary = summarize(records)
    text = format_markdown(summary)
    (args.out / "summary.md").write_text(text + "\n")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
