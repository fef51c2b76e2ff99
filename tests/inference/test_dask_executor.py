"""Batch prediction on Dask: same results as one process, worker crashes, killed runs resumed.

The tests share one local cluster of two worker processes (started like ``--workers 2``) and
reach it through ``scheduler=`` / ``--scheduler``. A fault-injection task (defined here, shipped
to the workers by value) makes a worker process die with ``os._exit`` on chosen cases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_models import TEST_MODELS_PRELOAD, cli_command, subprocess_env
from umedsam.data.boxes import mask_to_box
from umedsam.errors import CheckpointError
from umedsam.inference.cases import CaseOptions, find_cases
from umedsam.inference.dask_executor import (
    DaskExecutor,
    plan_cases,
    predict_case_task,
    worker_engine,
)
from umedsam.inference.engines import EnginePlan, EngineSpec, plan_engine
from umedsam.inference.manifest import MANIFEST_NAME, validate_output
from umedsam.inference.runner import run_cases
from umedsam.models.registry import build_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a shared, loaded CPU more threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> EngineSpec:
    """A saved tiny checkpoint and the torch engine spec workers open it with."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.manual_seed(0)
    torch.save(build_model("test_tiny").state_dict(), path)
    return EngineSpec("test_tiny", path, engine="torch", threads=1)


@pytest.fixture(scope="module")
def plan(spec: EngineSpec) -> EnginePlan:
    """The planned torch engine (what a client sends to its workers)."""
    return plan_engine(spec)


@pytest.fixture(scope="module")
def cluster():
    """Two local worker processes, configured as ``predict --workers 2`` configures them."""
    pytest.importorskip("distributed")
    from umedsam.inference.dask_executor import local_cluster

    local = local_cluster(2, preload=TEST_MODELS_PRELOAD)
    yield local
    local.close(timeout=20)


def _on(cluster) -> DaskExecutor:  # type: ignore[no-untyped-def]
    return DaskExecutor(scheduler=cluster.scheduler_address)


def _make_cases(
    folder: Path, disk, sphere, n2d: int = 2, n3d: int = 2, depth: int = 8
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n2d):
        img, mask = disk(64 + 8 * i, 80, center=(30, 40), radius=12 + i)
        path = folder / f"2D_disk{i}.npz"
        np.savez_compressed(path, imgs=img, boxes=mask_to_box(mask)[None])
        paths.append(path)
    for i in range(n3d):
        vol, mask = sphere(depth + i, 48, 48)
        path = folder / f"3D_sphere{i}.npz"
        np.savez_compressed(path, imgs=vol, boxes=mask_to_box(mask)[None], spacing=np.ones(3))
        paths.append(path)
    return paths


def crashing_task(plan, path, output_dir, options):  # type: ignore[no-untyped-def]
    """Fault injection: ``*crash_always*`` kills its worker every time, ``*crash_once*`` once."""
    import os
    from pathlib import Path

    from umedsam.inference.dask_executor import predict_case_task

    name = Path(path).name
    if "crash_always" in name:
        os._exit(13)
    marker = Path(output_dir).parent / f"{name}.crashed"
    if "crash_once" in name and not marker.exists():
        marker.touch()
        os._exit(13)
    return predict_case_task(plan, path, output_dir, options)


# Workers cannot import a test module, and Dask pickles functions by reference when it can: with
# __module__ set to __main__ the reference lookup fails and the function is shipped by value.
crashing_task.__module__ = "__main__"


def test_plan_largest_first(tmp_path: Path, make_disk, make_sphere) -> None:
    paths = _make_cases(tmp_path, make_disk, make_sphere, n2d=2, n3d=2, depth=20)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"x" * 10)
    order = [j.path.name for j in plan_cases([*paths, broken])]
    # 3D: 21*48*48 > 20*48*48 > 2D: 72*80*3 > 64*80*3 > a 10-byte unreadable file.
    assert order == [
        "3D_sphere1.npz",
        "3D_sphere0.npz",
        "2D_disk1.npz",
        "2D_disk0.npz",
        "broken.npz",
    ]


def test_worker_engine_cache(plan: EnginePlan, tmp_path: Path, make_disk, make_sphere) -> None:
    first = worker_engine(plan)
    assert worker_engine(plan) is first  # opened once per process
    with pytest.raises(CheckpointError, match="differs"):
        worker_engine(EnginePlan(plan.spec, "0" * 64))
    path = _make_cases(tmp_path / "in", make_disk, make_sphere, n2d=1, n3d=0)[0]
    outcome = predict_case_task(plan, str(path), str(tmp_path), CaseOptions())
    assert outcome.ok
    assert validate_output(tmp_path / path.name, path) is None
    missing = EnginePlan(EngineSpec("test_tiny", tmp_path / "nope.pt", engine="torch"), "x")
    bad = predict_case_task(missing, str(path), str(tmp_path), CaseOptions())
    assert not bad.ok
    assert "model not loaded on worker" in bad.error


def test_dask_run_matches_single_process_and_resumes(
    cluster, spec: EngineSpec, tmp_path: Path, make_disk, make_sphere
) -> None:
    cases = _make_cases(tmp_path / "in", make_disk, make_sphere)
    run_cases(cases, tmp_path / "single", spec)
    seen = []
    result = run_cases(
        cases,
        tmp_path / "dist",
        spec,
        executor=_on(cluster),
        progress=lambda s: seen.append((s.finished, s.done, s.failed)),
    )
    assert result.progress.done == len(cases)
    assert seen[0] == (0, 0, 0)
    assert seen[-1] == (4, 4, 0)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)
    for case in cases:
        with (
            np.load(tmp_path / "single" / case.name) as a,
            np.load(tmp_path / "dist" / case.name) as b,
        ):
            np.testing.assert_array_equal(a["segs"], b["segs"])
    manifest = json.loads((tmp_path / "dist" / MANIFEST_NAME).read_text())
    assert manifest["model"] == "test_tiny"
    assert (
        manifest["checkpoint_sha256"]
        == result.manifest.checkpoint_sha256
        == plan_engine(spec).sha256
    )
    single = json.loads((tmp_path / "single" / MANIFEST_NAME).read_text())
    assert single["checkpoint_sha256"] == manifest["checkpoint_sha256"]
    assert manifest["umedsam_version"]
    assert {r["status"] for r in manifest["cases"].values()} == {"done"}
    assert all(r["seconds"] > 0 and r["attempts"] == 1 for r in manifest["cases"].values())
    assert (tmp_path / "dist" / "efficiency.csv").read_text().count("\n") == len(cases) + 1

    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dist").glob("*.npz")}
    again = run_cases(cases, tmp_path / "dist", spec, executor=_on(cluster))
    assert again.progress.skipped == len(cases)
    assert again.progress.done == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "dist").glob("*.npz")} == mtimes


@pytest.mark.onnx
def test_two_workers_onnx_uncertainty_match_single_process(
    cluster, spec: EngineSpec, tmp_path: Path, make_disk, make_sphere
) -> None:
    """The CLI with --engine onnx --uncertainty: 2 Dask workers write what one process writes."""
    pytest.importorskip("onnxruntime")
    from umedsam.cli.main import main

    _make_cases(tmp_path / "in", make_disk, make_sphere, n2d=2, n3d=1)
    common = ["predict", "-q", "-i", str(tmp_path / "in"), "--model", "test_tiny"]
    common += ["--checkpoint", str(spec.checkpoint), "--engine", "onnx", "--uncertainty"]
    common += ["--threads", "1"]
    assert main([*common, "-o", str(tmp_path / "single")]) == 0
    argv = [*common, "-o", str(tmp_path / "dist"), "--scheduler", cluster.scheduler_address]
    assert main(argv) == 0
    for name in ("efficiency.csv", "confidence.csv", MANIFEST_NAME):
        assert (tmp_path / "dist" / name).is_file()
    manifest = json.loads((tmp_path / "dist" / MANIFEST_NAME).read_text())
    assert manifest["counts"]["done"] == 3
    for case in sorted((tmp_path / "in").glob("*.npz")):
        with (
            np.load(tmp_path / "single" / case.name) as a,
            np.load(tmp_path / "dist" / case.name) as b,
        ):
            np.testing.assert_array_equal(a["segs"], b["segs"])
            np.testing.assert_array_equal(a["unc"], b["unc"])
    rows = (tmp_path / "dist" / "confidence.csv").read_text().splitlines()
    assert rows[0].startswith("case,object,confidence")
    assert len(rows) == 1 + 3  # one object per case
    assert rows == (tmp_path / "single" / "confidence.csv").read_text().splitlines()
    onnx_plan = plan_engine(EngineSpec("test_tiny", spec.checkpoint, engine="onnx"))
    assert onnx_plan.spec.export_dir is not None  # exported once, by the client
    with pytest.raises(CheckpointError, match="sha256"):
        worker_engine(EnginePlan(onnx_plan.spec, "0" * 64))


def test_worker_crash_retried_then_failed(
    cluster, spec: EngineSpec, tmp_path: Path, make_disk, make_sphere
) -> None:
    inp = tmp_path / "in"
    cases = _make_cases(inp, make_disk, make_sphere, n2d=2, n3d=1)
    img, mask = make_disk(64, 64, center=(30, 30), radius=10)
    for name in ("2D_crash_once.npz", "2D_crash_always.npz"):
        np.savez_compressed(inp / name, imgs=img, boxes=mask_to_box(mask)[None])
    (inp / "2D_empty.npz").write_bytes(b"")  # an input error: reported, never retried
    out = tmp_path / "out"
    executor = DaskExecutor(scheduler=cluster.scheduler_address, retries=1, task=crashing_task)
    result = run_cases(find_cases(inp), out, spec, executor=executor)
    records = json.loads((out / MANIFEST_NAME).read_text())["cases"]
    assert records["2D_crash_once.npz"]["status"] == "done"
    assert records["2D_crash_once.npz"]["attempts"] == 2
    assert records["2D_crash_always.npz"]["status"] == "failed"
    assert records["2D_crash_always.npz"]["attempts"] == 2
    assert "gave up after 2 attempts" in records["2D_crash_always.npz"]["error"]
    assert records["2D_empty.npz"]["status"] == "failed"
    assert records["2D_empty.npz"]["attempts"] == 1
    assert "empty" in records["2D_empty.npz"]["error"]
    assert result.progress.failed == 2
    assert result.progress.done == len(cases) + 1
    assert result.progress.retried >= 2
    for case in [*cases, inp / "2D_crash_once.npz"]:
        assert validate_output(out / case.name, case) is None
    assert not (out / "2D_crash_always.npz").exists()
    assert not list(out.glob(".*"))  # no half-written files


def _poll_manifest(path: Path, proc: subprocess.Popen, at_least: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if data and data["counts"]["done"] >= at_least:
            return data
        time.sleep(0.05)
    raise AssertionError(f"run ended or timed out before {at_least} cases were done")


def _kill_and_resume(argv: list[str], inp: Path, out: Path, cases: list[Path]) -> None:
    """Start ``umedsam predict`` in a subprocess, SIGKILL it mid-run, then finish in-process."""
    from umedsam.cli.main import main

    proc = subprocess.Popen(
        cli_command(*argv),
        env=subprocess_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        before = _poll_manifest(out / MANIFEST_NAME, proc, at_least=2, timeout=240)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert before["counts"]["done"] < len(cases), "the run finished before it was killed"
    finished = {}
    for case in cases:
        target = out / case.name
        if target.exists():  # whatever exists is complete: outputs are written atomically
            assert validate_output(target, case) is None
            finished[case.name] = target.stat().st_mtime_ns
    assert len(finished) >= 2
    import dask

    # an in-process --workers run starts its own cluster: its workers preload the test models
    with dask.config.set({"distributed.worker.preload": list(TEST_MODELS_PRELOAD)}):
        assert main(argv) == 0
    after = json.loads((out / MANIFEST_NAME).read_text())
    for case in cases:
        assert validate_output(out / case.name, case) is None
    for name, mtime in finished.items():
        assert after["cases"][name]["status"] == "skipped"
        assert (out / name).stat().st_mtime_ns == mtime  # not redone
    assert after["counts"]["done"] + after["counts"]["skipped"] == len(cases)
    assert not list(out.glob(".*.tmp"))


def _predict_argv(inp: Path, out: Path, spec: EngineSpec) -> list[str]:
    """``umedsam predict`` on the tiny model, torch engine, one thread."""
    argv = ["predict", "-q", "-i", str(inp), "-o", str(out), "--model", "test_tiny"]
    return [*argv, "--checkpoint", str(spec.checkpoint), "--engine", "torch", "--threads", "1"]


def test_killed_client_resumes(
    cluster, spec: EngineSpec, tmp_path: Path, make_disk, make_sphere
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    cases = _make_cases(inp, make_disk, make_sphere, n2d=0, n3d=10, depth=12)
    argv = [*_predict_argv(inp, out, spec), "--scheduler", cluster.scheduler_address]
    _kill_and_resume(argv, inp, out, cases)


@pytest.mark.slow  # the --scheduler variant above runs by default
def test_killed_single_process_run_resumes(
    spec: EngineSpec, tmp_path: Path, make_disk, make_sphere
) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    cases = _make_cases(inp, make_disk, make_sphere, n2d=0, n3d=10, depth=12)
    argv = _predict_argv(inp, out, spec)
    _kill_and_resume(argv, inp, out, cases)


@pytest.mark.slow
def test_killed_local_cluster_run_resumes(
    spec: EngineSpec, tmp_path: Path, make_disk, make_sphere
) -> None:
    pytest.importorskip("distributed")
    inp, out = tmp_path / "in", tmp_path / "out"
    cases = _make_cases(inp, make_disk, make_sphere, n2d=0, n3d=12, depth=16)
    argv = [*_predict_argv(inp, out, spec), "--workers", "2"]
    _kill_and_resume(argv, inp, out, cases)


def test_dask_run_of_a_sam_family_checkpoint_matches_single_process(
    cluster, tmp_path: Path, make_disk, make_sphere
) -> None:
    """Workers open a SAM-family checkpoint in its own frame (the card travels with the spec)."""
    path = tmp_path / "tiny_sam.pth"
    torch.manual_seed(0)
    torch.save(build_model("test_tiny_sam").state_dict(), path)
    sam_spec = EngineSpec("test_tiny_medsam", path, engine="torch", threads=1)
    cases = _make_cases(tmp_path / "in", make_disk, make_sphere)
    run_cases(cases, tmp_path / "single", sam_spec)
    result = run_cases(cases, tmp_path / "dist", sam_spec, executor=_on(cluster))
    assert result.progress.done == len(cases)
    for case in cases:
        with (
            np.load(tmp_path / "single" / case.name) as a,
            np.load(tmp_path / "dist" / case.name) as b,
        ):
            np.testing.assert_array_equal(a["segs"], b["segs"])
