"""The training loop: fine-tune (Lite)MedSAM with the uncertainty-weighted loss, optionally SAM.

``train(config)`` builds everything from a :class:`~umedsam.training.config.TrainConfig`, runs
the epochs and writes ``last.pt``/``best.pt``, ``log.csv`` (every step: each loss term and
weight, learning rate, step time) and ``epochs.csv`` (train loss, validation DSC) into
``run.output_dir``. Runs are exactly resumable: the sample order and augmentations of a step are
functions of (seed, epoch, position) only, and a checkpoint records where to continue, so
interrupting after k steps and resuming gives the same next losses as an uninterrupted run.
Launched by ``torchrun``, each process takes every ``world_size``-th sample and the model (with
the loss's learned weights) is wrapped in DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from umedsam.data.dataset import SegmentationDataset, TrainingSample, sample_rng
from umedsam.losses.shape import shape_distance_target
from umedsam.losses.uncertainty import LossOutput, UncertaintyWeightedLoss
from umedsam.optim.sam import SAM, sam_step
from umedsam.training.builders import (
    build_datasets,
    build_logs,
    build_loss,
    build_model,
    build_optimization,
    set_trainable,
    uses_embedding_cache,
    wrap_distributed,
)
from umedsam.training.checkpointing import FORMAT_VERSION, load_training_checkpoint, save_atomic
from umedsam.training.config import TrainConfig
from umedsam.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    broadcast_float,
    check_replicas_in_sync,
    setup_distributed,
    shard_batches,
    teardown,
)
from umedsam.training.embeddings import FrozenEncoderEmbeddingCache
from umedsam.training.interaction import Rollout, interactive_loss

__all__ = ["LossHead", "TrainResult", "Trainer", "train"]

logger = logging.getLogger(__name__)

# Settings that must match between a checkpoint and the config resuming it.
_RESUME_MUST_MATCH = (
    ("model", "name"),
    ("model", "trainable"),
    ("loss", "terms"),
    ("loss", "mode"),
    ("optim", "name"),
    ("optim", "sharpness"),
)


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        output_dir: where checkpoints and logs are.
        last_checkpoint: path of ``last.pt``.
        best_checkpoint: path of ``best.pt`` (None if no epoch finished).
        best_metric: best validation DSC (or lowest train loss without validation).
        steps: optimizer steps done in total (including before a resume).
        stopped_early: True when ``max_steps`` or ``time_budget_s`` ended the run.
        step_losses: total loss of each step run in this call.
        train_seconds: time spent in training steps in this call.
        samples: training samples processed in this call (this process).
    """

    output_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_metric: float | None
    steps: int
    stopped_early: bool
    step_losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    samples: int = 0


class LossHead(nn.Module):
    """The model and the loss as one module, so DDP synchronises the learned loss weights too.

    ``forward(inputs, boxes, targets, shape_targets)``: ``inputs`` are images ``(B, 3, S, S)``,
    or cached embeddings when ``embeddings_in`` is True.
    """

    def __init__(self, model: Any, criterion: UncertaintyWeightedLoss, embeddings_in: bool):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.embeddings_in = embeddings_in

    def forward(
        self,
        inputs: torch.Tensor,
        boxes: torch.Tensor,
        targets: torch.Tensor,
        shape_targets: torch.Tensor | None = None,
        rollout: Rollout | None = None,
    ) -> LossOutput:
        embeddings = inputs if self.embeddings_in else self.model.encode(inputs)
        if rollout is not None:  # simulated interaction: loss over every round
            return interactive_loss(
                self.model, self.criterion, embeddings, targets, rollout, shape_targets
            )
        logits, iou_pred = self.model.decode(embeddings, boxes)
        return self.criterion(logits.float(), iou_pred.float(), targets, shape_targets)


class Trainer:
    """Holds the training state; see :func:`train` for the usual entry point.

    Args:
        config: the full configuration.
        progress: called after every step with a dict (epoch, step, loss, lr, ...).
        dist_info: process placement (default: from the torchrun environment).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        progress: Callable[[dict[str, Any]], None] | None = None,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.dist = dist_info or setup_distributed(config.run.device)
        run = config.run
        if run.amp and self.dist.device.type != "cuda":
            raise ValueError("run.amp needs a CUDA device; set run.device to 'cuda' or amp false")
        if not config.data.train_root and not config.data.sources:
            raise ValueError(
                "data.train_root (a folder with imgs/ and gts/) or data.sources is required"
            )
        self.output_dir = Path(run.output_dir)
        torch.manual_seed(run.seed)
        self.model = build_model(config.model).to(self.dist.device)
        set_trainable(self.model, self.config.model.trainable)
        self.use_cache = uses_embedding_cache(config.data, config.model)
        self.train_set, self.val_set = build_datasets(
            config.data, image_size=int(self.model.image_size), load_images=not self.use_cache
        )
        self.cache: FrozenEncoderEmbeddingCache | None = None
        if self.use_cache:
            self.cache = FrozenEncoderEmbeddingCache(
                self.model,
                model_name=config.model.name,
                cache_dir=config.data.cache_dir,
                device=self.dist.device,
            )
        self.criterion = build_loss(config.loss, self.dist.device)
        self.head: nn.Module = wrap_distributed(
            LossHead(self.model, self.criterion, embeddings_in=self.use_cache), self.dist
        )
        self.optimizer, self.scheduler = build_optimization(
            config.optim, self.model, self.criterion, has_validation=self.val_set is not None
        )
        self.scaler = torch.amp.GradScaler("cuda") if run.amp else None
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.best_metric: float | None = None
        self._epoch_loss_sum = 0.0
        self._epoch_loss_count = 0
        self.terms = list(self.criterion.terms)
        self.step_log, self.epoch_log = build_logs(self.output_dir, self.terms)
        resume_step = self._maybe_resume()
        if self.dist.is_main:
            self.step_log.start(resume_step)
            self.epoch_log.start(resume_step)
            self._write_config()

    # ----------------------------------------------------------------------------------- setup
    def _write_config(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            import yaml
        except ImportError:  # pragma: no cover - yaml is in the train extra
            return
        text = yaml.safe_dump(_plain(self.config.to_dict()), sort_keys=False)
        (self.output_dir / "config.yaml").write_text(text, encoding="utf-8")

    def _maybe_resume(self) -> int | None:
        resume = self.config.run.resume
        if resume is None:
            return None
        path = self.output_dir / "last.pt" if resume == "auto" else Path(resume)
        if resume == "auto" and not path.is_file():
            logger.info("no %s yet: starting a new run", path)
            return None
        ckpt = load_training_checkpoint(path)
        self.load_state(ckpt)
        logger.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)
        return self.step

    # ----------------------------------------------------------------------------- state I/O
    def state(self) -> dict[str, Any]:
        """The full training checkpoint (see ``umedsam.training.checkpointing``)."""
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format_version": FORMAT_VERSION,
            "model_name": self.config.model.name,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "loss": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "epoch_loss": [self._epoch_loss_sum, self._epoch_loss_count],
            "loss_weights": {k: float(v) for k, v in self._weights().items()},
            "rng": rng,
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Restore from :meth:`state` output.

        Raises:
            ValueError: if the checkpoint's model/loss/optimizer settings differ from the config.
        """
        stored = ckpt["config"]
        current = self.config.to_dict()
        diffs = [
            f"{s}.{k}: checkpoint {stored.get(s, {}).get(k)!r} vs config {current[s][k]!r}"
            for s, k in _RESUME_MUST_MATCH
            if _plain(stored.get(s, {}).get(k)) != _plain(current[s][k])
        ]
        if diffs:
            raise ValueError("cannot resume with different settings: " + "; ".join(diffs))
        self.model.load_state_dict(ckpt["model"])
        self.criterion.load_state_dict(ckpt["loss"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch = int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        self.step = int(ckpt["step"])
        self.best_metric = ckpt.get("best_metric")
        self._epoch_loss_sum, self._epoch_loss_count = ckpt.get("epoch_loss", [0.0, 0])
        rng = ckpt.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def save(self, name: str) -> Path:
        """Write the checkpoint ``output_dir/name`` (main process only)."""
        path = self.output_dir / name
        if self.dist.is_main:
            save_atomic(self.state(), path)
        return path

    # ------------------------------------------------------------------------------ batches
    def _weights(self) -> dict[str, float]:
        with torch.no_grad():
            w = self.criterion.current_weights()
        return {t: float(w[i]) for i, t in enumerate(self.terms)}

    def _inputs(self, samples: list[TrainingSample], dataset: SegmentationDataset) -> torch.Tensor:
        if self.cache is not None:
            return self.cache.get([s.image_key for s in samples], dataset.image_for_key)
        images = [s.image for s in samples]
        if any(image is None for image in images):
            raise RuntimeError(
                "samples carry no images; the dataset was built for cached embeddings"
            )
        return torch.stack(typing.cast(list[torch.Tensor], images)).to(self.dist.device)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This process's batches of sample positions for ``epoch`` (see :func:`shard_batches`)."""
        run, data = self.config.run, self.config.data
        order_len = len(
            self.train_set.epoch_order(
                seed=run.seed,
                epoch=epoch,
                num_samples=data.samples_per_epoch,
                balanced=data.balanced,
                modality_weights=data.modality_weights,
            )
        )
        return shard_batches(order_len, self.dist.rank, self.dist.world_size, run.batch_size)

    # --------------------------------------------------------------------------------- steps
    def _train_step(self, samples: list[TrainingSample]) -> LossOutput:
        inputs = self._inputs(samples, self.train_set)
        device = self.dist.device
        boxes = torch.stack([s.box for s in samples]).to(device)
        targets = torch.stack([s.mask for s in samples]).to(device)
        shape_targets = shape_distance_target(targets) if "shape" in self.terms else None
        amp = (
            torch.autocast(device_type="cuda", dtype=torch.float16)
            if self.scaler is not None
            else contextlib.nullcontext()
        )

        rollout = None
        if self.config.interaction.enabled:
            rng = np.random.default_rng([self.config.run.seed, self.epoch, self.batch_in_epoch, 17])
            rollout = Rollout(
                (targets[:, 0] > 0.5).cpu().numpy(),
                boxes.cpu().numpy(),
                rng,
                self.config.interaction,
            )

        def compute() -> LossOutput:
            with amp:
                return self.head(inputs, boxes, targets, shape_targets, rollout=rollout)

        max_norm = self.config.optim.max_grad_norm
        if isinstance(self.optimizer, SAM):
            first, _ = sam_step(
                self.optimizer, compute, model=self.head, scaler=self.scaler, max_grad_norm=max_norm
            )
            return first
        self.optimizer.zero_grad()
        out = compute()
        if self.scaler is not None:
            self.scaler.scale(out.total).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            out.total.backward()
        if max_norm is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return out

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean box-prompted DSC over every object of the validation set (model frame).

        Each 2D case and each kept slice of a volume is prompted with each object's tight box
        (no jitter, no flip); DSC compares ``logits > 0`` with the object's mask inside the
        image area. Runs on the main process; returns None without a validation set.
        """
        if self.val_set is None:
            return None
        self.model.eval()
        scores: list[float] = []
        for index, ref in enumerate(self.val_set.refs):
            samples = [self.val_set.make_sample(index, label) for label in ref.labels]
            inputs = self._inputs(samples[:1], self.val_set)
            embeddings = inputs if self.cache is not None else self.model.encode(inputs)
            boxes = torch.stack([s.box for s in samples]).to(self.dist.device)
            logits, _ = self.model.decode(embeddings, boxes)
            h, w = samples[0].new_hw
            pred = (logits[:, 0, :h, :w] > 0).cpu()
            gt = torch.stack([s.mask[0, :h, :w] > 0.5 for s in samples])
            inter = (pred & gt).sum((1, 2)).double()
            total = pred.sum((1, 2)).double() + gt.sum((1, 2)).double()
            dsc = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
            scores.extend(dsc.tolist())
        set_trainable(self.model, self.config.model.trainable)
        return float(np.mean(scores)) if scores else None

    # ---------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Run (or continue) training until the epochs, ``max_steps`` or the time budget end."""
        run = self.config.run
        result = TrainResult(
            output_dir=self.output_dir,
            last_checkpoint=self.output_dir / "last.pt",
            best_checkpoint=None,
            best_metric=self.best_metric,
            steps=self.step,
            stopped_early=False,
        )
        if (self.output_dir / "best.pt").is_file():
            result.best_checkpoint = self.output_dir / "best.pt"
        start = time.perf_counter()
        while self.epoch < run.epochs:
            epoch_start = time.perf_counter()
            batches = self.epoch_batches(self.epoch)
            order = self.train_set.epoch_order(
                seed=run.seed,
                epoch=self.epoch,
                num_samples=self.config.data.samples_per_epoch,
                balanced=self.config.data.balanced,
                modality_weights=self.config.data.modality_weights,
            )
            while self.batch_in_epoch < len(batches):
                if self._out_of_budget(start):
                    result.stopped_early = True
                    break
                positions = batches[self.batch_in_epoch]
                samples = [
                    self.train_set.sample(int(order[p]), sample_rng(run.seed, self.epoch, p))
                    for p in positions
                ]
                t0 = time.perf_counter()
                out = self._train_step(samples)
                seconds = time.perf_counter() - t0
                self.batch_in_epoch += 1
                self.step += 1
                total = float(out.total.detach())
                if not math.isfinite(total):
                    raise FloatingPointError(
                        f"loss is {total} at step {self.step}; terms "
                        f"{ {k: float(v) for k, v in out.terms.items()} }"
                    )
                self._epoch_loss_sum += total
                self._epoch_loss_count += 1
                result.step_losses.append(total)
                result.train_seconds += seconds
                result.samples += len(samples)
                self._log_step(out, seconds)
                if run.save_every_steps and self.step % run.save_every_steps == 0:
                    self.save("last.pt")
            if result.stopped_early:
                break
            self._end_epoch(time.perf_counter() - epoch_start, result)
        self.save("last.pt")
        check_replicas_in_sync(self.head, self.dist)
        barrier(self.dist)
        result.steps = self.step
        result.best_metric = self.best_metric
        return result

    def _out_of_budget(self, start: float) -> bool:
        run = self.config.run
        if run.max_steps is not None and self.step >= run.max_steps:
            return True
        if run.time_budget_s is not None:
            elapsed = broadcast_float(time.perf_counter() - start, self.dist) or 0.0
            return elapsed >= run.time_budget_s
        return False

    def _log_step(self, out: LossOutput, seconds: float) -> None:
        row: dict[str, Any] = {
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch_in_epoch - 1,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "step_seconds": seconds,
            "loss_total": float(out.total.detach()),
        }
        for t in self.terms:
            row[f"loss_{t}"] = float(out.terms[t])
            row[f"weight_{t}"] = float(out.weights[t])
        if self.dist.is_main:
            self.step_log.append(row)
        if self.progress is not None:
            self.progress(row)

    def _end_epoch(self, seconds: float, result: TrainResult) -> None:
        count = max(self._epoch_loss_count, 1)
        train_loss = all_reduce_mean(self._epoch_loss_sum / count, self.dist)
        val = self.validate() if self.dist.is_main else None
        val = broadcast_float(val, self.dist)
        o = self.config.optim
        if self.scheduler is not None:
            metric = val if o.plateau_metric == "val_dsc" else train_loss
            if metric is not None:
                self.scheduler.step(metric)
        better = False
        if val is not None:
            better = self.best_metric is None or val > self.best_metric
            current = val
        else:
            better = self.best_metric is None or train_loss < self.best_metric
            current = train_loss
        logger.info(
            "epoch %d: train loss %.4f, val DSC %s, lr %.3g",
            self.epoch,
            train_loss,
            "n/a" if val is None else f"{val:.4f}",
            self.optimizer.param_groups[0]["lr"],
        )
        if self.dist.is_main:
            self.epoch_log.append(
                {
                    "step": self.step,
                    "epoch": self.epoch,
                    "train_loss": train_loss,
                    "val_dsc": "" if val is None else val,
                    "lr": float(self.optimizer.param_groups[0]["lr"]),
                    "epoch_seconds": seconds,
                }
            )
        self.epoch += 1
        self.batch_in_epoch = 0
        self._epoch_loss_sum, self._epoch_loss_count = 0.0, 0
        if better:
            self.best_metric = current
            result.best_checkpoint = self.save("best.pt")
        self.save("last.pt")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def train(
    config: TrainConfig, *, progress: Callable[[dict[str, Any]], None] | None = None
) -> TrainResult:
    """Train according to ``config`` (joining a torchrun process group if launched by one).

    Args:
        config: the training configuration.
        progress: called after every step with the logged values.

    Returns:
        A :class:`TrainResult`.
    """
    if config.run.num_threads is not None:
        torch.set_num_threads(config.run.num_threads)
    info = setup_distributed(config.run.device)
    try:
        trainer = Trainer(config, progress=progress, dist_info=info)
        result = trainer.fit()
        # The DDP wrapper (and its gradient reducer) must be gone before its process group is:
        # destroying the group under a live reducer made gloo abort some processes at exit.
        del trainer
        return result
    finally:
        teardown(info)
