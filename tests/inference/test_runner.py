"""The run orchestrator on the local executor: outputs, records, bad cases skipped, atomic writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.errors import InputError
from umedsam.inference.cases import CaseOptions, ensure_writable, find_cases
from umedsam.inference.engines import EngineSpec
from umedsam.inference.manifest import MANIFEST_NAME
from umedsam.inference.runner import run_cases


@pytest.fixture
def tiny_spec(tiny_model, tmp_path: Path) -> EngineSpec:
    """The tiny model saved as a checkpoint, on the torch engine."""
    path = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), path)
    return EngineSpec("test_tiny", path, engine="torch")


def test_run_writes_segs_times_and_manifest(tiny_spec, case_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen = []
    result = run_cases(
        find_cases(case_dir / "imgs"),
        out,
        tiny_spec,
        CaseOptions(overlay_dir=tmp_path / "ov"),
        progress=lambda s: seen.append((s.engine, s.finished)),
    )
    outcomes = result.outcomes
    assert seen == [("torch", 0), ("torch", 1), ("torch", 2)]
    assert all(o.ok for o in outcomes) and len(outcomes) == 2
    for name in ("2DBox_Synthetic_disk.npz", "3DBox_Synthetic_sphere.npz"):
        with np.load(out / name) as data, np.load(case_dir / "gts" / name) as gt:
            assert data["segs"].shape == gt["gts"].shape and data["segs"].dtype == np.uint8
    rows = list(csv.DictReader((out / "efficiency.csv").open()))
    assert [r["case"] for r in rows] == sorted(o.name for o in outcomes)
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert len(list((tmp_path / "ov").glob("*.png"))) == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp leftovers
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["counts"]["done"] == 2
    assert not (out / "confidence.csv").exists()  # only with uncertainty


def test_resumed_run_keeps_valid_outputs(tiny_spec, case_dir: Path, tmp_path: Path) -> None:
    cases = find_cases(case_dir / "imgs")
    run_cases(cases, tmp_path / "out", tiny_spec)
    again = run_cases(cases, tmp_path / "out", tiny_spec)
    assert again.progress.skipped == 2 and again.progress.done == 0
    rows = list(csv.DictReader((tmp_path / "out" / "efficiency.csv").open()))
    assert len(rows) == 2  # kept cases keep their recorded times


def test_bad_case_reported_others_finish(tiny_spec, case_dir: Path, tmp_path: Path) -> None:
    (case_dir / "imgs" / "2DBox_Broken.npz").write_bytes(b"garbage")
    np.savez(case_dir / "imgs" / "2DBox_NoBoxes.npz", imgs=np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    outcomes = run_cases(find_cases(case_dir / "imgs"), out, tiny_spec).outcomes
    failed = {o.name: o.error for o in outcomes if not o.ok}
    assert set(failed) == {"2DBox_Broken.npz", "2DBox_NoBoxes.npz"}
    assert "not a readable .npz" in failed["2DBox_Broken.npz"]
    assert "missing key 'boxes'" in failed["2DBox_NoBoxes.npz"]
    assert (out / "2DBox_Synthetic_disk.npz").is_file()
    assert not (out / "2DBox_Broken.npz").exists()


def test_find_cases_and_writability(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        find_cases(tmp_path / "nope")
    with pytest.raises(InputError, match="no .npz"):
        find_cases(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not writable"):
        ensure_writable(blocker / "sub")
