"""Name -> builder registry for complete models (encoder + prompt encoder + mask decoder)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# name -> (base weights: "litemedsam" / a path / None, weights file shipped with the package)
_WEIGHTS: dict[str, tuple[str | None, Path]] = {}

# Modules whose import registers models; imported on first lookup so `import umedsam` stays light.
_MODEL_MODULES = ("umedsam.models.medsam_lite", "umedsam.models.zoo")


_BuilderT = TypeVar("_BuilderT", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[_BuilderT], _BuilderT]:
    """Decorator registering ``builder`` under ``name``.

    A name may be registered again only by the same builder or by the same definition: a function
    with equal code, qualified name and defaults, as when its module is imported a second time
    (reloaded, run as a script and also imported, or copied and imported from the copy, as Dask
    does with a worker preload file). The newer function then replaces the older one.

    Raises:
        ValueError: ``name`` is already registered for another builder.
    """

    def decorator(builder: _BuilderT) -> _BuilderT:
        known = _BUILDERS.get(name)
        if known is not None and not _same_definition(known, builder):
            raise ValueError(f"model name {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return decorator


def _same_definition(a: Callable[..., nn.Module], b: Callable[..., nn.Module]) -> bool:
    if a is b:
        return True
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return (
        code_a is not None
        and code_a == code_b  # compares bytecode, constants, names and lines, not the file
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
        and getattr(a, "__defaults__", None) == getattr(b, "__defaults__", None)
        and getattr(a, "__closure__", None) is None
        and getattr(b, "__closure__", None) is None
    )


def _load_builtin() -> None:
    for module in _MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    _load_builtin()
    return sorted(_BUILDERS)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the named model with random (untrained) weights; load weights with load_checkpoint.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    _load_builtin()
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name](**kwargs)


def register_weights(name: str, weights: Path, base: str | None = None) -> None:
    """Declare the packaged weights of model ``name``.

    Args:
        name: a registered model name.
        weights: weights file shipped inside the package.
        base: if the file is partial (e.g. only a fine-tuned decoder), what to load first:
            "litemedsam" for the bundled LiteMedSAM weights.
    """
    _WEIGHTS[name] = (base, weights)


def default_weights(name: str) -> tuple[str | None, Path]:
    """(base, weights file) declared for ``name``.

    Raises:
        ValueError: the model has no packaged weights (pass a checkpoint instead).
    """
    _load_builtin()
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}")
    if name not in _WEIGHTS:
        raise ValueError(
            f"model {name!r} ships no weights; pass --checkpoint PATH "
            f"(models with weights: litemedsam{''.join(', ' + k for k in sorted(_WEIGHTS))})"
        )
    return _WEIGHTS[name]
