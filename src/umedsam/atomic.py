"""Atomic file writes: a temporary file in the target's folder, then one rename onto the target.

A crash mid-write never leaves a partial file at the target path: readers see the old file or the
new one. An interrupted write may leave a hidden ``.<name>.*.tmp`` file beside it, which callers
that resume runs clean up (see :mod:`umedsam.inference.manifest`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    For writers that insist on a file name (ONNX, OpenVINO, a library's own ``save``). On an
    exception the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the final file; its folder is created if needed.
        suffix: extension of the temporary name, for writers that look at it (e.g. ``.onnx``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # created like open() creates files: mode 0o666 minus the umask (mkstemp: 0o600)
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", fsync: bool = True) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on success rename it onto ``path``.

    Args:
        path: the final file; its folder is created if needed.
        mode: ``"wb"`` or ``"w"`` (text, with ``newline=""``).
        fsync: flush the data to disk before the rename (survives a power cut, not only a crash).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    text = mode == "w"
    with (
        atomic_path(path) as tmp,
        open(  # noqa: SIM115 - closed by the with statement
            tmp, mode, newline="" if text else None, encoding="utf-8" if text else None
        ) as fh,
    ):
        yield fh
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "w", fsync=False) as fh:
        fh.write(text)
    return Path(path)
