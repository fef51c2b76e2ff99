"""Training with simulated interaction on the tiny model: rounds, replay, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umedsam.inference.prompts import PADDING
from umedsam.losses.uncertainty import UncertaintyWeightedLoss
from umedsam.training.interaction import (
    InteractionConfig,
    Rollout,
    initial_prompt,
    interactive_loss,
)


def _batch(b: int = 3, s: int = 64):
    yy, xx = np.mgrid[:s, :s]
    masks = np.stack([(yy - 30) ** 2 + (xx - 20 - 8 * i) ** 2 <= (8 + i) ** 2 for i in range(b)])
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return masks, np.array(boxes, np.float32)


def test_initial_prompts_cover_every_kind() -> None:
    masks, boxes = _batch(1)
    rng = np.random.default_rng(0)
    config = InteractionConfig(enabled=True)
    seen = set()
    for _ in range(60):
        obj = initial_prompt(masks[0], boxes[0], rng, config)
        coords, labels = obj.tokens()
        assert (labels[:-1] != PADDING).all()
        seen.add((obj.has_box, labels[-1] == PADDING, int((labels == 0).sum() > 0)))
        inside = coords[(labels == 1)]
        for x, y in inside.astype(int):
            assert masks[0][y, x]
    assert len(seen) >= 3


def test_rollout_replays_and_loss_trains(tiny_model) -> None:
    masks, boxes = _batch()
    config = InteractionConfig(enabled=True, min_rounds=2, max_rounds=3)
    rollout = Rollout(masks, boxes, np.random.default_rng(0), config)
    criterion = UncertaintyWeightedLoss(("dice", "bce"), mode="fixed")
    tiny_model.train()
    emb = torch.randn(3, *tiny_model.encode(torch.zeros(1, 3, 64, 64)).shape[1:])
    targets = torch.from_numpy(masks[:, None].astype(np.float32))
    out = interactive_loss(tiny_model, criterion, emb, targets, rollout)
    assert len(rollout.rounds) == rollout.num_rounds + 1
    # each correction round adds a token (a click) or a few (scribble points) per object
    assert all(
        len(rollout.rounds[r + 1][i][1]) > len(rollout.rounds[r][i][1])
        for r in range(rollout.num_rounds)
        for i in range(3)
    )
    out.total.backward()
    grads = [p.grad for p in tiny_model.mask_decoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    recorded = [[(c.copy(), lab.copy()) for c, lab in r] for r in rollout.rounds]
    again = interactive_loss(tiny_model, criterion, emb, targets, rollout)  # SAM's second pass
    assert len(rollout.rounds) == len(recorded)
    for r, rnd in enumerate(rollout.rounds):
        for (c, lab), (c0, lab0) in zip(rnd, recorded[r], strict=True):
            np.testing.assert_array_equal(c, c0)
            np.testing.assert_array_equal(lab, lab0)
    assert torch.isfinite(again.total)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="min_rounds"):
        InteractionConfig(min_rounds=3, max_rounds=1)
    with pytest.raises(ValueError, match="initial_weights"):
        InteractionConfig(initial_weights=(1.0,))
