"""Progress bars for the CLI only (library code takes callbacks)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, file=sys.stderr)


@contextmanager
def progress_bar(total: int, desc: str, quiet: bool = False) -> Iterator[Any]:
    """A tqdm bar on an interactive stderr, else a silent stand-in with the same methods."""
    if quiet or not sys.stderr.isatty():
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="case", file=sys.stderr) as bar:
        yield bar
