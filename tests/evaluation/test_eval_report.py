"""Folder evaluation, rows, summaries, atomic CSV/JSON and the text table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from umedsam.errors import InputError
from umedsam.evaluation import report as rep


def disk(shape: tuple[int, int], center: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_format_4_rounds_decimal_half_up() -> None:
    assert rep.format_4(0.90045) == "0.9005"  # binary :.4f would print 0.9004
    assert rep.format_4(0.83127) == "0.8313"
    assert rep.format_4(1.0) == "1.0000"
    assert rep.format_4(math.nan) == "nan"


def _write_case(folder: Path, name: str, key: str, labels: np.ndarray, **extra: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / name, **{key: labels}, **extra)


def test_evaluate_folders_rows_summary_and_failures(tmp_path: Path) -> None:
    gts, segs = tmp_path / "gts", tmp_path / "segs"
    gt = disk((40, 40), (20, 20), 8).astype(np.uint8)
    _write_case(gts, "2DBox_US_a.npz", "gts", gt)
    _write_case(segs, "2DBox_US_a.npz", "segs", gt)  # perfect
    half = gt.copy()
    half[:20] = 0
    _write_case(gts, "2DBox_US_b.npz", "gts", gt)
    _write_case(segs, "2DBox_US_b.npz", "segs", half)
    _write_case(gts, "2DBox_XRay_missing.npz", "gts", gt)  # no prediction
    _write_case(segs, "2DBox_XRay_extra.npz", "segs", gt)  # no ground truth
    _write_case(gts, "2DBox_CT_shape.npz", "gts", gt)
    _write_case(segs, "2DBox_CT_shape.npz", "segs", gt[:30])  # shape mismatch

    seen: list[rep.Failure] = []
    steps: list[int] = []
    result = rep.evaluate_folders(segs, gts, progress=steps.append, on_failure=seen.append)

    assert [r.case for r in result.rows] == ["2DBox_US_a.npz", "2DBox_US_b.npz"]
    assert result.rows[0].dsc == 1.0
    assert result.rows[0].nsd == 1.0
    expected_b = 2 * int(half.sum()) / (int(half.sum()) + int(gt.sum()))
    assert result.rows[1].dsc == pytest.approx(round(expected_b, 4))
    assert sum(steps) == 4  # one step per ground-truth file
    assert seen == result.failures
    problems = {f.case: f.problem for f in result.failures}
    assert set(problems) == {"2DBox_XRay_missing.npz", "2DBox_XRay_extra.npz", "2DBox_CT_shape.npz"}
    assert "no prediction" in problems["2DBox_XRay_missing.npz"]
    assert "has no ground truth" in problems["2DBox_XRay_extra.npz"]
    assert "segs shape (30, 40) differs from gts shape (40, 40)" in problems["2DBox_CT_shape.npz"]

    stats = result.summary.per_modality["US"]
    assert stats["dsc"].n == 2
    assert stats["dsc"].mean == pytest.approx((1.0 + result.rows[1].dsc) / 2)
    assert stats["dsc"].std == pytest.approx(abs(1.0 - result.rows[1].dsc) / 2)
    assert result.summary.overall["nsd"].n == 2
    table = rep.format_table(result.summary)
    assert table.splitlines()[2].startswith("US")
    assert table.splitlines()[-1].startswith("overall")


def test_load_label_npz_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="bad.npz: cannot read npz"):
        rep.load_label_npz(bad, "segs")
    wrong_key = tmp_path / "wrong.npz"
    np.savez(wrong_key, imgs=np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="missing key 'segs' \\(keys: imgs\\)"):
        rep.load_label_npz(wrong_key, "segs")
    floats = tmp_path / "float.npz"
    np.savez(floats, segs=np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="integer labels; got dtype float32"):
        rep.load_label_npz(floats, "segs")


def test_evaluate_case_files_3d_needs_spacing(tmp_path: Path) -> None:
    vol = np.zeros((3, 8, 8), np.uint8)
    vol[1, 2:5, 2:5] = 1
    np.savez(tmp_path / "gt.npz", gts=vol)
    np.savez(tmp_path / "seg.npz", segs=vol)
    with pytest.raises(InputError, match="3D gts need a 'spacing'"):
        rep.evaluate_case_files(tmp_path / "seg.npz", tmp_path / "gt.npz")
    np.savez(tmp_path / "gt.npz", gts=vol, spacing=np.array([0.5, 0.5, 3.0]))
    row = rep.evaluate_case_files(tmp_path / "seg.npz", tmp_path / "gt.npz", spacing_order="axis")
    assert row.dims == 3
    assert row.metrics.spacing == (3.0, 0.5, 0.5)
    assert (row.dsc, row.nsd) == (1.0, 1.0)


def test_atomic_writers(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "rows.csv"
    rep.write_csv_atomic(out, [{"case": "a", "dsc": 0.5}], ("case", "dsc", "nsd"))
    with out.open() as handle:
        assert list(csv.DictReader(handle)) == [{"case": "a", "dsc": "0.5", "nsd": ""}]
    rep.write_json_atomic(tmp_path / "s.json", {"x": None})
    assert json.loads((tmp_path / "s.json").read_text()) == {"x": None}
    with pytest.raises(ValueError, match="not JSON compliant"):
        rep.write_json_atomic(tmp_path / "nan.json", {"x": math.nan})
    assert not (tmp_path / "nan.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
