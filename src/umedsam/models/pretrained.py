"""Build a registered model and load its weights in one call."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from umedsam.models.checkpoint import LoadReport, load_checkpoint
from umedsam.models.registry import build_model


def load_pretrained(
    name: str = "litemedsam", checkpoint: str | Path | None = None, sha256: str | None = None
) -> tuple[nn.Module, LoadReport]:
    """Build ``name`` and load ``checkpoint`` (None: the model's default weights), in eval mode.

    The default weights of ``litemedsam`` are the bundled, sha256-verified ``lite_medsam.pth``.
    Other models' cards (:mod:`umedsam.models.cards`) name their packaged weights; when the card's
    ``base`` is set, the tensors of the base checkpoint that fit the model (same name and shape,
    e.g. LiteMedSAM's prompt encoder and decoder under a student encoder) are loaded first and the
    packaged file, which may then be partial, goes on top.

    ``sha256``, when given, is the already computed identity of these weights
    (``umedsam.inference.engines.weights_sha256``); the report carries it and no file is hashed
    for it again.

    Raises:
        ValueError: unknown model name.
        CheckpointError, FileNotFoundError: the weights cannot be loaded.
    """
    from umedsam.models.cards import card

    model = build_model(name)
    if checkpoint is None and not card(name).bundled:
        from umedsam.models.registry import default_weights

        base, weights = default_weights(name)
        if base is not None:
            expected = model.state_dict()

            def fitting(state: dict) -> dict:  # type: ignore[type-arg]
                return {
                    k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape
                }

            base_card = card(base)
            base_weights = None if base_card.bundled else base_card.weights_path
            load_checkpoint(model, base_weights, partial=True, filter_fn=fitting)
        report = load_checkpoint(model, weights, partial=base is not None, sha256=sha256)
    else:
        report = load_checkpoint(model, checkpoint, sha256=sha256)
    return model.eval(), report
