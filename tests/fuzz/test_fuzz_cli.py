"""Property tests of the predict and evaluate CLIs, in-process, on hostile case folders.

Whatever the files hold, the commands return an exit code (0 all good, 1 some case failed,
2 nothing could start), report each problem on one line of stderr and never raise.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from umedsam.cli.main import main
from umedsam.models.registry import build_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.manual_seed(0)
    torch.save(build_model("test_tiny").state_dict(), path)
    return path


@st.composite
def npz_bytes(draw, key: str) -> bytes:
    """A plausible case (or label file) that is then possibly broken in one way."""
    h, w = draw(st.integers(2, 24)), draw(st.integers(2, 24))
    three_d = draw(st.booleans())
    shape = (draw(st.integers(1, 4)), h, w) if three_d else (h, w, 3)
    img = np.zeros(shape, np.uint8)
    img[..., : w // 2] = 200 if not three_d else 0
    if three_d:
        img[:, : h // 2] = 200
    box = [0, 0, w, h] if not three_d else [0, 0, 0, w, h, shape[0] - 1]
    arrays: dict[str, np.ndarray] = {
        key: img if key == "imgs" else (img[..., 0] > 0).astype(np.uint8)
    }
    arrays["boxes"] = np.array([box])
    breakage = draw(
        st.sampled_from(
            [
                "none",
                "nan",
                "box_outside",
                "wrong_key",
                "float_labels",
                "truncate",
                "empty",
                "huge_box",
                "spacing",
            ]
        )
    )
    if breakage == "nan":
        arrays[key] = arrays[key].astype(np.float32)
        arrays[key].flat[0] = np.nan
    elif breakage == "box_outside":
        arrays["boxes"] = np.array([[v + draw(st.integers(-100, 100)) for v in box]])
    elif breakage == "wrong_key":
        arrays["other"] = arrays.pop(key)
    elif breakage == "float_labels":
        arrays[key] = arrays[key].astype(np.float64) + 0.5
    elif breakage == "huge_box":
        arrays["boxes"] = np.array([[0, 0, 2**62, 2**62] + ([0, 0] if three_d else [])])
    elif breakage == "spacing":
        arrays["spacing"] = np.array(draw(st.sampled_from([[0.0, 1, 1], [np.inf, 1, 1], [1.0]])))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    if breakage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif breakage == "empty":
        data = b""
    return data


def _one_line_errors(err: str) -> None:
    assert "Traceback" not in err
    for line in err.strip().splitlines():
        assert len(line) < 2000


@settings(max_examples=8)
@given(files=st.lists(npz_bytes("imgs"), min_size=1, max_size=3))
def test_predict_cli(tmp_path: Path, checkpoint: Path, bounded, capsys, files) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir(exist_ok=True)
    for old in inp.glob("*"):
        old.unlink()
    for i, data in enumerate(files):
        (inp / f"case{i}.npz").write_bytes(data)
    with bounded(seconds=60):
        code = main(
            [
                "predict",
                "-q",
                "-i",
                str(inp),
                "-o",
                str(out),
                "--model",
                "test_tiny",
                "--checkpoint",
                str(checkpoint),
                "--engine",
                "torch",
                "--threads",
                "1",
                "--no-resume",
            ]
        )
    captured = capsys.readouterr()
    assert code in (0, 1)
    _one_line_errors(captured.err)
    written = {p.name for p in out.glob("case*.npz")}
    if code == 0:
        assert len(written) == len(files)
    else:
        assert "failed" in captured.err


@settings(max_examples=10)
@given(
    segs=st.lists(npz_bytes("segs"), min_size=1, max_size=3),
    gts=st.lists(npz_bytes("gts"), min_size=1, max_size=3),
)
def test_evaluate_cli(tmp_path: Path, bounded, capsys, segs, gts) -> None:
    seg_dir, gt_dir = tmp_path / "segs", tmp_path / "gts"
    for folder, files in ((seg_dir, segs), (gt_dir, gts)):
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*"):
            old.unlink()
        for i, data in enumerate(files):
            (folder / f"2DBox_X_{i}.npz").write_bytes(data)
    with bounded(seconds=60):
        code = main(
            [
                "evaluate",
                "-q",
                "--segs",
                str(seg_dir),
                "--gts",
                str(gt_dir),
                "--out",
                str(tmp_path / "metrics.csv"),
            ]
        )
    captured = capsys.readouterr()
    assert code in (0, 1)
    _one_line_errors(captured.err)
