"""umedsam: uncertainty-aware, CPU-fast box-prompted medical image segmentation.

The public API is imported lazily so that ``import umedsam`` stays cheap (no torch import until a
model is actually built).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("umedsam")  # the one version number is in pyproject.toml
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Predictor", "__version__", "build_model", "list_models", "load_checkpoint"]

if TYPE_CHECKING:
    from umedsam.inference.predictor import Predictor
    from umedsam.models.checkpoint import load_checkpoint
    from umedsam.models.registry import build_model, list_models

_LAZY = {
    "Predictor": "umedsam.inference.predictor",
    "build_model": "umedsam.models.registry",
    "list_models": "umedsam.models.registry",
    "load_checkpoint": "umedsam.models.checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'umedsam' has no attribute {name!r}")
