"""Confidence-vs-DSC measures on hand-made data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from umedsam.evaluation import confidence as conf


def test_perfect_and_reversed_ranking() -> None:
    dsc = np.array([0.1, 0.5, 0.7, 0.85, 0.9, 0.95])
    confidence = np.array([0.2, 0.3, 0.4, 0.6, 0.8, 0.9])  # same order as dsc
    rho, p_value = conf.spearman(confidence, dsc)
    assert rho == pytest.approx(1.0)
    assert p_value < 0.01
    score, message = conf.failure_auroc(confidence, dsc)
    assert score == pytest.approx(1.0)
    assert message == ""
    assert conf.spearman(1 - confidence, dsc)[0] == pytest.approx(-1.0)
    assert conf.failure_auroc(1 - confidence, dsc)[0] == pytest.approx(0.0)


def test_auroc_hand_computed_and_ties() -> None:
    # Positive pairs (score_pos > score_neg): 0.35 > 0.1, 0.8 > 0.1, 0.8 > 0.4; 0.35 < 0.4.
    assert conf.auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert conf.auroc([1.0, 1.0], [True, False]) == pytest.approx(0.5)
    assert math.isnan(conf.auroc([0.1, 0.2], [True, True]))
    with pytest.raises(ValueError, match=r"same length; got \(2,\) and \(3,\)"):
        conf.auroc([0.1, 0.2], [True, False, True])


def test_failure_auroc_one_class_is_nan_with_message() -> None:
    score, message = conf.failure_auroc([0.5, 0.6, 0.9], [0.9, 0.95, 0.99])
    assert math.isnan(score)
    assert "no object of 3 has DSC < 0.8" in message
    score, message = conf.failure_auroc([0.5, 0.6], [0.1, 0.2])
    assert math.isnan(score)
    assert "every object" in message


def test_spearman_degenerate_and_bad_input() -> None:
    assert all(math.isnan(v) for v in conf.spearman([0.5, 0.5, 0.5], [0.1, 0.5, 0.9]))
    assert all(math.isnan(v) for v in conf.spearman([0.1, 0.2], [0.1, 0.2]))
    with pytest.raises(ValueError, match="must be finite"):
        conf.spearman([0.1, math.nan, 0.3], [0.1, 0.2, 0.3])


def test_risk_coverage_hand_computed() -> None:
    confidence = np.linspace(1.0, 0.1, 10)  # already sorted, most confident first
    dsc = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    points = conf.risk_coverage(confidence, dsc)
    assert [p.coverage for p in points] == list(range(10, 101, 10))
    assert [p.n for p in points] == list(range(1, 11))
    assert points[0].mean_dsc == pytest.approx(1.0)
    assert points[1].mean_dsc == pytest.approx(0.95)
    assert points[4].mean_dsc == pytest.approx(0.8)  # mean of 1.0 .. 0.6
    assert points[-1].mean_dsc == pytest.approx(0.55)
    # Order of the input does not matter; 25% of 10 objects keeps ceil(2.5) = 3.
    perm = np.random.default_rng(0).permutation(10)
    (point,) = conf.risk_coverage(confidence[perm], dsc[perm], coverages=[25])
    assert point.n == 3
    assert point.mean_dsc == pytest.approx(0.9)
    with pytest.raises(ValueError, match=r"coverages must be in \(0, 100\]"):
        conf.risk_coverage(confidence, dsc, coverages=[0])


def test_reliability_table_hand_computed() -> None:
    confidence = [0.05, 0.15, 0.15, 0.95, 1.0]
    dsc = [0.0, 0.2, 0.4, 0.9, 1.0]
    bins, ece = conf.reliability_table(confidence, dsc, n_bins=2)
    assert [(b.low, b.high, b.n) for b in bins] == [(0.0, 0.5, 3), (0.5, 1.0, 2)]
    assert bins[0].mean_confidence == pytest.approx(0.35 / 3)
    assert bins[0].mean_dsc == pytest.approx(0.2)
    assert bins[1].mean_dsc == pytest.approx(0.95)
    # ECE = 3/5 * |0.1167 - 0.2| + 2/5 * |0.975 - 0.95|
    assert ece == pytest.approx(0.6 * abs(0.35 / 3 - 0.2) + 0.4 * 0.025)
    ten, _ = conf.reliability_table(confidence, dsc)
    assert [b.n for b in ten] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert math.isnan(ten[2].mean_dsc)
    with pytest.raises(ValueError, match=r"confidence must lie in \[0, 1\]"):
        conf.reliability_table([1.5], [0.5])


def test_read_confidence_csv_and_report(tmp_path: Path) -> None:
    path = tmp_path / "confidence.csv"
    path.write_text(
        "case,object,confidence,predicted_iou,area\n"
        "caseA.npz,1,0.9,0.95,100\n"
        "caseA,2,0.2,0.30,50\n"
        "caseB,1,0.7,,80\n"
        "caseC,1,0.5,0.5,10\n"
    )
    rows = conf.read_confidence_csv(path)
    assert [(r.case, r.object) for r in rows][:2] == [("caseA.npz", 1), ("caseA", 2)]
    assert math.isnan(rows[2].predicted_iou)
    true_dsc = conf.true_dsc_from_label_rows(
        [
            {"case": "caseA.npz", "label": 1, "dsc": 0.95},
            {"case": "caseA.npz", "label": 2, "dsc": 0.3},
            {"case": "caseB.npz", "label": 1, "dsc": 0.85},
        ]
    )
    report = conf.confidence_report(rows, true_dsc)
    assert report.n_objects == 3
    assert report.n_unmatched == 1  # caseC has no ground truth
    assert report.n_failed == 1
    assert report.spearman == pytest.approx(1.0)
    assert report.auroc == pytest.approx(1.0)
    assert math.isnan(report.auroc_iou)  # one predicted_iou is missing
    objects = report.object_dicts()
    assert objects[0]["dsc"] == 0.95
    assert [o["failed"] for o in objects] == [0, 1, 0]
    summary = report.to_dict()
    assert summary["auroc"] == pytest.approx(1.0)
    assert summary["auroc_predicted_iou"] is None
    assert len(summary["risk_coverage"]) == 10
    assert "Spearman rho     1.0000" in report.format_text()


def test_read_confidence_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("case,obj,confidence\nx,1,0.5\n")
    with pytest.raises(ValueError, match="missing column\\(s\\) object"):
        conf.read_confidence_csv(path)
    path.write_text("case,object,confidence\nx,one,0.5\n")
    with pytest.raises(ValueError, match="line 2: bad value"):
        conf.read_confidence_csv(path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        conf.read_confidence_csv(tmp_path / "nope.csv")
