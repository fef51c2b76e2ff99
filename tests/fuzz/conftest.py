"""Shared bounds of the fuzz tests: every input must be handled fast and within a memory budget."""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Few examples by default (the suite must stay fast); UMEDSAM_FUZZ_PROFILE=fuzz-long for more.
settings.register_profile(
    "default-fuzz",
    max_examples=15,
    deadline=None,  # wall time is bounded by `bounded` below, generous for a loaded CI machine
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile(
    "fuzz-long",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("UMEDSAM_FUZZ_PROFILE", "default-fuzz"))

MAX_SECONDS = 20.0
MAX_MIB = 256.0


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-memory high-water mark (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


@contextmanager
def _bounded(seconds: float = MAX_SECONDS, mib: float = MAX_MIB) -> Iterator[None]:
    """Fail if the block takes longer than ``seconds`` or its peak memory grows by ``mib``.

    Memory is the growth of the resident set's high-water mark (memory actually touched) where
    Linux can reset it, else the peak of tracemalloc-traced allocations (which also counts
    reserved-but-untouched buffers, so it is stricter).
    """
    use_rss = _reset_peak_rss()
    before = _status_kib("VmRSS") if use_rss else None
    if not use_rss:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        if use_rss and before is not None:
            peak = ((_status_kib("VmHWM") or 0) - before) / 1024
        else:
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.1f} s (limit {seconds} s)"
    assert peak < mib, f"peak memory grew by {peak:.0f} MiB (limit {mib} MiB)"


@pytest.fixture
def bounded() -> Callable[..., Any]:
    """Context manager factory: ``with bounded(): ...`` (time and memory limits)."""
    return _bounded
