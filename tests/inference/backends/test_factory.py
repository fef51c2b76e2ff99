"""Engine selection: available engines, cached exports, errors for missing extras and bad folders."""

from __future__ import annotations

import builtins
import hashlib
import importlib.util

import pytest

from umedsam.errors import MissingExtraError
from umedsam.inference.backends import factory
from umedsam.inference.backends.torch import TorchBackend


def test_available_engines_follow_installed_runtimes(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("onnxruntime", "openvino") else real(name, *a),
    )
    assert factory.available_engines() == ["torch"]


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        factory.create_backend("tensorrt")


def test_missing_extra_names_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"umedsam\[openvino\]"):
        factory.create_backend("openvino", "test_tiny")


def test_missing_runtime_import_fails_helpfully(monkeypatch) -> None:
    from umedsam.inference.backends.onnx import import_onnxruntime

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingExtraError, match=r"umedsam\[onnx\]"):
        import_onnxruntime()


def test_cache_dir_is_keyed_by_model_and_weights(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("UMEDSAM_CACHE_DIR", str(tmp_path))
    a = factory.export_cache_dir("onnx", "litemedsam", "a" * 64)
    b = factory.export_cache_dir("onnx", "litemedsam", "b" * 64)
    assert a != b
    assert a.parent == tmp_path / "exports" / "onnx"
    assert a.name.startswith("litemedsam-aaaaaaaaaaaaaaaa")


def test_weights_sha256_of_a_checkpoint(tmp_path) -> None:
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"weights")
    assert factory.weights_sha256("test_tiny", ckpt) == hashlib.sha256(b"weights").hexdigest()
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        factory.weights_sha256("test_tiny", tmp_path / "missing.pth")


def _fake_pretrained(tiny_model):
    def load(name, checkpoint=None):
        return tiny_model, None

    return load


@pytest.mark.onnx
def test_onnx_engine_exports_once_then_reuses_the_cache(monkeypatch, tmp_path, tiny_model) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("UMEDSAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(factory, "weights_sha256", lambda name, ckpt=None: "c" * 64)
    calls = []

    def load(name, checkpoint=None):
        calls.append(name)
        return tiny_model, None

    import umedsam.models.pretrained as pretrained

    monkeypatch.setattr(pretrained, "load_pretrained", load)
    first = factory.create_backend("onnx", "test_tiny", threads=1)
    assert first.name == "onnx"
    assert first.image_size == 64
    folder = factory.export_cache_dir("onnx", "test_tiny", "c" * 64)
    assert (folder / "manifest.json").is_file()
    second = factory.create_backend("onnx", "test_tiny", threads=1)
    assert calls == ["test_tiny"]  # the second engine came from the cache, without torch weights
    assert second.name == "onnx"
    # An explicit export folder of another model is refused.
    with pytest.raises(ValueError, match="expected 'litemedsam'"):
        factory.create_backend("onnx", "litemedsam", export_dir=folder)


def test_auto_falls_back_to_torch(monkeypatch, tiny_model) -> None:
    import umedsam.models.pretrained as pretrained

    monkeypatch.setattr(factory, "available_engines", lambda: ["torch"])
    monkeypatch.setattr(pretrained, "load_pretrained", _fake_pretrained(tiny_model))
    backend = factory.create_backend("auto", "test_tiny")
    assert isinstance(backend, TorchBackend)


def test_auto_skips_an_engine_that_fails(monkeypatch, tiny_model) -> None:
    import umedsam.models.pretrained as pretrained
    from umedsam.inference.export import ParityError

    monkeypatch.setattr(factory, "available_engines", lambda: ["torch", "onnx", "openvino"])
    monkeypatch.setattr(pretrained, "load_pretrained", _fake_pretrained(tiny_model))

    def failing(*args, **kwargs):
        raise ParityError("differs")

    monkeypatch.setattr(factory, "_ensure_export", failing)
    assert isinstance(factory.create_backend("auto", "test_tiny"), TorchBackend)


def _exported_engine(monkeypatch, tmp_path, tiny_model, engine: str):
    """``engine`` on the tiny model, exported into a private cache."""
    import umedsam.models.pretrained as pretrained

    monkeypatch.setenv("UMEDSAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(factory, "weights_sha256", lambda name, ckpt=None: "d" * 64)
    monkeypatch.setattr(pretrained, "load_pretrained", _fake_pretrained(tiny_model))
    return factory.create_backend(engine, "test_tiny", threads=1)


@pytest.mark.parametrize(
    ("engine", "reference", "runtime"),
    [
        pytest.param("onnx-int8", "onnx", "onnxruntime", marks=pytest.mark.onnx),
        pytest.param("openvino-bf16", "openvino", "openvino", marks=pytest.mark.openvino),
    ],
)
def test_reduced_precision_engines_stay_close_to_f32(
    monkeypatch, tmp_path, tiny_model, engine, reference, runtime
) -> None:
    # The opt-in fast engines run the same export with a lower-precision encoder: outputs are
    # not identical to f32 (that is why they are opt-in) but must stay close to it.
    pytest.importorskip(runtime)
    import numpy as np

    fast = _exported_engine(monkeypatch, tmp_path, tiny_model, engine)
    exact = factory.create_backend(reference, "test_tiny", threads=1)
    assert fast.name == engine
    assert engine in factory.available_engines()
    image = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    emb_fast, emb_exact = fast.encode(image), exact.encode(image)
    assert emb_fast.shape == emb_exact.shape
    assert np.isfinite(emb_fast).all()
    corr = np.corrcoef(emb_fast.ravel(), emb_exact.ravel())[0, 1]
    assert corr > 0.99, corr
    boxes = np.array([[8, 8, 40, 48], [20, 10, 60, 30]], np.float32)
    logits_fast, iou_fast = fast.decode(emb_fast, boxes)
    logits_exact, _ = exact.decode(emb_exact, boxes)
    assert logits_fast.shape == logits_exact.shape == (2, 1, 64, 64)
    assert iou_fast.shape == (2, 1)
    assert np.corrcoef(logits_fast.ravel(), logits_exact.ravel())[0, 1] > 0.99
    if engine == "openvino-bf16":  # its compiled models never share the f32 cache
        folder = factory.export_cache_dir("openvino", "test_tiny", "d" * 64)
        assert (folder / "ov_cache_bf16").is_dir()
