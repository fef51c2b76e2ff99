"""The test-only models reach the processes the tests start (CLI subprocesses, Dask workers)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tiny_models
from umedsam.models.registry import list_models


def test_registered_in_process() -> None:
    assert set(tiny_models.TEST_MODELS) <= set(list_models())


def test_cli_subprocess_sees_the_test_models() -> None:
    out = subprocess.run(
        tiny_models.cli_command("info"), capture_output=True, text=True, check=True, timeout=120
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("builders: "))
    assert set(tiny_models.TEST_MODELS) <= set(line.removeprefix("builders: ").split(", "))


def test_subprocess_env_preloads_the_module_on_dask_workers() -> None:
    pytest.importorskip("distributed")
    code = (
        "import json, dask, distributed\n"
        "print(json.dumps(list(dask.config.get('distributed.worker.preload'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=tiny_models.subprocess_env(),
    )
    assert json.loads(out.stdout) == list(tiny_models.TEST_MODELS_PRELOAD)
