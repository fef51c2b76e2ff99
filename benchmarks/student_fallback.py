"""Could a fast student hand its least confident cases to the accurate default? (a design check)

Segments every N-th case of an image/mask folder with a student and with the default (boxes from
the masks by the challenge's rule, seed 2025, as ``umedsam evaluate --images --masks``), records
each case's DSC under both and the student's per-object confidence (``--uncertainty``'s combined
rule; a case counts by its least confident object), and prints what a cascade would give if the
student's K % least confident cases were re-run by the default: mean DSC and the mean time per
case (student always, default on the re-run share).

    python benchmarks/student_fallback.py --images DIR --masks DIR --every 8 \
        [--student umedsam_effvit_b1] [--teacher umedsam_newdata] [--csv OUT.csv]

Run it on training data: it decides whether a cascade is worth building, not a threshold for dev.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from umedsam.data.sources import ImageMaskFolderSource
from umedsam.evaluation.benchmark import box_prompted_case
from umedsam.evaluation.metrics import case_metrics
from umedsam.inference.engines import EngineSpec, open_engine
from umedsam.inference.segment import segment_case
from umedsam.inference.uncertainty_config import UncertaintyConfig

SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0)


def score_cases(args: argparse.Namespace) -> list[dict]:
    """Per case: DSC and seconds of student and teacher, the student's lowest object confidence."""
    source = ImageMaskFolderSource(args.images, args.masks, modality=args.modality)
    models = {"student": args.student, "teacher": args.teacher}
    engines = {
        role: open_engine(EngineSpec(model=m, engine=args.engine, threads=args.threads))
        for role, m in models.items()
    }
    rows = []
    for name in source.case_names()[:: args.every]:
        labelled = source.load(name)
        case = box_prompted_case(name, labelled)
        row: dict = {"case": name}
        for role, engine in engines.items():
            start = time.perf_counter()
            config = UncertaintyConfig() if role == "student" else None
            result = segment_case(engine.backend, case, uncertainty=config)
            row[f"{role}_seconds"] = time.perf_counter() - start
            row[f"{role}_dsc"] = case_metrics(
                result.segs, labelled.gts, spacing=labelled.spacing
            ).dsc
            if result.uncertainty is not None:
                row["student_confidence"] = float(np.min(result.uncertainty.confidence))
        rows.append(row)
    return rows


def cascade_table(rows: list[dict]) -> list[tuple[float, float, float]]:
    """``(share re-run, mean DSC, mean seconds)`` when the least confident share goes to the teacher."""
    student = np.array([r["student_dsc"] for r in rows])
    teacher = np.array([r["teacher_dsc"] for r in rows])
    order = np.argsort([r["student_confidence"] for r in rows], kind="stable")
    s_time = np.mean([r["student_seconds"] for r in rows])
    t_time = np.mean([r["teacher_seconds"] for r in rows])
    table = []
    for share in SHARES:
        rerun = order[: int(round(share * len(rows)))]
        dsc = student.copy()
        dsc[rerun] = teacher[rerun]
        table.append((share, float(dsc.mean()), float(s_time + share * t_time)))
    return table


def main() -> None:
    """Score the cases, print the cascade table, optionally write the per-case CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--modality", default="Image")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--student", default="umedsam_effvit_b1")
    parser.add_argument("--teacher", default="umedsam_newdata")
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    rows = score_cases(args)
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    teacher = np.mean([r["teacher_dsc"] for r in rows])
    print(f"{len(rows)} cases; {args.teacher}: DSC {teacher:.4f}")
    print(f"| share re-run by {args.teacher} | cascade DSC | below it (points) | s / case |")
    print("|---|---|---|---|")
    for share, dsc, seconds in cascade_table(rows):
        print(f"| {share:.0%} | {dsc:.4f} | {100 * (teacher - dsc):.1f} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
