"""Fixtures for the data tests: the shared real-format files (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder: env ``UMEDSAM_SHARED_DIR``, else ``<repo>/../shared``; else skip."""
    env = os.environ.get("UMEDSAM_SHARED_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path} (set UMEDSAM_SHARED_DIR)")
    return path


@pytest.fixture(scope="session")
def formats_dir(shared_dir: Path) -> Path:
    """``<shared>/data/formats`` (NIfTI, NRRD, DICOM samples); skip when missing."""
    path = shared_dir / "data" / "formats"
    if not path.is_dir():
        pytest.skip(f"format samples not found: {path}")
    return path
