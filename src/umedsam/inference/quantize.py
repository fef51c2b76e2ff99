"""Dynamic INT8 quantization of the exported ONNX encoder (opt-in engine ``onnx-int8``).

ONNX Runtime's dynamic quantization stores MatMul/Gemm weights as int8 and quantizes activations
per call; the decoder stays f32. Masks change slightly (measured DSC change on the dev set in
docs/performance.md), so this engine is never the default.
"""

from __future__ import annotations

import logging
from pathlib import Path

from umedsam.atomic import atomic_path
from umedsam.extras import import_optional

logger = logging.getLogger(__name__)

INT8_ENCODER = "encoder.int8.onnx"
QUANTIZED_OPS = ("MatMul", "Gemm")


def quantize_encoder(source: str | Path, target: str | Path) -> Path:
    """Write a dynamically INT8-quantized copy of the ONNX encoder ``source`` to ``target``.

    Raises:
        MissingExtraError: onnx / onnxruntime are not installed.
        FileNotFoundError: ``source`` does not exist.
    """
    quantization = import_optional(
        "onnxruntime.quantization", package="onnxruntime", extra="onnx", purpose="INT8 quantization"
    )
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"ONNX encoder not found: {source}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs one INFO line per tensor on the root logger
    try:
        with atomic_path(target, suffix=".onnx") as tmp:
            quantization.quantize_dynamic(
                str(source),
                str(tmp),
                op_types_to_quantize=list(QUANTIZED_OPS),
                weight_type=quantization.QuantType.QInt8,
            )
    finally:
        root.setLevel(level)
    logger.info("wrote INT8 encoder %s", target)
    return target


def ensure_int8_encoder(export_dir: str | Path) -> Path:
    """``export_dir/encoder.int8.onnx``, quantized from ``encoder.onnx`` on first use."""
    folder = Path(export_dir)
    target = folder / INT8_ENCODER
    if not target.is_file():
        quantize_encoder(folder / "encoder.onnx", target)
    return target
