"""Web-app latency in a real browser: from the user's action to the mask drawn on the page.

Starts ``umedsam ui`` in-process (the default engine, or ``--engine``), drives headless Chromium
with Playwright and times, with the image's embeddings ready (the app encodes at open):

* 2D box: mouse-up after dragging a box -> the new mask drawn (the page's ``data-version``
  changes once the mask slice has loaded and been drawn);
* 2D click: a positive click on the object (click tool) -> its corrected mask drawn;
* 3D box: the Segment button for a new box propagated over ``--slices`` slices -> mask drawn;
* 3D correction: a click on another slice -> the re-propagated mask drawn.

Each is repeated ``--repeats`` times with slightly different prompts (no result is reused) and
the table gives medians. Also printed: the time from opening an image to its ready embeddings
(the volume is uploaded ``--repeats`` times, each a new session that encodes every slice), with
the server's own share beside each row.

    python benchmarks/ui_latency.py            # the app as ``umedsam ui`` starts it
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from umedsam.models.cards import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [  # as tests/ui/test_browser.py starts Debian's Chromium
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _serve(config):  # type: ignore[no-untyped-def]
    import socket

    import uvicorn

    from umedsam.ui.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def _check_encoded(page) -> None:  # type: ignore[no-untyped-def]
    if page.evaluate("document.body.dataset.encoded") != "1":
        raise SystemExit("encoding at open failed: " + page.inner_text("#embed-label"))


# Timed inside the page: Playwright's own waits poll at up to 100 ms intervals, which would
# round every latency up. The page records when the user's action ended (the last pointer-up or
# click) and the first animation frame after the new mask was drawn (``data-version`` changes
# right after drawing); the latency is the difference.
LATENCY_PROBE = """
window.__latency = {action: 0, drawn: {}};
for (const kind of ["pointerup", "click"]) {
  document.addEventListener(kind, () => { window.__latency.action = performance.now(); }, true);
}
new MutationObserver(() => {
  const version = document.body.dataset.version;
  const action = window.__latency.action;
  requestAnimationFrame(() => { window.__latency.drawn[version] = performance.now() - action; });
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-version"]});
"""


# Waits for an image's embeddings poll every 50 ms rather than at every animation frame: polling
# at each frame makes headless Chromium render 60 frames a second, which takes CPU time from the
# encoder that a page left alone would not (up to 50 ms of rounding on a 1-16 s wait).
OPEN_POLL_MS = 50


def _timed(page, action, version: int, timeout: float = 120_000) -> float:  # type: ignore[no-untyped-def]
    """Seconds from the end of ``action`` (mouse-up or click) to the frame showing ``version``."""
    page.evaluate(f"delete window.__latency.drawn['{version}']")  # versions restart per image
    action()
    page.wait_for_function(f"window.__latency.drawn['{version}'] !== undefined", timeout=timeout)
    return float(page.evaluate(f"window.__latency.drawn['{version}']")) / 1000


def _encode_seconds(page) -> float | None:  # type: ignore[no-untyped-def]
    """The server's own time from opening the image to every embedding ready."""
    status = page.evaluate(
        "fetch(`/api/sessions/${document.body.dataset.session}/status`).then((r) => r.json())"
    )
    return status.get("seconds")


def _server_seconds(page) -> float | None:  # type: ignore[no-untyped-def]
    """The server's own time for the last segmentation, as the page's status line shows it."""
    text = page.inner_text("#status")
    return float(text.split()[2]) if text.startswith("Done in ") else None


DEFAULT_VOLUME = REPO.parent / "shared" / "data" / "formats" / "nrrd" / "brain1"


def make_volume(stem: Path, depth: int, out: Path) -> Path:
    """A ``depth``-slice challenge case from a real NRRD volume and its label.

    The MR brain volume of ``shared/data/formats`` (25 slices of 256 x 256) is resampled
    linearly along z to ``depth`` slices; its box spans the label's extent in x/y and every
    slice in z, so a box propagates through all ``depth`` slices.
    """
    from scipy.ndimage import zoom

    from umedsam.data.readers import read_image

    image, _ = read_image(stem.with_name(stem.name + "_image.nrrd"))
    label, _ = read_image(stem.with_name(stem.name + "_label.nrrd"), labels=True)
    volume = zoom(image.astype(np.float32), (depth / image.shape[0], 1, 1), order=1)
    ys, xs = np.nonzero(label.any(axis=0))
    box = [xs.min(), ys.min(), 0, xs.max(), ys.max(), depth - 1]
    np.savez(out, imgs=volume.astype(np.int16), boxes=np.array([box]))
    return out


def gemm_context(slices: int, threads: int = 2) -> str:
    """This CPU's matrix-multiply rate next to the encoder's cost, to read the open time against.

    The rate is the best of 5 float32 (and bfloat16) 4096 x 4096 products in PyTorch on
    ``threads`` threads; the encoder's multiply-adds are counted with PyTorch's FLOP counter.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from umedsam.models.registry import build_model

    torch.set_num_threads(threads)
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(4096, 4096, dtype=dtype), torch.randn(4096, 4096, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        rates[dtype] = 4096**3 / best / 1e9
    encoder = build_model("litemedsam").image_encoder.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        encoder(torch.zeros(1, 3, 256, 256))
    gmac = counter.get_total_flops() / 2e9
    f32 = rates[torch.float32]
    return (
        f"GEMM on {threads} threads: f32 {f32:.0f} GMAC/s, bf16 {rates[torch.bfloat16]:.0f} "
        f"GMAC/s. The LiteMedSAM encoder costs {gmac:.1f} GMAC per slice: {slices} slices at "
        f"the f32 GEMM rate would take {slices * gmac / f32:.1f} s"
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="default: the app's default")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument(
        "--volume",
        type=Path,
        default=DEFAULT_VOLUME,
        help="NRRD stem (STEM_image.nrrd, STEM_label.nrrd) resampled to --slices slices",
    )
    parser.add_argument("--screenshots", type=Path, help="save a screenshot per measurement here")
    return parser.parse_args(argv)


class _Rows:
    """Seconds per measured action (browser-side) and the server's share of each."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self.server: dict[str, list[float | None]] = {}  # from the status line

    def add(self, name: str, seconds: float, server: float | None) -> None:
        self.seconds.setdefault(name, []).append(seconds)
        self.server.setdefault(name, []).append(server)


def _open_example_twice(page, rows: _Rows) -> None:  # type: ignore[no-untyped-def]
    """Open the bundled ultrasound example twice: with the engine's start, then running."""
    for label in ("first", "next"):
        previous = page.evaluate("document.body.dataset.session || ''")
        start = time.perf_counter()
        page.click("button[data-example='2DBox_US_HC18_002']")
        page.wait_for_function(
            f"document.body.dataset.session !== '{previous}' && "
            "document.body.dataset.encoded !== undefined && document.body.dataset.encoded !== '0'",
            polling=OPEN_POLL_MS,
            timeout=600_000,
        )
        _check_encoded(page)
        name = "open 2D image to ready embedding"
        row = (
            f"{name} ({label} image: engine start included)"
            if label == "first"
            else f"{name} (engine running)"
        )
        rows.add(row, time.perf_counter() - start, _encode_seconds(page))


def _canvas_scale(page):  # type: ignore[no-untyped-def]
    """(canvas bounding box, x scale, y scale) from image pixels to the page."""
    canvas = page.locator("#canvas").bounding_box()
    w = int(page.evaluate("state.info.width"))
    h = int(page.evaluate("state.info.height"))
    return canvas, canvas["width"] / w, canvas["height"] / h


def _measure_2d(page, args: argparse.Namespace, rows: _Rows) -> bool:  # type: ignore[no-untyped-def]
    """2D rows: open, boxes (each undone), clicks; whether the model takes clicks."""
    _open_example_twice(page, rows)
    canvas, sx, sy = _canvas_scale(page)
    version = 0
    rows.seconds["2D box"] = []
    for k in range(args.repeats + 1):
        x0, y0, x1, y1 = 300 + k, 180 + k, 520 + k, 380 + k
        page.mouse.move(canvas["x"] + x0 * sx, canvas["y"] + y0 * sy)
        page.mouse.down()
        page.mouse.move(canvas["x"] + x1 * sx, canvas["y"] + y1 * sy, steps=4)
        version += 1
        t = _timed(page, page.mouse.up, version)
        if k:
            rows.add("2D box", t, _server_seconds(page))
        else:
            rows.seconds["2D box, the first after opening"] = [t]
        page.keyboard.press("Control+z")
        version += 1
        page.wait_for_selector(f"body[data-version='{version}']")
    page.mouse.move(canvas["x"] + 300 * sx, canvas["y"] + 180 * sy)
    page.mouse.down()
    page.mouse.move(canvas["x"] + 520 * sx, canvas["y"] + 380 * sy, steps=4)
    version += 1
    _timed(page, page.mouse.up, version)
    clicks = bool(page.evaluate("state.clicksAllowed"))  # box-only models have no click tool
    page.keyboard.press("c")
    rows.seconds["2D click"] = []
    for k in range(args.repeats + 1 if clicks else 0):
        x, y = 410 + 3 * k, 280
        version += 1
        t = _timed(
            page,
            lambda x=x, y=y: page.mouse.click(canvas["x"] + x * sx, canvas["y"] + y * sy),
            version,
        )
        if k:
            rows.add("2D click", t, _server_seconds(page))
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.screenshots / "latency-2d.png"))
    return clicks


def _open_volume(page, args: argparse.Namespace, work: Path, rows: _Rows) -> Path:  # type: ignore[no-untyped-def]
    """Upload the resampled MR volume ``--repeats`` times (each a new session); its path."""
    volume = make_volume(args.volume, args.slices, work / f"3DBox_MR_{args.slices}.npz")
    page.keyboard.press("b")
    row = f"open {args.slices}-slice volume to ready embeddings"
    rows.seconds[row], rows.server[row] = [], []
    for _ in range(args.repeats):  # each upload opens a new session that encodes afresh
        previous = page.evaluate("document.body.dataset.session")
        start = time.perf_counter()
        page.set_input_files("#file", str(volume))
        page.wait_for_function(
            f"document.body.dataset.session !== '{previous}' && "
            "document.body.dataset.encoded !== undefined "
            "&& document.body.dataset.encoded !== '0'",
            polling=OPEN_POLL_MS,
            timeout=600_000,
        )
        _check_encoded(page)
        rows.add(row, time.perf_counter() - start, _encode_seconds(page))
    return volume


def _measure_3d(page, args: argparse.Namespace, work: Path, rows: _Rows, clicks: bool) -> None:  # type: ignore[no-untyped-def]
    """3D rows: open the volume, boxes over its middle slices, clicks on another slice."""
    volume = _open_volume(page, args, work, rows)
    depth = int(page.evaluate("state.info.depth"))
    canvas, sx, sy = _canvas_scale(page)
    box = np.load(volume)["boxes"][0]
    z_lo = max(0, depth // 2 - args.slices // 2)
    z_hi = min(depth - 1, z_lo + args.slices - 1)
    version = 0
    name = f"3D box, {z_hi - z_lo + 1} slices"
    rows.seconds[name] = []
    for k in range(args.repeats + 1):
        page.evaluate(
            f"state.boxes = [{{x0: {box[0] + k}, y0: {box[1]}, x1: {box[3] + k}, y1: {box[4]}, "
            f"z0: {z_lo}, z1: {z_hi}, clicks: []}}]; state.selected = 0; "
            "state.history = [{kind: 'box'}]; renderBoxList();"
        )
        version += 1
        t = _timed(page, lambda: page.click("#segment"), version)
        if k:
            rows.add(name, t, _server_seconds(page))
        else:
            rows.seconds[f"{name}, the first after opening"] = [t]
    page.evaluate(f"setSlice({(z_lo + z_hi) // 2 + 3})")
    page.keyboard.press("c")
    cx, cy = (box[0] + box[3]) / 2 + args.repeats, (box[1] + box[4]) / 2
    name = "3D correction (click on another slice)"
    rows.seconds[name] = []
    for k in range(args.repeats + 1 if clicks else 0):
        version += 1
        t = _timed(
            page,
            lambda k=k: page.mouse.click(canvas["x"] + (cx + k) * sx, canvas["y"] + cy * sy),
            version,
        )
        if k:
            rows.add(name, t, _server_seconds(page))
    if args.screenshots:
        page.screenshot(path=str(args.screenshots / "latency-3d.png"))


def _print_table(args: argparse.Namespace, engine: str, rows: _Rows) -> None:
    """The markdown table of medians, spreads and the server's share."""
    print(gemm_context(args.slices, args.threads or 2))
    print(
        f"| action ({args.model}, engine {engine}) | median s | min-max s | runs "
        "| of which server s |"
    )
    print("|---|---|---|---|---|")
    for name, values in rows.seconds.items():
        if values:  # (no click rows for a box-only model)
            shares = [v for v in rows.server.get(name, []) if v is not None]
            share = f"{statistics.median(shares):.3f}" if shares else ""
            spread = f"{min(values):.3f}-{max(values):.3f}"
            print(
                f"| {name} | {statistics.median(values):.3f} | {spread} | {len(values)} | {share} |"
            )


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print a markdown table."""
    args = _parse(argv)
    import shutil

    from playwright.sync_api import sync_playwright

    from umedsam.ui.app import UIConfig

    work = Path(tempfile.mkdtemp(prefix="umedsam-ui-latency-"))
    config = UIConfig(
        model=args.model, engine=args.engine, threads=args.threads, workdir=str(work), port=0
    )
    base, server = _serve(config)
    rows = _Rows()
    with sync_playwright() as pw:
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.add_init_script(LATENCY_PROBE)
        page.goto(base)
        page.wait_for_selector("body[data-ready='1']")
        clicks = _measure_2d(page, args, rows)
        _measure_3d(page, args, work, rows, clicks)
        running = page.evaluate("fetch('/api/config').then(r => r.json())")["engine_running"]
        browser.close()
    server.should_exit = True
    engine = config.engine if running in (None, config.engine) else f"{config.engine}: {running}"
    _print_table(args, engine, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
