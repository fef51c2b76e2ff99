"""Where 3D box propagation loses accuracy: the protocol's box step with other box rules and oracles.

Each object starts on the middle slice of its 3D box, prompted by the box's x/y range (the
click protocol's ``--box-format dicts`` step 1), and propagates to both ends of its z-range; every
next slice is prompted by one box. The rows differ only in where that box comes from:

* ``shipped``: the box of the previous slice's mask (cut at ``PROPAGATED_THRESHOLD``), widened
  by 3 px at model scale: the package's rule (checked against ``segment_interactive_volume`` on
  the first volume);
* ``margin M``: the same box widened by M px instead of 3;
* ``velocity``: the box moved and resized by half the change between the last two boxes;
* ``oracle: own GT box`` / ``oracle: neighbour GT box``: the ground truth's box on the slice
  itself / on the previous slice (an upper bound for any rule that takes a box from a mask);
* ``candidates: ...``: 27 boxes around the shipped one (centre moved by -6/0/+6 px in x and y,
  each side moved by -4/0/+4 px) decoded at once, one kept per slice by the true DSC (``oracle``)
  or by what a rule can see: the IoU head, SAM's stability score (pixels above logit +1 over
  pixels above -1), the mean image embedding inside the mask against the start slice's, agreement
  with the previous slice's mask, or cycle consistency (the candidate's own box decoded on the
  previous slice, compared with that slice's mask).

Mean case DSC (objects painted in label order, each object's DSC averaged per case) on every
``--every``-th volume of ``--data`` whose name starts with ``--prefix``; the embeddings of a
volume are computed once. Design analysis on training volumes, not a dev result.

    python benchmarks/propagation_oracles.py --every 12 --offset 0
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]
SHIFTS = (-6, 0, 6)
GROWTHS = (-4, 0, 4)

Selector = Callable[[dict[str, Any]], int]


def _dsc(a: NDArray, b: NDArray) -> float:
    """DSC of two masks for choosing among candidates: 1.0 when both are empty (the official
    ``umedsam.evaluation.metrics.dice``, used for the scores, gives NaN there)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _candidates(box: NDArray) -> NDArray[np.float32]:
    rows = [
        box + np.array([dx - g, dy - g, dx + g, dy + g])
        for dx in SHIFTS
        for dy in SHIFTS
        for g in GROWTHS
    ]
    rows.sort(key=lambda b: float(np.abs(b - box).sum()))  # the unchanged box first: ties keep it
    return np.clip(np.stack(rows), 0, None).astype(np.float32)


def _pooled_feature(embedding: NDArray, logits: NDArray) -> NDArray | None:
    """Mean embedding (C,) under the model-frame mask ``logits > 0``, unit length."""
    c, gh, gw = embedding.shape
    mask = (logits > 0).astype(np.float32)
    step = mask.shape[0] // gh
    weights = mask.reshape(gh, step, gw, step).mean((1, 3))
    if weights.sum() == 0:
        return None
    v = (embedding * weights).sum((1, 2)) / weights.sum()
    return v / (np.linalg.norm(v) + 1e-9)


def select_oracle(c: dict[str, Any]) -> int:
    """The candidate closest to the ground truth (an upper bound for any selector)."""
    return int(np.argmax([_dsc(m, c["gt"]) for m in c["masks"]]))


def select_iou(c: dict[str, Any]) -> int:
    """The candidate the IoU head rates highest."""
    return int(np.argmax(c["iou"][:, 0]))


def select_stability(c: dict[str, Any]) -> int:
    """The candidate with the highest stability score (pixels above +1 over pixels above -1)."""
    high = (c["logits"][:, 0] > 1).sum((1, 2))
    low = (c["logits"][:, 0] > -1).sum((1, 2))
    return int(np.argmax(high / np.maximum(low, 1)))


def select_prototype(c: dict[str, Any]) -> int:
    """The candidate whose mean embedding is closest to the start slice's."""
    scores = []
    for k in range(len(c["masks"])):
        f = _pooled_feature(c["embedding"], c["logits"][k, 0])
        scores.append(-9.0 if f is None else float(f @ c["prototype"]))
    return int(np.argmax(scores))


def select_previous(c: dict[str, Any]) -> int:
    """The candidate that agrees most with the previous slice's mask."""
    return int(np.argmax([_dsc(m, c["previous"]) for m in c["masks"]]))


def select_cycle(c: dict[str, Any]) -> int:
    """The candidate whose own box, decoded on the previous slice, agrees most with its mask."""
    from umedsam.data.transforms import low_res_to_masks, mask_to_model_box

    boxes, kept = [], []
    for k, m in enumerate(c["masks"]):
        b = mask_to_model_box(m, size=c["size"]) if m.any() else None
        if b is not None:
            boxes.append(b)
            kept.append(k)
    if not kept:
        return 0
    logits, _ = c["decode_previous"](np.stack(boxes))
    back = low_res_to_masks(logits - c["threshold"], c["new_hw"], c["hw"])
    scores = np.full(len(c["masks"]), -1.0)
    for j, k in enumerate(kept):
        scores[k] = _dsc(back[j], c["previous"])
    return int(np.argmax(scores))


def propagate_object(
    backend: Any,
    embeddings: NDArray,
    box3d: NDArray,
    gt: NDArray[np.bool_],
    threshold: float,
    *,
    margin: int = 3,
    source: str = "mask",
    velocity: bool = False,
    select: Selector | None = None,
) -> NDArray[np.bool_]:
    """One object's (D, H, W) masks by box propagation; ``source``: "mask", "gt", "gt_prev"."""
    from umedsam.data.transforms import (
        boxes_to_model_frame,
        low_res_to_masks,
        mask_to_model_box,
        resized_hw,
    )
    from umedsam.inference.propagation import key_slices

    d, h, w = gt.shape
    size = backend.image_size
    new_hw = resized_hw((h, w), size)
    z_lo, z_hi = int(box3d[2]), int(box3d[5])
    z_key = int(key_slices(box3d[None])[0])
    key_box = boxes_to_model_frame(box3d[None, [0, 1, 3, 4]], (h, w), size)[0]
    out = np.zeros((d, h, w), bool)

    def decode(z: int, boxes: NDArray) -> tuple[NDArray, NDArray]:
        return backend.decode(embeddings[z : z + 1], boxes.astype(np.float32))

    logits, _ = decode(z_key, key_box[None])
    out[z_key] = low_res_to_masks(logits, new_hw, (h, w))[0]
    prototype = _pooled_feature(embeddings[z_key], logits[0, 0])
    for step in (1, -1):
        previous, last_box = out[z_key], None
        z_end = z_hi if step == 1 else z_lo
        for z in range(z_key + step, z_end + step, step):
            src = {"mask": previous, "gt": gt[z], "gt_prev": gt[z - step]}[source]
            box = mask_to_model_box(src, size=size, margin=margin) if src.any() else None
            box = key_box if box is None else box
            if velocity and last_box is not None:
                centre, width = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
                centre0, width0 = (last_box[:2] + last_box[2:]) / 2, last_box[2:] - last_box[:2]
                last_box = box
                centre = centre + 0.5 * (centre - centre0)
                width = np.maximum(width + 0.5 * (width - width0), 4)
                box = np.clip(np.concatenate([centre - width / 2, centre + width / 2]), 0, size)
            else:
                last_box = box
            boxes = _candidates(box) if select is not None else box[None]
            logits, iou = decode(z, boxes)
            masks = low_res_to_masks(logits - threshold, new_hw, (h, w))
            k = 0
            if select is not None:
                k = select(
                    {
                        "masks": masks,
                        "logits": logits,
                        "iou": iou,
                        "gt": gt[z],
                        "previous": previous,
                        "embedding": embeddings[z],
                        "prototype": prototype,
                        "decode_previous": lambda b, zp=z - step: decode(zp, b),
                        "threshold": threshold,
                        "new_hw": new_hw,
                        "hw": (h, w),
                        "size": size,
                    }
                )
            out[z] = masks[k]
            previous = out[z]
    return out


ROWS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "margin 1": {"margin": 1},
    "margin 5": {"margin": 5},
    "velocity": {"velocity": True},
    "oracle: own GT box": {"source": "gt"},
    "oracle: neighbour GT box": {"source": "gt_prev"},
    "candidates: oracle": {"select": select_oracle},
    "candidates: IoU head": {"select": select_iou},
    "candidates: stability": {"select": select_stability},
    "candidates: prototype": {"select": select_prototype},
    "candidates: previous mask": {"select": select_previous},
    "candidates: cycle": {"select": select_cycle},
}


def _check_against_package(backend: Any, imgs: NDArray, boxes: NDArray, segs: NDArray) -> None:
    """The ``shipped`` row must be the package's own 3D box step (dict boxes, mask prompts)."""
    from umedsam.data.npz import CasePrompts
    from umedsam.inference.interactive import segment_interactive_volume
    from umedsam.inference.propagation import key_slices

    n = len(boxes)
    prompts = CasePrompts(
        labels=np.arange(1, n + 1),
        boxes=boxes.astype(np.float64),
        start_slices=key_slices(boxes.astype(np.float64)),
        clicks=tuple(np.zeros((0, 3), np.int64) for _ in range(n)),
        click_labels=tuple(np.zeros(0, np.int64) for _ in range(n)),
    )
    package, _ = segment_interactive_volume(backend, imgs, prompts)
    if not np.array_equal(package, segs):
        raise SystemExit("the shipped row differs from segment_interactive_volume")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "train")
    parser.add_argument("--prefix", default="3DBox_MR")
    parser.add_argument("--every", type=int, default=12)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--model", default="umedsam_interactive")
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    args = parser.parse_args(argv)

    from umedsam.data.transforms import preprocess_slices
    from umedsam.evaluation.metrics import dice
    from umedsam.inference.engines import EngineSpec, open_engine
    from umedsam.inference.interactive import PROPAGATED_THRESHOLD

    backend = open_engine(EngineSpec(args.model, None, args.engine, None)).backend
    paths = sorted((args.data / "imgs").glob(f"{args.prefix}*.npz"))[args.offset :: args.every]
    volumes = []
    for path in paths:
        with np.load(path) as f, np.load(args.data / "gts" / path.name) as g:
            imgs, boxes, gts = f["imgs"], f["boxes"], g["gts"]
        arrays, _ = preprocess_slices(imgs, backend.image_size)
        emb = np.concatenate([backend.encode(arrays[z : z + 1]) for z in range(len(imgs))])
        volumes.append((path.name, imgs, boxes, gts, emb))
    print(
        f"{len(volumes)} volumes, {args.model}, threshold {PROPAGATED_THRESHOLD}", file=sys.stderr
    )
    print("| box of the next slice | mean case DSC | seconds |\n|---|---|---|")
    for row in args.rows:
        start, scores = time.perf_counter(), []
        for k, (_, imgs, boxes, gts, emb) in enumerate(volumes):
            segs = np.zeros(gts.shape, np.uint8)
            for i, box in enumerate(boxes):
                m = propagate_object(
                    backend,
                    emb,
                    box.astype(np.float64),
                    gts == i + 1,
                    PROPAGATED_THRESHOLD,
                    **ROWS[row],
                )
                segs[m & (segs < i + 1)] = i + 1
            if row == "shipped" and k == 0:
                _check_against_package(backend, imgs, boxes, segs)
            labels = [int(v) for v in np.unique(gts)[1:]]
            scores.append(statistics.fmean(dice(segs == v, gts == v) for v in labels))
        seconds = time.perf_counter() - start
        print(f"| {row} | {statistics.fmean(scores):.4f} | {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
