"""The package root: version from the installed metadata, lazy public API."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import umedsam

REPO = Path(__file__).resolve().parents[1]


def test_version_comes_from_package_metadata() -> None:
    assert umedsam.__version__ == importlib.metadata.version("umedsam")
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in declared.get("dynamic", [])
    assert umedsam.__version__ == declared["version"]


def test_version_fallback_when_not_installed() -> None:
    code = (
        "import importlib.metadata as m\n"
        "def missing(name):\n"
        "    raise m.PackageNotFoundError(name)\n"
        "m.version = missing\n"
        "import umedsam\n"
        "print(umedsam.__version__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "0+unknown"


def test_import_is_cheap() -> None:
    code = "import sys, umedsam\nprint('torch' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
