"""Per-model cue weights of the combined confidence: one field of a model's card, applied by
every entry point through the engine (docs/uncertainty.md, "Per-model cue weights")."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.engines import EngineSpec, open_engine
from umedsam.inference.segment import segment_image
from umedsam.inference.uncertainty import combine_confidence
from umedsam.inference.uncertainty_config import UncertaintyConfig, check_cue_weights
from umedsam.models.cards import DEFAULT_MODEL, card


def test_weighted_geometric_mean() -> None:
    cues = {
        "iou": np.array([0.9, 0.5, 0.8]),
        "expected_dice": np.array([0.4, 0.9, 0.0]),
        "box": np.array([np.nan, 0.6, 0.7]),
    }
    equal = combine_confidence(cues)
    np.testing.assert_allclose(equal[1], (0.5 * 0.9 * 0.6) ** (1 / 3), rtol=1e-6)
    alone = combine_confidence(cues, weights=(("expected_dice", 1.0),))
    np.testing.assert_allclose(alone, [0.4, 0.9, 0.0], rtol=1e-6)
    mixed = combine_confidence(cues, weights=(("iou", 2.0), ("box", 1.0)))
    np.testing.assert_allclose(mixed[0], 0.9, rtol=1e-6)  # box not computed: left out
    np.testing.assert_allclose(mixed[1], (0.5**2 * 0.6) ** (1 / 3), rtol=1e-6)
    for bad in ((("iou", -1.0),), (("colour", 1.0),), (("iou", 0.0),)):
        with pytest.raises(ValueError, match="cue weights"):
            check_cue_weights(bad)


def test_the_default_models_card_weights_reach_its_engine_and_not_a_users_checkpoint(
    tmp_path,
) -> None:
    weights = card(DEFAULT_MODEL).confidence_weights
    assert weights == (("expected_dice", 1.0),)
    assert card(DEFAULT_MODEL, tmp_path / "mine.pt").confidence_weights is None
    engine = open_engine(EngineSpec(DEFAULT_MODEL, engine="torch"))
    assert engine.backend.cue_weights == weights


def test_segmenting_with_weights_gives_the_weighted_confidence(tiny_model, make_disk) -> None:
    image, mask = make_disk()
    ys, xs = np.nonzero(mask)
    boxes = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], np.float64)
    backend = TorchBackend(tiny_model)
    plain = segment_image(backend, image, boxes, uncertainty=UncertaintyConfig())
    backend.cue_weights = (("expected_dice", 1.0),)
    weighted = segment_image(backend, image, boxes, uncertainty=UncertaintyConfig())
    assert weighted.uncertainty is not None and plain.uncertainty is not None
    np.testing.assert_allclose(
        weighted.uncertainty.confidence, weighted.uncertainty.scores.expected_dice, rtol=1e-6
    )
    np.testing.assert_array_equal(weighted.segs, plain.segs)
