"""Fit per-model cue weights of the combined confidence on training cases (issue 36, item 5a).

The combined confidence is a geometric mean of per-object cues (the IoU head, the expected Dice,
the box agreement, and the ensemble agreement when an ensemble ran). Weighted, it is
``exp(sum(w_c * log c) / sum(w_c))``; equal weights of 1 on ``iou``, ``expected_dice`` and
``box`` are today's rule. This script reads the per-object rows ``umedsam evaluate --confidence``
writes (``<out>_confidence.csv``: every cue and the true DSC), searches a grid of weights on the
training rows and scores the equal and the fitted weights on every file given, by Spearman
correlation with the true DSC and AUROC of low confidence for failures (DSC < 0.8).

The rule (docs/uncertainty.md, written before the fit ran): the fitted weights replace equal
weights for a model only if they raise (Spearman + AUROC) / 2 on the training rows by at least
0.01; dev rows are scored afterwards and never choose.

    python benchmarks/fit_confidence_weights.py --train runs/conf/train_confidence.csv \
        --report runs/conf/dev_confidence.csv
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
from pathlib import Path

import numpy as np

from umedsam.evaluation.confidence import FAILURE_DSC, auroc, spearman
from umedsam.inference.uncertainty import combine_confidence

CUES = ("iou", "expected_dice", "box", "entropy")
GRID = (0.0, 0.5, 1.0, 2.0)
EQUAL = {"iou": 1.0, "expected_dice": 1.0, "box": 1.0, "entropy": 0.0}
MIN_GAIN = 0.01


def read_objects(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Cue arrays (NaN where absent) and true DSC of the objects in an object CSV."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r.get(name, "") != "" else math.nan for r in rows])

    cues = {"iou": column("predicted_iou")} | {c: column(c) for c in CUES[1:]}
    return cues, column("dsc")


def combine(cues: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The package's weighted geometric mean (the rule a card's ``confidence_weights`` runs)."""
    return combine_confidence(cues, weights=tuple(weights.items())).astype(np.float64)


def score(confidence: np.ndarray, dsc: np.ndarray) -> tuple[float, float, float]:
    """Spearman, AUROC for failures, and their mean."""
    rho = spearman(confidence, dsc)[0]
    auc = auroc(1.0 - confidence, dsc < FAILURE_DSC)
    return rho, auc, (rho + auc) / 2


def fit(cues: dict[str, np.ndarray], dsc: np.ndarray) -> dict[str, float]:
    """The grid weights with the highest (Spearman + AUROC) / 2 (ties: fewer, smaller weights)."""
    best, best_key = EQUAL, None
    for values in itertools.product(GRID, repeat=len(CUES)):
        if not any(values):
            continue
        weights = dict(zip(CUES, values, strict=True))
        key = (round(score(combine(cues, weights), dsc)[2], 6), -sum(values))
        if best_key is None or key > best_key:
            best, best_key = weights, key
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="object CSV of training cases")
    parser.add_argument("--report", type=Path, nargs="*", default=[], help="object CSVs to score")
    args = parser.parse_args(argv)
    cues, dsc = read_objects(args.train)
    fitted = fit(cues, dsc)
    gain = score(combine(cues, fitted), dsc)[2] - score(combine(cues, EQUAL), dsc)[2]
    adopted = gain >= MIN_GAIN
    print(f"fitted weights on {len(dsc)} training objects: {fitted}")
    print(f"gain on train (Spearman + AUROC) / 2: {gain:+.4f} -> {'adopt' if adopted else 'keep'}")
    print("\n| rows | objects | failed | equal: Spearman / AUROC | fitted: Spearman / AUROC |")
    print("|---|---:|---:|---|---|")
    for path in [args.train, *args.report]:
        c, d = read_objects(path)
        eq, fi = score(combine(c, EQUAL), d), score(combine(c, fitted), d)
        print(
            f"| {path.name} | {len(d)} | {int((d < FAILURE_DSC).sum())} | "
            f"{eq[0]:.3f} / {eq[1]:.3f} | {fi[0]:.3f} / {fi[1]:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
