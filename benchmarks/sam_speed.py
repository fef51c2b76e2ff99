"""CPU speed of a SAM-family ViT-B checkpoint (MedSAM / SAM ViT-B) on every engine, next to
LiteMedSAM in the same run.

The weights are random, saved in segment-anything's key layout as ``medsam_vit_b.pth`` (speed
does not depend on the values; no real checkpoint can be downloaded here), so the "agree"
column (DSC of each engine's masks against torch float32 on 4 boxes of a synthetic image) only
shows how far reduced precision moves a random network's masks: a user validates a real
checkpoint with ``umedsam export`` (parity) and on their own cases.

Per engine: the median of ``--calls`` encoder calls on one preprocessed 1024-px image after a
warm-up call, the median decoder call (4 boxes), the family's preprocessing of a 512 x 512
image (MedSAM's bicubic stretch, SAM's PIL resize), the time to prepare the engine (export and
parity check on a cache miss), and the 3D cost per slice of a box propagated over 10 slices of
a 512 x 512 volume. LiteMedSAM's encoder (256 px) is timed on the same engines for scale.

Example (the numbers in docs/performance.md)::

    python benchmarks/sam_speed.py --threads 2 --calls 5 \
        --engines torch,onnx,openvino,openvino-bf16,onnx-int8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def random_vit_b(folder: Path) -> Path:
    """A random-weight ViT-B checkpoint in the official key layout (made once)."""
    import torch

    from umedsam.models.registry import build_model

    path = folder / "medsam_vit_b.pth"
    if not path.is_file():
        torch.manual_seed(0)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(build_model("sam_vit_b").state_dict(), path)
    return path


def synthetic_image(side: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """A grey image with four bright blobs, and a box around each."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:side, :side]
    image = 40 + 20 * np.sin(xx / 29.0) + rng.normal(0, 5, (side, side))
    boxes = []
    for cy, cx, r in ((130, 140, 50), (150, 370, 35), (360, 160, 70), (380, 380, 25)):
        image += 120 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
        boxes.append([cx - r - 4, cy - r - 4, cx + r + 4, cy + r + 4])
    return np.clip(image, 0, 255).astype(np.uint8), np.asarray(boxes, np.float64)


def median_seconds(fn, calls: int) -> float:
    """Median wall time of ``calls`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def dsc(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def time_engine(model: str, checkpoint: Path | None, engine: str, args, image, boxes) -> dict:
    """One row: prepare, preprocess, encode, decode and 3D-per-slice times, and the masks."""
    from umedsam.inference.engines import EngineSpec, open_engine
    from umedsam.inference.predictor import Predictor
    from umedsam.inference.segment import segment_volume_case

    start = time.perf_counter()
    opened = open_engine(EngineSpec(model, checkpoint, engine=engine, threads=args.threads))
    prepare = time.perf_counter() - start
    backend = opened.backend
    frame = backend.frame
    array, _ = frame.preprocess_image(image)
    pre = median_seconds(lambda: frame.preprocess_image(image), args.calls)
    enc = median_seconds(lambda: backend.encode(array), args.calls)
    embedding = backend.encode(array)
    framed = frame.boxes_to_frame(boxes, image.shape)
    dec = median_seconds(lambda: backend.decode(embedding, framed), args.calls)
    predictor = Predictor(backend)
    predictor.set_image(image)
    masks = predictor.predict(boxes, return_logits=False).masks
    volume = np.repeat(image[None], 20, axis=0)
    box3d = np.array([[100, 100, 5, 420, 420, 14]], np.float64)
    start = time.perf_counter()
    result = segment_volume_case(backend, volume, box3d)
    per_slice = (time.perf_counter() - start) / max(1, result.stats.encoder_calls)
    return {
        "model": model,
        "engine": opened.name,
        "prepare": prepare,
        "pre": pre,
        "enc": enc,
        "dec": dec,
        "slice": per_slice,
        "masks": masks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="torch,onnx,openvino,openvino-bf16,onnx-int8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "sam_speed")
    parser.add_argument("--skip-lite", action="store_true", help="do not time LiteMedSAM")
    args = parser.parse_args(argv)
    import torch

    from umedsam.inference.backends.torch import tune_allocator

    torch.set_num_threads(args.threads)
    tune_allocator()
    checkpoint = random_vit_b(args.work)
    image, boxes = synthetic_image()
    engines = [e for e in args.engines.split(",") if e]
    rows = []
    for engine in engines:
        rows.append(time_engine("medsam_vit_b", checkpoint, engine, args, image, boxes))
        print(f"  measured medsam_vit_b on {engine}", file=sys.stderr, flush=True)
    if not args.skip_lite:
        for engine in ("torch", "openvino"):
            if engine in engines:
                rows.append(time_engine("litemedsam", None, engine, args, image, boxes))
    reference = rows[0]["masks"]
    lite_torch = next((r for r in rows if r["model"] == "litemedsam"), None)
    print(
        f"\n{len(boxes)} boxes on a 512 x 512 image; {args.threads} threads; medians of "
        f"{args.calls} calls; agree = min DSC vs medsam_vit_b on torch (random weights)"
    )
    header = (
        f"{'model':14s} {'engine':22s} {'prepare s':>9s} {'preproc s':>9s} {'encode s':>9s} "
        f"{'decode ms':>9s} {'3D s/slice':>10s} {'agree':>6s}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        agree = (
            min(dsc(a, b) for a, b in zip(row["masks"], reference, strict=True))
            if row["model"] == "medsam_vit_b"
            else float("nan")
        )
        print(
            f"{row['model']:14s} {row['engine']:22s} {row['prepare']:9.1f} {row['pre']:9.3f} "
            f"{row['enc']:9.2f} {row['dec'] * 1e3:9.1f} {row['slice']:10.2f} {agree:6.3f}"
        )
    if lite_torch is not None:
        print(
            f"\nViT-B encoder on torch / LiteMedSAM encoder on torch: "
            f"{rows[0]['enc'] / lite_torch['enc']:.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
