"""``umedsam export`` in-process on the tiny model."""

from __future__ import annotations

import json

import pytest

from umedsam.cli.main import main


@pytest.fixture
def tiny_pretrained(monkeypatch, tiny_model):
    import umedsam.models.pretrained as pretrained

    monkeypatch.setattr(
        pretrained, "load_pretrained", lambda name, checkpoint=None: (tiny_model, None)
    )
    return tiny_model


@pytest.mark.onnx
def test_cli_export_onnx(tmp_path, capsys, tiny_pretrained) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "onnx"
    rc = main(
        ["export", "--format", "onnx", "-o", str(out), "--model", "litemedsam", "--threads", "1"]
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "max |diff| encoder" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "onnx"
    assert manifest["model_name"] == "litemedsam"
    assert len(manifest["checkpoint_sha256"]) == 64
    assert (out / "encoder.onnx").is_file()
    assert (out / "decoder.onnx").is_file()


def test_cli_export_int8_needs_onnx(tmp_path, capsys) -> None:
    rc = main(["export", "--format", "openvino", "--int8", "-o", str(tmp_path)])
    assert rc == 2
    assert "--int8 is only available with --format onnx" in capsys.readouterr().err


def test_cli_export_rejects_unknown_format(tmp_path) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--format", "tflite", "-o", str(tmp_path)])
