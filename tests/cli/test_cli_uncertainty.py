"""`umedsam predict --uncertainty` in-process on the tiny model, and its hand-off to `evaluate`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.cli.main import main
from umedsam.evaluation.confidence import CONFIDENCE_COLUMNS, read_confidence_csv


@pytest.fixture
def tiny_ckpt(tiny_model, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    torch.save({"model": tiny_model.state_dict()}, path)
    return path


def _predict(case_dir: Path, out: Path, ckpt: Path, *extra: str) -> int:
    argv = ["predict", "-i", str(case_dir / "imgs"), "-o", str(out), "--model", "test_tiny"]
    argv += ["--checkpoint", str(ckpt), "--threads", "1", *extra]
    return main(argv)


def test_predict_uncertainty_outputs(case_dir: Path, tmp_path: Path, tiny_ckpt: Path) -> None:
    plain, unc, overlay = tmp_path / "plain", tmp_path / "unc", tmp_path / "overlay"
    assert _predict(case_dir, plain, tiny_ckpt) == 0
    assert _predict(case_dir, unc, tiny_ckpt, "--uncertainty", "--overlay", str(overlay)) == 0
    assert not (plain / "confidence.csv").exists()
    for name in ("2DBox_Synthetic_disk.npz", "3DBox_Synthetic_sphere.npz"):
        with np.load(plain / name) as a, np.load(unc / name) as b:
            assert "unc" not in a.files
            np.testing.assert_array_equal(a["segs"], b["segs"])  # uncertainty never changes segs
            assert b["unc"].shape == b["segs"].shape
            assert b["unc"].dtype == np.uint8
        assert (overlay / name.replace(".npz", ".png")).is_file()
    with (unc / "confidence.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == CONFIDENCE_COLUMNS
    rows = read_confidence_csv(unc / "confidence.csv")
    assert [(r.case, r.object) for r in rows] == [
        ("2DBox_Synthetic_disk.npz", 1),
        ("3DBox_Synthetic_sphere.npz", 1),
    ]
    assert all(0.0 <= r.confidence <= 1.0 for r in rows)
    for r in rows:
        with np.load(unc / r.case) as out:
            assert r.area == (out["segs"] == r.object).sum()


def test_confidence_csv_feeds_evaluate(case_dir: Path, tmp_path: Path, tiny_ckpt: Path) -> None:
    out = tmp_path / "unc"
    assert _predict(case_dir, out, tiny_ckpt, "--uncertainty", "--ensemble", "2") == 0
    metrics = tmp_path / "metrics.csv"
    code = main(
        [
            "evaluate",
            "--segs",
            str(out),
            "--gts",
            str(case_dir / "gts"),
            "--out",
            str(metrics),
            "--confidence",
            str(out / "confidence.csv"),
        ]
    )
    assert code == 0
    with (tmp_path / "metrics_confidence.csv").open(newline="") as fh:
        matched = list(csv.DictReader(fh))
    assert len(matched) == 2  # every object found its true DSC
    # every cue travels with the object, for fitting per-model cue weights
    two_d = next(r for r in matched if r["case"].startswith("2D"))
    for cue in ("entropy", "expected_dice", "box", "agreement"):
        assert 0.0 <= float(two_d[cue]) <= 1.0  # the 2D case ran an ensemble of 2
    assert matched[0]["predicted_iou"] != "" and "dsc" in matched[0]


def test_ensemble_masks_flag_writes_valid_segs(
    case_dir: Path, tmp_path: Path, tiny_ckpt: Path
) -> None:
    out = tmp_path / "ens"
    assert _predict(case_dir, out, tiny_ckpt, "--uncertainty", "--ensemble-masks") == 0
    with np.load(out / "2DBox_Synthetic_disk.npz") as res:
        assert res["segs"].shape == (96, 128)
        assert set(np.unique(res["segs"])) <= {0, 1}


@pytest.mark.parametrize("flag", [["--ensemble", "2"], ["--ensemble-masks"]])
def test_ensemble_flags_need_uncertainty(
    case_dir: Path, tmp_path: Path, tiny_ckpt: Path, flag: list[str], capsys
) -> None:
    assert _predict(case_dir, tmp_path / "o", tiny_ckpt, *flag) == 2
    assert "need --uncertainty" in capsys.readouterr().err
