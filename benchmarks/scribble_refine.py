"""Does a second decoder pass help scribble prompts? Scribble-only and scribble + box DSC with
0, 1 or 2 refinement passes (the same prompts again, the previous pass's low-resolution logits as
the dense prompt), on the 2D cases of a challenge folder.

Strokes are drawn as ``benchmarks/interactive.py --protocol scribbles`` draws them (same seeds,
same families); the DSC is the mean over a case's objects. Used to decide, on training cases,
whether ``umedsam_interactive`` should refine first predictions from scribbles (docs/interactive_log.md).

    python benchmarks/scribble_refine.py ../shared/data/train --every 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _dsc(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def main(argv: list[str] | None = None) -> int:
    from umedsam.data.interaction import simulate_scribble
    from umedsam.data.npz import load_case
    from umedsam.inference.engines import EngineSpec, open_engine
    from umedsam.inference.predictor import Predictor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a challenge folder with imgs/ and gts/")
    parser.add_argument("--every", type=int, default=1, help="every k-th 2D case (sorted names)")
    parser.add_argument("--model", default="umedsam_interactive")
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--passes", type=int, default=2, help="refinement passes after the first")
    args = parser.parse_args(argv)

    backend = open_engine(EngineSpec(args.model, None, args.engine, 2)).backend
    scores: dict[tuple[str, str, int], list[float]] = {}
    for path in sorted((args.folder / "imgs").glob("2D*.npz"))[:: args.every]:
        case = load_case(path)
        with np.load(args.folder / "gts" / path.name) as g:
            gts = g["gts"]
        n = case.num_objects
        predictor = Predictor(backend)
        predictor.set_image(case.imgs)
        for family in ("centerline", "curve", "contour"):
            rng = np.random.default_rng([sum(map(ord, path.name)), len(family)])
            maps = []
            for i in range(n):
                maps.append(simulate_scribble(gts == i + 1, rng, family).astype(np.int8))
                simulate_scribble(gts == i + 1, rng, "background")  # the benchmark's rng stream
            if any(not m.any() for m in maps):
                continue  # an object too small for this family, as the benchmark skips it
            for variant, boxes in (("scribble", None), ("scribble + box", case.boxes)):
                pred = predictor.predict(boxes, scribbles=maps, return_logits=False)
                for k in range(args.passes + 1):
                    if k:
                        pred = predictor.predict(
                            boxes,
                            scribbles=maps,
                            mask_input=pred.low_res_logits,
                            return_logits=False,
                        )
                    seg = np.zeros(gts.shape, np.int32)
                    for i in range(n):
                        seg[pred.masks[i] > 0] = i + 1
                    dsc = float(np.mean([_dsc(seg == i + 1, gts == i + 1) for i in range(n)]))
                    scores.setdefault((family, variant, k), []).append(dsc)
        print(path.name, file=sys.stderr, flush=True)
    print(
        "| family | prompt | cases | "
        + " | ".join(f"{k} refinement pass{'es' if k != 1 else ''}" for k in range(args.passes + 1))
        + " |"
    )
    print("|---|---|---|" + "---|" * (args.passes + 1))
    for family in ("centerline", "curve", "contour"):
        for variant in ("scribble", "scribble + box"):
            row = [scores.get((family, variant, k), []) for k in range(args.passes + 1)]
            if row[0]:
                means = " | ".join(f"{np.mean(v):.4f}" for v in row)
                print(f"| {family} | {variant} | {len(row[0])} | {means} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
