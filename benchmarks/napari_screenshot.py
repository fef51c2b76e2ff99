"""The README's screenshot of the napari plugin: the CT lesion example, a box and a click.

Runs a real (not shown) napari viewer with the plugin's widget and the default model, draws a
box on the lesion's middle slice and a positive click, and saves the window as
``docs/img/napari_widget.png``. Needs a display: run it under ``xvfb-run -a``.

    xvfb-run -a python benchmarks/napari_screenshot.py [--out docs/img/napari_widget.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Build the scene and save the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/napari_widget.png"))
    args = parser.parse_args(argv)
    import napari
    from qtpy.QtWidgets import QApplication

    from umedsam.napari.samples import ct_lesion
    from umedsam.napari.widget import BOXES, CLICKS, UmedsamWidget

    viewer = napari.Viewer(show=False)
    for data, kwargs, kind in ct_lesion():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.layers[1].visible = False  # the reference, for the DSC only
    widget = UmedsamWidget(viewer)
    viewer.window.add_dock_widget(widget, name="umedsam")
    widget.start()
    app = QApplication.instance()

    def wait(done) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 600
        while not done() and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)

    wait(lambda: widget.annotator.progress()["ready"])
    reference = np.asarray(viewer.layers[1].data)
    zs, ys, xs = np.nonzero(reference)
    z = int(np.median(zs))
    y0, y1, x0, x1 = ys.min() - 3, ys.max() + 3, xs.min() - 3, xs.max() + 3
    viewer.dims.set_current_step(0, z)
    corners = np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float)
    viewer.layers[BOXES].add_rectangles([corners])
    wait(lambda: widget.idle and widget.annotator.can_undo)
    viewer.layers[CLICKS].add([[z, float(ys.mean()), float(xs.mean())]])
    wait(lambda: widget.idle and len(widget.annotator._undo) >= 2)
    viewer.window._qt_window.resize(1280, 800)
    app.processEvents()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"wrote {args.out}: {widget.status.text()}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
