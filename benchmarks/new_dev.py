"""Accuracy of models on the new dev sets (configs/new_dev.yaml), through ``umedsam evaluate``.

Each (model, set) pair runs ``umedsam evaluate --images --masks ... --model M`` in a subprocess
(boxes from the masks by the challenge's rule, seed 2025) and writes its per-case CSV and JSON to
``--out/<model>/<set>.csv``; the table printed at the end gives mean DSC / NSD per set and model.
The old 40-case dev is reported separately (``umedsam predict`` + ``umedsam evaluate`` on
``shared/data/dev``), never merged with these.

    python benchmarks/new_dev.py --models litemedsam umedsam_merged umedsam_effvit_b1 \
        [--sets polyp-cvc ct-covid] [--engine auto] [--out docs/results/new_dev]

A model entry ``LABEL=MODEL@CHECKPOINT`` runs a checkpoint under a label of its own (a candidate
not yet shipped), e.g. ``newdata_merge=litemedsam@runs/m/merges/merge_a050_full.pt``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

FLAGS = {"images": "--images", "masks": "--masks", "ignore": "--ignore", "cases": "--cases",
         "modality": "--modality", "objects": "--objects", "min_size": "--min-size"}  # fmt: skip


def model_flags(entry: str) -> tuple[str, list[str]]:
    """``(label, flags)`` of a ``--models`` entry: ``NAME`` or ``LABEL=MODEL@CHECKPOINT``."""
    if "=" not in entry:
        return entry, ["--model", entry]
    label, _, target = entry.partition("=")
    model, _, checkpoint = target.partition("@")
    return label, ["--model", model] + (["--checkpoint", checkpoint] if checkpoint else [])


def evaluate_set(spec: dict, model: str, engine: str, out: Path) -> dict:
    """Run ``umedsam evaluate`` on one set (``model``: a ``--models`` entry); its JSON summary."""
    argv = [str(Path(sys.executable).parent / "umedsam"), "evaluate", "-q"]
    argv += model_flags(model)[1] + ["--engine", engine, "--out", str(out)]
    for key, flag in FLAGS.items():
        if key in spec:
            argv += [flag, str(spec[key])]
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1) or not out.with_suffix(".json").is_file():
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return json.loads(out.with_suffix(".json").read_text())


def main() -> None:
    """Evaluate every model on every set; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["litemedsam", "umedsam_merged"])
    parser.add_argument("--sets", nargs="*", help="set names (default: all)")
    parser.add_argument("--config", type=Path, default=Path("configs/new_dev.yaml"))
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--out", type=Path, default=Path("docs/results/new_dev"))
    args = parser.parse_args()
    sets = yaml.safe_load(args.config.read_text())["sets"]
    sets = [s for s in sets if not args.sets or s["name"] in args.sets]
    results: dict[tuple[str, str], dict] = {}
    labels = [model_flags(m)[0] for m in args.models]
    for model, label in zip(args.models, labels, strict=True):
        for spec in sets:
            out = args.out / label / f"{spec['name']}.csv"
            summary = evaluate_set(spec, model, args.engine, out)
            results[label, spec["name"]] = summary
            overall = summary["overall"]
            print(f"{label:22s} {spec['name']:14s} n={overall['n']:4d} "
                  f"DSC {overall['dsc_mean']:.4f} NSD {overall['nsd_mean']:.4f}", flush=True)  # fmt: skip
    print("\n| set | n | " + " | ".join(f"{m} DSC / NSD" for m in labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for spec in sets:
        cells = [results[m, spec["name"]]["overall"] for m in labels]
        row = " | ".join(f"{c['dsc_mean']:.4f} / {c['nsd_mean']:.4f}" for c in cells)
        print(f"| {spec['name']} | {cells[0]['n']} | {row} |")


if __name__ == "__main__":
    main()
