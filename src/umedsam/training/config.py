"""Typed training configuration: one frozen dataclass per concern.

A config comes from defaults, then an optional YAML file, then command-line overrides
(``--optim.lr 1e-4``); unknown keys are errors at every stage. ``asdict(config)`` holds only
plain Python values, so it is stored inside checkpoints loadable with ``weights_only=True``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from umedsam.extras import import_optional

__all__ = [
    "TRAINABLE_PARTS",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "config_flags",
    "load_config",
]

TRAINABLE_PARTS: tuple[str, ...] = ("image_encoder", "prompt_encoder", "mask_decoder")
# Copies of the library's names, so that reading a config (and `umedsam train --help`) does not
# import torch; tests/training/test_config.py checks they equal umedsam.losses / umedsam.optim.
TERM_NAMES: tuple[str, ...] = ("dice", "bce", "mse", "iou", "shape")
DEFAULT_TERMS: tuple[str, ...] = ("dice", "bce", "iou", "shape")
MODES: tuple[str, ...] = ("kendall", "umedsam_code", "fixed")
OPTIMIZERS: tuple[str, ...] = ("adamw", "adam", "sgd")
SHARPNESS: tuple[str, ...] = ("none", "sam", "asam")
SCHEDULERS: tuple[str, ...] = ("plateau", "none")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class DataConfig:
    """Training and validation data.

    Attributes:
        train_root: challenge folder with ``imgs/`` and ``gts/`` (this or ``sources``).
        val_root: held-out folder for the per-epoch validation DSC (None: no validation).
        sources: more training sources, each a mapping read by
            :func:`umedsam.data.sources.open_source` (``kind: folder`` image/mask folders,
            ``kind: nnunet`` raw datasets, ``kind: npz``), with a sampling ``weight`` each (the
            ``train_root`` folder weighs 1); several sources are drawn by weight first.
        val_sources: more validation sources, as ``sources``.
        max_box_shift: box jitter, 0..max_box_shift model-frame pixels per side.
        flips: random flips (``horizontal``, ``vertical``), each with probability 0.5.
        min_area: smallest object used, in model-frame pixels.
        slices_per_volume: object-bearing slices kept per training volume (None: all).
        val_slices_per_volume: the same for validation volumes.
        modalities: restrict to these modalities (file-name token; None: all).
        balanced: draw modalities uniformly (then an item of the modality).
        modality_weights: with ``balanced``, relative weights of some modalities in that draw
            (others weigh 1), e.g. ``{CT: 0.25}`` so that a modality with few items does not
            repeat them far more often than the others.
        neighbour_box_prob: for slices of volumes, the probability that the prompt box is the
            object's box on an adjacent slice, as 3D propagation prompts (0: always its own).
        samples_per_epoch: samples per epoch (None: one pass over the items).
        cache_embeddings: with a frozen image encoder, compute each image embedding once per
            flip variant and reuse it (decoder-only training becomes ~20x faster on CPU).
        cache_dir: also keep the embedding cache on disk here (shared between runs).
    """

    train_root: str = ""
    val_root: str | None = None
    sources: tuple[dict[str, Any], ...] = ()
    val_sources: tuple[dict[str, Any], ...] = ()
    max_box_shift: int = 5
    flips: tuple[str, ...] = ("horizontal", "vertical")
    min_area: int = 4
    slices_per_volume: int | None = None
    val_slices_per_volume: int | None = 3
    modalities: tuple[str, ...] | None = None
    balanced: bool = False
    modality_weights: dict[str, float] | None = None
    neighbour_box_prob: float = 0.0
    samples_per_epoch: int | None = None
    cache_embeddings: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _check(
            self.max_box_shift >= 0, f"data.max_box_shift must be >= 0; got {self.max_box_shift}"
        )
        _check(self.min_area >= 1, f"data.min_area must be >= 1; got {self.min_area}")
        bad = [f for f in self.flips if f not in ("horizontal", "vertical")]
        _check(not bad, f"data.flips must be 'horizontal'/'vertical'; got {list(self.flips)}")
        _check(
            0.0 <= self.neighbour_box_prob <= 1.0,
            f"data.neighbour_box_prob must be in [0, 1]; got {self.neighbour_box_prob}",
        )
        weights = self.modality_weights or {}
        _check(
            all(w >= 0 for w in weights.values()),
            f"data.modality_weights must be >= 0; got {weights}",
        )
        for name in ("slices_per_volume", "val_slices_per_volume", "samples_per_epoch"):
            value = getattr(self, name)
            _check(value is None or value >= 1, f"data.{name} must be >= 1 or null; got {value}")


@dataclass(frozen=True)
class ModelConfig:
    """Model and what trains.

    Attributes:
        name: registered model name.
        checkpoint: ``"default"`` (the model's own weights: LiteMedSAM's bundled ones, or a
            shipped model's file over its base), ``"none"`` (random init, for tests) or a
            checkpoint path.
        trainable: parts to train, from ``image_encoder``, ``prompt_encoder``, ``mask_decoder``
            (the published U-MedSAM code trains the mask decoder only).
    """

    name: str = "litemedsam"
    checkpoint: str = "default"
    trainable: tuple[str, ...] = ("mask_decoder",)

    def __post_init__(self) -> None:
        bad = [p for p in self.trainable if p not in TRAINABLE_PARTS]
        _check(
            bool(self.trainable) and not bad,
            f"model.trainable must be a non-empty subset of {list(TRAINABLE_PARTS)}; "
            f"got {list(self.trainable)}",
        )


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and weighting (see ``umedsam.losses.uncertainty``).

    Attributes:
        terms: term names from ``dice``, ``bce``, ``mse``, ``iou``, ``shape``.
        mode: ``kendall`` (learned log-variances), ``umedsam_code`` (raw sigmas, as the
            published code) or ``fixed``.
        fixed_weights: per-term weights for ``fixed`` mode (missing terms: 1).
        init: initial log-variance (kendall) or sigma (umedsam_code).
    """

    terms: tuple[str, ...] = DEFAULT_TERMS
    mode: str = "kendall"
    fixed_weights: dict[str, float] | None = None
    init: float | None = None

    def __post_init__(self) -> None:
        bad = [t for t in self.terms if t not in TERM_NAMES]
        _check(
            bool(self.terms) and not bad,
            f"loss.terms must be a non-empty list from {list(TERM_NAMES)}; got {list(self.terms)}",
        )
        _check(self.mode in MODES, f"loss.mode must be one of {list(MODES)}; got {self.mode!r}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer, Sharpness-Aware Minimization and learning-rate schedule.

    Attributes:
        name: base optimizer (``adamw``, ``adam``, ``sgd``).
        lr: learning rate of the model.
        weight_decay: weight decay of the model.
        betas: Adam betas.
        loss_lr: learning rate of the loss weights (None: ``lr``).
        loss_weight_decay: weight decay of the loss weights (the published code used 0.01).
        sharpness: ``none``, ``sam`` or ``asam``.
        rho: SAM radius (None: 0.05 for sam, 2.0 for asam). Loss weights are never perturbed.
        max_grad_norm: clip the (second) gradient norm (None: no clipping).
        scheduler: ``plateau`` (ReduceLROnPlateau once per epoch) or ``none``.
        plateau_metric: ``train_loss`` (as the U-MedSAM code) or ``val_dsc``.
        plateau_factor: learning-rate decay factor.
        plateau_patience: epochs without improvement before a decay.
    """

    name: str = "adamw"
    lr: float = 5e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    loss_lr: float | None = None
    loss_weight_decay: float = 0.0
    sharpness: str = "none"
    rho: float | None = None
    max_grad_norm: float | None = None
    scheduler: str = "plateau"
    plateau_metric: str = "train_loss"
    plateau_factor: float = 0.9
    plateau_patience: int = 5

    def __post_init__(self) -> None:
        _check(
            self.name in OPTIMIZERS,
            f"optim.name must be one of {list(OPTIMIZERS)}; got {self.name!r}",
        )
        _check(
            self.sharpness in SHARPNESS,
            f"optim.sharpness must be one of {list(SHARPNESS)}; got {self.sharpness!r}",
        )
        _check(self.lr > 0, f"optim.lr must be > 0; got {self.lr}")
        _check(
            self.scheduler in SCHEDULERS,
            f"optim.scheduler must be one of {list(SCHEDULERS)}; got {self.scheduler!r}",
        )
        _check(
            self.plateau_metric in ("train_loss", "val_dsc"),
            f"optim.plateau_metric must be 'train_loss' or 'val_dsc'; got {self.plateau_metric!r}",
        )
        _check(len(self.betas) == 2, f"optim.betas must be two numbers; got {self.betas}")
        _check(
            self.rho is None or self.sharpness != "none",
            f"optim.rho={self.rho} needs optim.sharpness 'sam' or 'asam'",
        )


@dataclass(frozen=True)
class RunConfig:
    """Loop, budget, output and resume.

    Attributes:
        output_dir: where ``last.pt``, ``best.pt``, ``log.csv`` and ``config.yaml`` go.
        epochs: number of epochs.
        batch_size: samples per step per process.
        max_steps: stop after this many optimizer steps in total (None: no limit).
        time_budget_s: stop after this much training time (None: no limit).
        seed: seed of everything random.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        amp: mixed precision (CUDA only; bfloat16 autocast is not used).
        resume: checkpoint to resume from, ``auto`` (``output_dir/last.pt`` if present) or None.
        save_every_steps: also write ``last.pt`` every N steps (None: at epoch ends only).
        num_threads: torch CPU threads (None: torch's default).
    """

    output_dir: str = "runs/train"
    epochs: int = 10
    batch_size: int = 8
    max_steps: int | None = None
    time_budget_s: float | None = None
    seed: int = 0
    device: str = "cpu"
    amp: bool = False
    resume: str | None = None
    save_every_steps: int | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"run.epochs must be >= 1; got {self.epochs}")
        _check(self.batch_size >= 1, f"run.batch_size must be >= 1; got {self.batch_size}")
        for name in ("max_steps", "save_every_steps", "num_threads"):
            value = getattr(self, name)
            _check(value is None or value >= 1, f"run.{name} must be >= 1 or null; got {value}")
        _check(
            self.time_budget_s is None or self.time_budget_s > 0,
            f"run.time_budget_s must be > 0 or null; got {self.time_budget_s}",
        )


INITIAL_PROMPTS = ("box", "clicks", "scribble", "box_scribble", "pos_neg_scribbles")
"""First prompts of simulated interaction (see ``umedsam.training.interaction``)."""


@dataclass(frozen=True)
class InteractionConfig:
    """How interaction is simulated in training.

    Attributes:
        enabled: train with simulated interaction (else the usual box-only step).
        min_rounds: fewest correction rounds after the initial prompt.
        max_rounds: most correction rounds.
        initial_weights: probability weights of :data:`INITIAL_PROMPTS`, in that order.
        scribble_correction: probability that a correction round adds a scribble, not a click.
        centre_click: probability that a correction click sits at the error's
            distance-transform maximum (else at a random voxel of the error).
        scribble_points: points sampled along each stroke (as at inference).
        binary_mask_prompt: probability that an object's previous logits are fed back
            binarized (+/-MASK_PROMPT_LOGIT), as a previous label map (``prev_pred``) arrives.
    """

    enabled: bool = False
    min_rounds: int = 1
    max_rounds: int = 8
    initial_weights: tuple[float, ...] = (0.3, 0.2, 0.2, 0.15, 0.15)
    scribble_correction: float = 0.2
    centre_click: float = 0.5
    scribble_points: int = 8
    binary_mask_prompt: float = 0.3

    def __post_init__(self) -> None:
        if not 0 <= self.min_rounds <= self.max_rounds:
            raise ValueError(
                f"need 0 <= min_rounds <= max_rounds; got {self.min_rounds}, {self.max_rounds}"
            )
        if len(self.initial_weights) != len(INITIAL_PROMPTS) or min(self.initial_weights) < 0:
            raise ValueError(
                f"initial_weights must be {len(INITIAL_PROMPTS)} non-negative numbers for "
                f"{INITIAL_PROMPTS}; got {self.initial_weights}"
            )
        for name in ("scribble_correction", "centre_click", "binary_mask_prompt"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1]; got {value}")


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "run": RunConfig,
    "interaction": InteractionConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    """The full training configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    interaction: InteractionConfig = field(default_factory=InteractionConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from nested plain values, rejecting unknown sections and keys.

        Raises:
            ValueError: on an unknown key, a value of the wrong type, or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"config must be a mapping of sections; got {type(data).__name__}")
        unknown = [k for k in data if k not in _SECTIONS]
        if unknown:
            raise ValueError(f"unknown config section(s) {unknown}; expected {list(_SECTIONS)}")
        parts = {}
        for name, section_cls in _SECTIONS.items():
            values = data.get(name) or {}
            if not isinstance(values, Mapping):
                raise ValueError(f"config section {name!r} must be a mapping; got {values!r}")
            parts[name] = _build_section(name, section_cls, values)
        return cls(**parts)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain values (``dataclasses.asdict``)."""
        return asdict(self)

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A copy with dotted-key overrides applied, e.g. ``{"optim.lr": 1e-4}``.

        Raises:
            ValueError: on an unknown key or invalid value.
        """
        data = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if section not in data or key not in data[section]:
                raise ValueError(f"unknown config key {dotted!r}")
            data[section][key] = value
        return TrainConfig.from_dict(data)


def _field_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls)


def _build_section(name: str, section_cls: type, values: Mapping[str, Any]) -> Any:
    known = {f.name for f in fields(section_cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in config section {name!r}; known: {sorted(known)}"
        )
    hints = _field_types(section_cls)
    kwargs = {key: _coerce(f"{name}.{key}", hints[key], value) for key, value in values.items()}
    return section_cls(**kwargs)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check/convert a plain value to the annotated type (YAML lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, inner[0], value)
    if value is None:
        raise ValueError(f"{key} must not be null")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(f"{key} must be a list; got {value!r}")
        item = args[0]
        return tuple(_coerce(key, item, v) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{key} must be a mapping; got {value!r}")
        return {str(k): _coerce(key, args[1], v) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true/false; got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer; got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key} must be a number; got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string; got {value!r}")
        return value
    if hint is Any:
        return value
    raise TypeError(f"{key}: unsupported config type {hint!r}")  # pragma: no cover


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then a YAML file (optional), then dotted-key overrides.

    Args:
        path: YAML file with sections ``data``, ``model``, ``loss``, ``optim``, ``run``.
        overrides: dotted keys, e.g. ``{"run.epochs": 2}``.

    Returns:
        The validated config.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ImportError: if PyYAML is missing (extra ``train``).
        ValueError: on unknown keys or invalid values.
    """
    data = read_yaml_sections(path, "reading a YAML training config")
    config = TrainConfig.from_dict(data)
    return config.with_overrides(overrides) if overrides else config


def read_yaml_sections(path: str | Path | None, purpose: str) -> dict[str, Any]:
    """A YAML config file as a dict of sections ({} for None or an empty file).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        MissingExtraError: if PyYAML is missing (extra ``train``); ``purpose`` names the use.
        ValueError: the file does not hold a mapping.
    """
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    yaml = import_optional("yaml", package="pyyaml", extra="train", purpose=purpose)
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of sections; got {type(loaded).__name__}")
    return loaded


def config_flags() -> list[tuple[str, Any, str]]:
    """Every config option as ``(dotted_key, type_hint, help)`` for building CLI flags."""
    out = []
    for section, section_cls in _SECTIONS.items():
        hints = _field_types(section_cls)
        for f in fields(section_cls):
            if f.name in FILE_ONLY_KEYS:
                continue
            out.append((f"{section}.{f.name}", hints[f.name], _attribute_help(section_cls, f.name)))
    return out


#: Options given in the YAML file only (lists of mappings have no flag form).
FILE_ONLY_KEYS = frozenset({"sources", "val_sources"})


def _attribute_help(section_cls: type, name: str) -> str:
    doc = section_cls.__doc__ or ""
    marker = f"{name}:"
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(marker):
            text = [line.strip()[len(marker) :].strip()]
            for nxt in lines[i + 1 :]:
                stripped = nxt.strip()
                if not stripped or (":" in stripped.split(" ")[0]):
                    break
                text.append(stripped)
            return " ".join(text)
    return ""
