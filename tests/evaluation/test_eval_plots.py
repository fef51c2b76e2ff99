"""PNG plots (skipped without matplotlib) and the helpful error when it is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from umedsam.errors import MissingExtraError
from umedsam.evaluation import confidence as conf
from umedsam.evaluation import plots
from umedsam.evaluation.metrics import case_metrics
from umedsam.evaluation.report import make_case_row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows() -> list:
    gt = np.zeros((20, 20), np.uint8)
    gt[5:15, 5:15] = 1
    seg = np.roll(gt, 2, axis=1)
    return [
        make_case_row("2DBox_US_a.npz", case_metrics(gt, gt)),
        make_case_row("2DBox_US_b.npz", case_metrics(seg, gt)),
        make_case_row("2DBox_XRay_c.npz", case_metrics(seg, gt)),
    ]


def _report() -> conf.ConfidenceReport:
    rows = [conf.ConfidenceRow(f"c{i}", 1, c, c, 10.0) for i, c in enumerate([0.2, 0.5, 0.9, 0.95])]
    true = {(f"c{i}", 1): d for i, d in enumerate([0.3, 0.7, 0.9, 0.97])}
    return conf.confidence_report(rows, true)


def test_plots_write_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    written = [
        plots.plot_modality_boxplots(_rows(), tmp_path / "box.png"),
        plots.plot_risk_coverage(_report(), tmp_path / "rc.png"),
        plots.plot_reliability(_report(), tmp_path / "sub" / "rel.png"),
    ]
    for path in written:
        assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="no evaluated cases"):
        plots.plot_modality_boxplots([], tmp_path / "empty.png")


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'umedsam\[plots\]'"):
        plots.plot_modality_boxplots(_rows(), tmp_path / "box.png")
    assert not (tmp_path / "box.png").exists()
