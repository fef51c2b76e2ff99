"""Name -> builder registry for complete models (encoder + prompt encoder + mask decoder)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}

# Modules whose import registers models; imported on first lookup so `import umedsam` stays light.
_MODEL_MODULES = ("umedsam.models.medsam_lite", "umedsam.models.zoo", "umedsam.models.sam")


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
    """Build model ``name`` with random (untrained) weights; load weights with load_checkpoint.

    ``name`` is a builder's name or a model with a card (:mod:`umedsam.models.cards`), whose
    ``architecture`` names the builder.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    from umedsam.models.cards import card

    _load_builtin()
    builder = card(name).architecture
    if builder not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[builder](**kwargs)


def default_weights(name: str) -> tuple[str | None, Path]:
    """(base, weights file) of the weights the package ships for ``name`` (from its card).

    Raises:
        ValueError: unknown model, or one that ships no weights (pass a checkpoint instead).
    """
    from umedsam.models.cards import available_models, card, shipped_weights

    _load_builtin()
    if card(name).architecture not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}")
    found = shipped_weights(name)
    if found is None:
        raise ValueError(
            f"model {name!r} ships no weights; pass --checkpoint PATH "
            f"(models with weights: {', '.join(available_models())})"
        )
    return found
