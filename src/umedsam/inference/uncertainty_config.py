"""What ``predict --uncertainty`` estimates: a torch-free configuration (see ``uncertainty``)."""

from __future__ import annotations

from dataclasses import dataclass

#: Per-object confidence rules (see ``umedsam.inference.uncertainty.combine_confidence``).
RULES = ("combined", "iou", "entropy", "expected_dice", "box", "ensemble")
#: Cues a model card may weight in the combined confidence.
CUES = ("iou", "entropy", "expected_dice", "box", "agreement")

CueWeights = tuple[tuple[str, float], ...]
"""Exponents of the combined confidence's weighted geometric mean, as a card holds them."""


def check_cue_weights(weights: CueWeights | None) -> None:
    """Raise ValueError for unknown cue names, negative weights or all-zero weights."""
    if weights is None:
        return
    bad = [name for name, _ in weights if name not in CUES]
    if bad or any(w < 0 for _, w in weights) or not any(w > 0 for _, w in weights):
        raise ValueError(f"cue weights must be >= 0 on cues of {CUES}, one > 0; got {weights}")


def cue_weights_of(backend: object) -> CueWeights | None:
    """The cue weights of the model an engine runs (``open_engine`` sets them from its card),
    or None: every cue of the combined rule counts the same."""
    return getattr(backend, "cue_weights", None)


@dataclass(frozen=True)
class UncertaintyConfig:
    """How uncertainty is estimated.

    Attributes:
        ensemble: extra decoder passes per object with jittered boxes (0 = no jitter ensemble).
        jitter_px: largest shift of each box side in model-frame pixels (S = 256 for LiteMedSAM),
            further limited to ``jitter_frac`` of the box side so small boxes keep their object.
        jitter_frac: largest shift as a fraction of the box side (width for x, height for y).
        flip: add one member decoded on the horizontally mirrored image (one extra encoder call).
        seed: seed of the jitter generator; each case restarts from it, so results do not depend
            on the order of cases.
        rule: per-object confidence rule, one of :data:`RULES`.
        ensemble_masks: use the ensemble-mean probability (> 0.5) as the mask instead of the base
            pass (changes ``segs``; needs ``ensemble > 0`` or ``flip``).
    """

    ensemble: int = 0
    jitter_px: float = 3.0
    jitter_frac: float = 0.1
    flip: bool = False
    seed: int = 0
    rule: str = "combined"
    ensemble_masks: bool = False

    def __post_init__(self) -> None:
        if self.ensemble < 0:
            raise ValueError(f"ensemble must be >= 0 decoder passes; got {self.ensemble}")
        if self.jitter_px < 0 or self.jitter_frac < 0:
            raise ValueError(
                f"jitter_px and jitter_frac must be >= 0; got {self.jitter_px}, {self.jitter_frac}"
            )
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}; got {self.rule!r}")
        if self.ensemble_masks and not self.has_ensemble:
            raise ValueError("ensemble_masks needs an ensemble: set ensemble > 0 or flip=True")
        if self.rule == "ensemble" and not self.has_ensemble:
            raise ValueError("rule 'ensemble' needs an ensemble: set ensemble > 0 or flip=True")

    @property
    def has_ensemble(self) -> bool:
        """Whether any extra decoder pass is run."""
        return self.ensemble > 0 or self.flip
