"""Folder runner: outputs, efficiency.csv, bad cases skipped, atomic writes, writability check."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from umedsam.errors import InputError
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.runner import ensure_writable, find_cases, predict_folder


def test_predict_folder_writes_segs_and_times(tiny_model, case_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    outcomes = predict_folder(
        TorchBackend(tiny_model), case_dir / "imgs", out, overlay_dir=tmp_path / "ov"
    )
    assert all(o.ok for o in outcomes) and len(outcomes) == 2
    for name in ("2DBox_Synthetic_disk.npz", "3DBox_Synthetic_sphere.npz"):
        with np.load(out / name) as data, np.load(case_dir / "gts" / name) as gt:
            assert data["segs"].shape == gt["gts"].shape and data["segs"].dtype == np.uint8
    rows = list(csv.DictReader((out / "efficiency.csv").open()))
    assert [r["case"] for r in rows] == sorted(o.name for o in outcomes)
    assert all(float(r["seconds"]) > 0 for r in rows)
    assert len(list((tmp_path / "ov").glob("*.png"))) == 2
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_bad_case_reported_others_finish(tiny_model, case_dir: Path, tmp_path: Path) -> None:
    (case_dir / "imgs" / "2DBox_Broken.npz").write_bytes(b"garbage")
    np.savez(case_dir / "imgs" / "2DBox_NoBoxes.npz", imgs=np.zeros((8, 8, 3), np.uint8))
    out = tmp_path / "out"
    outcomes = predict_folder(TorchBackend(tiny_model), case_dir / "imgs", out)
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
