"""Training with simulated interaction: an initial prompt, then correction rounds, loss on each.

Per object of a batch: an initial prompt drawn from {box; 1-3 positive clicks; a positive
scribble; box + scribble; positive and negative scribbles}; then 1-8 correction rounds, each
adding a click in the largest error region (at its distance-transform maximum or at a random
voxel of it; positive in a missed region, negative in a false one) or a corrective scribble, with
the previous logits fed back as the dense prompt. The loss is computed on every round and
averaged. Everything happens in the model frame (S x S), on cached image embeddings.

Scribbles reach the model as the points :func:`umedsam.inference.prompts.sample_stroke_points`
takes along their strokes, exactly as at inference.

A :class:`Rollout` records the prompts of its first pass and replays them on later passes, so
that Sharpness-Aware Minimization's second forward pass sees the same interaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from umedsam.data.interaction import correction_click, correction_scribble, simulate_scribble
from umedsam.inference.prompts import (
    BOX_BOTTOM_RIGHT,
    BOX_TOP_LEFT,
    MASK_PROMPT_LOGIT,
    NEGATIVE,
    PADDING,
    POSITIVE,
    sample_stroke_points,
)
from umedsam.losses.uncertainty import LossOutput
from umedsam.training.config import INITIAL_PROMPTS, InteractionConfig

MAX_TOKENS = 48
"""Tokens per object at most; older correction tokens beyond it are dropped (never the box)."""


@dataclass
class ObjectTokens:
    """The growing prompt of one object: (x, y) model-frame points and their labels."""

    coords: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    has_box: bool = False

    def add(self, xy: NDArray, label: int) -> None:
        """Append points (K, 2) xy with one label."""
        for x, y in np.asarray(xy, np.float64).reshape(-1, 2):
            self.coords.append((float(x), float(y)))
            self.labels.append(int(label))

    def tokens(self) -> tuple[NDArray, NDArray]:
        """(T, 2) coords and (T,) labels, box corners last, SAM's padding token if no box."""
        coords = np.asarray(self.coords, np.float32).reshape(-1, 2)
        labels = np.asarray(self.labels, np.float32)
        if len(labels) > MAX_TOKENS:  # keep the box and the newest corrections
            box = labels >= BOX_TOP_LEFT
            rest = np.flatnonzero(~box)[-(MAX_TOKENS - int(box.sum())) :]
            keep = np.sort(np.concatenate([np.flatnonzero(box), rest]))
            coords, labels = coords[keep], labels[keep]
        order = np.argsort(labels >= BOX_TOP_LEFT, kind="stable")  # box corners last
        coords, labels = coords[order], labels[order]
        if not self.has_box:
            coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
            labels = np.concatenate([labels, [PADDING]]).astype(np.float32)
        return coords, labels


def initial_prompt(
    mask: NDArray[np.bool_],
    box: NDArray,
    rng: np.random.Generator,
    config: InteractionConfig,
) -> ObjectTokens:
    """The first prompt of one object (model frame): a box, clicks, scribbles or a mix."""
    weights = np.asarray(config.initial_weights, np.float64)
    kind = INITIAL_PROMPTS[int(rng.choice(len(INITIAL_PROMPTS), p=weights / weights.sum()))]
    obj = ObjectTokens()
    if kind in ("clicks", "scribble", "pos_neg_scribbles"):
        positive: NDArray = np.zeros((0, 2))
        if kind == "clicks":
            ys, xs = np.nonzero(mask)
            pick = rng.integers(len(ys), size=int(rng.integers(1, 4)))
            positive = np.stack([xs[pick], ys[pick]], 1)
        else:
            family = str(rng.choice(("centerline", "curve", "contour")))
            positive = sample_stroke_points(
                simulate_scribble(mask, rng, family), config.scribble_points
            )
        if len(positive) == 0:  # a tiny object: fall back to its box
            kind = "box"
        else:
            obj.add(positive, POSITIVE)
        if kind == "pos_neg_scribbles":
            negative = simulate_scribble(mask, rng, "background")
            obj.add(sample_stroke_points(negative, config.scribble_points), NEGATIVE)
    if kind in ("box", "box_scribble"):
        if kind == "box_scribble":
            stroke = simulate_scribble(mask, rng)
            label = NEGATIVE if not (stroke & mask).any() and stroke.any() else POSITIVE
            obj.add(sample_stroke_points(stroke, config.scribble_points), label)
        obj.add(np.asarray(box, np.float64).reshape(2, 2), BOX_TOP_LEFT)
        obj.labels[-1] = BOX_BOTTOM_RIGHT
        obj.has_box = True
    return obj


def add_correction(
    obj: ObjectTokens,
    pred: NDArray[np.bool_],
    mask: NDArray[np.bool_],
    rng: np.random.Generator,
    config: InteractionConfig,
) -> bool:
    """Add one correction (click or scribble) for the largest error; False if nothing is wrong."""
    if rng.random() < config.scribble_correction:
        scribble = correction_scribble(pred, mask, rng)
        if scribble is not None:
            stroke, positive = scribble
            points = sample_stroke_points(stroke, config.scribble_points)
            if len(points):
                obj.add(points, POSITIVE if positive else NEGATIVE)
                return True
    click = correction_click(pred, mask, rng, centre=rng.random() < config.centre_click)
    if click is None:
        return False
    y, x = click.index
    obj.add(np.array([[x, y]]), POSITIVE if click.positive else NEGATIVE)
    return True


@dataclass
class Rollout:
    """The interaction of one batch: its prompts per round, recorded once and then replayed.

    Args:
        masks: (B, S, S) bool ground truth in the model frame.
        boxes: (B, 4) model-frame boxes.
        rng: random generator of this batch.
        config: the simulation settings.
    """

    masks: NDArray[np.bool_]
    boxes: NDArray
    rng: np.random.Generator
    config: InteractionConfig
    rounds: list[list[tuple[NDArray, NDArray]]] = field(default_factory=list)
    binary: list[NDArray[np.bool_]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.num_rounds = int(self.rng.integers(self.config.min_rounds, self.config.max_rounds + 1))
        self._objects = [
            initial_prompt(m, b, self.rng, self.config)
            for m, b in zip(self.masks, self.boxes, strict=True)
        ]

    def prompts(
        self, round_index: int, prev_logits: torch.Tensor | None
    ) -> list[tuple[NDArray, NDArray]]:
        """Per object (coords, labels) of round ``round_index`` (recorded on the first pass)."""
        if round_index < len(self.rounds):
            return self.rounds[round_index]
        if round_index > 0:
            assert prev_logits is not None
            preds = (prev_logits.detach()[:, 0] > 0).cpu().numpy()
            for obj, pred, mask in zip(self._objects, preds, self.masks, strict=True):
                add_correction(obj, pred, mask, self.rng, self.config)
        current = [obj.tokens() for obj in self._objects]
        self.rounds.append(current)
        self.binary.append(self.rng.random(len(self._objects)) < self.config.binary_mask_prompt)
        return current


def _decode_groups(
    decode: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    embeddings: torch.Tensor,
    tokens: list[tuple[NDArray, NDArray]],
    mask_input: torch.Tensor,
    has_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode objects grouped by token count (no batch padding, as at inference)."""
    device = embeddings.device
    counts = np.array([len(lab) for _, lab in tokens])
    logits: list[Any] = [None] * len(tokens)
    ious: list[Any] = [None] * len(tokens)
    for count in np.unique(counts):
        index = np.flatnonzero(counts == count)
        coords = torch.from_numpy(np.stack([tokens[i][0] for i in index])).to(device)
        labels = torch.from_numpy(np.stack([tokens[i][1] for i in index])).to(device)
        sel = torch.from_numpy(index).to(device)
        lo, iou = decode(embeddings[sel], coords, labels, mask_input[sel], has_mask[sel])
        for k, i in enumerate(index):
            logits[i], ious[i] = lo[k], iou[k]
    return torch.stack(logits), torch.stack(ious)


def interactive_loss(
    model: Any,
    criterion: Callable[..., LossOutput],
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    rollout: Rollout,
    shape_targets: torch.Tensor | None = None,
) -> LossOutput:
    """Mean loss over the initial prompt and every correction round of ``rollout``.

    Args:
        model: a MedSAMLite-style model with ``decode_prompts``.
        criterion: the loss (``UncertaintyWeightedLoss``).
        embeddings: (B, C, h, w) image embeddings.
        targets: (B, 1, S, S) 0/1 masks.
        rollout: the batch's interaction (recorded on the first call, replayed after).
        shape_targets: optional shape-distance targets for the criterion.
    """
    b = targets.shape[0]
    size = targets.shape[-1]
    mask_input = torch.zeros(b, 1, size, size, device=targets.device)
    has_mask = torch.zeros(b, device=targets.device)
    outputs = []
    prev = None
    for r in range(rollout.num_rounds + 1):
        tokens = rollout.prompts(r, prev)
        logits, iou = _decode_groups(model.decode_prompts, embeddings, tokens, mask_input, has_mask)
        outputs.append(criterion(logits.float(), iou.float(), targets, shape_targets))
        prev = logits
        binary = torch.from_numpy(rollout.binary[r]).to(targets.device).reshape(-1, 1, 1, 1)
        fed = logits.detach().float()
        mask_input = torch.where(binary, torch.sign(fed) * MASK_PROMPT_LOGIT, fed)
        has_mask = torch.ones(b, device=targets.device)
    n = len(outputs)
    total = sum(o.total for o in outputs) / n
    terms = {k: sum(o.terms[k] for o in outputs) / n for k in outputs[0].terms}
    return LossOutput(total, terms, outputs[-1].weights)  # type: ignore[arg-type]
