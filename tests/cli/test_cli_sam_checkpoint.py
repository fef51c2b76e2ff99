"""A SAM-family checkpoint downstream: predict (2D, 3D, uncertainty), evaluate on a folder,
export with parity and the exported engines, on the tiny ViT test model (``test_tiny_sam`` in
SAM's frame, ``test_tiny_medsam`` in MedSAM's; tests/tiny_models.py). The web app:
tests/ui/test_sam_checkpoint_app.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.cli.main import main
from umedsam.data.boxes import mask_to_box
from umedsam.inference.engines import EngineSpec, open_engine
from umedsam.inference.predictor import Predictor
from umedsam.inference.segment import segment_volume_case
from umedsam.models.registry import build_model


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory) -> Path:
    """Random weights of the tiny SAM-family network, saved as a plain state dict."""
    torch.manual_seed(0)
    model = build_model("test_tiny_sam")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("model", ["test_tiny_sam", "test_tiny_medsam"])
def test_predict_2d_and_3d_cases(model, sam_checkpoint, case_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["predict", "-i", str(case_dir / "imgs"), "-o", str(out), "--model", model]
    argv += ["--checkpoint", str(sam_checkpoint), "--engine", "torch", "--threads", "1"]
    assert main([*argv, "--uncertainty"]) == 0
    for name in ("2DBox_Synthetic_disk.npz", "3DBox_Synthetic_sphere.npz"):
        with np.load(out / name) as written, np.load(case_dir / "imgs" / name) as given:
            assert written["segs"].shape == given["imgs"].shape[: 3 if name[0] == "3" else 2]
            assert "unc" in written.files
    metrics = tmp_path / "metrics.csv"
    argv = ["evaluate", "--segs", str(out), "--gts", str(case_dir / "gts"), "--out", str(metrics)]
    assert main(argv) == 0 and metrics.is_file()


def test_propagation_encodes_each_slice_once(sam_checkpoint, make_sphere) -> None:
    volume, sphere = make_sphere(12, 40, 48, 8)
    box = mask_to_box(sphere)[None]
    engine = open_engine(EngineSpec("test_tiny_sam", sam_checkpoint, engine="torch"))
    result = segment_volume_case(engine.backend, volume, box)
    spanned = int(box[0, 5] - box[0, 2] + 1)
    assert result.stats.encoder_calls == spanned
    assert result.segs.shape == volume.shape


def test_evaluate_a_folder_with_a_sam_checkpoint(sam_checkpoint, tmp_path: Path, capsys) -> None:
    from PIL import Image

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    yy, xx = np.mgrid[:90, :120]
    for i in range(2):
        disk = (yy - 40 - 5 * i) ** 2 + (xx - 60) ** 2 < 20**2
        Image.fromarray((40 + 150 * disk).astype(np.uint8)).save(images / f"c{i}.png")
        Image.fromarray(disk.astype(np.uint8) * 255).save(masks / f"c{i}.png")
    csv = tmp_path / "metrics.csv"
    argv = ["evaluate", "--images", str(images), "--masks", str(masks)]
    argv += ["--model", "test_tiny_sam", "--checkpoint", str(sam_checkpoint), "--out", str(csv)]
    assert main([*argv, "--engine", "torch"]) == 0
    assert csv.is_file() and len(csv.read_text().splitlines()) == 3


@pytest.mark.onnx
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_with_parity_and_the_engine_gives_the_same_masks(
    fmt, sam_checkpoint, tmp_path: Path, capsys
) -> None:
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "openvino")
    out = tmp_path / fmt
    argv = ["export", "--format", fmt, "-o", str(out), "--model", "test_tiny_medsam"]
    assert main([*argv, "--checkpoint", str(sam_checkpoint), "--threads", "1"]) == 0
    assert "max |diff| encoder" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["image_size"] == 256
    rng = np.random.default_rng(0)
    image = (rng.random((70, 110)) * 80).astype(np.uint8)
    image[20:50, 30:80] += 120
    boxes = np.array([[28.0, 18.0, 82.0, 52.0], [5.0, 5.0, 60.0, 60.0]])
    masks = {}
    for engine in ("torch", fmt):
        opened = open_engine(EngineSpec("test_tiny_medsam", sam_checkpoint, engine=engine))
        assert opened.backend.frame.kind == "medsam"
        predictor = Predictor(opened.backend)
        predictor.set_image(image)
        masks[engine] = predictor.predict(boxes, return_logits=False).masks
    assert masks["torch"].any()
    agree = (masks["torch"] == masks[fmt]).mean()
    assert agree > 0.999
