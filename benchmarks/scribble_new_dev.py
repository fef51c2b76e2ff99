"""Scribbles on the new dev sets, per task type, next to the box (issue 37, item 6).

For every object of the new dev sets (configs/new_dev.yaml) a simulated human scribble is drawn
from its reference mask with umedsam's simulator (:func:`umedsam.data.interaction.simulate_scribble`:
thin structures get their centre line, partly drawn, others a smooth curve, a contour stroke or a
loose zig-zag; a brush of 1-6 px; a smooth random warp of 0-4 px; half of them broken by 1-3
gaps) plus one negative stroke outside near its border, with a fixed seed per case. Three protocols, each object scored with the official DSC/NSD (inside the
field of view where the set has one):

* ``box``: the challenge's box (seed 2025), the default model;
* ``scribble``: the scribble alone (no box), the interactive model;
* ``box+scribble``: both at once, the interactive model;
* ``box, then scribble``: the web app's and napari's flow: the box segmented by the default
  model, then the scribble as a correction (the box's mask as the dense prompt), the
  interactive model.

Objects are grouped by task type: compact organ (lungs), lesion (polyps, COVID infection),
thin/tubular (retinal vessels); across the types, objects whose reference mask holds two or more
pieces of at least 10 pixels (both lungs under one label, scattered infection, several polyps)
are also reported together as many-part. The image is encoded once; both models share the encoder.

    python benchmarks/scribble_new_dev.py [--sets polyp-cvc drive-vessels] [--engine onnx]
        [--out docs/results/scribbles_new_dev.csv] [--checkpoint runs/.../last.pt]
        [--thin-strokes on|off] [--keep-agreeing on|off] [--config configs/thin_design.yaml]
    python benchmarks/scribble_new_dev.py --summarize docs/results/scribbles_new_dev.csv
"""

from __future__ import annotations

import argparse
import csv
import zlib
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import yaml
from interactive import add_switches, apply_switches

from umedsam.data.interaction import break_stroke, challenge_boxes, simulate_scribble
from umedsam.data.sources import open_source
from umedsam.errors import InputError
from umedsam.evaluation.metrics import case_metrics
from umedsam.inference import agreement
from umedsam.inference.engines import EngineSpec, open_engine
from umedsam.inference.predictor import Predictor
from umedsam.models.cards import DEFAULT_MODEL, INTERACTIVE_MODEL

TASK_TYPES = {
    ("polyp-cvc", None): "lesion",
    ("drive-vessels", None): "thin/tubular",
    ("ct-lung-hu", None): "compact organ",
    ("ct-covid", 1): "compact organ",
    ("ct-covid", 2): "lesion",
}
PROTOCOLS = ("box", "scribble", "box+scribble", "box, then scribble")
MIN_PART_PIXELS = 10  # pieces smaller than this are specks (as the sets' min_size), not parts
MANY_PART = "many-part (2+ pieces, any type)"


def task_type(set_name: str, label: int) -> str:
    """The task type of object ``label`` of a set."""
    return TASK_TYPES.get((set_name, label)) or TASK_TYPES[(set_name, None)]


def part_count(mask: np.ndarray) -> int:
    """Pieces of an object's reference mask (8-connected) with at least MIN_PART_PIXELS pixels."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return int((stats[1:count, cv2.CC_STAT_AREA] >= MIN_PART_PIXELS).sum())


def scribble_map(mask: np.ndarray, thin: bool, rng: np.random.Generator) -> np.ndarray:
    """A human-like scribble of one object: 1 on its stroke, -1 on a background stroke.

    Thin structures get their centre line (partly drawn); others a smooth curve, a stroke along
    the inside of the contour or a loose zig-zag, at random; half the positive strokes are
    broken by 1-3 gaps, as a hand lifts the pen."""
    family = "centerline" if thin else str(rng.choice(("curve", "contour", "zigzag")))
    positive = simulate_scribble(mask, rng, family=family)
    if rng.random() < 0.5:
        positive = break_stroke(positive, rng)
    if not positive.any():  # a tiny object: one dab in its middle
        ys, xs = np.nonzero(mask)
        positive = np.zeros_like(mask)
        positive[ys[len(ys) // 2], xs[len(xs) // 2]] = True
    negative = simulate_scribble(mask, rng, family="background")
    out = np.zeros(mask.shape, np.int8)
    out[negative] = -1
    out[positive] = 1
    return out


def segment_case(predictors: dict, imgs, gts, set_name: str, case: str) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Label maps of the three protocols for one 2D case."""
    labels = [int(v) for v in np.unique(gts) if v > 0]
    rng = np.random.default_rng(zlib.crc32(f"{set_name}/{case}".encode()))
    maps = [
        scribble_map(gts == label, task_type(set_name, label) == "thin/tubular", rng)
        for label in labels
    ]
    boxes = challenge_boxes(gts)
    box_model, clicks_model = predictors["box"], predictors["interactive"]
    box_model.set_image(imgs)
    interactive = box_model.sharing_embedding(clicks_model.backend)
    no_box = np.full((len(labels), 4), np.nan)
    boxed = box_model.predict(boxes, return_logits=False)
    corrected = interactive.predict(
        boxes, scribbles=maps, mask_input=boxed.low_res_logits, return_logits=False
    ).masks
    for k, smap in enumerate(maps):  # the apps' correction rules, in their order
        corrected[k] = agreement.settle_correction(boxed.masks[k], corrected[k], smap)
    masks = {
        "box": boxed.masks,
        "scribble": interactive.predict(no_box, scribbles=maps, return_logits=False).masks,
        "box+scribble": interactive.predict(boxes, scribbles=maps, return_logits=False).masks,
        "box, then scribble": corrected,
    }
    out = {}
    for protocol, found in masks.items():
        segs = np.zeros(gts.shape, np.int64)
        for k, label in enumerate(labels):  # later labels over earlier ones, as the challenge
            segs[found[k]] = label
        out[protocol] = segs
    return out


def run_set(spec: dict, predictors: dict, rows: list[dict]) -> None:
    """Score every case of one set; append per-object rows."""
    source = open_source(spec)
    for case in source.case_names():
        try:
            labelled = source.load(case)
        except InputError as err:  # as umedsam evaluate: reported, skipped
            print(f"skipped {err}", flush=True)
            continue
        gts = np.asarray(labelled.gts)
        try:
            found = segment_case(predictors, labelled.imgs, gts, spec["name"], case)
        except InputError as err:  # e.g. an object one pixel high: no valid challenge box
            print(f"skipped {spec['name']}/{case}: {err}", flush=True)
            continue
        for protocol, segs in found.items():
            if labelled.valid is not None:
                segs = np.where(labelled.valid, segs, 0)
            for scored in case_metrics(segs, gts).labels:
                if scored.gt_voxels == 0:
                    continue
                rows.append(
                    {
                        "set": spec["name"],
                        "case": case,
                        "label": scored.label,
                        "type": task_type(spec["name"], scored.label),
                        "parts": part_count(gts == scored.label),
                        "protocol": protocol,
                        "dsc": round(float(scored.dsc), 4),
                        "nsd": round(float(scored.nsd), 4),
                    }
                )


def table(rows: list[dict]) -> str:
    """Markdown table: mean DSC / NSD per task type (and set) and protocol."""
    groups: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        keys = [(row["type"], row["set"]), (row["type"], "all")]
        if int(row["parts"]) >= 2:
            keys += [(MANY_PART, row["set"]), (MANY_PART, "all")]
        for key in keys:
            groups[key][row["protocol"]].append((float(row["dsc"]), float(row["nsd"])))
    lines = ["| task type | set | objects | " + " | ".join(PROTOCOLS) + " |"]
    lines.append("|---|---|---:|" + "---|" * len(PROTOCOLS))
    for (kind, set_name), by in sorted(groups.items()):
        cells = [
            f"{np.mean([d for d, _ in by[p]]):.4f} / {np.mean([n for _, n in by[p]]):.4f}"
            for p in PROTOCOLS
        ]
        lines.append(f"| {kind} | {set_name} | {len(by['box'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_part_counts(rows: list[dict], specs: list[dict]) -> None:
    """Fill the ``parts`` column of rows written before it existed, from the sets' masks."""
    by_name = {spec["name"]: spec for spec in specs}
    sources: dict = {}
    counts: dict[tuple[str, str], dict[int, int]] = {}
    for row in rows:
        if row.get("parts") not in (None, ""):
            continue
        key = (row["set"], row["case"])
        if key not in counts:
            if row["set"] not in sources:
                sources[row["set"]] = open_source(by_name[row["set"]])
            gts = np.asarray(sources[row["set"]].load(row["case"]).gts)
            counts[key] = {int(v): part_count(gts == v) for v in np.unique(gts) if v > 0}
        row["parts"] = counts[key][int(row["label"])]


def main(argv: list[str] | None = None) -> int:
    """Run the protocols on the chosen sets; write the rows, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/new_dev.yaml"))
    parser.add_argument("--sets", nargs="*")
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--out", type=Path, default=Path("docs/results/scribbles_new_dev.csv"))
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="weights of a candidate interactive model (umedsam_interactive's network)",
    )
    parser.add_argument(
        "--summarize", type=Path, help="print the table of a CSV this script wrote; run nothing"
    )
    add_switches(parser)  # --thin-strokes, --keep-agreeing, ... as benchmarks/interactive.py
    args = parser.parse_args(argv)
    apply_switches(args)
    specs = yaml.safe_load(args.config.read_text())["sets"]
    if args.summarize is not None:
        with args.summarize.open(newline="") as f:
            written = list(csv.DictReader(f))
        add_part_counts(written, specs)
        print(table(written))
        return 0
    chosen = [s for s in specs if not args.sets or s["name"] in args.sets]
    predictors = {
        "box": Predictor(open_engine(EngineSpec(DEFAULT_MODEL, engine=args.engine)).backend),
        "interactive": Predictor(
            open_engine(
                EngineSpec(INTERACTIVE_MODEL, checkpoint=args.checkpoint, engine=args.engine)
            ).backend
        ),
    }
    rows: list[dict] = []
    for spec in chosen:
        run_set(spec, predictors, rows)
        print(f"{spec['name']}: done", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    scribbler = INTERACTIVE_MODEL if args.checkpoint is None else f"{args.checkpoint}"
    print(f"models: box {DEFAULT_MODEL}, scribbles {scribbler}, engine {args.engine}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
