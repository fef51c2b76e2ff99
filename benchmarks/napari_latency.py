"""Latency of the napari plugin's own calls, and of the web app's JSON API on the CT example.

The plugin's calls are what its widget runs on each prompt change: ``Annotator.compute`` (the
model, in the widget's worker) plus ``Annotator.apply`` (the label map). With the image's
embeddings ready (encoded ahead, as the widget does at Start), it times the median of
``--repeats`` prompts, each slightly different (no cached result is reused):

* 2D click: a positive click on the HC18 ultrasound example after its box;
* 3D box: a box drawn on the middle slice spanning ``--slices`` slices of a volume made from
  the MR brain NRRD of ``shared/data/formats`` (resampled along z), propagated through them;
* 3D correction: a click on another slice of that object, re-propagated.

Targets (issue 39): 2D click <= 100 ms, 3D box over 40 slices <= 2 s, correction <= 2 s.

The web app row: ``POST /api/sessions/{sid}/segment`` on the CT lesion example (7 slices) with a
second 3D box next to the case's own box, round trip and the server's own ``seconds``.

    python benchmarks/napari_latency.py [--engine auto] [--slices 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from umedsam.models.cards import DEFAULT_MODEL
from umedsam.napari.annotator import Annotator, ObjectPrompts
from umedsam.napari.reader import load
from umedsam.napari.widget import _holder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ui_latency import _serve, make_volume  # noqa: E402


def timed(annotator: Annotator, prompts: ObjectPrompts) -> float:
    """Seconds of one prompt change as the widget runs it (compute + apply)."""
    start = time.perf_counter()
    annotator.apply(annotator.compute(prompts))
    return time.perf_counter() - start


def ready(annotator: Annotator) -> float:
    """Encode ahead as the widget's worker does; seconds to ready."""
    start = time.perf_counter()
    annotator.precompute()
    return time.perf_counter() - start


def plugin_2d(engine: str, repeats: int) -> dict[str, float]:
    """Median 2D box and click times on the ultrasound example."""
    from umedsam.examples import examples_dir

    image = load(examples_dir() / "imgs" / "2DBox_US_HC18_002.npz")
    reference = np.asarray(image.ground_truth)
    ys, xs = np.nonzero(reference)
    h, w = reference.shape
    annotator = Annotator(image, _holder(DEFAULT_MODEL, engine), np.zeros((h, w), np.int32))
    encode = ready(annotator)
    boxes, clicks = [], []
    for k in range(repeats):
        box = (int(xs.min()) - k, int(ys.min()), int(xs.max()) + 1 + k, int(ys.max()) + 1)
        boxes.append(timed(annotator, ObjectPrompts(box)))
        click = ((int(xs.mean()) + k, int(ys.mean()), 1),)
        clicks.append(timed(annotator, ObjectPrompts(box, click)))
        annotator.new_object()
    return {"encode": encode, "box": statistics.median(boxes), "click": statistics.median(clicks)}


def plugin_3d(engine: str, slices: int, repeats: int, formats: Path) -> dict[str, float]:
    """Median 3D box (over ``slices`` slices) and correction times on the MR volume."""
    with tempfile.TemporaryDirectory() as tmp:
        path = make_volume(formats / "nrrd" / "brain1", slices, Path(tmp) / "mr.npz")
        image = load(path)
    box = [int(v) for v in np.asarray(image.stored_boxes)[0]]
    d = image.pixels.shape[0]
    labels = np.zeros(image.pixels.shape, np.int32)
    annotator = Annotator(image, _holder(DEFAULT_MODEL, engine), labels)
    encode = ready(annotator)
    boxes, corrections = [], []
    for k in range(repeats):
        drawn = (box[0] - k, box[1], 0, box[3] + k, box[4], d - 1)
        boxes.append(timed(annotator, ObjectPrompts(drawn)))
        z = d // 2 + 5
        plane = labels[z] > 0
        ys, xs = np.nonzero(plane) if plane.any() else ([box[1] + 5], [box[0] + 5])
        click = ((int(np.median(xs)), int(np.median(ys)), z, 0),)
        corrections.append(timed(annotator, ObjectPrompts(drawn, click)))
        annotator.new_object()
    return {
        "encode": encode,
        "box": statistics.median(boxes),
        "correction": statistics.median(corrections),
    }


def web_second_box(engine: str, repeats: int) -> tuple[float, float]:
    """Median round trip and server seconds of a second 3D box on the CT lesion example."""
    from umedsam.ui.app import UIConfig

    base, _server = _serve(UIConfig(port=0, engine=engine, workdir=tempfile.mkdtemp()))

    def post(path: str, body: dict | None = None) -> dict:
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(base + path, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=300) as reply:
            return json.loads(reply.read())

    trips, inside = [], []
    for k in range(repeats):
        info = post("/api/examples/3DBox_CT_DeepLesion_000001_02_01_008_023")
        sid, first = info["session"], info["stored_boxes"][0]
        while not json.loads(urllib.request.urlopen(f"{base}/api/sessions/{sid}/status").read())[
            "ready"
        ]:
            time.sleep(0.1)
        post(f"/api/sessions/{sid}/segment", {"boxes": [first]})
        second = [20 + k, 20, 1, 80 + k, 80, 5]
        start = time.perf_counter()
        reply = post(f"/api/sessions/{sid}/segment", {"boxes": [first, second]})
        trips.append(time.perf_counter() - start)
        inside.append(reply["seconds"])
    return statistics.median(trips), statistics.median(inside)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--formats", type=Path, default=HERE.parents[1] / "shared/data/formats")
    args = parser.parse_args(argv)
    two = plugin_2d(args.engine, args.repeats)
    three = plugin_3d(args.engine, args.slices, args.repeats, args.formats)
    trip, inside = web_second_box(args.engine, args.repeats)
    print(f"model {DEFAULT_MODEL}, engine {args.engine}, medians of {args.repeats}\n")
    print("| step | seconds | target |\n|---|---:|---:|")
    print(f"| plugin 2D: encode at Start | {two['encode']:.2f} | |")
    print(f"| plugin 2D: box | {two['box']:.3f} | |")
    print(f"| plugin 2D: click | {two['click']:.3f} | 0.100 |")
    print(f"| plugin 3D: encode {args.slices} slices at Start | {three['encode']:.2f} | |")
    print(f"| plugin 3D: box over {args.slices} slices | {three['box']:.3f} | 2.0 |")
    print(f"| plugin 3D: correction click | {three['correction']:.3f} | 2.0 |")
    print(f"| web app: second 3D box, CT example (round trip) | {trip:.3f} | |")
    print(f"| web app: second 3D box, CT example (in the server) | {inside:.3f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
