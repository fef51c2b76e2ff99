"""Model cards: one place for a model's facts, read alike by every entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from umedsam.inference.engines import EngineSpec
from umedsam.models.cards import (
    DEFAULT_MODEL,
    INTERACTIVE_MODEL,
    ModelCard,
    available_models,
    card,
    shipped,
)


def test_every_available_model_has_a_card_with_its_weights() -> None:
    for name in available_models():
        found = card(name)
        assert found.name == name and found.description and found.architecture
        assert found.bundled or (shipped(name) and found.weights_path.is_file())
    assert card("litemedsam").propagation == "official"
    assert card(DEFAULT_MODEL).propagation == "bounded"
    assert set(card(INTERACTIVE_MODEL).prompts) == {"box", "click", "scribble", "mask"}


def test_a_users_checkpoint_gets_the_card_of_its_network_minus_the_validated_facts() -> None:
    mine = card("litemedsam", Path("runs/mine/best.pt"))
    assert mine.architecture == "litemedsam" and mine.prompts == ("box",)
    assert mine.propagation == "bounded" and mine.reduced_precision is None
    assert mine.encoder != card("litemedsam").encoder and "best.pt" in mine.description
    assert card("umedsam_effvit_b1", "x.pt").reduced_precision is None


def test_predict_and_the_web_app_read_the_same_card(tmp_path) -> None:
    """``--model litemedsam --checkpoint X`` propagates bounded in both (they disagreed before)."""
    pytest.importorskip("starlette")
    from umedsam.ui.app import UIConfig, create_app

    checkpoint = tmp_path / "mine.pt"
    for model, ckpt, bounded in (
        ("litemedsam", checkpoint, True),
        ("litemedsam", None, False),
        (DEFAULT_MODEL, None, True),
    ):
        spec = EngineSpec(model=model, checkpoint=ckpt)
        app = create_app(UIConfig(model=model, checkpoint=None if ckpt is None else str(ckpt)))
        assert (spec.card.propagation == "bounded") is bounded
        assert app.state.model.bounded[0] is bounded, (model, ckpt)


def test_unknown_prompt_kinds_and_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown prompt kinds"):
        ModelCard("x", "x", architecture="litemedsam", prompts=("lasso",))
    with pytest.raises(ValueError, match="propagation"):
        ModelCard("x", "x", architecture="litemedsam", propagation="loose")
