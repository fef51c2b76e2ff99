"""Parity: our evaluation of the official dev segs reproduces the official metrics.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from umedsam.evaluation.report import EvaluationResult, evaluate_folders, format_4


@pytest.fixture(scope="module")
def official(shared_dir: Path) -> tuple[EvaluationResult, dict[str, tuple[float, float]]]:
    segs = shared_dir / "reference" / "official_dev" / "segs"
    gts = shared_dir / "data" / "dev" / "gts"
    metrics_csv = shared_dir / "reference" / "official_dev" / "metrics.csv"
    if not (segs.is_dir() and gts.is_dir() and metrics_csv.is_file()):
        pytest.skip(f"official dev reference not found under {shared_dir}")
    with metrics_csv.open(newline="") as handle:
        expected = {r["case"]: (float(r["dsc"]), float(r["nsd"])) for r in csv.DictReader(handle)}
    return evaluate_folders(segs, gts), expected


def test_per_case_parity_with_official_metrics(official) -> None:
    result, expected = official
    assert result.failures == []
    assert sorted(r.case for r in result.rows) == sorted(expected)
    dsc_diff = max(abs(r.dsc - expected[r.case][0]) for r in result.rows)
    nsd_diff = max(abs(r.nsd - expected[r.case][1]) for r in result.rows)
    assert dsc_diff <= 1e-4, f"max DSC difference {dsc_diff}"
    assert nsd_diff <= 1e-4, f"max NSD difference {nsd_diff}"
    # Covers both 2D (unit spacing, one-slice volume) and 3D (stored spacing) cases.
    assert {r.dims for r in result.rows} == {2, 3}


def test_overall_means_match_official(official) -> None:
    result, _ = official
    assert format_4(result.summary.overall["dsc"].mean) == "0.8313"
    assert format_4(result.summary.overall["nsd"].mean) == "0.9005"
