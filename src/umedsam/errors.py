"""Exceptions that carry a user-facing message naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class UmedsamError(Exception):
    """Base class for errors umedsam reports to users as one clear line."""


class InputError(UmedsamError, ValueError):
    """An input file (or array) is unusable: missing key, wrong dtype/shape, NaN, bad box ...

    Args:
        path: the offending file, or None for in-memory input.
        problem: what is wrong and, where possible, how to fix it.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class CheckpointError(UmedsamError, RuntimeError):
    """A checkpoint cannot be used: unreadable, unsafe, truncated or for another architecture."""


class MissingExtraError(UmedsamError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs the '{package}' package: pip install 'umedsam[{extra}]'")
