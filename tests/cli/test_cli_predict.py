"""`umedsam predict` / `info` in-process, on the tiny model saved as a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.cli.main import main
from umedsam.data.boxes import mask_to_box


def test_predict_cli_tiny(tiny_model, case_dir: Path, tmp_path: Path, capsys) -> None:
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": tiny_model.state_dict()}, ckpt)
    (case_dir / "imgs" / "2DBox_Broken.npz").write_bytes(b"")
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            "-i",
            str(case_dir / "imgs"),
            "-o",
            str(out),
            "--model",
            "test_tiny",
            "--checkpoint",
            str(ckpt),
            "--threads",
            "1",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # one case failed, the others were written
    assert "2DBox_Broken.npz" in captured.err and "empty" in captured.err
    assert (out / "2DBox_Synthetic_disk.npz").is_file() and (out / "efficiency.csv").is_file()


def test_predict_cli_errors_before_work(tmp_path: Path, case_dir: Path, capsys) -> None:
    assert main(["predict", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 2
    assert "input folder not found" in capsys.readouterr().err
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main(["predict", "-i", str(case_dir / "imgs"), "-o", str(blocker / "x")]) == 2
    assert "not writable" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    assert (
        main(
            [
                "predict",
                "-i",
                str(case_dir / "imgs"),
                "-o",
                str(tmp_path / "o2"),
                "--checkpoint",
                str(bad),
            ]
        )
        == 2
    )
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert (
        main(
            ["predict", "-i", str(case_dir / "imgs"), "-o", str(tmp_path / "o3"), "--model", "nope"]
        )
        == 2
    )
    assert "known models" in capsys.readouterr().err


def test_info_runs(capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "litemedsam" in out and "default model: umedsam_newdata" in out
    assert "with your own checkpoint (--checkpoint FILE): medsam_vit_b, sam_vit_b" in out


def test_labels_uint16_beyond_255(tiny_model, tmp_path: Path) -> None:
    from umedsam.inference.backends.torch import TorchBackend
    from umedsam.inference.segment import segment_image

    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3)).astype(np.uint8)
    boxes = np.array([[i % 60, i % 50, i % 60 + 4, i % 50 + 4] for i in range(300)])
    res = segment_image(TorchBackend(tiny_model), img, boxes)
    assert res.segs.dtype == np.uint16


@pytest.mark.onnx
def test_exported_engine_predicts_without_importing_torch(tmp_path, make_disk) -> None:
    """Start-up: ``predict --engine onnx`` on a cached export never imports torch.

    torch is most of a small case's start-up; the exported engines and the numpy pre/post-
    processing do not need it. The export itself (made here, in the test process) does.
    """
    pytest.importorskip("onnxruntime")
    import os
    import subprocess
    import sys

    from umedsam.inference.engines import EngineSpec, plan_engine
    from umedsam.models.registry import build_model

    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(build_model("test_tiny").state_dict(), checkpoint)
    plan_engine(EngineSpec("test_tiny", checkpoint, engine="onnx"))  # exports into the cache
    img, mask = make_disk(70, 90, center=(35, 45), radius=14)
    (tmp_path / "in").mkdir()
    np.savez_compressed(tmp_path / "in" / "2D_disk.npz", imgs=img, boxes=mask_to_box(mask)[None])
    argv = ["predict", "-q", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    argv += ["--model", "test_tiny", "--checkpoint", str(checkpoint), "--engine", "onnx"]
    code = (
        "import sys\n"
        "from umedsam.cli.main import main\n"
        f"rc = main({argv!r})\n"
        "print('TORCH_IMPORTED', 'torch' in sys.modules)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_IMPORTED False" in proc.stdout
    with np.load(tmp_path / "out" / "2D_disk.npz") as out:
        assert out["segs"].shape == img.shape[:2]
