"""Stage 1's training loop of distillation: the student encoder on cached teacher embeddings.

:class:`EmbeddingPool` holds the cached embeddings and their images in memory;
:class:`Stage1Loop` draws one batch per step from (seed, step) and the images cached so far, so a
resumed run continues the same plan; :func:`validation_loss` scores the held-out images.
:mod:`umedsam.training.distill` sets the run up and calls them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from umedsam.data.dataset import SegmentationDataset
from umedsam.training.distill_config import DistillConfig, DistillLossConfig, DistillOptimConfig
from umedsam.training.teacher_cache import TeacherEmbeddingCache

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Format of the resumable stage-1 checkpoint ``last.pt``."""

Progress = Callable[[dict[str, Any]], None]
"""Called with a dict: ``phase`` (``cache`` or ``distill``) and counters or losses."""


class EmbeddingPool:
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
        """Images and target embeddings at ``positions``, each flipped as its ``flips`` row says
        (vertical, horizontal)."""
        images, targets = [], []
        for pos, (fv, fh) in zip(positions, flips.tolist(), strict=True):
            dims = [d for d, on in ((-2, fv), (-1, fh)) if on]
            image, target = self.images[pos].float(), self.targets[pos].float()
            if dims:
                image, target = image.flip(dims), target.flip(dims)
            images.append(image)
            targets.append(target)
        return torch.stack(images), torch.stack(targets)


def modality_groups(pool: EmbeddingPool, positions: Sequence[int]) -> dict[str, list[int]]:
    """Pool positions by modality (read from the case name in each key)."""
    from umedsam.data.naming import modality_from_name

    groups: dict[str, list[int]] = {}
    for pos in positions:
        groups.setdefault(modality_from_name(pool.keys[pos].split("|")[1]), []).append(pos)
    return groups


def balanced_picks(
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


def lr_at(step: int, optim: DistillOptimConfig, total: int) -> float:
    """Learning rate at ``step`` of ``total``: linear warm-up, then cosine to ``min_lr_ratio``."""
    if optim.warmup_steps and step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    span = max(1, total - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    floor = optim.lr * optim.min_lr_ratio
    return floor + 0.5 * (optim.lr - floor) * (1 + math.cos(math.pi * progress))


def distill_loss(
    pred: torch.Tensor, target: torch.Tensor, loss: DistillLossConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weighted loss, MSE, mean 1 - cosine over positions) of student against teacher embeddings."""
    mse = F.mse_loss(pred, target)
    cosine = (1 - F.cosine_similarity(pred, target, dim=1)).mean()
    return loss.mse_weight * mse + loss.cosine_weight * cosine, mse, cosine


class Stage1Loop:
    """Stage 1's training loop: one batch per step from (seed, step) and the cached images,
    a CSV log row every ``log_every_steps``, ``last.pt`` every ``save_every_steps``."""

    def __init__(
        self,
        config: DistillConfig,
        student: Any,
        optimizer: torch.optim.Optimizer,
        params: list[torch.nn.Parameter],
        pool: EmbeddingPool,
        train_pos: list[int],
        out: Path,
    ) -> None:
        self.config, self.student, self.optimizer, self.params = config, student, optimizer, params
        self.pool, self.train_pos, self.out = pool, train_pos, out
        self.groups: dict[str, list[int]] | None = None  # balanced draws: positions by modality

    def train(
        self, step: int, *, resumed: bool, progress: Progress | None
    ) -> tuple[int, float | None]:
        """Train from ``step`` to ``run.steps`` (or the time budget); (last step, train loss)."""
        from umedsam.training.checkpointing import CsvLog

        run = self.config.run
        log = CsvLog(
            self.out / "log.csv", ["step", "loss", "mse", "cosine", "lr", "seconds", "images"]
        )
        log.start(step if resumed else None)
        window: list[tuple[float, float, float]] = []
        train_loss = None
        start = time.perf_counter()
        self.student.train()
        while step < run.steps:
            if run.time_budget_s is not None and time.perf_counter() - start >= run.time_budget_s:
                logger.info("stage 1 stopped by its time budget at step %d", step)
                break
            t0 = time.perf_counter()
            lr, losses = self._step(step)
            step += 1
            window.append(losses)
            if step % run.log_every_steps == 0 or step == run.steps:
                mean = np.mean(window, axis=0)
                train_loss = float(mean[0])
                row = {"step": step, "loss": train_loss, "mse": float(mean[1]),
                       "cosine": float(mean[2]), "lr": lr, "seconds": time.perf_counter() - t0,
                       "images": len(self.train_pos)}  # fmt: skip
                log.append(row)
                logger.info(
                    "step %d/%d loss %.4f (mse %.4f, 1-cos %.4f) lr %.2e %.1fs/step",
                    step, run.steps, row["loss"], row["mse"], row["cosine"], lr, row["seconds"],
                )  # fmt: skip
                window = []
                if progress is not None:
                    progress({"phase": "distill", **row})
            if step % run.save_every_steps == 0:
                self.save(step)
        self.save(step)
        return step, train_loss

    def _step(self, step: int) -> tuple[float, tuple[float, float, float]]:
        """One optimizer step at ``step``: its learning rate and (loss, mse, 1 - cosine)."""
        data, run, optim = self.config.data, self.config.run, self.config.optim
        if data.refresh_every and step % data.refresh_every == 0 and self.pool.pending:
            first_new = len(self.pool.keys)
            if self.pool.refresh():
                self.train_pos.extend(range(first_new, len(self.pool.keys)))
                logger.info("training on %d cached images", len(self.train_pos))
        gen = torch.Generator().manual_seed(run.seed * 1_000_003 + step)
        if data.balanced:
            if self.groups is None or sum(map(len, self.groups.values())) != len(self.train_pos):
                self.groups = modality_groups(self.pool, self.train_pos)  # first, or images added
            chosen = balanced_picks(self.groups, data.modality_weights, run.batch_size, gen)
        else:
            picks = torch.randint(len(self.train_pos), (run.batch_size,), generator=gen)
            chosen = [self.train_pos[int(i)] for i in picks]
        flips = torch.rand(run.batch_size, 2, generator=gen) < 0.5
        if not data.tensor_flips:
            flips[:] = False
        images, targets = self.pool.batch(chosen, flips)
        lr = lr_at(step, optim, run.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, mse, cosine = distill_loss(self.student.encode(images), targets, self.config.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if optim.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, optim.max_grad_norm)
        self.optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"stage-1 loss is {value} at step {step + 1}")
        return lr, (value, float(mse.detach()), float(cosine.detach()))

    def save(self, step: int) -> None:
        """Write the resumable ``last.pt`` at ``step``."""
        from umedsam.training.checkpointing import save_atomic

        save_atomic(
            {
                "format_version": FORMAT_VERSION,
                "model_name": self.config.student.name,
                "config": self.config.to_dict(),
                "model": self.student.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "epoch": 0,
                "step": step,
                "best_metric": None,
            },
            self.out / "last.pt",
        )


def validation_loss(
    config: DistillConfig, student: Any, pool: EmbeddingPool, val_pos: list[int]
) -> float | None:
    """Mean distillation loss on the held-out cached images (None without any)."""
    if not val_pos:
        return None
    student.eval()
    losses = []
    batch = config.run.batch_size
    with torch.inference_mode():
        for begin in range(0, len(val_pos), batch):
            chunk = val_pos[begin : begin + batch]
            images, targets = pool.batch(chunk, torch.zeros(len(chunk), 2, dtype=torch.bool))
            losses.append(
                float(distill_loss(student.encode(images), targets, config.loss)[0]) * len(chunk)
            )
    val_loss = sum(losses) / len(val_pos)
    logger.info("stage-1 validation loss %.4f on %d held-out images", val_loss, len(val_pos))
    return val_loss
