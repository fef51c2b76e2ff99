"""Per-pixel uncertainty and per-object confidence for box-prompted masks (tensors in, tensors out).

Everything here works on the decoder's low-resolution logits in the model frame (S x S, cropped to
the resized image extent ``new_hw``), so it costs little next to the decoder itself:

* **entropy**: the binary entropy (bits, in [0, 1]) of ``sigmoid(logits)`` per pixel;
* **ensemble**: K extra decoder passes with the object's box jittered by a few model-frame pixels
  (a seeded ``np.random.Generator``), optionally plus one pass on the horizontally mirrored image.
  Jittered members reuse the image embedding (decoder only). The mirrored member needs the
  embedding of the mirrored image: one extra encoder call per image, so it is off by default.
  The members give a mean probability and its variance per pixel;
* **per-object cues**, each in [0, 1]: the IoU head; the entropy score (``1 - summed entropy /
  mask area``); the expected Dice (soft Dice of the probability map with its own mask); the box
  agreement (IoU of the mask's bounding box with the prompt box); and, if run, the ensemble
  agreement (mean Dice of each member's mask with the base mask);
* **per-object confidence**: by default the geometric mean of the IoU head, the expected Dice and
  the box agreement (plus the ensemble agreement when an ensemble ran), every cue counting the
  same; a model whose card holds ``confidence_weights`` (fitted on training cases, see
  docs/uncertainty.md) gets that weighted geometric mean instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from numpy.typing import NDArray

from umedsam.inference.backends.base import Backend
from umedsam.inference.uncertainty_config import RULES, UncertaintyConfig  # noqa: F401

#: Cues the ``combined`` rule multiplies (geometric mean of those that were computed).
COMBINED_CUES = ("iou", "expected_dice", "box", "agreement")

_EPS = 1e-6


@dataclass(frozen=True)
class ObjectScores:
    """Per-object scores of N objects (NaN where a score was not computed).

    Attributes:
        confidence: (N,) combined confidence in [0, 1].
        predicted_iou: (N,) the IoU head's estimate.
        entropy_confidence: (N,) ``1 - sum(entropy) / mask area``, clipped to [0, 1].
        expected_dice: (N,) soft Dice of the probability map with its own mask.
        box_agreement: (N,) IoU of the mask's bounding box with the prompt box.
        agreement: (N,) mean Dice between each ensemble member's mask and the base mask.
    """

    confidence: NDArray[np.float32]
    predicted_iou: NDArray[np.float32]
    entropy_confidence: NDArray[np.float32]
    expected_dice: NDArray[np.float32]
    box_agreement: NDArray[np.float32]
    agreement: NDArray[np.float32]

    def cues(self) -> dict[str, NDArray[np.float32]]:
        """The named per-object cues :func:`combine_confidence` takes."""
        return {
            "iou": self.predicted_iou,
            "entropy": self.entropy_confidence,
            "expected_dice": self.expected_dice,
            "box": self.box_agreement,
            "agreement": self.agreement,
        }


def binary_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of Bernoulli probabilities, elementwise; 0 at p in {0, 1}, 1 at p = 0.5."""
    p = probs.clamp(_EPS, 1 - _EPS)
    return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))


def crop_to_content(low_res: torch.Tensor | NDArray, new_hw: tuple[int, int]) -> torch.Tensor:
    """Crop (..., S, S) model-frame maps (tensor or array) to the resized extent (..., h, w)."""
    return torch.as_tensor(low_res)[..., : new_hw[0], : new_hw[1]]


def jitter_boxes(
    boxes_model: NDArray,
    k: int,
    rng: np.random.Generator,
    max_px: float = 3.0,
    max_frac: float = 0.1,
    bounds_hw: tuple[int, int] | None = None,
) -> NDArray[np.float32]:
    """K jittered copies of (N, 4) model-frame xyxy boxes.

    Each side moves by an integer drawn uniformly from ``[-a, a]`` with
    ``a = max(1, floor(min(max_px, max_frac * side)))`` (side = box width for x, height for y);
    boxes are clipped to ``bounds_hw`` and kept at least 1 px wide and high.

    Args:
        boxes_model: (N, 4) xyxy in the model frame.
        k: number of copies.
        rng: the generator (the only source of randomness).
        max_px: largest shift in model-frame pixels.
        max_frac: largest shift as a fraction of the box side.
        bounds_hw: (h, w) the boxes are clipped to (the resized image extent); None = no clipping.

    Returns:
        (K, N, 4) float32.

    Raises:
        ValueError: boxes not (N, 4) or k < 0.
    """
    boxes = np.asarray(boxes_model, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes_model must be (N, 4); got {boxes.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0; got {k}")
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    amp = np.stack([w, h, w, h], axis=1) * max_frac
    amp = np.maximum(1.0, np.floor(np.minimum(max_px, amp)))
    unit = rng.uniform(-1.0, 1.0, size=(k, *boxes.shape))
    out = boxes[None] + np.round(unit * (amp[None] + 0.5)).clip(-amp, amp)
    if bounds_hw is not None:
        out[..., [0, 2]] = out[..., [0, 2]].clip(0, bounds_hw[1])
        out[..., [1, 3]] = out[..., [1, 3]].clip(0, bounds_hw[0])
    out[..., 2] = np.maximum(out[..., 2], out[..., 0] + 1)
    out[..., 3] = np.maximum(out[..., 3], out[..., 1] + 1)
    return out.astype(np.float32)


def flip_boxes(boxes_model: NDArray, width: int) -> NDArray[np.float32]:
    """Mirror (N, 4) xyxy boxes horizontally inside an image of ``width`` pixels."""
    boxes = np.asarray(boxes_model, dtype=np.float32).reshape(-1, 4)
    out = boxes.copy()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


def decode_ensemble(
    backend: Backend,
    embedding: NDArray,
    boxes_model: NDArray,
    new_hw: tuple[int, int],
    config: UncertaintyConfig,
    rng: np.random.Generator,
    flipped_embedding: NDArray | None = None,
) -> torch.Tensor:
    """Extra decoder passes of the ensemble, as model-frame logits cropped to ``new_hw``.

    Args:
        backend: the engine; only ``decode`` is called.
        embedding: (1, C, h, w) embedding of the image.
        boxes_model: (N, 4) base boxes in the model frame.
        new_hw: resized image extent inside the S x S frame.
        config: ``ensemble`` jittered members, plus a mirrored one if ``config.flip``.
        rng: jitter generator.
        flipped_embedding: embedding of the mirrored image (required when ``config.flip``).

    Returns:
        (M, N, h, w) float32 logits, M = ensemble (+1 with flip); members already mirrored back.

    Raises:
        ValueError: ``config.flip`` without ``flipped_embedding``.
    """
    boxes = np.asarray(boxes_model, dtype=np.float32).reshape(-1, 4)
    members: list[torch.Tensor] = []
    if config.ensemble:
        jittered = jitter_boxes(
            boxes, config.ensemble, rng, config.jitter_px, config.jitter_frac, new_hw
        )
        n = boxes.shape[0]
        low_res, _ = backend.decode(np.asarray(embedding), jittered.reshape(-1, 4))
        cropped = crop_to_content(low_res[:, 0], new_hw)
        members.extend(cropped.reshape(config.ensemble, n, *cropped.shape[-2:]).unbind(0))
    if config.flip:
        if flipped_embedding is None:
            raise ValueError("config.flip needs the embedding of the mirrored image")
        low_res, _ = backend.decode(np.asarray(flipped_embedding), flip_boxes(boxes, new_hw[1]))
        members.append(crop_to_content(low_res[:, 0], new_hw).flip(-1))
    if not members:
        return torch.zeros((0, boxes.shape[0], *new_hw), dtype=torch.float32)
    return torch.stack(members).float()


def ensemble_mean_var(member_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) variance over members of sigmoid probabilities.

    Args:
        member_logits: (M, N, h, w) logits, M >= 1.

    Returns:
        ``(mean, var)``, each (N, h, w).
    """
    if member_logits.ndim != 4 or member_logits.shape[0] < 1:
        raise ValueError(
            f"member_logits must be (M >= 1, N, h, w); got {tuple(member_logits.shape)}"
        )
    probs = torch.sigmoid(member_logits.float())
    return probs.mean(0), probs.var(0, unbiased=False)


def entropy_confidence(probs: torch.Tensor) -> torch.Tensor:
    """Per-object ``1 - sum(entropy) / mask area`` in [0, 1]; 0 for an empty mask.

    The summed entropy counts the pixels the model is unsure about (a boundary band of width w
    contributes about w x perimeter); dividing by the mask area turns it into the fraction of the
    object that could flip, which is what drives its Dice.

    Args:
        probs: (N, h, w) probabilities; the mask is ``probs > 0.5``.

    Returns:
        (N,) float32.
    """
    area = (probs > 0.5).flatten(1).sum(1).float()
    total = binary_entropy(probs).flatten(1).sum(1)
    conf = 1.0 - total / area.clamp(min=1.0)
    return torch.where(area > 0, conf.clamp(0.0, 1.0), torch.zeros_like(conf)).float()


def mask_agreement(base_mask: torch.Tensor, member_logits: torch.Tensor) -> torch.Tensor:
    """Mean Dice between each member's mask and the base mask, per object.

    Args:
        base_mask: (N, h, w) bool.
        member_logits: (M, N, h, w) logits of the extra members.

    Returns:
        (N,) float32 in [0, 1]; NaN if there are no members; 1 where both masks are empty.
    """
    if member_logits.shape[0] == 0:
        return torch.full((base_mask.shape[0],), math.nan)
    members = member_logits > 0
    base = base_mask[None]
    inter = (members & base).flatten(2).sum(2).float()
    sizes = members.flatten(2).sum(2).float() + base.flatten(2).sum(2).float()
    dice = torch.where(sizes > 0, 2 * inter / sizes.clamp(min=1.0), torch.ones_like(sizes))
    return dice.mean(0)


def expected_dice(probs: torch.Tensor) -> torch.Tensor:
    """Per-object soft Dice ``2 sum(p * m) / (sum(p) + sum(m))`` of probabilities with their mask.

    It is the Dice the mask ``m = p > 0.5`` would get if the truth were the soft map ``p``: 1 for
    a crisp map, lower the more probability mass sits near 0.5 or outside the mask. 0 for an
    empty mask.

    Args:
        probs: (N, h, w) probabilities.

    Returns:
        (N,) float32.
    """
    mask = (probs > 0.5).float()
    inter = (probs * mask).flatten(1).sum(1)
    sizes = probs.flatten(1).sum(1) + mask.flatten(1).sum(1)
    has_mask = mask.flatten(1).sum(1) > 0
    dice = 2 * inter / sizes.clamp(min=_EPS)
    return torch.where(has_mask, dice.clamp(0.0, 1.0), torch.zeros_like(dice)).float()


def box_agreement(mask_boxes: NDArray, prompt_boxes: NDArray) -> NDArray[np.float32]:
    """IoU of each mask's bounding box with its prompt box (2D or 3D, inclusive max corners).

    A mask that leaks far outside its box, or fills only a corner of it, disagrees with the
    prompt. This cue assumes the box was drawn close to the object (as in the challenge data).

    Args:
        mask_boxes: (N, 2d) ``mins..., maxs...`` of each mask (NaN rows = empty mask).
        prompt_boxes: (N, 2d) prompt boxes in the same frame and layout.

    Returns:
        (N,) float32 in [0, 1]; 0 for an empty mask.

    Raises:
        ValueError: shapes differ or are not (N, 2d).
    """
    a = np.asarray(mask_boxes, dtype=np.float64)
    b = np.asarray(prompt_boxes, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] % 2:
        raise ValueError(f"boxes must both be (N, 2d); got {a.shape} and {b.shape}")
    d = a.shape[1] // 2
    lo = np.maximum(a[:, :d], b[:, :d])
    hi = np.minimum(a[:, d:], b[:, d:])
    inter = np.prod(np.clip(hi - lo + 1, 0, None), axis=1)
    vol_a = np.prod(np.clip(a[:, d:] - a[:, :d] + 1, 0, None), axis=1)
    vol_b = np.prod(np.clip(b[:, d:] - b[:, :d] + 1, 0, None), axis=1)
    iou = inter / np.maximum(vol_a + vol_b - inter, 1.0)
    return np.where(np.isnan(a).any(axis=1), 0.0, iou).astype(np.float32)


def mask_bounding_boxes(masks: NDArray[np.bool_]) -> NDArray[np.float64]:
    """(N, 2d) inclusive bounding boxes ``mins..., maxs...`` of N masks of any rank d, in array
    axis order reversed to x-first (x, y[, z]); NaN rows for empty masks."""
    masks = np.asarray(masks, dtype=bool)
    n, spatial = masks.shape[0], masks.ndim - 1
    out = np.full((n, 2 * spatial), np.nan)
    for i in range(n):
        lo, hi = [], []
        for axis in range(spatial):
            other = tuple(a for a in range(spatial) if a != axis)
            idx = np.flatnonzero(masks[i].any(axis=other) if other else masks[i])
            if idx.size == 0:
                break
            lo.append(idx[0])
            hi.append(idx[-1])
        else:
            out[i] = lo[::-1] + hi[::-1]
    return out


def combine_confidence(
    cues: dict[str, NDArray],
    rule: str = "combined",
    weights: Sequence[tuple[str, float]] | None = None,
) -> NDArray[np.float32]:
    """Per-object confidence in [0, 1] by ``rule``.

    * ``iou``, ``entropy``, ``expected_dice``, ``box``: that cue alone (IoU head clipped to
      [0, 1]);
    * ``ensemble``: the ensemble agreement (needs an ensemble);
    * ``combined`` (default): the geometric mean of the IoU head, the expected Dice, the box
      agreement and the ensemble agreement, each where computed (NaN or absent cues are left
      out). Every cue counts the same unless ``weights`` are given: then the weighted geometric
      mean ``exp(sum(w log c) / sum(w))`` over the weighted cues (a model card's
      ``confidence_weights``, fitted on training cases).

    Args:
        cues: name -> (N,) array; names as in :meth:`ObjectScores.cues`.
        rule: one of :data:`RULES`.
        weights: ``(cue, exponent)`` pairs for ``combined``; None: equal weights.

    Returns:
        (N,) float32.

    Raises:
        ValueError: unknown rule, or a rule whose cue was not computed.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    key = {"ensemble": "agreement"}.get(rule, rule)
    if rule != "combined":
        values = np.asarray(cues.get(key, []), dtype=np.float64)
        if values.size == 0 or np.isnan(values).any():
            raise ValueError(f"rule {rule!r} needs the {key!r} cue; it was not computed")
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    if weights is not None:
        return _weighted_geometric_mean(cues, weights)
    stack = [np.asarray(cues[c], dtype=np.float64) for c in COMBINED_CUES if c in cues]
    stack = [np.clip(v, 0.0, 1.0) for v in stack if not np.isnan(v).all()]
    if not stack:
        raise ValueError(f"rule 'combined' needs at least one of {', '.join(COMBINED_CUES)}")
    logs = np.log(np.maximum(np.stack(stack), 1e-12))
    out = np.exp(np.nanmean(logs, axis=0))
    return np.clip(np.where(np.stack(stack).min(0) <= 0, 0.0, out), 0.0, 1.0).astype(np.float32)


def _weighted_geometric_mean(
    cues: dict[str, NDArray], weights: Sequence[tuple[str, float]]
) -> NDArray[np.float32]:
    """``exp(sum(w log c) / sum(w))`` per object over its computed (non-NaN) weighted cues; 0
    where one of them is 0 or none was computed."""
    n = len(next(iter(cues.values())))
    logs, total = np.zeros(n), np.zeros(n)
    zero = np.zeros(n, bool)
    for name, w in weights:
        if w <= 0 or name not in cues:
            continue
        value = np.clip(np.asarray(cues[name], dtype=np.float64), 0.0, 1.0)
        known = ~np.isnan(value)
        zero |= known & (value <= 0)
        logs += np.where(known, w * np.log(np.maximum(value, 1e-12)), 0.0)
        total += np.where(known, w, 0.0)
    out = np.exp(np.divide(logs, total, out=np.zeros(n), where=total > 0))
    return np.where(zero | (total == 0), 0.0, out).astype(np.float32)


def object_scores(
    base_logits: torch.Tensor,
    predicted_iou: NDArray,
    member_logits: torch.Tensor | None = None,
    rule: str = "combined",
    boxes_model: NDArray | None = None,
    weights: Sequence[tuple[str, float]] | None = None,
) -> tuple[ObjectScores, torch.Tensor]:
    """Scores of N objects and their per-pixel uncertainty, from model-frame logits.

    Args:
        base_logits: (N, h, w) logits of the base pass (cropped to the image extent).
        predicted_iou: (N,) IoU-head estimates of the base pass.
        member_logits: optional (M, N, h, w) extra ensemble members.
        rule: per-object rule (see :func:`combine_confidence`).
        boxes_model: optional (N, 4) prompt boxes in the model frame (for the box cue).
        weights: cue weights of the model (see :func:`combine_confidence`).

    Returns:
        ``(scores, uncertainty)``: uncertainty is (N, h, w) float32 in [0, 1], the entropy of the
        mean probability over the base pass and all members (the base pass alone without members).
    """
    base_logits = base_logits.float()
    n = base_logits.shape[0]
    base_probs = torch.sigmoid(base_logits)
    if member_logits is not None and member_logits.shape[0]:
        mean, _ = ensemble_mean_var(torch.cat([base_logits[None], member_logits.float()]))
        agreement = mask_agreement(base_logits > 0, member_logits).numpy()
    else:
        mean = base_probs
        agreement = np.full(n, math.nan)
    box = np.full(n, math.nan)
    if boxes_model is not None:
        mask_boxes = mask_bounding_boxes((base_logits > 0).numpy())
        box = box_agreement(mask_boxes, np.asarray(boxes_model, dtype=np.float64).reshape(-1, 4))
    scores = ObjectScores(
        confidence=np.zeros(n, dtype=np.float32),
        predicted_iou=np.asarray(predicted_iou, dtype=np.float32).reshape(-1),
        entropy_confidence=entropy_confidence(base_probs).numpy().astype(np.float32),
        expected_dice=expected_dice(base_probs).numpy().astype(np.float32),
        box_agreement=np.asarray(box, dtype=np.float32),
        agreement=np.asarray(agreement, dtype=np.float32),
    )
    confidence = combine_confidence(scores.cues(), rule, weights)
    return replace(scores, confidence=confidence), binary_entropy(mean).float()


@dataclass
class SliceSums:
    """Per-object sums over the slices of a volume (3D scores pool these).

    Attributes:
        entropy: summed entropy; area: summed mask area; iou_area: IoU-head estimate x area;
        soft_inter: sum of p x m; soft_size: sum of p + m.
    """

    entropy: NDArray[np.float64]
    area: NDArray[np.float64]
    iou_area: NDArray[np.float64]
    soft_inter: NDArray[np.float64]
    soft_size: NDArray[np.float64]

    @classmethod
    def zeros(cls, n: int) -> SliceSums:
        """Empty sums for n objects."""
        return cls(*(np.zeros(n) for _ in range(5)))

    def add(self, ids: NDArray, probs: torch.Tensor, iou: NDArray) -> None:
        """Add one slice: (K, h, w) probabilities of objects ``ids`` and their IoU estimates."""
        mask = (probs > 0.5).float()
        area = mask.flatten(1).sum(1).numpy()
        self.entropy[ids] += binary_entropy(probs).flatten(1).sum(1).numpy()
        self.area[ids] += area
        self.iou_area[ids] += np.clip(np.asarray(iou, dtype=np.float64), 0, 1) * area
        self.soft_inter[ids] += (probs * mask).flatten(1).sum(1).numpy()
        self.soft_size[ids] += (probs.flatten(1).sum(1) + mask.flatten(1).sum(1)).numpy()


def aggregate_slices(
    sums: SliceSums,
    box: NDArray | None = None,
    rule: str = "combined",
    weights: Sequence[tuple[str, float]] | None = None,
) -> ObjectScores:
    """3D per-object scores from per-slice sums accumulated over a volume.

    The IoU cue is the area-weighted mean of the per-slice IoU-head estimates; entropy and
    expected Dice pool their sums over all slices; there is no ensemble in 3D.

    Args:
        sums: accumulated per-object sums.
        box: optional (N,) 3D box agreement.
        rule: ``combined``, ``iou``, ``entropy``, ``expected_dice`` or ``box``.
        weights: cue weights of the model (see :func:`combine_confidence`).

    Returns:
        ObjectScores (agreement NaN).
    """
    area = sums.area
    has = area > 0
    n = area.shape[0]
    scores = ObjectScores(
        confidence=np.zeros(n, dtype=np.float32),
        predicted_iou=np.where(has, sums.iou_area / np.maximum(area, 1), 0).astype(np.float32),
        entropy_confidence=np.where(
            has, np.clip(1 - sums.entropy / np.maximum(area, 1), 0, 1), 0
        ).astype(np.float32),
        expected_dice=np.where(
            has, np.clip(2 * sums.soft_inter / np.maximum(sums.soft_size, _EPS), 0, 1), 0
        ).astype(np.float32),
        box_agreement=(np.full(n, math.nan) if box is None else np.asarray(box)).astype(np.float32),
        agreement=np.full(n, math.nan, dtype=np.float32),
    )
    return replace(scores, confidence=combine_confidence(scores.cues(), rule, weights))


def max_uncertainty_map(
    uncertainty: torch.Tensor, orig_hw: tuple[int, int], out: NDArray[np.uint8] | None = None
) -> NDArray[np.uint8]:
    """Highest uncertainty over objects, upsampled to the original size, as uint8 0-255.

    Args:
        uncertainty: (N, h, w) per-object maps in [0, 1] on the resized image extent.
        orig_hw: (H, W) of the original image.
        out: optional (H, W) uint8 map to combine with by maximum (updated in place).

    Returns:
        (H, W) uint8.
    """
    h, w = orig_hw
    if uncertainty.shape[0] == 0:
        result = np.zeros((h, w), dtype=np.uint8)
    else:
        top = uncertainty.amax(0)[None, None].float()
        up = torch.nn.functional.interpolate(top, size=(h, w), mode="bilinear", align_corners=False)
        result = (up[0, 0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    if out is not None:
        np.maximum(out, result, out=out)
        return out
    return result
