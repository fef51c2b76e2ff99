"""Fixtures for the data tests: the shared real-format files (skipped when absent).

``shared_dir`` comes from tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def formats_dir(shared_dir: Path) -> Path:
    """``<shared>/data/formats`` (NIfTI, NRRD, DICOM samples); skip when missing."""
    path = shared_dir / "data" / "formats"
    if not path.is_dir():
        pytest.skip(f"format samples not found: {path}")
    return path
