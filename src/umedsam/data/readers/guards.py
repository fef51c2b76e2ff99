"""Checks every reader runs before trusting a file: non-empty files and declared sizes."""

from __future__ import annotations

import math
from pathlib import Path

from umedsam.errors import InputError

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Largest decoded array (bytes) a reader accepts unless told otherwise: 2 GiB."""


def check_declared_size(
    path: str | Path, shape: tuple[int, ...], itemsize: int, max_bytes: int | None
) -> None:
    """Refuse a file whose header declares an empty or oversized array before decoding it.

    Args:
        path: file named in the error.
        shape: declared array shape.
        itemsize: bytes per element.
        max_bytes: limit; None disables the upper bound.

    Raises:
        InputError: a dimension is zero or negative, or the array would exceed ``max_bytes``.
    """
    if len(shape) == 0 or any(int(s) <= 0 for s in shape):
        raise InputError(path, f"the header declares an empty image of shape {tuple(shape)}")
    nbytes = math.prod(int(s) for s in shape) * int(itemsize)
    if max_bytes is not None and nbytes > max_bytes:
        raise InputError(
            path,
            f"the header declares a {tuple(shape)} array ({nbytes / 1024**3:.1f} GiB), more than "
            f"the {max_bytes / 1024**3:.1f} GiB limit; crop the image or raise max_bytes",
        )


def check_nonempty_file(path: str | Path) -> Path:
    """Return ``path`` as a Path after checking that it exists and is a non-empty file.

    Raises:
        FileNotFoundError: nothing at ``path``.
        InputError: a folder where a file was expected, or a zero-length file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(path, "expected a file, found a folder")
    if path.stat().st_size == 0:
        raise InputError(path, "the file is empty (0 bytes)")
    return path


def first_line(err: BaseException) -> str:
    """The first line of a library exception's message (or its class name), for one-line errors."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
