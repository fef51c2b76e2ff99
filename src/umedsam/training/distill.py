"""Knowledge distillation of the LiteMedSAM image encoder into a small student encoder.

Stage 1 trains the student encoder alone to reproduce the teacher's image embeddings (MSE plus
an optional per-position cosine term) on LiteMedSAM-preprocessed training images and volume
slices, with random flips. Teacher embeddings come from a
:class:`~umedsam.training.teacher_cache.TeacherEmbeddingCache` (float16 on disk, bounded, keyed
by the teacher checkpoint sha256 and the preprocessing version).

Stage 2 fine-tunes the student together with the mask decoder on masks with the U-MedSAM loss
(and SAM, as configured) through :func:`umedsam.training.trainer.train`.

:func:`distill` runs both stages from a
:class:`~umedsam.training.distill_config.DistillConfig`; ``umedsam distill`` is its CLI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from umedsam.data.dataset import SegmentationDataset
from umedsam.training.distill_config import (
    DistillConfig,
    load_distill_config,
)
from umedsam.training.distill_loop import (
    EmbeddingPool,
    Progress,
    Stage1Loop,
    validation_loss,
)
from umedsam.training.teacher_cache import (
    CacheSignature,
    ExportedTeacher,
    TeacherEmbeddingCache,
    fill_cache,
    select_items,
    teacher_signature,
)

__all__ = [
    "CacheSignature",
    "DistillConfig",
    "DistillResult",
    "TeacherEmbeddingCache",
    "build_student",
    "distill",
    "distill_stage1",
    "export_student_weights",
    "fill_cache",
    "finetune_student",
    "load_distill_config",
    "select_items",
    "teacher_signature",
]

logger = logging.getLogger(__name__)

_MB = 1 << 20


# ---------------------------------------------------------------------------------- stage 1
@dataclass
class DistillResult:
    """Outcome of :func:`distill`.

    Attributes:
        output_dir: where checkpoints and logs are.
        student_weights: weights-only float16 file of the stage-1 student (full model), or None
            when only the cache was filled.
        steps: stage-1 optimizer steps done in total (including before a resume).
        cached_images: teacher embeddings available for training.
        train_loss: mean stage-1 loss over the last logging window (None: no step run).
        val_loss: stage-1 loss on the held-out cached images (None: none held out).
        finetuned_weights: weights-only float16 file after stage 2 (None: no stage 2).
        finetune_metric: stage-2 best metric (validation DSC, or train loss without validation).
    """

    output_dir: Path
    student_weights: Path | None
    steps: int
    cached_images: int
    train_loss: float | None = None
    val_loss: float | None = None
    finetuned_weights: Path | None = None
    finetune_metric: float | None = None


def _load_model(name: str, checkpoint: str | None) -> Any:
    """``name`` with ``checkpoint``: ``default`` is the model's own weights (a shipped model's
    file over its base), None or ``none`` random, anything else a file."""
    from umedsam.models.checkpoint import load_checkpoint
    from umedsam.models.pretrained import load_pretrained
    from umedsam.models.registry import build_model

    if checkpoint == "default":
        return load_pretrained(name)[0]
    model = build_model(name)
    if checkpoint not in (None, "none"):
        load_checkpoint(model, checkpoint)
    return model


def build_student(config: DistillConfig, teacher: Any) -> Any:
    """The student model with the teacher's prompt encoder and mask decoder weights.

    Raises:
        ValueError: if the student's prompt encoder or mask decoder does not have the teacher's
            sizes.
    """
    student = _load_model(config.student.name, None)
    for part in ("prompt_encoder", "mask_decoder"):
        try:
            getattr(student, part).load_state_dict(getattr(teacher, part).state_dict())
        except RuntimeError as err:
            raise ValueError(
                f"student {config.student.name!r} has a {part} of other sizes than teacher "
                f"{config.teacher.name!r}; pair the student with the teacher's sizes ({err})"
            ) from err
    if config.student.init is not None:
        _load_student_init(student, config.student)
    return student


def _load_student_init(student: Any, spec: Any) -> None:
    """Load ``spec.init`` (a file, or ``shipped``) into ``student``, only ``spec.init_parts``."""
    from umedsam.models.cards import shipped_weights
    from umedsam.models.checkpoint import load_checkpoint

    path = spec.init
    if path == "shipped":
        found = shipped_weights(spec.name)
        if found is None or found[0] is not None:
            raise ValueError(
                f"student.init: 'shipped' needs a model shipped whole; {spec.name!r} is not"
            )
        path = found[1]
    if spec.init_parts is None:
        load_checkpoint(student, path)
        return
    prefixes = tuple(f"{part}." for part in spec.init_parts)
    load_checkpoint(
        student,
        path,
        partial=True,
        filter_fn=lambda state: {k: v for k, v in state.items() if k.startswith(prefixes)},
    )


def export_student_weights(
    state: Mapping[str, torch.Tensor] | str | Path,
    path: str | Path,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write a weights-only model file (floating tensors cast to ``dtype``) for shipping.

    Args:
        state: a state dict, or a checkpoint file (training checkpoints are unwrapped).
        path: destination file.
        dtype: floating-point storage dtype (float16 halves the size; loading casts back).

    Returns:
        ``path``.
    """
    from umedsam.models.checkpoint import read_state_dict
    from umedsam.training.checkpointing import save_atomic

    if isinstance(state, str | Path):
        state = read_state_dict(state)
    out = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in state.items()
    }
    return save_atomic(out, path)


def distill_stage1(
    config: DistillConfig,
    *,
    cache_only: bool = False,
    progress: Progress | None = None,
) -> DistillResult:
    """Stage 1: fill the teacher cache, then train the student encoder on the embeddings.

    Writes ``config.json``, ``log.csv``, ``last.pt`` (resumable training checkpoint) and
    ``student.pt`` (weights-only float16 full model) into ``run.output_dir``. A batch depends on
    (seed, step) and the images cached so far only, so a resumed run continues the same plan.

    Args:
        config: the configuration.
        cache_only: stop after filling the cache (run it beside a training run with
            ``data.refresh_every`` set, or ahead of one).
        progress: called with a dict (``phase`` ``cache`` or ``distill`` plus counters/losses).

    Returns:
        A :class:`DistillResult` (``student_weights`` None when ``cache_only``).

    Raises:
        ValueError: no teacher embedding could be cached (e.g. ``cache_max_mb`` too small).
    """
    data, run = config.data, config.run
    if run.num_threads is not None:
        torch.set_num_threads(run.num_threads)
    out = Path(run.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    teacher = _load_model(config.teacher.name, config.teacher.checkpoint).eval()
    dataset, cache, keys = _filled_teacher_cache(config, teacher, progress)
    if cache_only:
        cached = sum(key in cache for key in keys)
        logger.info("teacher cache %s: %d of %d images available", cache.folder, cached, len(keys))
        return DistillResult(out, None, 0, cached)
    # only a training run records its config: a cache fill must not overwrite that record
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
    pool = EmbeddingPool(dataset, cache, keys)
    logger.info(
        "teacher cache %s: %d of %d images available", cache.folder, len(pool.keys), len(keys)
    )
    if not pool.keys:
        raise ValueError(
            f"no teacher embedding is cached in {cache.folder} (cache_max_mb={data.cache_max_mb}, "
            f"cache_time_budget_s={data.cache_time_budget_s}); allow the cache to fill"
        )
    train_pos, val_pos = pool.split(data.val_images)

    with torch.random.fork_rng():
        torch.manual_seed(run.seed)  # the student's initial weights depend on the seed only
        student = build_student(config, teacher)
    del teacher
    params = [p for p in student.image_encoder.parameters() if p.requires_grad]
    for module in (student.prompt_encoder, student.mask_decoder):
        module.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        params, lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    step = _resume_stage1(config, student, optimizer, out)
    if step is None:
        _init_output_statistics(config, student, pool, train_pos)
    trainer = Stage1Loop(config, student, optimizer, params, pool, train_pos, out)
    steps, train_loss = trainer.train(step or 0, resumed=step is not None, progress=progress)
    val_loss = validation_loss(config, student, pool, val_pos)
    weights = export_student_weights(student.state_dict(), out / "student.pt")
    return DistillResult(
        output_dir=out,
        student_weights=weights,
        steps=steps,
        cached_images=len(pool.keys),
        train_loss=train_loss,
        val_loss=val_loss,
    )


def _filled_teacher_cache(
    config: DistillConfig, teacher: Any, progress: Progress | None
) -> tuple[SegmentationDataset, TeacherEmbeddingCache, list[str]]:
    """The stage-1 dataset, the teacher cache filled as far as its budget allows, and the cache
    keys of the images chosen for distillation."""
    from umedsam.data.sources import sources_from_config

    data = config.data
    dataset = SegmentationDataset(
        sources_from_config(
            data.train_root, data.sources, modalities=data.modalities, labelled=False
        ),
        image_size=int(getattr(teacher, "image_size", 256)),
        flips=sorted({name for variant in data.teacher_flips for name in variant}),
        max_box_shift=0,
        min_area=data.min_area,
        slices_per_volume=data.slices_per_volume,
        modalities=data.modalities,
    )
    signature = teacher_signature(config.teacher.name, config.teacher.checkpoint, teacher)
    cache = TeacherEmbeddingCache(data.cache_dir, signature, int(data.cache_max_mb * _MB))
    items = select_items(dataset, max_images=data.max_images, flip_variants=data.teacher_flips)

    def cache_progress(done: int, total: int) -> None:
        if progress is not None:
            progress({"phase": "cache", "done": done, "total": total})

    known = None
    if data.training_cache_dir is not None:
        from umedsam.training.embeddings import FrozenEncoderEmbeddingCache

        known = FrozenEncoderEmbeddingCache(
            teacher, model_name=config.teacher.name, cache_dir=data.training_cache_dir
        ).lookup
    fill_cache(
        teacher
        if config.teacher.engine == "torch"
        else ExportedTeacher(config.teacher.name, config.teacher.checkpoint, config.teacher.engine),
        dataset,
        cache,
        items,
        batch_size=config.teacher.batch_size,
        time_budget_s=data.cache_time_budget_s,
        progress=cache_progress,
        known=known,
    )
    return dataset, cache, [dataset.image_key(i, f) for i, f in items]


def _resume_stage1(
    config: DistillConfig, student: Any, optimizer: torch.optim.Optimizer, out: Path
) -> int | None:
    """The step a resumed stage 1 continues from (weights and optimizer loaded), or None."""
    from umedsam.models.checkpoint import read_state_dict

    resume = config.run.resume
    if resume == "auto":
        resume = str(out / "last.pt") if (out / "last.pt").is_file() else None
    if resume is None:
        return None
    ckpt = torch.load(resume, map_location="cpu", weights_only=True)
    if ckpt.get("model_name") != config.student.name:
        raise ValueError(
            f"{resume}: checkpoint of {ckpt.get('model_name')!r}, not {config.student.name!r}"
        )
    student.load_state_dict(read_state_dict(resume))
    optimizer.load_state_dict(ckpt["optimizer"])
    step = int(ckpt["step"])
    logger.info("resumed stage 1 from %s at step %d", resume, step)
    return step


def _init_output_statistics(
    config: DistillConfig, student: Any, pool: EmbeddingPool, train_pos: list[int]
) -> None:
    """A fresh student encoder's output scale set to the teacher embeddings' (when asked)."""
    if config.student.init is not None or not config.student.init_output_stats:
        return
    setter = getattr(student.image_encoder, "set_output_statistics", None)
    if setter is not None:
        sample = torch.stack([pool.targets[i].float() for i in train_pos[:64]])
        setter(sample.mean(dim=(0, 2, 3)), sample.std(dim=(0, 2, 3)))


# ---------------------------------------------------------------------------------- stage 2
def finetune_student(
    config: DistillConfig, student_weights: str | Path, *, progress: Progress | None = None
) -> tuple[Path, float | None]:
    """Stage 2: fine-tune the student with the mask decoder via ``umedsam.training.trainer``.

    ``config.finetune`` is a ``umedsam train`` config; ``model.name`` and ``model.checkpoint``
    are set to the student and ``student_weights``, ``data.train_root`` defaults to stage 1's,
    ``run.output_dir`` to ``<stage-1 output>/finetune`` and ``run.num_threads`` to stage 1's.

    Returns:
        The weights-only float16 file of the best stage-2 checkpoint
        (``student_finetuned.pt``) and the stage-2 best metric.

    Raises:
        ValueError: no ``finetune`` section, or it sets ``model.name``/``model.checkpoint``.
    """
    from umedsam.training.config import TrainConfig
    from umedsam.training.trainer import train

    if config.finetune is None:
        raise ValueError("the config has no 'finetune' section (stage 2 settings)")
    spec = json.loads(json.dumps(config.finetune))
    model = spec.get("model") or {}
    clash = sorted(set(model) - {"trainable"})
    if clash:
        raise ValueError(
            f"finetune.model may only set 'trainable' (the student comes from stage 1); got {clash}"
        )
    spec["model"] = {**model, "name": config.student.name, "checkpoint": str(student_weights)}
    spec.setdefault("data", {}).setdefault("train_root", config.data.train_root)
    run = spec.setdefault("run", {})
    run.setdefault("output_dir", str(Path(config.run.output_dir) / "finetune"))
    if config.run.num_threads is not None:
        run.setdefault("num_threads", config.run.num_threads)
    train_config = TrainConfig.from_dict(spec)
    result = train(train_config, progress=progress)
    best = result.best_checkpoint or result.last_checkpoint
    weights = export_student_weights(best, Path(config.run.output_dir) / "student_finetuned.pt")
    return weights, result.best_metric


def distill(
    config: DistillConfig,
    *,
    stages: Sequence[int] = (1, 2),
    cache_only: bool = False,
    progress: Progress | None = None,
) -> DistillResult:
    """Run distillation: stage 1 (embedding matching) and, if configured, stage 2 (fine-tuning).

    Args:
        config: the configuration.
        stages: which stages to run; stage 2 alone uses ``<output_dir>/student.pt``.
        cache_only: only fill the teacher cache.
        progress: called with a dict per logged step (``phase``: ``cache``, ``distill`` or the
            stage-2 trainer's rows).

    Returns:
        A :class:`DistillResult`.

    Raises:
        ValueError: unknown stages, or stage 2 without a ``finetune`` section or a stage-1 result.
    """
    bad = [s for s in stages if s not in (1, 2)]
    if bad or not stages:
        raise ValueError(f"stages must be a non-empty subset of [1, 2]; got {list(stages)}")
    out = Path(config.run.output_dir)
    if 1 in stages or cache_only:
        result = distill_stage1(config, cache_only=cache_only, progress=progress)
        if cache_only:
            return result
    else:
        weights = out / "student.pt"
        if not weights.is_file():
            raise ValueError(f"stage 2 needs the stage-1 student {weights}; run stage 1 first")
        result = DistillResult(out, weights, 0, 0)
    if 2 in stages:
        if config.finetune is None:
            if 1 in stages:
                return result
            raise ValueError("stage 2 was requested but the config has no 'finetune' section")
        if result.student_weights is None:  # pragma: no cover - stage 1 always writes it
            raise RuntimeError("stage 1 produced no student weights")
        result.finetuned_weights, result.finetune_metric = finetune_student(
            config, result.student_weights, progress=progress
        )
    return result
