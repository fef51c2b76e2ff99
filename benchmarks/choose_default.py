"""Apply the default-model rule of docs/models.md to scored candidates, and print the verdict.

Each candidate is a folder of dev predictions (``<case>.npz`` with ``segs``), scored here with the
function behind ``umedsam evaluate`` (official DSC/NSD), and its end-to-end speed (seconds of a
fixed benchmark; lower is faster) when known. The baseline is LiteMedSAM.

The rule (written down before the candidates were scored):

1. a candidate qualifies when no modality's mean DSC is more than 1 point below the baseline's
   and no modality's mean NSD more than 2 points below;
2. the default is the fastest qualifying candidate whose mean DSC beats the baseline's by at
   least 2 points; else the most accurate qualifying candidate above the baseline; else the
   baseline stays. Among equally fast candidates (the same network, timed as one) the more
   accurate wins; the written rule left this tie open until two merges of one network tied.

    python benchmarks/choose_default.py --gts ../shared/data/dev/gts \\
        --baseline litemedsam=runs/ablation16/segs_a_s0 \\
        --candidate umedsam_litemedsam_r2=runs/ablation16/segs_b_s0:SECONDS ...
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

DSC_SLACK = 0.01
NSD_SLACK = 0.02
MEAN_GAIN = 0.02


@dataclass
class Scored:
    """One model's dev scores: per-modality and overall mean DSC/NSD, and its speed."""

    name: str
    per_modality: dict[str, tuple[float, float]]
    overall: tuple[float, float]
    seconds: float = math.nan


def score(name: str, segs: Path, gts: Path, seconds: float = math.nan) -> Scored:
    """Official DSC/NSD of a prediction folder, per modality and overall."""
    from umedsam.evaluation.report import evaluate_folders

    result = evaluate_folders(segs, gts)
    if result.failures:
        raise SystemExit(f"{name}: {len(result.failures)} cases failed, e.g. {result.failures[0]}")
    summary = result.summary
    per = {m: (s["dsc"].mean, s["nsd"].mean) for m, s in summary.per_modality.items()}
    return Scored(name, per, (summary.overall["dsc"].mean, summary.overall["nsd"].mean), seconds)


def losses(candidate: Scored, baseline: Scored) -> list[str]:
    """The modalities where ``candidate`` breaks the per-modality rule, with the gaps."""
    out = []
    for mod, (dsc, nsd) in baseline.per_modality.items():
        c_dsc, c_nsd = candidate.per_modality[mod]
        if c_dsc < dsc - DSC_SLACK or c_nsd < nsd - NSD_SLACK:
            out.append(f"{mod} {100 * (c_dsc - dsc):+.1f} DSC / {100 * (c_nsd - nsd):+.1f} NSD")
    return out


def choose(candidates: list[Scored], baseline: Scored) -> tuple[str, str]:
    """The default's name and the reason, by the rule above."""
    qualified = [c for c in candidates if not losses(c, baseline)]
    strong = [c for c in qualified if c.overall[0] >= baseline.overall[0] + MEAN_GAIN]
    if strong:
        # equal seconds (the same network, e.g. decoders over one encoder): the more accurate
        fastest = min(
            strong,
            key=lambda c: (c.seconds if not math.isnan(c.seconds) else math.inf, -c.overall[0]),
        )
        return fastest.name, "fastest qualifying candidate at least 2 DSC points above"
    better = [c for c in qualified if c.overall[0] > baseline.overall[0]]
    if better:
        best = max(better, key=lambda c: c.overall[0])
        return best.name, "most accurate qualifying candidate (none 2 points above)"
    return baseline.name, "no candidate qualifies: the baseline stays"


def _entry(text: str) -> tuple[str, Path, float]:
    name, _, rest = text.partition("=")
    folder, _, seconds = rest.partition(":")
    return name, Path(folder), float(seconds) if seconds else math.nan


def main(argv: list[str] | None = None) -> int:
    """Score the baseline and candidates, print the table and the choice."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gts", type=Path, required=True)
    parser.add_argument("--baseline", required=True, metavar="NAME=SEGS[:SECONDS]")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=SEGS[:SECONDS]")
    args = parser.parse_args(argv)
    baseline = score(*_entry(args.baseline)[:2], args.gts, _entry(args.baseline)[2])
    candidates = [
        score(name, folder, args.gts, seconds)
        for name, folder, seconds in map(_entry, args.candidate)
    ]
    mods = list(baseline.per_modality)
    print("| model | " + " | ".join(mods) + " | mean DSC / NSD | seconds | breaks the rule on |")
    print("|---" * (len(mods) + 4) + "|")
    for c in [baseline, *candidates]:
        cells = [f"{c.per_modality[m][0]:.4f} / {c.per_modality[m][1]:.4f}" for m in mods]
        broken = "" if c is baseline else (", ".join(losses(c, baseline)) or "none")
        print(
            f"| {c.name} | " + " | ".join(cells) + f" | {c.overall[0]:.4f} / {c.overall[1]:.4f} | "
            f"{'' if math.isnan(c.seconds) else f'{c.seconds:.1f}'} | {broken} |"
        )
    name, reason = choose(candidates, baseline)
    print(f"\ndefault: {name} ({reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
