"""The one way to get an inference engine: ``open_engine(EngineSpec(...)) -> Engine``.

Engines (``EngineSpec.engine``):
    torch      eager PyTorch (always available).
    onnx       ONNX Runtime, f32 (extra ``onnx``).
    openvino   OpenVINO, f32 precision hint (extra ``openvino``).
    onnx-int8  ONNX Runtime with a dynamically quantized INT8 encoder (extra ``onnx``; opt-in: it
               changes masks slightly, see docs/performance.md).
    openvino-bf16
               OpenVINO with the bf16 precision hint (extra ``openvino``; opt-in: it changes masks
               slightly). Fast on CPUs with AMX or AVX512-BF16; elsewhere OpenVINO runs f32.
    openvino-bf16-decoder
               OpenVINO with the encoder in f32 (exact embeddings) and the prompt decoders in
               bf16 (opt-in: masks move slightly; each prompt costs about 40% less on such CPUs).
    auto       the first engine of :data:`AUTO_ORDER` (:data:`INTERACTIVE_AUTO_ORDER` for an
               interactive spec, as the web app opens) that is installed and whose export passed
               parity with PyTorch; an engine that fails is logged and the next one is tried.
               On a CPU with bf16 instructions, the reduced-precision engine of the model's
               card (``umedsam.models.cards.ModelCard.reduced_precision``) comes first:
               ``openvino-bf16`` always, ``openvino-bf16-decoder`` for an interactive spec.

Opening an engine happens in two steps, so that a Dask client can do the first and ship its
result to the workers: :func:`plan_engine` resolves ``auto``, computes the weights identity (the
checkpoint is hashed once) and makes sure an exported engine's graphs exist (exported and
parity-checked once, into the cache of :mod:`umedsam.inference.export_cache`; the weights are
loaded for that only when the cache misses, and a checkpoint that does not fit the model fails
there with the key report);
:func:`open_engine` then builds the runtime, loading the weights once (torch) or opening the graphs
(without importing torch).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from umedsam.errors import MissingExtraError, UmedsamError
from umedsam.inference.backends.base import Backend
from umedsam.models.cards import DEFAULT_MODEL, ModelCard, card

logger = logging.getLogger(__name__)

ENGINES = (
    "auto",
    "torch",
    "onnx",
    "openvino",
    "onnx-int8",
    "openvino-bf16",
    "openvino-bf16-decoder",
)
# Fastest first, among engines whose masks match PyTorch (measured; see docs/performance.md).
AUTO_ORDER = ("onnx", "openvino", "torch")
# One prompt at a time and every slice of a volume encoded at open (the web app): the encoder
# decides the wait, and OpenVINO's f32 encoder is the faster one (docs/performance.md).
INTERACTIVE_AUTO_ORDER = ("openvino", "onnx", "torch")
# engine -> (graph format, runtime module, umedsam extra, OpenVINO precision hint of the
# encoder, of the decoders)
_EXPORTED = {
    "onnx": ("onnx", "onnxruntime", "onnx", None, None),
    "onnx-int8": ("onnx", "onnxruntime", "onnx", None, None),
    "openvino": ("openvino", "openvino", "openvino", "f32", "f32"),
    "openvino-bf16": ("openvino", "openvino", "openvino", "bf16", "bf16"),
    "openvino-bf16-decoder": ("openvino", "openvino", "openvino", "f32", "bf16"),
}


def _checkpoint_model(model: str, checkpoint: Path) -> str:
    """The model ``checkpoint`` runs as (a SAM-family ViT file picks its card), cached per file."""
    stat = checkpoint.stat()
    return _cached_checkpoint_model(model, str(checkpoint), stat.st_size, stat.st_mtime)


@functools.lru_cache(maxsize=32)
def _cached_checkpoint_model(model: str, checkpoint: str, size: int, mtime: float) -> str:
    from umedsam.models.weights_id import mentions_vit_encoder

    if card(model).preprocessing != "litemedsam" or not mentions_vit_encoder(checkpoint):
        return model  # a named SAM-family card, or no ViT in the file: nothing to detect
    from umedsam.models.checkpoint import model_for_checkpoint

    return model_for_checkpoint(model, checkpoint)


@dataclass(frozen=True)
class EngineSpec:
    """What engine to open. Picklable, so a Dask client can send it to workers.

    Attributes:
        model: registered model name; with a checkpoint that holds a SAM-family ViT (SAM ViT-B/L/H,
            MedSAM), the card that file runs as unless a SAM-family card was named
            (:func:`umedsam.models.checkpoint.model_for_checkpoint`).
        checkpoint: weights file (None: the model's packaged weights).
        engine: one of :data:`ENGINES`.
        threads: runtime threads (None: the runtime's default). Only entry points choose this.
        export_dir: folder of an exported engine's graphs (None: the export cache); set by
            :func:`plan_engine` so that workers open the graphs the client prepared.
        interactive: ``auto`` serves one prompt at a time on images encoded ahead (the web
            app) and follows :data:`INTERACTIVE_AUTO_ORDER`.
    """

    model: str = DEFAULT_MODEL
    checkpoint: Path | None = None
    engine: str = "auto"
    threads: int | None = None
    export_dir: Path | None = None
    interactive: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(
                f"unknown engine {self.engine!r}; expected one of {', '.join(ENGINES)}"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1; got {self.threads}")
        if self.checkpoint is not None and not isinstance(self.checkpoint, Path):
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        if self.checkpoint is not None and self.checkpoint.is_file():
            object.__setattr__(self, "model", _checkpoint_model(self.model, self.checkpoint))
        if self.export_dir is not None and not isinstance(self.export_dir, Path):
            object.__setattr__(self, "export_dir", Path(self.export_dir))

    @property
    def card(self) -> ModelCard:
        """The model's card with this spec's checkpoint: what every entry point asks about it."""
        return card(self.model, self.checkpoint)


@dataclass(frozen=True)
class EnginePlan:
    """A resolved :class:`EngineSpec`: a concrete engine, its weights identity and graphs.

    Attributes:
        spec: the spec with ``engine`` concrete (never ``auto``) and, for an exported engine,
            ``export_dir`` set.
        sha256: identity of the weights (see :func:`weights_sha256`).
    """

    spec: EngineSpec
    sha256: str

    @property
    def engine(self) -> str:
        """The concrete engine name."""
        return self.spec.engine

    @property
    def model(self) -> str:
        """The registered model name."""
        return self.spec.model


@dataclass
class Engine:
    """An open engine: the runtime adapter and what it runs.

    Attributes:
        backend: encode/decode on numpy arrays (see :class:`~umedsam.inference.backends.base.Backend`).
        plan: the resolved spec and weights identity.
        seconds: time taken to plan and open it.
    """

    backend: Backend
    plan: EnginePlan
    seconds: float = 0.0

    @property
    def name(self) -> str:
        """Concrete engine name (``onnx``, ``torch`` ...)."""
        return self.plan.engine

    @property
    def sha256(self) -> str:
        """Identity of the weights the engine runs."""
        return self.plan.sha256


def available_engines() -> list[str]:
    """Engines whose runtime is installed (no heavy import: only module specs are looked up)."""
    engines = ["torch"]
    if importlib.util.find_spec("onnxruntime") is not None:
        engines.append("onnx")
        if importlib.util.find_spec("onnx") is not None:
            engines.append("onnx-int8")
    if importlib.util.find_spec("openvino") is not None:
        engines += ["openvino", "openvino-bf16", "openvino-bf16-decoder"]
    return engines


def weights_sha256(model_name: str, checkpoint: str | Path | None = None) -> str:
    """The identity of the weights ``load_pretrained(model_name, checkpoint)`` loads.

    A checkpoint's own sha256; for the bundled LiteMedSAM weights the published hash (no file is
    read); for packaged weights over a base (a fine-tuned decoder over LiteMedSAM), the sha256 of
    both identities joined.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: ``model_name`` is unknown or has no packaged weights and no checkpoint.
    """
    from umedsam.models.weights_id import LITEMEDSAM_SHA256, file_sha256

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return file_sha256(path)
    from umedsam.models.cards import card, shipped_weights

    if card(model_name).bundled:
        return LITEMEDSAM_SHA256
    found = shipped_weights(model_name)  # torch-free
    if found is None:
        from umedsam.models.registry import default_weights

        found = default_weights(model_name)  # raises the clear error
    base, weights = found
    parts = [file_sha256(weights)]
    if base is not None and card(base).bundled:
        parts.insert(0, LITEMEDSAM_SHA256)
    elif base is not None:
        base_path = card(base).weights_path
        if base_path is None:
            raise ValueError(f"model {model_name!r}: its base {base!r} ships no weights")
        parts.insert(0, file_sha256(base_path))
    if len(parts) == 1:
        return parts[0]
    return hashlib.sha256("+".join(parts).encode()).hexdigest()


def _require_runtime(engine: str) -> None:
    if engine in _EXPORTED and engine not in available_engines():
        _, module, extra, _, _ = _EXPORTED[engine]
        package = "onnx" if engine == "onnx-int8" and module == "onnxruntime" else module
        raise MissingExtraError(package, extra, f"the {engine} engine")


def _prepare(spec: EngineSpec, sha256: str) -> EnginePlan:
    """Plan one concrete engine: for an exported one, its graphs exist and passed parity."""
    _require_runtime(spec.engine)
    if spec.engine not in _EXPORTED:
        return EnginePlan(replace(spec, export_dir=None), sha256)
    from umedsam.inference.export_cache import ensure_export

    fmt = _EXPORTED[spec.engine][0]
    folder = ensure_export(
        fmt, spec.model, spec.checkpoint, sha256, folder=spec.export_dir, threads=spec.threads
    )
    return EnginePlan(replace(spec, export_dir=folder), sha256)


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX; read from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def plan_engine(spec: EngineSpec) -> EnginePlan:
    """Resolve ``auto``, hash the weights once and prepare an exported engine's graphs.

    Raises:
        ValueError: unknown model, no weights, or an ``export_dir`` made for other weights.
        FileNotFoundError, CheckpointError: the checkpoint is missing or unusable.
        MissingExtraError: the named engine's runtime is not installed.
        ParityError: a fresh export of the named engine disagrees with PyTorch.
    """
    sha256 = weights_sha256(spec.model, spec.checkpoint)
    if spec.engine != "auto":
        return _prepare(spec, sha256)
    installed = available_engines()
    from umedsam.inference.export_folder import ParityError

    order: tuple[str, ...] = INTERACTIVE_AUTO_ORDER if spec.interactive else AUTO_ORDER
    validated = spec.card.reduced_precision if cpu_has_bf16() else None
    if validated == "openvino-bf16" or (validated and spec.interactive):
        order = (validated, *order)
    for engine in order:
        if engine not in installed:
            continue
        try:
            return _prepare(replace(spec, engine=engine), sha256)
        except (UmedsamError, FileNotFoundError):
            raise  # the weights themselves are unusable: no other engine would do better
        except (ParityError, RuntimeError, OSError) as err:
            logger.warning("engine %s unavailable (%s); trying the next one", engine, err)
    return _prepare(replace(spec, engine="torch"), sha256)


def open_engine(spec: EngineSpec | EnginePlan) -> Engine:
    """Open the engine a spec (or an already resolved plan) describes.

    With a plan, nothing is hashed or exported again: a Dask worker opens exactly what the client
    planned. The torch engine loads the weights once; exported engines open their graphs without
    importing torch. ``spec.threads`` sets the runtime's threads (for torch, process-wide).

    Raises:
        see :func:`plan_engine`; also CheckpointError when the weights cannot be loaded.
    """
    start = time.perf_counter()
    plan = spec if isinstance(spec, EnginePlan) else plan_engine(spec)
    s = plan.spec
    if s.engine == "torch":
        import torch

        from umedsam.inference.backends.torch import TorchBackend
        from umedsam.models.pretrained import load_pretrained

        if s.threads:
            torch.set_num_threads(s.threads)
        model, _ = load_pretrained(s.model, s.checkpoint, sha256=plan.sha256)
        backend: Backend = TorchBackend(model)
    else:
        backend = _open_graphs(s)
    from umedsam.data.frames import make_frame

    # the card's family, at the size the network itself takes; its confidence cue weights
    backend.frame = make_frame(s.card.preprocessing, backend.image_size)
    backend.cue_weights = s.card.confidence_weights
    engine = Engine(backend=backend, plan=plan, seconds=time.perf_counter() - start)
    logger.info("opened %s on %s in %.2f s", s.model, s.engine, engine.seconds)
    return engine


def _open_graphs(spec: EngineSpec) -> Backend:
    """Open the exported graphs of ``spec.export_dir`` for ``spec.engine``."""
    from umedsam.inference.export_folder import open_graphs, read_manifest

    _require_runtime(spec.engine)
    if spec.export_dir is None:
        raise ValueError(f"the {spec.engine} engine needs an export folder; plan the engine first")
    folder = spec.export_dir
    manifest = read_manifest(folder)
    encoder_file = None
    if spec.engine == "onnx-int8":
        from umedsam.inference.quantize import ensure_int8_encoder

        encoder_file = ensure_int8_encoder(folder).name
    precision = _EXPORTED[spec.engine][3] or "f32"
    decoder_precision = _EXPORTED[spec.engine][4] or "f32"
    suffix = precision if precision == decoder_precision else f"{precision}-{decoder_precision}"
    cache_name = "ov_cache" if suffix == "f32" else f"ov_cache_{suffix}"
    backend = open_graphs(
        manifest.format,
        folder,
        manifest.image_size,
        threads=spec.threads,
        # One compiled-model cache per precision: a bf16 compile must not be served as f32.
        cache_dir=folder / cache_name if manifest.format == "openvino" else None,
        encoder_file=encoder_file,
        precision=precision,
        decoder_precision=decoder_precision,
    )
    backend.name = spec.engine
    return backend


def torch_runs_model(spec: EngineSpec) -> bool:
    """Whether opening ``spec`` runs the model in PyTorch (an entry point then tunes torch)."""
    if spec.engine == "auto":
        return not any(e in available_engines() for e in AUTO_ORDER if e != "torch")
    return spec.engine == "torch"
