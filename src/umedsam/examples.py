"""Where the bundled example cases are: ``imgs/`` (challenge npz cases) and ``gts/``."""

from __future__ import annotations

from pathlib import Path


def examples_dir() -> Path:
    """Folder of the bundled examples, installed (``umedsam/_examples``) or in a source checkout.

    Raises:
        FileNotFoundError: neither location holds ``imgs/`` and ``gts/``.
    """
    here = Path(__file__).resolve()
    for candidate in (here.parent / "_examples", here.parents[2] / "examples"):
        if (candidate / "imgs").is_dir() and (candidate / "gts").is_dir():
            return candidate
    raise FileNotFoundError("the bundled example cases are missing from this installation")
