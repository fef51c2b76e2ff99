"""torch.distributed helpers for ``torchrun`` launches (DDP on CPU with gloo, on CUDA with nccl)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "broadcast_float",
    "barrier",
    "setup_distributed",
    "teardown",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Process placement: ``rank`` of ``world_size``; ``device`` this process computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints."""
        return self.rank == 0


def setup_distributed(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1).

    Args:
        device: the configured device (``cpu``, ``cuda`` or ``cuda:N``); under torchrun with
            CUDA each process uses ``cuda:LOCAL_RANK``.

    Returns:
        The :class:`DistInfo` (a single process when not launched by torchrun).

    Raises:
        ValueError: if CUDA is requested but not available.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"run.device={device!r} but CUDA is not available; use 'cpu'")
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        logger.info("process %d of %d on %s", rank, world, dev)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def teardown(info: DistInfo) -> None:
    """Leave the process group (if one was joined)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a float over all processes (the value itself without DDP)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def broadcast_float(value: float | None, info: DistInfo) -> float | None:
    """Rank 0's float (NaN stands for None) on every process."""
    if not info.enabled:
        return value
    t = torch.tensor(
        [float("nan") if value is None else value], dtype=torch.float64, device=info.device
    )
    dist.broadcast(t, src=0)
    out = float(t.item())
    return None if out != out else out


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op without DDP)."""
    if info.enabled:
        dist.barrier()
