"""Typed configuration of ``umedsam distill``: one frozen dataclass per concern.

A config comes from an optional YAML file, then dotted-key overrides (``{"run.steps": 10}``);
unknown keys are errors. ``DistillConfig.to_dict()`` holds only plain values, so it is stored in
checkpoints loadable with ``weights_only=True``.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from umedsam.training.config import read_yaml_sections

__all__ = [
    "DistillConfig",
    "DistillDataConfig",
    "DistillLossConfig",
    "DistillOptimConfig",
    "DistillRunConfig",
    "StudentConfig",
    "TeacherConfig",
    "load_distill_config",
]


TEACHER_ENGINES = ("torch", "onnx", "openvino")  # exact (f32) engines only


@dataclass(frozen=True)
class DistillDataConfig:
    """Images to distil on.

    Attributes:
        train_root: challenge folder with ``imgs/`` and ``gts/`` (this or ``sources``).
        sources: more image sources (see :func:`umedsam.data.sources.open_source`); a
            ``kind: folder`` source without ``masks`` adds unlabelled images (distillation
            needs no labels).
        slices_per_volume: object-bearing slices kept per volume (None: all); items are
            interleaved across modalities and cases, so ``max_images`` keeps a balanced subset.
        min_area: smallest object (model-frame pixels) for a slice to count as an item.
        modalities: restrict to these modalities (None: all).
        max_images: teacher embeddings to compute at most, counting each flip variant.
        teacher_flips: flip variants encoded by the teacher, e.g. ``[[], [horizontal]]``.
        tensor_flips: also flip the preprocessed image and its cached embedding together at
            random (free augmentation; the student learns flip-equivariance).
        cache_dir: folder of the teacher-embedding cache (required).
        training_cache_dir: a ``umedsam train`` embedding cache (its ``data.cache_dir``) made
            with the same teacher; embeddings found there are copied instead of recomputed.
        cache_max_mb: the cache never grows beyond this many MiB (2 MiB per 256-px image).
        cache_time_budget_s: stop computing teacher embeddings after this long and train on
            what is cached (None: no limit).
        refresh_every: reload newly cached embeddings every N steps (for a cache filled by a
            concurrent ``--cache-only`` run; None: never).
        val_images: cached images held out to report the validation loss (0: none).
        balanced: draw each stage-1 sample's modality first (uniformly, or by
            ``modality_weights``), then an image of it; otherwise images are drawn uniformly,
            so a modality with few images (endoscopy, CT) is rarely seen.
        modality_weights: with ``balanced``, relative draw weight per modality (default 1).
    """

    train_root: str = ""
    sources: tuple[dict[str, Any], ...] = ()
    slices_per_volume: int | None = None
    min_area: int = 4
    modalities: tuple[str, ...] | None = None
    max_images: int | None = None
    teacher_flips: tuple[tuple[str, ...], ...] = ((),)
    tensor_flips: bool = True
    cache_dir: str = ""
    training_cache_dir: str | None = None
    cache_max_mb: float = 4096.0
    cache_time_budget_s: float | None = None
    refresh_every: int | None = None
    val_images: int = 0
    balanced: bool = False
    modality_weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        _check(
            bool(self.train_root) or bool(self.sources),
            "data.train_root or data.sources is required",
        )
        weights = self.modality_weights or {}
        _check(
            all(v >= 0 for v in weights.values()) and (not weights or sum(weights.values()) > 0),
            f"data.modality_weights must be >= 0 and not all 0; got {self.modality_weights}",
        )
        _check(bool(self.cache_dir), "data.cache_dir is required")
        _check(bool(self.teacher_flips), "data.teacher_flips needs at least one variant ([])")
        for variant in self.teacher_flips:
            bad = [f for f in variant if f not in ("horizontal", "vertical")]
            _check(not bad, f"data.teacher_flips entries must be horizontal/vertical; got {bad}")
        _check(self.cache_max_mb > 0, f"data.cache_max_mb must be > 0; got {self.cache_max_mb}")
        for name in ("slices_per_volume", "max_images", "refresh_every"):
            value = getattr(self, name)
            _check(value is None or value >= 1, f"data.{name} must be >= 1 or null; got {value}")
        _check(self.val_images >= 0, f"data.val_images must be >= 0; got {self.val_images}")


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher.

    Attributes:
        name: registered model name.
        checkpoint: ``default`` (bundled LiteMedSAM weights), ``none`` (random, tests) or a path.
        batch_size: images per teacher call while filling the cache.
        engine: what computes the teacher's embeddings for the cache: ``torch`` (the model
            itself) or an exported f32 engine, ``onnx`` or ``openvino`` (the same embeddings to
            float rounding, about twice as fast on a 2-core CPU; needs the engine's extra).
    """

    name: str = "litemedsam"
    checkpoint: str = "default"
    batch_size: int = 1
    engine: str = "torch"

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, f"teacher.batch_size must be >= 1; got {self.batch_size}")
        _check(
            self.engine in TEACHER_ENGINES,
            f"teacher.engine must be one of {', '.join(TEACHER_ENGINES)}; got {self.engine!r}",
        )
        _check(
            self.engine == "torch" or self.checkpoint != "none",
            "teacher.engine other than torch needs weights (teacher.checkpoint is 'none')",
        )


@dataclass(frozen=True)
class StudentConfig:
    """The student.

    Attributes:
        name: registered model name (its prompt encoder and mask decoder must have the
            teacher's sizes: they are copied from the teacher).
        init: optional checkpoint to start from (a stage-1 ``student.pt``, ...), or
            ``shipped`` for the weights the package ships for ``name``.
        init_parts: load only these parts of ``init`` (e.g. ``[image_encoder]``: a shipped
            student's encoder under the teacher's prompt encoder and mask decoder); None: all.
        init_output_stats: set the student's output LayerNorm to the per-channel mean/std of
            the cached teacher embeddings before training (if the encoder supports it).
    """

    name: str = "umedsam_effvit_b0"
    init: str | None = None
    init_parts: tuple[str, ...] | None = None
    init_output_stats: bool = True

    def __post_init__(self) -> None:
        parts = ("image_encoder", "prompt_encoder", "mask_decoder")
        bad = [p for p in self.init_parts or () if p not in parts]
        _check(not bad, f"student.init_parts must be among {', '.join(parts)}; got {bad}")
        _check(
            self.init_parts is None or self.init is not None,
            "student.init_parts needs student.init",
        )


@dataclass(frozen=True)
class DistillLossConfig:
    """Stage-1 loss: ``mse_weight * MSE + cosine_weight * (1 - cosine similarity)``.

    Attributes:
        mse_weight: weight of the mean squared error between embeddings.
        cosine_weight: weight of one minus the per-position cosine similarity over channels.
    """

    mse_weight: float = 1.0
    cosine_weight: float = 0.0

    def __post_init__(self) -> None:
        _check(
            self.mse_weight >= 0
            and self.cosine_weight >= 0
            and self.mse_weight + self.cosine_weight > 0,
            f"loss weights must be >= 0 and not both 0; got {self.mse_weight}, {self.cosine_weight}",
        )


@dataclass(frozen=True)
class DistillOptimConfig:
    """AdamW with linear warm-up and cosine decay over ``run.steps``.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        max_grad_norm: gradient clipping (None: off).
    """

    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    min_lr_ratio: float = 0.05
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"optim.lr must be > 0; got {self.lr}")
        _check(self.warmup_steps >= 0, f"optim.warmup_steps must be >= 0; got {self.warmup_steps}")
        _check(
            0 <= self.min_lr_ratio <= 1,
            f"optim.min_lr_ratio must be in [0, 1]; got {self.min_lr_ratio}",
        )


@dataclass(frozen=True)
class DistillRunConfig:
    """Loop, budget, output and resume of stage 1.

    Attributes:
        output_dir: where ``last.pt``, ``student.pt``, ``log.csv`` and ``config.json`` go.
        steps: optimizer steps (the learning-rate schedule spans them).
        batch_size: images per step.
        time_budget_s: stop stage 1 after this much training time (None: no limit).
        seed: seed of the sampling and flips (a step's batch depends on (seed, step) only).
        num_threads: torch CPU threads (None: leave torch's setting).
        save_every_steps: write ``last.pt`` every N steps.
        log_every_steps: log and append to ``log.csv`` every N steps.
        resume: ``auto`` (``output_dir/last.pt`` if present), a path, or None.
    """

    output_dir: str = "runs/distill"
    steps: int = 1000
    batch_size: int = 8
    time_budget_s: float | None = None
    seed: int = 0
    num_threads: int | None = None
    save_every_steps: int = 50
    log_every_steps: int = 10
    resume: str | None = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "save_every_steps", "log_every_steps"):
            value = getattr(self, name)
            _check(value >= 1, f"run.{name} must be >= 1; got {value}")
        _check(
            self.num_threads is None or self.num_threads >= 1,
            f"run.num_threads must be >= 1 or null; got {self.num_threads}",
        )


_SECTIONS: dict[str, type] = {
    "data": DistillDataConfig,
    "teacher": TeacherConfig,
    "student": StudentConfig,
    "loss": DistillLossConfig,
    "optim": DistillOptimConfig,
    "run": DistillRunConfig,
}


@dataclass(frozen=True)
class DistillConfig:
    """The full distillation configuration.

    Attributes:
        finetune: stage 2, a ``umedsam train`` config (sections ``data``, ``loss``, ``optim``,
            ``run`` and optionally ``model.trainable``); the model name and checkpoint come from
            stage 1. None: no stage 2.
    """

    data: DistillDataConfig
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: DistillLossConfig = field(default_factory=DistillLossConfig)
    optim: DistillOptimConfig = field(default_factory=DistillOptimConfig)
    run: DistillRunConfig = field(default_factory=DistillRunConfig)
    finetune: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistillConfig:
        """Build from nested plain values (YAML), rejecting unknown sections and keys.

        Raises:
            ValueError: on an unknown section or key, a wrong type or an invalid value.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"config must be a mapping of sections; got {type(data).__name__}")
        known = [*_SECTIONS, "finetune"]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ValueError(f"unknown config section(s) {unknown}; expected {known}")
        parts: dict[str, Any] = {}
        for name, section_cls in _SECTIONS.items():
            values = data.get(name) or {}
            if not isinstance(values, Mapping):
                raise ValueError(f"config section {name!r} must be a mapping; got {values!r}")
            parts[name] = _build_section(name, section_cls, values)
        finetune = data.get("finetune")
        if finetune is not None and not isinstance(finetune, Mapping):
            raise ValueError(f"config section 'finetune' must be a mapping; got {finetune!r}")
        return cls(**parts, finetune=None if finetune is None else dict(finetune))

    def to_dict(self) -> dict[str, Any]:
        """Nested plain values (JSON-serialisable)."""
        return json.loads(json.dumps(asdict(self)))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _build_section(name: str, section_cls: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(section_cls)
    known = {f.name for f in fields(section_cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} in config section {name!r}; known: {sorted(known)}"
        )
    kwargs = {k: _coerce(f"{name}.{k}", hints[k], v) for k, v in values.items()}
    try:
        return section_cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"config section {name!r}: {err}") from err


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check a YAML value against the annotation (lists become tuples, ints become floats)."""
    if hint is Any:
        return value
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{key} must be a mapping; got {value!r}")
        return {
            _coerce(key, args[0], k): _coerce(f"{key}.{k}", args[1], v) for k, v in value.items()
        }
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(f"{key} must be a list; got {value!r}")
        return tuple(_coerce(key, args[0], v) for v in value)
    expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(hint)
    if expected is None:
        raise TypeError(f"{key}: unsupported config type {hint!r}")  # pragma: no cover
    if not isinstance(value, expected) or (hint is not bool and isinstance(value, bool)):
        raise ValueError(f"{key} must be of type {hint.__name__}; got {value!r}")
    return float(typing.cast(float, value)) if hint is float else value


def load_distill_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> DistillConfig:
    """Read a YAML distillation config and apply dotted-key overrides (``{"run.steps": 10}``).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ImportError: if PyYAML is missing (extra ``train``).
        ValueError: on unknown keys or invalid values.
    """
    data = read_yaml_sections(path, "reading a YAML distillation config")
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        if not sections or not key:
            raise ValueError(f"override keys look like 'section.key'; got {dotted!r}")
        target = data
        for section in sections:
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                raise ValueError(f"cannot override {dotted!r}: {section!r} is not a mapping")
        target[key] = value
    return DistillConfig.from_dict(data)
