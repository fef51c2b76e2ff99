"""DDP: batch sharding, and a real 2-process gloo run through torchrun on the CPU."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import torch

import tiny_models
from umedsam.training.checkpointing import load_training_checkpoint
from umedsam.training.distributed import shard_batches


def test_shard_batches_disjoint_and_even() -> None:
    a = shard_batches(11, 0, 2, 2)
    b = shard_batches(11, 1, 2, 2)
    flat_a = [p for batch in a for p in batch]
    flat_b = [p for batch in b for p in batch]
    assert len(a) == len(b) == 3
    assert len(flat_a) == len(flat_b) == 5
    assert not set(flat_a) & set(flat_b)
    assert shard_batches(5, 0, 1, 2) == [[0, 1], [2, 3], [4]]


def test_torchrun_two_cpu_processes(challenge_folder, tmp_path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # each rank runs tests/tiny_models.py, which registers test_tiny before calling the CLI
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(tiny_models.SCRIPT),
        "train",
        "-q",
        "--data.train-root",
        str(challenge_folder),
        "--model.name",
        "test_tiny",
        "--model.checkpoint",
        "none",
        "--optim.lr",
        "1e-3",
        "--optim.sharpness",
        "sam",
        "--run.output-dir",
        str(out),
        "--run.epochs",
        "2",
        "--run.batch-size",
        "2",
        "--run.num-threads",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_training_checkpoint(out / "last.pt")
    with (out / "log.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    from umedsam.data.dataset import SegmentationDataset

    n = len(SegmentationDataset(challenge_folder, image_size=64, load_images=False))
    expected_steps = 2 * len(shard_batches(n, 0, 2, 2))  # 2 epochs, half the items per process
    assert ckpt["step"] == expected_steps
    assert [int(r["step"]) for r in rows] == list(range(1, expected_steps + 1))  # rank 0 logs
    assert ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not any(k.startswith("module.") for k in ckpt["model"])
