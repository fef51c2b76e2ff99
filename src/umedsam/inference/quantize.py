"""Dynamic INT8 quantization of the exported ONNX encoder (opt-in engine ``onnx-int8``).

ONNX Runtime's dynamic quantization stores MatMul/Gemm weights as int8 and quantizes activations
per call; the decoder stays f32. Masks change slightly (measured DSC change on the dev set in
docs/performance.md), so this engine is never the default.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from umedsam.errors import MissingExtraError

logger = logging.getLogger(__name__)

INT8_ENCODER = "encoder.int8.onnx"
QUANTIZED_OPS = ("MatMul", "Gemm")


def quantize_encoder(source: str | Path, target: str | Path) -> Path:
    """Write a dynamically INT8-quantized copy of the ONNX encoder ``source`` to ``target``.

    Raises:
        MissingExtraError: onnx / onnxruntime are not installed.
        FileNotFoundError: ``source`` does not exist.
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise MissingExtraError("onnxruntime", "onnx", "INT8 quantization") from err
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"ONNX encoder not found: {source}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".onnx", dir=target.parent)
    os.close(fd)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs one INFO line per tensor on the root logger
    try:
        quantize_dynamic(
            str(source),
            tmp,
            op_types_to_quantize=list(QUANTIZED_OPS),
            weight_type=QuantType.QInt8,
        )
        os.replace(tmp, target)
    finally:
        root.setLevel(level)
        Path(tmp).unlink(missing_ok=True)
    logger.info("wrote INT8 encoder %s", target)
    return target


def ensure_int8_encoder(export_dir: str | Path) -> Path:
    """``export_dir/encoder.int8.onnx``, quantized from ``encoder.onnx`` on first use."""
    folder = Path(export_dir)
    target = folder / INT8_ENCODER
    if not target.is_file():
        quantize_encoder(folder / "encoder.onnx", target)
    return target
