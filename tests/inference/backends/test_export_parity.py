"""Export of the tiny model to ONNX Runtime / OpenVINO: graphs, manifest, parity with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from umedsam.inference.export import (
    EXPORT_VERSION,
    DecoderGraph,
    ParityError,
    check_parity,
    export_model,
    open_graphs,
    parity_inputs,
    read_manifest,
)


def test_decoder_graph_equals_model_decode(tiny_model) -> None:
    image, boxes = parity_inputs(tiny_model.image_size, num_boxes=4)
    with torch.inference_mode():
        emb = tiny_model.encode(image)
        ref_logits, ref_iou = tiny_model.decode(emb, boxes)
        logits, iou = DecoderGraph(tiny_model)(emb, boxes)
    assert logits.shape == (4, 1, tiny_model.image_size, tiny_model.image_size)
    assert iou.shape == (4, 1)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-5)


def test_check_parity_detects_a_wrong_engine(tiny_model) -> None:
    def encode(x):
        with torch.inference_mode():
            return tiny_model.encode(torch.from_numpy(x)).numpy() + 0.5

    def decode(e, b):
        with torch.inference_mode():
            lo, iou = tiny_model.decode(torch.from_numpy(e), torch.from_numpy(b))
        return lo.numpy(), iou.numpy()

    report = check_parity(tiny_model, encode, decode)
    assert not report.passed
    assert report.encoder == pytest.approx(0.5, abs=1e-5)
    assert report.logits < 1e-6


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param("onnx", marks=pytest.mark.onnx),
        pytest.param("openvino", marks=pytest.mark.openvino),
    ],
)
def test_export_writes_graphs_manifest_and_passes_parity(tiny_model, tmp_path, fmt) -> None:
    pytest.importorskip("onnxruntime" if fmt == "onnx" else "openvino")
    out = tmp_path / fmt
    manifest = export_model(
        tiny_model, out, fmt, model_name="test_tiny", checkpoint_sha256="ab" * 32, threads=1
    )
    assert manifest.parity["encoder"] < 1e-4
    assert manifest.parity["logits"] < 1e-3
    data = json.loads((out / "manifest.json").read_text())
    assert data["model_name"] == "test_tiny"
    assert data["checkpoint_sha256"] == "ab" * 32
    assert data["image_size"] == 64
    assert data["export_version"] == EXPORT_VERSION
    assert read_manifest(out) == manifest
    for name in manifest.files.values():
        assert (out / name).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder removed

    # The engine decodes a dynamic number of boxes (not only the traced 2) and matches torch.
    backend = open_graphs(fmt, out, manifest.image_size, threads=1)
    image, boxes = parity_inputs(64, num_boxes=4)
    with torch.inference_mode():
        ref_emb = tiny_model.encode(image)
        ref_logits, _ = tiny_model.decode(ref_emb, boxes)
    emb = backend.encode(image.numpy())
    assert isinstance(emb, np.ndarray) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-4)
    for n in (1, 4):
        logits, iou = backend.decode(ref_emb.numpy(), boxes[:n].numpy())
        assert logits.shape == (n, 1, 64, 64)
        assert iou.shape == (n, 1)
        np.testing.assert_allclose(logits, ref_logits[:n].numpy(), atol=1e-3)
    if fmt == "onnx":  # no busy-waiting threads between calls (they slow the app on 2 cores)
        options = backend._session_args[0]
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.onnx
def test_export_refuses_when_parity_fails(tiny_model, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(ParityError, match="max"):
        export_model(tiny_model, tmp_path / "x", "onnx", rtol=-1.0)
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_read_manifest_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="umedsam export"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="malformed"):
        read_manifest(tmp_path)


def test_unknown_format_is_rejected(tiny_model, tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(tiny_model, tmp_path, "tensorrt")


def test_export_refuses_a_model_that_is_not_medsam_lite(tmp_path) -> None:
    with pytest.raises(TypeError, match="needs a MedSAMLite model; got Linear"):
        export_model(torch.nn.Linear(2, 2), tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()
