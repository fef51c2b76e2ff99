"""The napari plugin's viewer tests: napari, pytest-qt and a display (Xvfb when none is set).

napari's canvas needs OpenGL, which Qt's ``offscreen`` platform does not give; a virtual X
display (Xvfb, with Mesa's software OpenGL) does. Without napari or Xvfb the viewer tests skip,
unless ``UMEDSAM_REQUIRE_NAPARI=1`` (CI), where they fail.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

REQUIRED = os.environ.get("UMEDSAM_REQUIRE_NAPARI") == "1"


def need(what: str) -> None:
    """Skip (or, where the plugin tests are required, fail) for a missing ``what``."""
    if REQUIRED:
        pytest.fail(f"the napari plugin tests need {what} (UMEDSAM_REQUIRE_NAPARI=1)")
    pytest.skip(f"needs {what}")


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """An X display for Qt: the one set, or an Xvfb started for the test session."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        need("Xvfb (.ci/install-napari-deps.sh)")
    number = 90 + os.getpid() % 100
    server = subprocess.Popen(
        [xvfb, f":{number}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/tmp/.X11-unix/X{number}") and time.monotonic() < deadline:
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    atexit.register(server.terminate)  # after Qt's application is gone, not before
    yield os.environ["DISPLAY"]


@pytest.fixture
def viewer(display, request):  # type: ignore[no-untyped-def]
    """A napari viewer (not shown) with the umedsam widget's layers to come."""
    try:
        import napari  # noqa: F401
    except ImportError:
        need('napari (pip install "umedsam[napari]")')
    make_napari_viewer = request.getfixturevalue("make_napari_viewer")
    return make_napari_viewer(show=False)
