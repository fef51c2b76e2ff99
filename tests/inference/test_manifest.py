"""Run manifest and resume: output validation, resume planning, CLI resume in one process."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.cli.main import main
from umedsam.data.npz import load_case, npz_headers
from umedsam.errors import InputError
from umedsam.inference.cases import CaseOutcome
from umedsam.inference.manifest import (
    MANIFEST_NAME,
    RunManifest,
    expected_segs_shape,
    finish_run,
    start_run,
    validate_output,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a shared, loaded CPU more threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _npz_with_header(path: Path, key: str, shape: tuple[int, ...]) -> None:
    """An npz whose ``key`` member is only a .npy header declaring ``shape`` (uint8)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{key}.npy", buf.getvalue())


def _case(folder: Path, name: str, imgs: np.ndarray, boxes: np.ndarray) -> Path:
    path = folder / name
    np.savez_compressed(path, imgs=imgs, boxes=boxes)
    return path


@pytest.fixture
def cases(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    return [
        _case(
            folder,
            "a2d.npz",
            rng.integers(0, 255, (20, 30, 3), dtype=np.uint8),
            np.array([[2, 3, 10, 12]]),
        ),
        _case(
            folder,
            "b3d.npz",
            rng.integers(0, 255, (4, 20, 30), dtype=np.uint8),
            np.array([[2, 3, 0, 10, 12, 3]]),
        ),
        _case(
            folder,
            "c2d_grey.npz",
            rng.integers(0, 255, (16, 16), dtype=np.uint8),
            np.array([[1, 1, 5, 5]]),
        ),
    ]


def test_expected_shape_from_headers_only(cases: list[Path], tmp_path: Path) -> None:
    assert expected_segs_shape(cases[0]) == (20, 30)
    assert expected_segs_shape(cases[1]) == (4, 20, 30)
    assert expected_segs_shape(cases[2]) == (16, 16)
    # A case declaring a 30 GB image with no pixel data at all: only headers are read.
    huge = tmp_path / "huge.npz"
    _npz_with_header(huge, "imgs", (100_000, 100_000, 3))
    with zipfile.ZipFile(huge, "a") as zf:
        buf = io.BytesIO()
        np.save(buf, np.array([[0, 0, 2, 2]]))
        zf.writestr("boxes.npy", buf.getvalue())
    assert expected_segs_shape(huge) == (100_000, 100_000)
    with pytest.raises(InputError, match="more than"):
        load_case(huge)
    np.savez(tmp_path / "nobox.npz", imgs=np.zeros((4, 4)))
    with pytest.raises(InputError, match="missing 'imgs' or 'boxes'"):
        expected_segs_shape(tmp_path / "nobox.npz")


def test_npz_headers_do_not_decode(tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    np.savez_compressed(path, imgs=np.zeros((512, 512, 3), np.uint8), boxes=np.zeros((1, 4)))
    headers = npz_headers(path)
    assert headers["imgs"][0] == (512, 512, 3)
    assert headers["imgs"][1] == np.uint8
    assert headers["boxes"][0] == (1, 4)


def test_validate_output(cases: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = out / cases[0].name
    assert validate_output(target, cases[0]) == "missing"
    np.savez_compressed(target, segs=np.zeros((20, 30), np.uint8))
    assert validate_output(target, cases[0]) is None
    assert "no 'unc'" in validate_output(target, cases[0], required=("segs", "unc"))
    np.savez_compressed(target, segs=np.zeros((20, 30, 3), np.uint8))
    assert "shape" in validate_output(target, cases[0])
    np.savez_compressed(target, segs=np.zeros((20, 30), np.float32))
    assert "dtype" in validate_output(target, cases[0])
    np.savez_compressed(target, masks=np.zeros((20, 30), np.uint8))
    assert "no 'segs'" in validate_output(target, cases[0])
    np.savez_compressed(target, segs=np.zeros((20, 30), np.uint8))
    target.write_bytes(target.read_bytes()[:-30])
    assert "unreadable" in validate_output(target, cases[0])
    np.savez_compressed(out / cases[1].name, segs=np.zeros((4, 20, 30), np.int16))
    assert validate_output(out / cases[1].name, cases[1]) is None
    broken_input = tmp_path / "broken.npz"
    broken_input.write_bytes(b"nope")
    assert "input cannot be checked" in validate_output(out / cases[1].name, broken_input)


def test_start_run_skips_valid_outputs_only(cases: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    manifest, plan = start_run(cases, out, model="m", checkpoint_sha256="abc")
    assert plan.todo == cases
    assert not plan.skipped
    saved = json.loads((out / MANIFEST_NAME).read_text())
    assert saved["model"] == "m"
    assert saved["checkpoint_sha256"] == "abc"
    assert saved["umedsam_version"]
    assert saved["counts"]["pending"] == 3
    # First case finished, second has a corrupt output and a stale temporary file.
    np.savez_compressed(out / "a2d.npz", segs=np.ones((20, 30), np.uint8))
    manifest.record(CaseOutcome("a2d.npz", True, 1.25, "", 1))
    (out / "b3d.npz").write_bytes(b"half")
    (out / ".b3d.xyz123.tmp").write_bytes(b"partial")
    manifest.save()

    manifest2, plan2 = start_run(cases, out, model="m", checkpoint_sha256="abc")
    assert [p.name for p in plan2.skipped] == ["a2d.npz"]
    assert [p.name for p in plan2.todo] == ["b3d.npz", "c2d_grey.npz"]
    assert "unreadable" in plan2.redo["b3d.npz"]
    assert not (out / ".b3d.xyz123.tmp").exists()
    assert manifest2.cases["a2d.npz"].status == "skipped"
    assert manifest2.cases["a2d.npz"].seconds == 1.25  # time of the run that produced it

    _, plan3 = start_run(cases, out, model="m", checkpoint_sha256="other")
    assert len(plan3.todo) == 3  # another checkpoint: nothing reused
    _, plan4 = start_run(cases, out, model="m", checkpoint_sha256="abc", resume=False)
    assert len(plan4.todo) == 3


def test_manifest_roundtrip_and_efficiency(cases: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    manifest, _ = start_run(cases, out, model="m", checkpoint_sha256="abc")
    manifest.record(CaseOutcome("a2d.npz", True, 0.5, "", 1))
    manifest.record(CaseOutcome("b3d.npz", False, 0.1, "b3d.npz: bad box", 0), attempts=3)
    finish_run(manifest, out)
    loaded = RunManifest.load(out / MANIFEST_NAME)
    assert loaded is not None
    assert loaded.cases["b3d.npz"].status == "failed"
    assert loaded.cases["b3d.npz"].attempts == 3
    assert loaded.cases["b3d.npz"].error == "b3d.npz: bad box"
    assert loaded.counts() == {"pending": 1, "done": 1, "failed": 1, "skipped": 0}
    rows = list(csv.DictReader((out / "efficiency.csv").open()))
    assert [r["case"] for r in rows] == ["a2d.npz"]
    (out / MANIFEST_NAME).write_text("{not json")
    assert RunManifest.load(out / MANIFEST_NAME) is None


def test_cli_single_process_resume(tiny_model, case_dir: Path, tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), ckpt)
    out = tmp_path / "out"
    argv = [
        "predict",
        "-q",
        "-i",
        str(case_dir / "imgs"),
        "-o",
        str(out),
        "--model",
        "test_tiny",
        "--checkpoint",
        str(ckpt),
        "--engine",
        "torch",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    first = json.loads((out / MANIFEST_NAME).read_text())
    assert first["counts"]["done"] == 2
    assert first["model"] == "test_tiny"
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    assert len(mtimes) == 2
    assert main(argv) == 0
    second = json.loads((out / MANIFEST_NAME).read_text())
    assert second["counts"]["skipped"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")} == mtimes
    assert len(list(csv.DictReader((out / "efficiency.csv").open()))) == 2
    assert main([*argv, "--no-resume"]) == 0
    assert json.loads((out / MANIFEST_NAME).read_text())["counts"]["done"] == 2
    assert all(p.stat().st_mtime_ns != mtimes[p.name] for p in out.glob("*.npz"))
    capsys.readouterr()
