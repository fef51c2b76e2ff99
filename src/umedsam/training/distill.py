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
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from umedsam.data.dataset import SegmentationDataset
from umedsam.training.distill_config import (
    DistillConfig,
    DistillLossConfig,
    DistillOptimConfig,
    load_distill_config,
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

FORMAT_VERSION = 1
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


Progress = Callable[[dict[str, Any]], None]


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


class _Pool:
    """Cached teacher embeddings and their preprocessed images, in memory as float16."""

    def __init__(self, dataset: SegmentationDataset, cache: TeacherEmbeddingCache, keys: list[str]):
        self.dataset = dataset
        self.cache = cache
        self.pending = list(keys)
        self.keys: list[str] = []
        self.images: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.refresh()

    def refresh(self) -> int:
        """Load the entries cached since the last call; returns how many were added."""
        still = []
        added = 0
        for key in self.pending:
            emb = self.cache.get(key) if key in self.cache else None
            if emb is None:
                still.append(key)
                continue
            self.keys.append(key)
            self.targets.append(emb)
            self.images.append(self.dataset.image_for_key(key).to(torch.float16))
            added += 1
        self.pending = still
        return added

    def split(self, val_images: int) -> tuple[list[int], list[int]]:
        """(train, val) positions; val spread evenly over the priority order."""
        n = len(self.keys)
        if val_images <= 0 or n < 2:
            return list(range(n)), []
        val_images = min(val_images, n // 2)
        val = sorted({int(round(v)) for v in np.linspace(n - 1, 0, val_images)})
        held = set(val)
        return [i for i in range(n) if i not in held], val

    def batch(
        self, positions: Sequence[int], flips: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = [], []
        for pos, (fv, fh) in zip(positions, flips.tolist(), strict=True):
            dims = [d for d, on in ((-2, fv), (-1, fh)) if on]
            image, target = self.images[pos].float(), self.targets[pos].float()
            if dims:
                image, target = image.flip(dims), target.flip(dims)
            images.append(image)
            targets.append(target)
        return torch.stack(images), torch.stack(targets)


def _modality_groups(pool: _Pool, positions: Sequence[int]) -> dict[str, list[int]]:
    """Pool positions by modality (read from the case name in each key)."""
    from umedsam.data.naming import modality_from_name

    groups: dict[str, list[int]] = {}
    for pos in positions:
        groups.setdefault(modality_from_name(pool.keys[pos].split("|")[1]), []).append(pos)
    return groups


def _balanced_picks(
    groups: Mapping[str, Sequence[int]],
    weights: Mapping[str, float] | None,
    count: int,
    gen: torch.Generator,
) -> list[int]:
    """``count`` pool positions: a modality drawn by ``weights`` (default 1 each), then an image."""
    names = sorted(groups)
    probs = torch.tensor([float((weights or {}).get(m, 1.0)) for m in names], dtype=torch.float64)
    if float(probs.sum()) <= 0:
        raise ValueError(f"data.modality_weights leave no modality to draw: {dict(weights or {})}")
    modality = torch.multinomial(probs, count, replacement=True, generator=gen)
    chosen = []
    for g in modality.tolist():
        members = groups[names[g]]
        chosen.append(members[int(torch.randint(len(members), (1,), generator=gen))])
    return chosen


def _lr_at(step: int, optim: DistillOptimConfig, total: int) -> float:
    if optim.warmup_steps and step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    span = max(1, total - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    floor = optim.lr * optim.min_lr_ratio
    return floor + 0.5 * (optim.lr - floor) * (1 + math.cos(math.pi * progress))


def _distill_loss(
    pred: torch.Tensor, target: torch.Tensor, loss: DistillLossConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mse = F.mse_loss(pred, target)
    cosine = (1 - F.cosine_similarity(pred, target, dim=1)).mean()
    return loss.mse_weight * mse + loss.cosine_weight * cosine, mse, cosine


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
    from umedsam.models.checkpoint import read_state_dict
    from umedsam.training.checkpointing import CsvLog, save_atomic

    data, run = config.data, config.run
    if run.num_threads is not None:
        torch.set_num_threads(run.num_threads)
    out = Path(run.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    teacher = _load_model(config.teacher.name, config.teacher.checkpoint).eval()
    from umedsam.data.sources import sources_from_config

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
    keys = [dataset.image_key(i, f) for i, f in items]

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
    del known  # the copied embeddings are in the teacher cache now
    if cache_only:
        cached = sum(key in cache for key in keys)
        logger.info("teacher cache %s: %d of %d images available", cache.folder, cached, len(keys))
        return DistillResult(out, None, 0, cached)
    # only a training run records its config: a cache fill must not overwrite that record
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
    pool = _Pool(dataset, cache, keys)
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
    encoder = student.image_encoder
    params = [p for p in encoder.parameters() if p.requires_grad]
    for module in (student.prompt_encoder, student.mask_decoder):
        module.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        params, lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )

    step = 0
    resume = run.resume
    if resume == "auto":
        resume = str(out / "last.pt") if (out / "last.pt").is_file() else None
    if resume is not None:
        ckpt = torch.load(resume, map_location="cpu", weights_only=True)
        if ckpt.get("model_name") != config.student.name:
            raise ValueError(
                f"{resume}: checkpoint of {ckpt.get('model_name')!r}, not {config.student.name!r}"
            )
        student.load_state_dict(read_state_dict(resume))
        optimizer.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        logger.info("resumed stage 1 from %s at step %d", resume, step)
    elif config.student.init is None and config.student.init_output_stats:
        setter = getattr(encoder, "set_output_statistics", None)
        if setter is not None:
            sample = torch.stack([pool.targets[i].float() for i in train_pos[:64]])
            setter(sample.mean(dim=(0, 2, 3)), sample.std(dim=(0, 2, 3)))

    log = CsvLog(out / "log.csv", ["step", "loss", "mse", "cosine", "lr", "seconds", "images"])
    log.start(step if resume is not None else None)

    def save_last() -> None:
        save_atomic(
            {
                "format_version": FORMAT_VERSION,
                "model_name": config.student.name,
                "config": config.to_dict(),
                "model": student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": 0,
                "step": step,
                "best_metric": None,
            },
            out / "last.pt",
        )

    window: list[tuple[float, float, float]] = []
    groups: dict[str, list[int]] | None = None  # balanced draws: train positions by modality
    train_loss = None
    start = time.perf_counter()
    student.train()
    while step < run.steps:
        if run.time_budget_s is not None and time.perf_counter() - start >= run.time_budget_s:
            logger.info("stage 1 stopped by its time budget at step %d", step)
            break
        if data.refresh_every and step % data.refresh_every == 0 and pool.pending:
            first_new = len(pool.keys)
            if pool.refresh():
                train_pos.extend(range(first_new, len(pool.keys)))
                logger.info("training on %d cached images", len(train_pos))
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(run.seed * 1_000_003 + step)
        if data.balanced:
            if groups is None or sum(map(len, groups.values())) != len(train_pos):
                groups = _modality_groups(pool, train_pos)  # first step, or images added
            chosen = _balanced_picks(groups, data.modality_weights, run.batch_size, gen)
        else:
            picks = torch.randint(len(train_pos), (run.batch_size,), generator=gen)
            chosen = [train_pos[int(i)] for i in picks]
        flips = torch.rand(run.batch_size, 2, generator=gen) < 0.5
        if not data.tensor_flips:
            flips[:] = False
        images, targets = pool.batch(chosen, flips)
        lr = _lr_at(step, config.optim, run.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, mse, cosine = _distill_loss(student.encode(images), targets, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.optim.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.optim.max_grad_norm)
        optimizer.step()
        step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"stage-1 loss is {value} at step {step}")
        window.append((value, float(mse.detach()), float(cosine.detach())))
        seconds = time.perf_counter() - t0
        if step % run.log_every_steps == 0 or step == run.steps:
            mean = np.mean(window, axis=0)
            train_loss = float(mean[0])
            row = {
                "step": step,
                "loss": train_loss,
                "mse": float(mean[1]),
                "cosine": float(mean[2]),
                "lr": lr,
                "seconds": seconds,
                "images": len(train_pos),
            }
            log.append(row)
            logger.info(
                "step %d/%d loss %.4f (mse %.4f, 1-cos %.4f) lr %.2e %.1fs/step",
                step,
                run.steps,
                row["loss"],
                row["mse"],
                row["cosine"],
                lr,
                seconds,
            )
            window = []
            if progress is not None:
                progress({"phase": "distill", **row})
        if step % run.save_every_steps == 0:
            save_last()
    save_last()

    val_loss = None
    if val_pos:
        student.eval()
        losses = []
        with torch.inference_mode():
            for begin in range(0, len(val_pos), run.batch_size):
                chunk = val_pos[begin : begin + run.batch_size]
                images, targets = pool.batch(chunk, torch.zeros(len(chunk), 2, dtype=torch.bool))
                losses.append(
                    float(_distill_loss(student.encode(images), targets, config.loss)[0])
                    * len(chunk)
                )
        val_loss = sum(losses) / len(val_pos)
        logger.info("stage-1 validation loss %.4f on %d held-out images", val_loss, len(val_pos))
    weights = export_student_weights(student.state_dict(), out / "student.pt")
    return DistillResult(
        output_dir=out,
        student_weights=weights,
        steps=step,
        cached_images=len(pool.keys),
        train_loss=train_loss,
        val_loss=val_loss,
    )


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
