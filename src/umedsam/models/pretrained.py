"""Build a registered model and load its weights in one call."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from umedsam.models.checkpoint import LoadReport, load_checkpoint
from umedsam.models.registry import build_model


def load_pretrained(
    name: str = "litemedsam", checkpoint: str | Path | None = None
) -> tuple[nn.Module, LoadReport]:
    """Build ``name`` and load ``checkpoint`` (None: the model's default weights), in eval mode.

    The default weights of ``litemedsam`` are the bundled, sha256-verified ``lite_medsam.pth``.
    Models registered with packaged weights expose them through a ``default_weights`` attribute
    on their builder (a path, possibly a partial checkpoint over ``base_model``).

    Raises:
        ValueError: unknown model name.
        CheckpointError, FileNotFoundError: the weights cannot be loaded.
    """
    model = build_model(name)
    if checkpoint is None and name != "litemedsam":
        from umedsam.models.registry import default_weights

        base, weights = default_weights(name)
        if base is not None:
            load_checkpoint(model, None if base == "litemedsam" else base)
        report = load_checkpoint(model, weights, partial=base is not None)
    else:
        report = load_checkpoint(model, checkpoint)
    return model.eval(), report
