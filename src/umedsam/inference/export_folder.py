"""Export folders: their manifest, reading it, and opening the graphs in a runtime (no torch).

Writing an export needs torch (see :mod:`umedsam.inference.export`); using one does not, so the
ONNX Runtime and OpenVINO engines start without importing it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from umedsam.extras import import_optional

FORMATS = ("onnx", "openvino")
EXPORT_VERSION = 2  # bump when the graphs or the folder layout change; invalidates caches
MANIFEST_NAME = "manifest.json"
ONNX_OPSET = 17
# Parity tolerance: max |exported - torch| <= PARITY_RTOL * max(1, max |torch|), per output.
PARITY_RTOL = 1e-3
GRAPH_FILES = {
    "onnx": {
        "encoder": "encoder.onnx",
        "decoder": "decoder.onnx",
        "prompt_decoder": "prompt_decoder.onnx",
    },
    "openvino": {
        "encoder": "encoder.xml",
        "decoder": "decoder.xml",
        "prompt_decoder": "prompt_decoder.xml",
    },
}


class ParityError(RuntimeError):
    """An exported graph disagrees with the PyTorch model beyond tolerance."""


@dataclass(frozen=True)
class ParityReport:
    """Largest absolute differences between an exported engine and PyTorch on a synthetic input.

    Attributes:
        encoder: max |embedding difference|.
        logits: max |decoder logit difference| (several boxes, one call).
        iou: max |IoU difference|.
        passed: all within tolerance.
        prompts: max |logit or IoU difference| of the prompt decoder (clicks, box corners, mask
            prompts).
    """

    encoder: float
    logits: float
    iou: float
    passed: bool
    prompts: float = 0.0

    @property
    def max_diff(self) -> float:
        """The largest of the differences."""
        return max(self.encoder, self.logits, self.iou, self.prompts)


@dataclass(frozen=True)
class ExportManifest:
    """What an export folder holds (written as manifest.json).

    Attributes:
        format: "onnx" or "openvino".
        model_name: registered model name.
        checkpoint_sha256: sha256 of the weights file the graphs were exported from ("" if unknown).
        image_size: side S of the model input frame.
        embedding_shape: (C, h, w) of one embedding.
        files: role ("encoder", "decoder", optional "encoder_int8") -> file name in the folder.
        parity: max abs differences against PyTorch ({"encoder", "logits", "iou"}).
        umedsam_version, export_version, torch_version, runtime_version: provenance.
        extra: optional details (e.g. quantization parity).
    """

    format: str
    model_name: str
    checkpoint_sha256: str
    image_size: int
    embedding_shape: tuple[int, int, int]
    files: dict[str, str]
    parity: dict[str, float]
    umedsam_version: str
    export_version: int
    torch_version: str
    runtime_version: str
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        """Write manifest.json into ``folder``."""
        path = Path(folder) / MANIFEST_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path


def read_manifest(folder: str | Path) -> ExportManifest:
    """Read ``folder/manifest.json``.

    Raises:
        FileNotFoundError: no manifest in the folder.
        ValueError: the manifest is malformed or from another export version.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no export manifest: {path} (run 'umedsam export' first)")
    try:
        data = json.loads(path.read_text())
        data["embedding_shape"] = tuple(data["embedding_shape"])
        manifest = ExportManifest(**data)
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: malformed export manifest ({err})") from err
    if manifest.export_version != EXPORT_VERSION:
        raise ValueError(
            f"{path}: export version {manifest.export_version}, this umedsam reads version "
            f"{EXPORT_VERSION}; export again"
        )
    if manifest.format not in FORMATS:
        raise ValueError(f"{path}: unknown format {manifest.format!r}; expected one of {FORMATS}")
    return manifest


def _runtime_version(fmt: str) -> str:
    if fmt == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    import openvino

    return f"openvino {openvino.__version__}"


def require_runtime(fmt: str) -> None:
    """Raise MissingExtraError unless the runtime of ``fmt`` is importable."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    module = "onnxruntime" if fmt == "onnx" else "openvino"
    import_optional(module, package=module, extra=fmt, purpose=f"the {fmt} engine")


def open_graphs(
    fmt: str,
    folder: Path,
    image_size: int,
    threads: int | None = None,
    cache_dir: Path | None = None,
    encoder_file: str | None = None,
    precision: str = "f32",
    decoder_precision: str | None = None,
) -> Any:
    """An OnnxBackend or OpenVINOBackend on the graphs of ``folder`` (default file names of ``fmt``).

    ``precision`` is OpenVINO's inference precision hint (``f32`` keeps parity with PyTorch);
    ``decoder_precision`` the decoders' hint where it differs (None: the same).
    """
    files = GRAPH_FILES[fmt]
    encoder = folder / (encoder_file or files["encoder"])
    decoder = folder / files["decoder"]
    prompt_decoder = folder / files["prompt_decoder"]
    if fmt == "onnx":
        from umedsam.inference.backends.onnx import OnnxBackend

        return OnnxBackend(
            encoder, decoder, image_size, threads=threads, prompt_path=prompt_decoder
        )
    from umedsam.inference.backends.openvino import OpenVINOBackend

    return OpenVINOBackend(
        encoder,
        decoder,
        image_size,
        threads=threads,
        cache_dir=cache_dir,
        precision=precision,
        decoder_precision=decoder_precision,
        prompt_path=prompt_decoder,
    )


def describe_parity(manifest: ExportManifest) -> str:
    """One line: the largest differences recorded in a manifest."""
    p = manifest.parity
    worst = max(p.values()) if p else math.nan
    return (
        f"parity vs torch ({manifest.format}): max |diff| encoder {p.get('encoder', math.nan):.3g}, "
        f"logits {p.get('logits', math.nan):.3g}, iou {p.get('iou', math.nan):.3g}, "
        f"prompts {p.get('prompts', math.nan):.3g} "
        f"(largest {worst:.3g})"
    )
