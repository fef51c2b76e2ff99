"""What a training run is made of, built from one config section each.

:class:`umedsam.training.trainer.Trainer` calls these in order: the model (and which parts
train), the datasets (and whether embeddings are cached), the loss, the DDP wrapper, the
optimizer and scheduler, and the CSV logs. Each builder is a plain function of its config section, so it can be reused
and tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from umedsam.data.dataset import SegmentationDataset
from umedsam.losses.uncertainty import UncertaintyWeightedLoss
from umedsam.optim.factory import build_optimizer, build_scheduler
from umedsam.training.checkpointing import CsvLog
from umedsam.training.config import DataConfig, LossConfig, ModelConfig, OptimConfig
from umedsam.training.distributed import DistInfo

__all__ = [
    "build_datasets",
    "build_logs",
    "build_loss",
    "build_model",
    "build_optimization",
    "set_trainable",
    "uses_embedding_cache",
    "wrap_distributed",
]


def build_model(config: ModelConfig) -> Any:
    """The registered model ``config.name`` with the weights ``config.checkpoint`` names.

    ``"default"`` loads the model's own weights (the bundled LiteMedSAM weights for
    ``litemedsam``; the shipped file, over its base, for a shipped model, so a run can continue
    from ``umedsam_interactive``), ``"none"`` keeps the random initialisation and any other value
    is a checkpoint path.
    """
    from umedsam.models.checkpoint import load_checkpoint
    from umedsam.models.pretrained import load_pretrained
    from umedsam.models.registry import build_model as build_registered

    if config.checkpoint == "default":
        return load_pretrained(config.name)[0]
    model = build_registered(config.name)
    if config.checkpoint != "none":
        load_checkpoint(model, config.checkpoint)
    return model


def set_trainable(model: nn.Module, parts: Iterable[str]) -> None:
    """Freeze ``model`` (in eval mode), then unfreeze ``parts`` and put them in train mode.

    Args:
        model: a model with the named sub-modules (``image_encoder``, ``mask_decoder``, ...).
        parts: names of the sub-modules to train.
    """
    model.requires_grad_(False)
    model.eval()
    for part in set(parts):
        module = getattr(model, part)
        module.requires_grad_(True)
        module.train()


def uses_embedding_cache(data: DataConfig, model: ModelConfig) -> bool:
    """True when image embeddings are cached: asked for, and the image encoder is frozen."""
    return data.cache_embeddings and "image_encoder" not in model.trainable


def build_datasets(
    data: DataConfig, *, image_size: int, load_images: bool
) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The training set and the validation set (None without ``data.val_root``/``val_sources``).

    Validation items have no box jitter and no flips and keep ``data.val_slices_per_volume``
    slices of each volume.

    Args:
        data: the data section.
        image_size: side of the model frame (``model.image_size``).
        load_images: False when images are only needed on embedding-cache misses.
    """
    from umedsam.data.sources import sources_from_config

    train_set = SegmentationDataset(
        sources_from_config(data.train_root, data.sources, modalities=data.modalities),
        image_size=image_size,
        max_box_shift=data.max_box_shift,
        flips=data.flips,
        min_area=data.min_area,
        slices_per_volume=data.slices_per_volume,
        modalities=data.modalities,
        load_images=load_images,
        neighbour_box_prob=data.neighbour_box_prob,
    )
    val_set = None
    if data.val_root or data.val_sources:
        val_set = SegmentationDataset(
            sources_from_config(data.val_root, data.val_sources, modalities=data.modalities),
            image_size=image_size,
            max_box_shift=0,
            flips=(),
            min_area=data.min_area,
            slices_per_volume=data.val_slices_per_volume,
            modalities=data.modalities,
            load_images=load_images,
        )
    return train_set, val_set


def build_loss(config: LossConfig, device: torch.device) -> UncertaintyWeightedLoss:
    """The uncertainty-weighted loss over ``config.terms``, on ``device``."""
    return UncertaintyWeightedLoss(
        config.terms, mode=config.mode, fixed_weights=config.fixed_weights, init=config.init
    ).to(device)


def wrap_distributed(module: nn.Module, dist: DistInfo) -> nn.Module:
    """``module`` in DistributedDataParallel when the run has several processes, else as is."""
    if not dist.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def build_optimization(
    config: OptimConfig, model: nn.Module, criterion: nn.Module, *, has_validation: bool
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
    """The optimizer (model and loss parameter groups, optionally SAM) and its LR scheduler.

    Returns:
        ``(optimizer, scheduler)``; the scheduler is None for ``scheduler: none``.

    Raises:
        ValueError: ``plateau_metric: val_dsc`` without a validation set.
    """
    optimizer = build_optimizer(
        model.parameters(),
        criterion.parameters(),
        name=config.name,
        lr=config.lr,
        weight_decay=config.weight_decay,
        betas=config.betas,
        loss_lr=config.loss_lr,
        loss_weight_decay=config.loss_weight_decay,
        sharpness=config.sharpness,
        rho=config.rho,
    )
    if config.plateau_metric == "val_dsc" and not has_validation:
        raise ValueError("optim.plateau_metric 'val_dsc' needs data.val_root")
    scheduler = build_scheduler(
        optimizer,
        name=config.scheduler,
        mode="max" if config.plateau_metric == "val_dsc" else "min",
        factor=config.plateau_factor,
        patience=config.plateau_patience,
    )
    return optimizer, scheduler


def build_logs(output_dir: Path, terms: Iterable[str]) -> tuple[CsvLog, CsvLog]:
    """``log.csv`` (one row per step: each loss term and weight) and ``epochs.csv``."""
    terms = list(terms)
    columns = ["step", "epoch", "batch", "lr", "step_seconds", "loss_total"]
    columns += [f"loss_{t}" for t in terms] + [f"weight_{t}" for t in terms]
    step_log = CsvLog(output_dir / "log.csv", columns)
    epoch_log = CsvLog(
        output_dir / "epochs.csv",
        ["step", "epoch", "train_loss", "val_dsc", "lr", "epoch_seconds"],
    )
    return step_log, epoch_log
