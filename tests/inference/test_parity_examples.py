"""End-to-end parity on the bundled examples: real weights, official segs and metrics."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from umedsam.cli.main import main

pytestmark = pytest.mark.realweights

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def test_examples_match_official_segs_and_metrics(real_model, tmp_path: Path, capsys) -> None:
    out = tmp_path / "segs"
    argv = ["predict", "-q", "-i", str(REPO / "examples" / "imgs"), "-o", str(out)]
    assert main([*argv, "--model", "litemedsam"]) == 0  # the official model, not the default
    for ref_path in sorted((FIXTURES / "official_segs").glob("*.npz")):
        with np.load(ref_path) as ref, np.load(out / ref_path.name) as ours:
            a, b = ref["segs"], ours["segs"]
        assert a.shape == b.shape
        for label in range(1, int(a.max()) + 1):
            x, y = a == label, b == label
            dsc = 2 * (x & y).sum() / max(1, x.sum() + y.sum())
            assert dsc >= 0.999, (ref_path.name, label, dsc)
    metrics = tmp_path / "metrics.csv"
    assert (
        main(
            [
                "evaluate",
                "-q",
                "--segs",
                str(out),
                "--gts",
                str(REPO / "examples" / "gts"),
                "--out",
                str(metrics),
            ]
        )
        == 0
    )
    ours = {r["case"]: r for r in csv.DictReader(metrics.open())}
    for row in csv.DictReader((FIXTURES / "official_metrics_examples.csv").open()):
        assert abs(float(ours[row["case"]]["dsc"]) - float(row["dsc"])) <= 1e-4
        assert abs(float(ours[row["case"]]["nsd"]) - float(row["nsd"])) <= 1e-4
