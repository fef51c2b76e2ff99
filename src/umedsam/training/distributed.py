"""torch.distributed helpers for ``torchrun`` launches (DDP on CPU with gloo, on CUDA with nccl)."""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "barrier",
    "broadcast_float",
    "check_replicas_in_sync",
    "setup_distributed",
    "shard_batches",
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
        gc.collect()  # drop DDP reducers that still reference the group
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


def shard_batches(
    num_positions: int, rank: int, world_size: int, batch_size: int
) -> list[list[int]]:
    """Batches of epoch positions for one process.

    Process ``rank`` takes positions ``rank, rank + world_size, ...``; every process gets the same
    number of positions (the remainder of an uneven split is dropped) and so the same number of
    batches, which keeps DDP processes in step. The last batch may be smaller.

    Args:
        num_positions: length of the epoch order.
        rank: this process.
        world_size: number of processes.
        batch_size: positions per batch.

    Returns:
        Lists of positions.
    """
    per_rank = num_positions // world_size
    positions = list(range(rank, per_rank * world_size, world_size))
    return [positions[i : i + batch_size] for i in range(0, len(positions), batch_size)]


def check_replicas_in_sync(module: torch.nn.Module, info: DistInfo) -> None:
    """Raise if DDP processes ended with different trainable parameters (a wiring bug)."""
    if not info.enabled:
        return
    params = [p.detach().double().sum() for p in module.parameters() if p.requires_grad]
    local = torch.stack(params).to(info.device) if params else torch.zeros(1, device=info.device)
    gathered = [torch.zeros_like(local) for _ in range(info.world_size)]
    dist.all_gather(gathered, local)
    if any(not torch.equal(gathered[0], g) for g in gathered[1:]):
        raise RuntimeError("DDP processes hold different parameters after training")
