"""Which prompt kinds each model was trained to take (torch-free, so the CLI can ask cheaply).

LiteMedSAM and the models fine-tuned or distilled from it were trained with boxes only; their
prompt encoder can embed clicks and masks, but untrained those prompts make masks worse (see
docs/interactive.md), so they refuse them and name a model that takes them.
"""

from __future__ import annotations

from pathlib import Path

PROMPT_KINDS = ("box", "click", "scribble", "mask")
"""Boxes, clicks, scribbles and a previous mask (the dense prompt)."""

DEFAULT_MODEL = "umedsam_merged"
"""The model of ``umedsam predict`` and the web app when none is named (chosen by the rule of
docs/models.md; ``litemedsam`` is the official model)."""

DEFAULT_MODEL_BASE = "litemedsam"
"""The model whose official weights the fine-tuned models are loaded over."""

INTERACTIVE_MODEL = "umedsam_interactive"
"""The model used by default for cases that hold clicks, scribbles or a previous mask."""

_PROMPTS: dict[str, tuple[str, ...]] = {INTERACTIVE_MODEL: PROMPT_KINDS}

WEIGHT_FILES = {
    INTERACTIVE_MODEL: "umedsam_interactive.pt",
    "umedsam_litemedsam": "umedsam_litemedsam_decoder.pt",
    "umedsam_merged": "umedsam_merged.pt",
    "umedsam_effvit_b0": "umedsam_effvit_b0.pt",
    "umedsam_effvit_b1": "umedsam_effvit_b1.pt",
}
"""Weights files shipped in ``umedsam/weights`` per model (LiteMedSAM's come from its package)."""

MODEL_DESCRIPTIONS = {
    DEFAULT_MODEL_BASE: "LiteMedSAM, official weights (boxes)",
    INTERACTIVE_MODEL: "LiteMedSAM + trained clicks, scribbles, corrections",
    "umedsam_litemedsam": "LiteMedSAM, fine-tuned decoder (boxes)",
    "umedsam_merged": "LiteMedSAM, decoder merged with the fine-tuned one (boxes)",
    "umedsam_effvit_b0": "EfficientViT-B0 student: fastest (boxes)",
    "umedsam_effvit_b1": "EfficientViT-B1 student: fast, closer to LiteMedSAM (boxes)",
}


WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
"""Where the package's own weight files live."""


BF16_DECODER_VALIDATED = frozenset({"umedsam_merged"})
"""Shipped models whose dev DSC with bf16 decoders behind the f32 encoder stayed within 0.5
points of float32 in every modality; the web app (an interactive spec, ``--engine auto``) runs
them so on CPUs with bf16 instructions (docs/models.md)."""
BF16_VALIDATED = frozenset({"umedsam_effvit_b0", "umedsam_effvit_b1"})
"""Shipped models whose dev DSC in bf16 stayed within 0.5 points of float32 in every modality;
``--engine auto`` runs them in bf16 (OpenVINO) on CPUs with bf16 instructions (docs/models.md)."""


def shipped(name: str) -> bool:
    """Whether the package ships the weights of ``name`` (checked without importing torch)."""
    return (WEIGHTS_DIR / WEIGHT_FILES.get(name, f"{name}.pt")).is_file()


def shipped_weights(name: str) -> tuple[str | None, Path] | None:
    """``(base, file)`` of the weights the package ships for ``name``, or None (torch-free).

    The students ship whole (base None); the LiteMedSAM derivatives ship only what training
    changed, loaded over the bundled LiteMedSAM weights (base ``"litemedsam"``).
    """
    if name not in WEIGHT_FILES or not shipped(name):
        return None
    base = None if name.startswith("umedsam_effvit") else DEFAULT_MODEL_BASE
    return base, WEIGHTS_DIR / WEIGHT_FILES[name]


def available_models() -> list[str]:
    """Models a user can pick: LiteMedSAM and every model whose weights ship."""
    return [DEFAULT_MODEL_BASE, *(n for n in WEIGHT_FILES if shipped(n))]


def register_prompts(name: str, kinds: tuple[str, ...]) -> None:
    """Declare which prompt kinds model ``name`` takes (default: boxes only).

    Raises:
        ValueError: an unknown kind.
    """
    bad = [k for k in kinds if k not in PROMPT_KINDS]
    if bad:
        raise ValueError(f"unknown prompt kinds {bad}; expected a subset of {PROMPT_KINDS}")
    _PROMPTS[name] = tuple(kinds)


def model_prompts(name: str) -> tuple[str, ...]:
    """The prompt kinds model ``name`` takes."""
    return _PROMPTS.get(name, ("box",))


def bounded_propagation(name: str, checkpoint: object = None) -> bool:
    """Whether 3D propagation keeps each object inside its 3D box for model ``name``.

    Every model but the official LiteMedSAM (its own weights, no ``checkpoint``), whose rule
    stays the official one bit for bit; chosen on training volumes (docs/models.md, "Bounded propagation").
    """
    return not (name == DEFAULT_MODEL_BASE and checkpoint is None)


def encoder_of(name: str) -> str:
    """Which image encoder ``name`` runs (torch-free).

    ``"litemedsam"`` for LiteMedSAM and for the models whose shipped weights replace only its
    prompt encoder and mask decoder (their image embeddings are LiteMedSAM's, bit for bit); any
    other model's own name.
    """
    found = shipped_weights(name)
    if name == DEFAULT_MODEL_BASE or (found is not None and found[0] == DEFAULT_MODEL_BASE):
        return DEFAULT_MODEL_BASE
    return name


def correction_model(name: str) -> str | None:
    """The model that answers clicks, scribbles and mask prompts on ``name``'s image embeddings.

    ``name`` itself when it takes clicks; for the default model (boxes only), the shipped
    interactive model, which runs the same image encoder, so that one embedding serves both and
    only the decoder changes; otherwise None (the model refuses clicks).
    """
    if "click" in model_prompts(name):
        return name
    if (
        name == DEFAULT_MODEL
        and shipped(INTERACTIVE_MODEL)
        and encoder_of(INTERACTIVE_MODEL) == encoder_of(name)
    ):
        return INTERACTIVE_MODEL
    return None


def models_taking(kinds: set[str]) -> list[str]:
    """Models declared to take every prompt kind in ``kinds``, the shipped interactive one first."""
    names = [n for n, k in _PROMPTS.items() if kinds <= set(k)]
    return sorted(names, key=lambda n: (n != INTERACTIVE_MODEL, n))
