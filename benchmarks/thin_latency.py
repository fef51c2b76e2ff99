"""Latency of a thin-structure stroke in the apps, against a model correction (issue 37).

The web app and napari answer a *thin structure* stroke with ``Predictor.trace_thin``: the
mask ``umedsam predict --thin-structures`` gives for the same box and strokes, traced along the
image's ridges (:mod:`umedsam.inference.thin`) without a decoder call. The ridge filter is
computed once per image and polarity and kept by the predictor, so only the first stroke pays
it. For each DRIVE test image (the new dev
set's vessels, configs/new_dev.yaml), with the embedding cached as in the apps, this times:

* ``model correction``: the scribble as a correction of the box's mask (box, strokes and the
  box's mask as the dense prompt; the apps' 2D correction, decoder only: the baseline);
* ``first thin stroke``: the same call with ``thin_strokes=True`` on a fresh predictor (the
  filter runs);
* ``next thin stroke``: a second stroke on the same image (the filter's response reused);
* ``uncached next stroke``: the second stroke with the response dropped (what each stroke cost
  before the response was kept).

Medians over images and ``--repeats`` repeats, in ms, and each row's ratio to the baseline.

    python benchmarks/thin_latency.py [--images 5] [--repeats 3] [--engine onnx] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

from umedsam.data.interaction import challenge_boxes, simulate_scribble
from umedsam.data.sources import open_source
from umedsam.inference.engines import EngineSpec, open_engine
from umedsam.inference.predictor import Predictor
from umedsam.models.cards import INTERACTIVE_MODEL

ROWS = ("model correction", "first thin stroke", "next thin stroke", "uncached next stroke")


def strokes_of(mask: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two stroke maps of a vessel tree: one centre-line stroke, then a second one added."""
    rng = np.random.default_rng(seed)
    first = np.zeros(mask.shape, np.int8)
    first[simulate_scribble(mask, rng, family="centerline")] = 1
    second = first.copy()
    second[simulate_scribble(mask, rng, family="centerline")] = 1
    return first, second


def timed(call) -> float:  # type: ignore[no-untyped-def]
    """Milliseconds one call takes."""
    start = time.perf_counter()
    call()
    return 1000.0 * (time.perf_counter() - start)


def time_image(backend, image: np.ndarray, mask: np.ndarray, seed: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """One image's times (ms) of the four rows."""
    box = challenge_boxes(mask.astype(np.uint8))[:1]
    first, second = strokes_of(mask, seed)
    predictor = Predictor(backend)
    predictor.set_image(image)

    earlier = predictor.predict(box, return_logits=False).low_res_logits  # the box's mask

    def run(smap: np.ndarray, _thin: bool) -> None:  # as the apps' corrections.py does
        predictor.trace_thin(smap, box[0].astype(np.float64))

    out = {
        "model correction": timed(
            lambda: predictor.predict(
                box, scribbles=[first], mask_input=earlier, return_logits=False
            )
        )
    }
    predictor._ridges = {}  # a fresh image as far as the filter goes
    out["first thin stroke"] = timed(lambda: run(first, True))
    out["next thin stroke"] = timed(lambda: run(second, True))
    predictor._ridges = {}
    out["uncached next stroke"] = timed(lambda: run(second, True))
    return out


def main() -> None:
    """Time the rows on the chosen DRIVE test images; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/new_dev.yaml"))
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    specs = yaml.safe_load(args.config.read_text())["sets"]
    source = open_source(next(s for s in specs if s["name"] == "drive-vessels"))
    spec = EngineSpec(INTERACTIVE_MODEL, engine=args.engine, threads=args.threads)
    backend = open_engine(spec).backend
    times: dict[str, list[float]] = {row: [] for row in ROWS}
    for k, case in enumerate(source.case_names()[: args.images]):
        labelled = source.load(case)
        image, mask = np.asarray(labelled.imgs), np.asarray(labelled.gts) > 0
        time_image(backend, image, mask, seed=k)  # warm-up: engine and allocator
        for repeat in range(args.repeats):
            for row, ms in time_image(backend, image, mask, seed=k + repeat).items():
                times[row].append(ms)
    base = statistics.median(times[ROWS[0]])
    print(
        f"{args.images} DRIVE test images x {args.repeats}, engine {args.engine}, "
        f"{args.threads} threads; medians"
    )
    print("| step | ms | x model correction |\n|---|---:|---:|")
    for row in ROWS:
        value = statistics.median(times[row])
        print(f"| {row} | {value:.0f} | {value / base:.2f} |")


if __name__ == "__main__":
    main()
