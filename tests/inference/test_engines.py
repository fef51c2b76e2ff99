"""The engine entry point: engine choice, ``auto`` and its fallback, weights identity, exports."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.errors import CheckpointError, MissingExtraError
from umedsam.inference import engines
from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.engines import EnginePlan, EngineSpec, open_engine, plan_engine
from umedsam.inference.export_cache import export_cache_dir


@pytest.fixture
def tiny_ckpt(tiny_model, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), path)
    return path


def test_available_engines_follow_installed_runtimes(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("onnxruntime", "openvino") else real(name, *a),
    )
    assert engines.available_engines() == ["torch"]


def test_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown engine 'tensorrt'"):
        EngineSpec(engine="tensorrt")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        EngineSpec(threads=0)
    assert EngineSpec(checkpoint="w.pt").checkpoint == Path("w.pt")  # type: ignore[arg-type]


def test_missing_extra_names_the_extra(monkeypatch, tiny_ckpt) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"umedsam\[openvino\]"):
        open_engine(EngineSpec("test_tiny", tiny_ckpt, engine="openvino"))


def test_missing_runtime_import_fails_helpfully(monkeypatch) -> None:
    import sys

    from umedsam.inference.backends.onnx import import_onnxruntime

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # "import onnxruntime" now fails
    with pytest.raises(MissingExtraError, match=r"umedsam\[onnx\]"):
        import_onnxruntime()


def test_cache_dir_is_keyed_by_model_and_weights(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("UMEDSAM_CACHE_DIR", str(tmp_path))
    a = export_cache_dir("onnx", "litemedsam", "a" * 64)
    b = export_cache_dir("onnx", "litemedsam", "b" * 64)
    assert a != b
    assert a.parent == tmp_path / "exports" / "onnx"
    assert a.name.startswith("litemedsam-aaaaaaaaaaaaaaaa")


def test_weights_sha256_of_a_checkpoint(tmp_path) -> None:
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"weights")
    assert engines.weights_sha256("test_tiny", ckpt) == hashlib.sha256(b"weights").hexdigest()
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        engines.weights_sha256("test_tiny", tmp_path / "missing.pth")


def test_shipped_weights_are_identified_without_torch() -> None:
    """An exported engine of a shipped model starts without importing torch (about 1-2 s)."""
    import subprocess
    import sys

    from umedsam.models.cards import available_models, card

    names = [n for n in available_models() if not card(n).bundled]
    assert names
    code = (
        "import sys\n"
        "from umedsam.inference.engines import weights_sha256\n"
        f"ids = [weights_sha256(n) for n in {names!r}]\n"
        "print(len(set(ids)), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(names)), "False"]
    from umedsam.models.registry import default_weights

    for name in names:  # the registry (with torch) declares the same files
        base, path = default_weights(name)
        assert path == card(name).weights_path and base == card(name).base


def _count_hashes_and_loads(monkeypatch) -> dict[str, int]:
    """Count checkpoint hashes and state-dict reads from here on."""
    import umedsam.models.checkpoint as checkpoint
    import umedsam.models.weights_id as weights_id

    counts = {"hash": 0, "load": 0}
    real_hash, real_read = weights_id.file_sha256, checkpoint.read_state_dict

    def hashing(path):
        counts["hash"] += 1
        return real_hash(path)

    def reading(path):
        counts["load"] += 1
        return real_read(path)

    monkeypatch.setattr(weights_id, "file_sha256", hashing)
    monkeypatch.setattr(checkpoint, "file_sha256", hashing)
    monkeypatch.setattr(checkpoint, "read_state_dict", reading)
    return counts


def test_torch_engine_hashes_and_loads_once(monkeypatch, tiny_ckpt) -> None:
    counts = _count_hashes_and_loads(monkeypatch)
    engine = open_engine(EngineSpec("test_tiny", tiny_ckpt, engine="torch"))
    assert isinstance(engine.backend, TorchBackend)
    assert engine.name == "torch"
    assert engine.sha256 == hashlib.sha256(tiny_ckpt.read_bytes()).hexdigest()
    assert counts == {"hash": 1, "load": 1}


@pytest.mark.onnx
def test_onnx_engine_exports_once_then_reuses_the_cache(monkeypatch, tmp_path, tiny_ckpt) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("UMEDSAM_CACHE_DIR", str(tmp_path / "cache"))
    counts = _count_hashes_and_loads(monkeypatch)
    first = open_engine(EngineSpec("test_tiny", tiny_ckpt, engine="onnx", threads=1))
    assert counts == {"hash": 1, "load": 1}  # hashed once, loaded once for the export
    assert first.backend.name == "onnx" and first.backend.image_size == 64
    folder = export_cache_dir("onnx", "test_tiny", first.sha256)
    assert first.plan.spec.export_dir == folder
    assert (folder / "manifest.json").is_file()
    second = open_engine(EngineSpec("test_tiny", tiny_ckpt, engine="onnx", threads=1))
    assert counts == {"hash": 2, "load": 1}  # from the cache: no weights loaded
    assert second.sha256 == first.sha256
    # a plan is opened as is: nothing hashed, exported or loaded
    open_engine(second.plan)
    assert counts == {"hash": 2, "load": 1}
    # an explicit export folder of another model or other weights is refused
    with pytest.raises(ValueError, match="expected 'litemedsam'"):
        open_engine(EngineSpec("litemedsam", engine="onnx", export_dir=folder))
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    from umedsam.models.registry import build_model

    torch.save(build_model("test_tiny").state_dict(), other)
    with pytest.raises(ValueError, match="other weights"):
        open_engine(EngineSpec("test_tiny", other, engine="onnx", export_dir=folder))


def test_auto_falls_back_to_torch(monkeypatch, tiny_ckpt) -> None:
    monkeypatch.setattr(engines, "available_engines", lambda: ["torch"])
    engine = open_engine(EngineSpec("test_tiny", tiny_ckpt))
    assert isinstance(engine.backend, TorchBackend)
    assert engine.plan.engine == "torch" and engine.plan.spec.engine == "torch"


def test_auto_runs_a_bf16_validated_model_in_bf16_on_a_bf16_cpu(monkeypatch) -> None:
    """Only shipped weights validated in bf16, and only where the CPU has bf16 instructions."""
    tried: list[str] = []

    def prepare(spec, sha256):
        tried.append(spec.engine)
        return engines.EnginePlan(spec, sha256)

    monkeypatch.setattr(engines, "_prepare", prepare)
    installed = ["torch", "onnx", "openvino", "openvino-bf16"]
    monkeypatch.setattr(engines, "available_engines", lambda: installed)
    for has_bf16, model, first in (
        (True, "umedsam_effvit_b0", "openvino-bf16"),
        (False, "umedsam_effvit_b0", "onnx"),
        (True, "litemedsam", "onnx"),  # the teacher stays exact
    ):
        monkeypatch.setattr(engines, "cpu_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        tried.clear()
        assert engines.plan_engine(EngineSpec(model)).spec.engine == first


def test_auto_for_interactive_work_prefers_openvino(monkeypatch) -> None:
    """The web app's order: OpenVINO's encoder first; batch work keeps ONNX Runtime first."""
    monkeypatch.setattr(engines, "_prepare", lambda spec, sha256: engines.EnginePlan(spec, sha256))
    monkeypatch.setattr(engines, "cpu_has_bf16", lambda: True)
    for installed, interactive, model, first in (
        (["torch", "onnx", "openvino", "openvino-bf16"], True, "litemedsam", "openvino"),
        (["torch", "onnx", "openvino", "openvino-bf16"], False, "litemedsam", "onnx"),
        (["torch", "onnx"], True, "litemedsam", "onnx"),
        (
            ["torch", "onnx", "openvino", "openvino-bf16"],
            True,
            "umedsam_effvit_b0",
            "openvino-bf16",
        ),
        # decoders validated in bf16: the app keeps the exact encoder, bf16 decoders
        (
            ["torch", "onnx", "openvino", "openvino-bf16", "openvino-bf16-decoder"],
            True,
            "umedsam_merged",
            "openvino-bf16-decoder",
        ),
        (
            ["torch", "onnx", "openvino", "openvino-bf16", "openvino-bf16-decoder"],
            False,
            "umedsam_merged",
            "onnx",
        ),
    ):
        monkeypatch.setattr(engines, "available_engines", lambda installed=installed: installed)
        spec = EngineSpec(model, interactive=interactive)
        assert engines.plan_engine(spec).spec.engine == first


def test_the_web_app_opens_its_engine_in_the_interactive_order() -> None:
    from umedsam.ui.app import UIConfig

    assert UIConfig().engine_spec().interactive


def test_auto_skips_an_engine_that_fails(monkeypatch, tiny_ckpt) -> None:
    import umedsam.inference.export_cache as export_cache
    from umedsam.inference.export_folder import ParityError

    monkeypatch.setattr(engines, "available_engines", lambda: ["torch", "onnx", "openvino"])
    tried = []

    def failing(fmt, *args, **kwargs):
        tried.append(fmt)
        raise ParityError("differs")

    monkeypatch.setattr(export_cache, "ensure_export", failing)
    plan = plan_engine(EngineSpec("test_tiny", tiny_ckpt))
    assert tried == ["onnx", "openvino"]
    assert plan.engine == "torch"


def test_auto_does_not_hide_a_bad_checkpoint(monkeypatch, tmp_path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"not.a.key": torch.zeros(2)}, bad)
    monkeypatch.setattr(engines, "available_engines", lambda: ["torch", "onnx"])
    with pytest.raises(CheckpointError):
        open_engine(EngineSpec("test_tiny", bad))


def test_plan_is_picklable(tiny_ckpt) -> None:
    import pickle

    plan = plan_engine(EngineSpec("test_tiny", tiny_ckpt, engine="torch"))
    again = pickle.loads(pickle.dumps(plan))
    assert again == plan and isinstance(again, EnginePlan)
    assert hash(again) == hash(plan)  # workers key their engine cache by it


@pytest.mark.parametrize(
    ("engine", "reference", "runtime"),
    [
        pytest.param("onnx-int8", "onnx", "onnxruntime", marks=pytest.mark.onnx),
        pytest.param("openvino-bf16", "openvino", "openvino", marks=pytest.mark.openvino),
        pytest.param("openvino-bf16-decoder", "openvino", "openvino", marks=pytest.mark.openvino),
    ],
)
def test_reduced_precision_engines_stay_close_to_f32(
    monkeypatch, tmp_path, tiny_ckpt, engine, reference, runtime
) -> None:
    # The opt-in fast engines run the same export with a lower-precision encoder: outputs are
    # not identical to f32 (that is why they are opt-in) but must stay close to it.
    pytest.importorskip(runtime)
    monkeypatch.setenv("UMEDSAM_CACHE_DIR", str(tmp_path / "cache"))
    fast = open_engine(EngineSpec("test_tiny", tiny_ckpt, engine=engine, threads=1))
    exact = open_engine(EngineSpec("test_tiny", tiny_ckpt, engine=reference, threads=1))
    assert fast.backend.name == engine
    assert engine in engines.available_engines()
    image = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    emb_fast, emb_exact = fast.backend.encode(image), exact.backend.encode(image)
    assert emb_fast.shape == emb_exact.shape
    assert np.isfinite(emb_fast).all()
    corr = np.corrcoef(emb_fast.ravel(), emb_exact.ravel())[0, 1]
    assert corr > 0.99, corr
    if engine == "openvino-bf16-decoder":  # the encoder stays f32: embeddings match
        np.testing.assert_allclose(emb_fast, emb_exact, rtol=1e-4, atol=1e-4)
    boxes = np.array([[8, 8, 40, 48], [20, 10, 60, 30]], np.float32)
    logits_fast, iou_fast = fast.backend.decode(emb_fast, boxes)
    logits_exact, _ = exact.backend.decode(emb_exact, boxes)
    assert logits_fast.shape == logits_exact.shape == (2, 1, 64, 64)
    assert iou_fast.shape == (2, 1)
    assert np.corrcoef(logits_fast.ravel(), logits_exact.ravel())[0, 1] > 0.99
    # compiled models of another precision never share the f32 cache
    cache = {"openvino-bf16": "ov_cache_bf16", "openvino-bf16-decoder": "ov_cache_f32-bf16"}
    if engine in cache:
        assert (fast.plan.spec.export_dir / cache[engine]).is_dir()
