"""Does a float16 slice-embedding cache change 3D masks? (the web app keeps one per volume)

For every 3D case of a folder, the slices are encoded once; the same embeddings are then kept in
a float32 cache and in a float16 cache, every box is propagated through both, and the two label
maps are compared: identical voxels, per-object DSC between them, and each one's DSC against the
ground truth. Memory per slice is printed beside.

    python benchmarks/slice_cache_dtype.py --imgs ../shared/data/dev/imgs \\
        --gts ../shared/data/dev/gts --engine onnx --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


def _dsc(a: NDArray, b: NDArray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _label_map(backend, volume: NDArray, boxes: NDArray, cache) -> NDArray:
    from umedsam.data.npz import label_dtype
    from umedsam.inference.propagation import paint_labels, propagate

    segs = np.zeros(volume.shape, dtype=label_dtype(len(boxes)))
    for res in propagate(backend, volume, boxes, embeddings=cache):
        paint_labels(segs[res.z], res.masks, res.object_ids + 1)
    return segs


def main(argv: list[str] | None = None) -> int:
    """Compare float32 and float16 slice caches on every 3D case; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgs", type=Path, required=True)
    parser.add_argument("--gts", type=Path, help="ground truth folder (adds DSC vs GT)")
    parser.add_argument("--model", default="litemedsam")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from umedsam.data.npz import load_case
    from umedsam.inference.engines import EngineSpec, open_engine
    from umedsam.inference.propagation import SliceEmbeddingCache, encode_volume

    engine = open_engine(EngineSpec(args.model, None, args.engine, args.threads))
    print(f"engine {engine.plan.spec.engine}, model {args.model}\n")
    print(
        "| case | slices | objects | identical voxels | min object DSC f16 vs f32 | "
        "DSC vs GT f32 | DSC vs GT f16 | MB/slice f32 | MB/slice f16 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 1.0
    for path in sorted(args.imgs.glob("3D*.npz")):
        case = load_case(path)
        boxes, volume = case.boxes, case.imgs
        full = SliceEmbeddingCache(1 << 20, np.float32)
        encode_volume(engine.backend, volume, full)
        half = SliceEmbeddingCache(1 << 20, np.float16)
        for z in range(volume.shape[0]):
            emb = full.get(z)
            if emb is not None:
                half.put(z, emb)
        segs32 = _label_map(engine.backend, volume, boxes, full)
        segs16 = _label_map(engine.backend, volume, boxes, half)
        ids = range(1, len(boxes) + 1)
        agree = min(_dsc(segs32 == i, segs16 == i) for i in ids)
        worst = min(worst, agree)
        gt_cells = ["", ""]
        if args.gts is not None:
            gts = np.load(args.gts / path.name)["gts"]
            for k, segs in enumerate((segs32, segs16)):  # box i is label i + 1 in both
                gt_cells[k] = f"{np.mean([_dsc(segs == i, gts == i) for i in ids]):.4f}"
        print(
            f"| {path.stem} | {volume.shape[0]} | {len(boxes)} | "
            f"{np.mean(segs32 == segs16):.6f} | {agree:.4f} | {gt_cells[0]} | {gt_cells[1]} | "
            f"{full.megabytes / max(len(full), 1):.2f} | {half.megabytes / max(len(half), 1):.2f} |"
        )
    print(f"\nsmallest per-object DSC between the float16 and float32 caches: {worst:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
