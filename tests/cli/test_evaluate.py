"""``umedsam evaluate`` in-process on synthetic npz cases written to tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from umedsam.cli import main as cli_main


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch):
    """``main([...])`` with only the evaluate subcommand registered (isolated from the others)."""
    assert "evaluate" in cli_main.SUBCOMMANDS
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", {"evaluate": cli_main.SUBCOMMANDS["evaluate"]})
    return cli_main.main


def disk(shape: tuple[int, int], center: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """Three good cases (2D with 2 labels, 2D, 3D) with predictions."""
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    gts.mkdir()
    segs.mkdir()
    gt2 = disk((48, 64), (20, 20), 9).astype(np.uint8)
    gt2[disk((48, 64), (25, 45), 7)] = 2
    seg2 = gt2.copy()
    seg2[seg2 == 2] = 0
    seg2[disk((48, 64), (26, 46), 7)] = 2
    np.savez_compressed(gts / "2DBox_XRay_a.npz", gts=gt2)
    np.savez_compressed(segs / "2DBox_XRay_a.npz", segs=seg2)

    gt1 = disk((40, 40), (20, 20), 10).astype(np.uint8)
    np.savez_compressed(gts / "2DBox_US_b.npz", gts=gt1)
    np.savez_compressed(segs / "2DBox_US_b.npz", segs=gt1)

    vol = np.zeros((6, 24, 24), np.uint8)
    vol[1:5][:, disk((24, 24), (12, 12), 6)] = 1
    np.savez_compressed(gts / "3DBox_CT_c.npz", gts=vol, spacing=np.array([0.8, 0.8, 2.5]))
    np.savez_compressed(segs / "3DBox_CT_c.npz", segs=np.roll(vol, 1, axis=0))
    return segs, gts


def test_evaluate_writes_csv_json_and_table(run_cli, folders, tmp_path, capsys) -> None:
    segs, gts = folders
    out = tmp_path / "out" / "metrics.csv"
    per_label = tmp_path / "out" / "labels.csv"
    code = run_cli(
        [
            "evaluate",
            "--segs",
            str(segs),
            "--gts",
            str(gts),
            "--out",
            str(out),
            "--per-label",
            str(per_label),
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    for token in ("XRay", "US", "CT", "overall"):
        assert token in stdout
    with out.open() as handle:
        rows = {r["case"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"2DBox_XRay_a.npz", "2DBox_US_b.npz", "3DBox_CT_c.npz"}
    assert float(rows["2DBox_US_b.npz"]["dsc"]) == 1.0
    assert rows["3DBox_CT_c.npz"]["dims"] == "3"
    assert rows["2DBox_XRay_a.npz"]["n_labels"] == "2"
    with per_label.open() as handle:
        labels = list(csv.DictReader(handle))
    assert [(r["case"], r["label"]) for r in labels][:2] == [
        ("2DBox_US_b.npz", "1"),
        ("2DBox_XRay_a.npz", "1"),
    ]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["n_cases"] == 3
    assert summary["failures"] == []
    assert summary["spacing_order"] == "official"
    assert set(summary["per_modality"]) == {"CT", "US", "XRay"}
    dsc_values = [float(r["dsc"]) for r in rows.values()]
    assert summary["overall"]["dsc_mean"] == pytest.approx(np.mean(dsc_values))


def test_spacing_order_changes_3d_nsd(run_cli, folders, tmp_path) -> None:
    segs, gts = folders
    results = {}
    for order in ("official", "axis"):
        out = tmp_path / f"{order}.csv"
        argv = ["evaluate", "-q", "--segs", str(segs), "--gts", str(gts), "--out", str(out)]
        assert run_cli([*argv, "--spacing-order", order]) == 0
        with out.open() as handle:
            results[order] = {r["case"]: float(r["nsd"]) for r in csv.DictReader(handle)}
    # Shift of one slice: 0.8 mm as stored (official) but 2.5 mm in axis order (> tolerance 2).
    assert results["official"]["3DBox_CT_c.npz"] == 1.0
    assert results["axis"]["3DBox_CT_c.npz"] < 1.0
    assert results["official"]["2DBox_US_b.npz"] == results["axis"]["2DBox_US_b.npz"]


def test_mismatch_and_corrupt_files_are_reported(run_cli, folders, tmp_path, capsys) -> None:
    segs, gts = folders
    (segs / "2DBox_US_b.npz").write_bytes(b"garbage, not an npz")  # corrupted prediction
    np.savez(gts / "2DBox_US_missing.npz", gts=np.ones((8, 8), np.uint8))  # no prediction
    np.savez(segs / "2DBox_US_extra.npz", segs=np.ones((8, 8), np.uint8))  # no ground truth
    out = tmp_path / "metrics.csv"
    code = run_cli(["evaluate", "--segs", str(segs), "--gts", str(gts), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 3
    assert any("2DBox_US_b.npz" in line and "cannot read npz" in line for line in error_lines)
    assert any("2DBox_US_missing.npz" in line and "no prediction" in line for line in error_lines)
    assert any("2DBox_US_extra.npz" in line and "no ground truth" in line for line in error_lines)
    assert "3 problem(s); 2 of 4 case(s) evaluated" in err
    # The other cases still finished.
    with out.open() as handle:
        cases = [r["case"] for r in csv.DictReader(handle)]
    assert cases == ["2DBox_XRay_a.npz", "3DBox_CT_c.npz"]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert {f["case"] for f in summary["failures"]} == {
        "2DBox_US_b.npz",
        "2DBox_US_missing.npz",
        "2DBox_US_extra.npz",
    }


def test_missing_folder_is_one_line(run_cli, tmp_path, capsys) -> None:
    code = run_cli(
        [
            "evaluate",
            "--segs",
            str(tmp_path / "nope"),
            "--gts",
            str(tmp_path),
            "--out",
            str(tmp_path / "m.csv"),
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: --segs folder not found: {tmp_path / 'nope'}"
    assert not (tmp_path / "m.csv").exists()


def test_confidence_and_plots(run_cli, folders, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    segs, gts = folders
    confidence = tmp_path / "confidence.csv"
    confidence.write_text(
        "case,object,confidence,predicted_iou,area\n"
        "2DBox_XRay_a,1,0.95,0.9,250\n"
        "2DBox_XRay_a,2,0.40,0.8,150\n"
        "2DBox_US_b,1,0.99,0.95,300\n"
        "3DBox_CT_c,1,0.30,0.7,600\n"
    )
    out = tmp_path / "res" / "metrics.csv"
    plots_dir = tmp_path / "plots"
    argv = ["evaluate", "--segs", str(segs), "--gts", str(gts), "--out", str(out)]
    code = run_cli([*argv, "--confidence", str(confidence), "--plots", str(plots_dir)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "Spearman rho" in stdout
    assert "failure AUROC" in stdout
    assert sorted(p.name for p in plots_dir.iterdir()) == [
        "modality_boxplot.png",
        "reliability.png",
        "risk_coverage.png",
    ]
    with (out.parent / "metrics_confidence.csv").open() as handle:
        objects = list(csv.DictReader(handle))
    assert len(objects) == 4
    assert {"confidence", "dsc", "failed"} <= set(objects[0])
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["confidence"]["n_objects"] == 4
    assert summary["confidence"]["spearman"] is not None
    assert len(summary["confidence"]["risk_coverage"]) == 10


def _pairs(root: Path) -> tuple[Path, Path]:
    """Image/mask folders at odd sizes (one with two objects), plus an unmatched image."""
    import cv2

    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for name, (h, w), centres in (
        ("one", (90, 70), [(45, 35)]),
        ("two", (120, 160), [(40, 40), (80, 120)]),
    ):
        rng = np.random.default_rng(len(name))
        image = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        for k, (cy, cx) in enumerate(centres, start=1):
            image[disk((h, w), (cy, cx), 14)] = (210, 200, 190)
            mask[disk((h, w), (cy, cx), 14)] = k
        cv2.imwrite(str(images / f"{name}.png"), image)
        cv2.imwrite(str(masks / f"{name}.png"), mask)
    cv2.imwrite(str(images / "extra.png"), np.zeros((20, 20, 3), np.uint8))
    return images, masks


def test_evaluate_a_model_on_image_and_mask_folders(run_cli, tmp_path, capsys) -> None:
    """The real default model, boxes from the masks: clear disks come out near-perfect; the
    unmatched image is one line and makes the exit status 1; the CSV has evaluate's columns."""
    images, masks = _pairs(tmp_path)
    out = tmp_path / "m.csv"
    argv = ["evaluate", "--images", str(images), "--masks", str(masks), "--out", str(out)]
    code = run_cli([*argv, "--modality", "Synthetic", "--engine", "torch"])
    captured = capsys.readouterr()
    assert code == 1
    assert "extra.png: no mask with stem 'extra'" in captured.err
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case"] for r in rows] == ["one", "two"]
    assert [r["n_labels"] for r in rows] == ["1", "2"]
    assert all(r["modality"] == "Synthetic" and float(r["dsc"]) > 0.9 for r in rows), rows
    assert "Synthetic" in captured.out
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["images"] == str(images) and summary["n_cases"] == 2


def test_evaluate_on_an_nnunet_raw_volume(run_cli, tmp_path, capsys) -> None:
    """An nnU-Net v2 raw CT volume: windowed, propagated from its 3D box, NSD in mm."""
    nib = pytest.importorskip("nibabel")
    root = tmp_path / "Dataset003_Cube"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "cube": 1},
                "file_ending": ".nii.gz",
                "numTraining": 1,
            }
        )  # fmt: skip
    )
    hu = np.full((64, 64, 8), -900, np.int16)
    hu[20:44, 18:46, 2:6] = 80
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    nib.save(nib.Nifti1Image(hu, affine), root / "imagesTr" / "cube_000_0000.nii.gz")
    nib.save(
        nib.Nifti1Image((hu > 0).astype(np.uint8), affine), root / "labelsTr" / "cube_000.nii.gz"
    )
    out = tmp_path / "m.csv"
    code = run_cli(["evaluate", "--nnunet", str(root), "--engine", "torch", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with out.open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["case"] == "cube_000" and row["dims"] == "3" and row["modality"] == "CT"
    assert float(row["dsc"]) > 0.7 and float(row["nsd"]) > 0.7  # a small synthetic cube


def test_evaluate_inputs_are_one_kind(run_cli, tmp_path, capsys) -> None:
    out = ["--out", str(tmp_path / "m.csv")]
    assert run_cli(["evaluate", "--images", str(tmp_path), *out]) == 2
    assert "--images and --masks go together" in capsys.readouterr().err
    both = ["--segs", str(tmp_path), "--gts", str(tmp_path), "--nnunet", str(tmp_path)]
    assert run_cli(["evaluate", *both, *out]) == 2
    assert "not both" in capsys.readouterr().err
