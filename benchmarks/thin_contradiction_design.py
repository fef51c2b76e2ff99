"""Design data of the contradicted-stroke thin rule: does the model's answer to a scribble cover
the object's own negative stroke on vessels, and not on compact objects?

For every object of the design sets (the benchmark's human-like scribble and one negative stroke
near the object's border, seeded per case as ``scribble_new_dev.py`` draws them) it records the
interactive model's scribble-only mask (thin path off), the share of the negative stroke's pixels
that mask covers (``contra``), whether the stroke lies on a ridge (the thin path's test), and the
DSC of the model's mask and of the ridge trace against the reference (inside the field of view).

    python benchmarks/thin_contradiction_design.py --config configs/thin_design.yaml \
        --out docs/results/thin_contradiction/design_drive.csv
    python benchmarks/thin_contradiction_design.py --config configs/agreement_design.yaml \
        --out docs/results/thin_contradiction/design_other.csv
    python benchmarks/thin_contradiction_design.py --table \
        docs/results/thin_contradiction/design_drive.csv docs/results/thin_contradiction/design_other.csv

Training images only (DRIVE 21-40; every 4th CVC-ClinicDB, COVID-lung and lung-hu training
image): the rule's threshold is read from here, never from dev.
"""

from __future__ import annotations

import argparse
import csv
import zlib
from pathlib import Path

import numpy as np
import yaml
from scribble_new_dev import scribble_map, task_type

from umedsam.data.sources import open_source
from umedsam.errors import InputError
from umedsam.inference import thin
from umedsam.inference.engines import EngineSpec, open_engine
from umedsam.inference.predictor import Predictor
from umedsam.models.cards import INTERACTIVE_MODEL

COLUMNS = ("set", "case", "label", "type", "neg_px", "contra", "fires", "model_dsc", "trace_dsc")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def _dsc(found: np.ndarray, reference: np.ndarray, valid: np.ndarray | None) -> float:
    if valid is not None:
        found = found & valid
    total = found.sum() + reference.sum()
    return float(2 * (found & reference).sum() / total) if total else 1.0


def case_rows(predictor: Predictor, set_name: str, case: str, labelled) -> list[dict]:  # type: ignore[no-untyped-def]
    """One row per object of a case (see the module docstring)."""
    gts = np.asarray(labelled.gts)
    labels = [int(v) for v in np.unique(gts) if v > 0]
    rng = np.random.default_rng(zlib.crc32(f"{set_name}/{case}".encode()))
    maps = [
        scribble_map(gts == label, task_type(set_name, label) == "thin/tubular", rng)
        for label in labels
    ]
    predictor.set_image(labelled.imgs)
    no_box = np.full((len(labels), 4), np.nan)
    masks = predictor.predict(no_box, scribbles=maps, return_logits=False, thin_strokes=False).masks
    ridges: dict = {}
    rows = []
    for k, label in enumerate(labels):
        negative, positive = maps[k] < 0, maps[k] > 0
        traced = thin.thin_structure_mask(labelled.imgs, positive, negative, ridges)
        reference = gts == label
        rows.append(
            {
                "set": set_name,
                "case": case,
                "label": label,
                "type": task_type(set_name, label),
                "neg_px": int(negative.sum()),
                "contra": round(float((masks[k] & negative).sum() / max(1, negative.sum())), 4),
                "fires": traced is not None,
                "model_dsc": round(_dsc(masks[k], reference, labelled.valid), 4),
                "trace_dsc": ""
                if traced is None
                else round(_dsc(traced, reference, labelled.valid), 4),
            }
        )
    return rows


def threshold_table(rows: list[dict]) -> str:
    """Per threshold: thin objects traced and their mean DSC; other objects that would be traced."""
    thin_rows = [r for r in rows if r["type"] == "thin/tubular"]
    others = [r for r in rows if r["type"] != "thin/tubular" and str(r["fires"]) == "True"]
    lines = [
        "| contra >= | thin traced | thin mean DSC | other objects traced (of those on a ridge) |"
    ]
    lines.append("|---|---|---|---|")
    for t in THRESHOLDS:
        hit = [str(r["fires"]) == "True" and float(r["contra"]) >= t for r in thin_rows]
        dsc = [
            float(r["trace_dsc"] if h else r["model_dsc"])
            for r, h in zip(thin_rows, hit, strict=True)
        ]
        wrong = sum(float(r["contra"]) >= t for r in others)
        lines.append(
            f"| {t} | {sum(hit)} / {len(thin_rows)} | {np.mean(dsc):.4f} | {wrong} / {len(others)} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Record the design rows of a config's sets, or print the threshold table of written rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", nargs="+", type=Path, help="CSV files this script wrote")
    args = parser.parse_args()
    if args.table:
        rows = [row for path in args.table for row in csv.DictReader(path.open())]
        print(threshold_table(rows))
        return
    predictor = Predictor(open_engine(EngineSpec(INTERACTIVE_MODEL, engine="onnx")).backend)
    rows = []
    for spec in yaml.safe_load(args.config.read_text())["sets"]:
        source = open_source(spec)
        for case in source.case_names():
            try:
                rows += case_rows(predictor, spec["name"], case, source.load(case))
            except InputError as err:
                print(f"skipped {err}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    print(threshold_table(rows))


if __name__ == "__main__":
    main()
