"""Pick and build an inference engine by name; exported graphs are cached per model and weights.

Engines:
    torch      eager PyTorch (always available).
    onnx       ONNX Runtime, f32 (extra ``onnx``).
    openvino   OpenVINO, f32 precision hint (extra ``openvino``).
    onnx-int8  ONNX Runtime with a dynamically quantized INT8 encoder (extra ``onnx``; opt-in: it
               changes masks slightly, see docs/performance.md).
    openvino-bf16
               OpenVINO with the bf16 precision hint (extra ``openvino``; opt-in: it changes masks
               slightly). Fast on CPUs with AMX or AVX512-BF16; elsewhere OpenVINO runs f32.
    auto       the fastest installed engine whose export passed parity: onnx, then openvino, then
               torch (order measured on 2-core AVX2 and AVX-512 CPUs, see docs/performance.md).

A non-torch engine exports the model on first use into
``<cache root>/exports/<format>/<model name>-<sha256[:16]>-v<export version>/`` (cache root:
``$UMEDSAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/umedsam``, else ``~/.cache/umedsam``), checks parity
once at export time and reuses the folder afterwards without loading the PyTorch model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

from umedsam.errors import MissingExtraError
from umedsam.inference.backends.base import Backend

logger = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx", "openvino", "onnx-int8", "openvino-bf16")
# Fastest first, among engines whose masks match PyTorch (measured; see docs/performance.md).
AUTO_ORDER = ("onnx", "openvino", "torch")
_ENGINE_FORMAT = {
    "onnx": "onnx",
    "openvino": "openvino",
    "onnx-int8": "onnx",
    "openvino-bf16": "openvino",
}
_ENGINE_EXTRA = {
    "onnx": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "openvino"),
    "openvino-bf16": ("openvino", "openvino"),
}
# OpenVINO inference precision hint per engine (f32 unless the engine trades accuracy for speed).
_OPENVINO_PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}


def available_engines() -> list[str]:
    """Engines whose runtime is installed (no heavy import: only module specs are looked up)."""
    engines = ["torch"]
    if importlib.util.find_spec("onnxruntime") is not None:
        engines.append("onnx")
        if importlib.util.find_spec("onnx") is not None:
            engines.append("onnx-int8")
    if importlib.util.find_spec("openvino") is not None:
        engines += ["openvino", "openvino-bf16"]
    return engines


def cache_root() -> Path:
    """Folder for umedsam's caches: $UMEDSAM_CACHE_DIR, $XDG_CACHE_HOME/umedsam or ~/.cache/umedsam."""
    if os.environ.get("UMEDSAM_CACHE_DIR"):
        return Path(os.environ["UMEDSAM_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "umedsam"
    return Path.home() / ".cache" / "umedsam"


def weights_sha256(model_name: str, checkpoint: str | Path | None = None) -> str:
    """sha256 identifying the weights ``load_pretrained(model_name, checkpoint)`` would load.

    For the bundled LiteMedSAM weights this is the published hash (no file is read); otherwise the
    checkpoint (or packaged weights) file is hashed.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: ``model_name`` has no packaged weights and no checkpoint was given.
    """
    from umedsam.models.weights_id import LITEMEDSAM_SHA256, file_sha256

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return file_sha256(path)
    if model_name == "litemedsam":
        return LITEMEDSAM_SHA256
    from umedsam.models.registry import default_weights

    base, weights = default_weights(model_name)
    parts = [file_sha256(weights)]
    if base == "litemedsam":
        parts.insert(0, LITEMEDSAM_SHA256)
    elif base is not None:
        parts.insert(0, file_sha256(base))
    if len(parts) == 1:
        return parts[0]
    return hashlib.sha256("+".join(parts).encode()).hexdigest()


def export_cache_dir(fmt: str, model_name: str, sha256: str) -> Path:
    """Cache folder of the ``fmt`` export of ``model_name`` with weights ``sha256``."""
    from umedsam.inference.export_folder import EXPORT_VERSION

    return cache_root() / "exports" / fmt / f"{model_name}-{sha256[:16]}-v{EXPORT_VERSION}"


def create_backend(
    engine: str = "auto",
    model_name: str = "litemedsam",
    checkpoint: str | Path | None = None,
    export_dir: str | Path | None = None,
    threads: int | None = None,
) -> Backend:
    """Build the named engine for ``model_name`` with its default weights or ``checkpoint``.

    Args:
        engine: one of ENGINES ("auto" picks the fastest installed engine that passes parity).
        model_name: registered model name.
        checkpoint: weights file (None: the model's packaged weights).
        export_dir: a folder written by ``umedsam export`` (or to export into); None uses the cache.
            Its manifest must name the same model and, if ``checkpoint`` is given, the same weights.
        threads: engine threads (None: the engine's default). Only the CLI should choose this.

    Returns:
        A Backend (encode/decode) ready to use.

    Raises:
        ValueError: unknown engine, or an export_dir made for another model/weights/format.
        MissingExtraError: the engine's runtime is not installed.
        ParityError: a fresh export disagrees with PyTorch.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if engine == "auto":
        return _create_auto(model_name, checkpoint, export_dir, threads)
    if engine == "torch":
        return _create_torch(model_name, checkpoint)
    fmt = _ENGINE_FORMAT[engine]
    package, extra = _ENGINE_EXTRA.get(engine, ("onnx", "onnx"))
    if importlib.util.find_spec(package) is None or (
        engine == "onnx-int8" and importlib.util.find_spec("onnxruntime") is None
    ):
        raise MissingExtraError(package, extra, f"the {engine} engine")
    folder = _ensure_export(fmt, model_name, checkpoint, export_dir, threads)
    return _open_export(engine, folder, threads)


def cached_export(
    engine: str, model_name: str = "litemedsam", checkpoint: str | Path | None = None
) -> Path | None:
    """The valid cached export folder of an exported ``engine`` for these weights, or None.

    A cached export was made from weights with this sha256 and passed parity, so the checkpoint
    was already validated then: using it needs neither torch nor reading the weights again.
    """
    fmt = _ENGINE_FORMAT.get(engine)
    if fmt is None:
        return None
    from umedsam.inference.export_folder import read_manifest

    sha = weights_sha256(model_name, checkpoint)
    folder = export_cache_dir(fmt, model_name, sha)
    try:
        manifest = read_manifest(folder)
    except (FileNotFoundError, ValueError):
        return None
    if manifest.checkpoint_sha256 != sha or manifest.model_name != model_name:
        return None
    return folder


def ensure_export(
    engine: str, model_name: str = "litemedsam", checkpoint: str | Path | None = None
) -> Path:
    """The cached export folder an exported ``engine`` runs from, exporting it if needed.

    Raises:
        ValueError: ``engine`` is not an exported engine.
        MissingExtraError: the engine's runtime is not installed.
        ParityError: a fresh export disagrees with PyTorch.
    """
    if engine not in _ENGINE_FORMAT:
        raise ValueError(
            f"{engine!r} runs no exported graphs; expected one of {list(_ENGINE_FORMAT)}"
        )
    package, extra = _ENGINE_EXTRA.get(engine, ("onnx", "onnx"))
    if importlib.util.find_spec(package) is None:
        raise MissingExtraError(package, extra, f"the {engine} engine")
    return _ensure_export(_ENGINE_FORMAT[engine], model_name, checkpoint, None, None)


def _create_torch(model_name: str, checkpoint: str | Path | None) -> Backend:
    from umedsam.inference.backends.torch import TorchBackend
    from umedsam.models.pretrained import load_pretrained

    model, _ = load_pretrained(model_name, checkpoint)
    return TorchBackend(model)


def _create_auto(
    model_name: str,
    checkpoint: str | Path | None,
    export_dir: str | Path | None,
    threads: int | None,
) -> Backend:
    from umedsam.inference.export_folder import ParityError

    installed = available_engines()
    for engine in AUTO_ORDER:
        if engine not in installed:
            continue
        if engine == "torch":
            return _create_torch(model_name, checkpoint)
        try:
            return create_backend(engine, model_name, checkpoint, export_dir, threads)
        except (ParityError, RuntimeError, OSError) as err:
            # Export or runtime failure: fall back to the next engine, but say why.
            logger.warning("engine %s unavailable (%s); trying the next one", engine, err)
    return _create_torch(model_name, checkpoint)


def _ensure_export(
    fmt: str,
    model_name: str,
    checkpoint: str | Path | None,
    export_dir: str | Path | None,
    threads: int | None,
) -> Path:
    """The folder holding a valid ``fmt`` export of the model, exporting it if needed."""
    from umedsam.inference.export_folder import read_manifest

    sha = None
    if export_dir is not None:
        folder = Path(export_dir)
        if (folder / "manifest.json").is_file():
            manifest = read_manifest(folder)
            if manifest.format != fmt:
                raise ValueError(f"{folder} holds a {manifest.format} export; expected {fmt}")
            if manifest.model_name != model_name:
                raise ValueError(
                    f"{folder} holds an export of {manifest.model_name!r}; expected {model_name!r}"
                )
            if checkpoint is not None:
                sha = weights_sha256(model_name, checkpoint)
                if manifest.checkpoint_sha256 != sha:
                    raise ValueError(
                        f"{folder} was exported from other weights (sha256 "
                        f"{manifest.checkpoint_sha256[:16]}..., checkpoint {sha[:16]}...)"
                    )
            return folder
    else:
        sha = weights_sha256(model_name, checkpoint)
        folder = export_cache_dir(fmt, model_name, sha)
        if (folder / "manifest.json").is_file():
            try:
                manifest = read_manifest(folder)
                if manifest.checkpoint_sha256 == sha and manifest.model_name == model_name:
                    return folder
            except ValueError as err:
                logger.warning("ignoring cached export %s: %s", folder, err)
    sha = sha or weights_sha256(model_name, checkpoint)
    from umedsam.inference.export import export_model
    from umedsam.models.pretrained import load_pretrained

    logger.info("exporting %s for the %s engine into %s (once)", model_name, fmt, folder)
    model, _ = load_pretrained(model_name, checkpoint)
    export_model(model, folder, fmt, model_name=model_name, checkpoint_sha256=sha, threads=threads)
    return folder


def _open_export(engine: str, folder: Path, threads: int | None) -> Backend:
    """Open the graphs of an export folder for ``engine``."""
    from umedsam.inference.export_folder import open_graphs, read_manifest

    manifest = read_manifest(folder)
    encoder_file = None
    if engine == "onnx-int8":
        from umedsam.inference.quantize import ensure_int8_encoder

        encoder_file = ensure_int8_encoder(folder).name
    precision = _OPENVINO_PRECISION.get(engine, "f32")
    backend = open_graphs(
        manifest.format,
        folder,
        manifest.image_size,
        threads=threads,
        # One compiled-model cache per precision: a bf16 compile must not be served as f32.
        cache_dir=folder / ("ov_cache" if precision == "f32" else f"ov_cache_{precision}")
        if manifest.format == "openvino"
        else None,
        encoder_file=encoder_file,
        precision=precision,
    )
    backend.name = engine
    return backend
