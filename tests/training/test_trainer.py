"""Trainer: checkpoints, logs, what trains, exact resume, budgets, embedding cache."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from umedsam.models.checkpoint import load_checkpoint
from umedsam.models.registry import build_model
from umedsam.training.checkpointing import load_training_checkpoint
from umedsam.training.config import TrainConfig
from umedsam.training.embeddings import FrozenEncoderEmbeddingCache
from umedsam.training.trainer import Trainer, train


def _config(train_root: Path, out: Path, val_root: Path | None = None, **sections) -> TrainConfig:
    data = {"train_root": str(train_root), "val_root": None if val_root is None else str(val_root)}
    base = {
        "data": data,
        "model": {"name": "test_tiny", "checkpoint": "none"},
        "optim": {"lr": 1e-3},
        "run": {"output_dir": str(out), "epochs": 2, "batch_size": 2, "seed": 3},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return TrainConfig.from_dict(base)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_writes_checkpoints_logs_and_predictable_weights(
    challenge_folder, val_folder, tmp_path
) -> None:
    config = _config(challenge_folder, tmp_path / "run", val_folder)
    result = train(config)
    assert result.steps > 0
    assert result.best_checkpoint == tmp_path / "run" / "best.pt"
    assert 0.0 <= result.best_metric <= 1.0
    ckpt = load_training_checkpoint(result.last_checkpoint)
    for key in (
        "format_version",
        "model_name",
        "config",
        "model",
        "loss",
        "optimizer",
        "scheduler",
        "epoch",
        "step",
        "best_metric",
        "rng",
        "loss_weights",
    ):
        assert key in ckpt
    assert ckpt["model_name"] == "test_tiny"
    assert TrainConfig.from_dict(ckpt["config"]) == config
    assert ckpt["epoch"] == 2
    assert set(ckpt["loss_weights"]) == {"dice", "bce", "iou", "shape"}
    # A training checkpoint loads for prediction through the normal loader.
    model = build_model("test_tiny")
    load_checkpoint(model, result.best_checkpoint)
    rows = _rows(tmp_path / "run" / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, result.steps + 1))
    for term in ("dice", "bce", "iou", "shape"):
        assert float(rows[-1][f"loss_{term}"]) >= 0
        assert float(rows[-1][f"weight_{term}"]) > 0
    epochs = _rows(tmp_path / "run" / "epochs.csv")
    assert len(epochs) == 2
    assert all(0 <= float(e["val_dsc"]) <= 1 for e in epochs)
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_only_configured_parts_train(challenge_folder, tmp_path) -> None:
    trainer = Trainer(_config(challenge_folder, tmp_path / "run", run={"max_steps": 2}))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"mask_decoder"}
    assert not any(p.requires_grad for p in trainer.model.image_encoder.parameters())
    assert trainer.cache is not None
    assert trainer.cache.misses > 0


def test_full_finetune_without_cache(challenge_folder, tmp_path) -> None:
    config = _config(
        challenge_folder,
        tmp_path / "run",
        model={"trainable": ["image_encoder", "prompt_encoder", "mask_decoder"]},
        run={"max_steps": 2},
    )
    trainer = Trainer(config)
    assert trainer.cache is None
    before = {k: v.clone() for k, v in trainer.model.image_encoder.state_dict().items()}
    result = trainer.fit()
    assert result.steps == 2
    assert result.stopped_early
    after = trainer.model.image_encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.parametrize("sharpness", ["none", "sam"])
def test_interrupted_run_resumes_exactly(challenge_folder, val_folder, tmp_path, sharpness) -> None:
    optim = {"sharpness": sharpness, "plateau_patience": 0, "plateau_factor": 0.5}
    full = train(_config(challenge_folder, tmp_path / "full", val_folder, optim=optim))
    assert full.steps >= 6
    k = full.steps // 2 + 1  # mid-epoch
    out = tmp_path / "split"
    first = train(_config(challenge_folder, out, val_folder, optim=optim, run={"max_steps": k}))
    assert first.stopped_early
    assert first.step_losses == full.step_losses[:k]
    resumed = train(_config(challenge_folder, out, val_folder, optim=optim, run={"resume": "auto"}))
    assert resumed.step_losses == full.step_losses[k:]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert torch.equal(a["loss"]["log_vars"], b["loss"]["log_vars"])
    assert [r["loss_total"] for r in _rows(out / "log.csv")] == [
        r["loss_total"] for r in _rows(tmp_path / "full" / "log.csv")
    ]


def test_crash_mid_epoch_resumes_from_last_save(challenge_folder, tmp_path) -> None:
    run = {"save_every_steps": 1, "epochs": 2}
    full = train(_config(challenge_folder, tmp_path / "full", run=run))
    out = tmp_path / "crash"

    def crash(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_config(challenge_folder, out, run=run), progress=crash)
    assert load_training_checkpoint(out / "last.pt")["step"] == 2
    resumed = train(_config(challenge_folder, out, run={**run, "resume": str(out / "last.pt")}))
    assert resumed.step_losses == full.step_losses[2:]
    steps = [int(r["step"]) for r in _rows(out / "log.csv")]
    assert steps == list(range(1, full.steps + 1))  # the crashed step's row was replaced


def test_resume_with_other_loss_is_refused(challenge_folder, tmp_path) -> None:
    out = tmp_path / "run"
    train(_config(challenge_folder, out, run={"max_steps": 1}))
    with pytest.raises(ValueError, match="cannot resume with different settings: loss.terms"):
        train(_config(challenge_folder, out, loss={"terms": ["dice"]}, run={"resume": "auto"}))


def test_bad_setups_raise(challenge_folder, tmp_path) -> None:
    with pytest.raises(ValueError, match="data.train_root .* or data.sources is required"):
        Trainer(TrainConfig.from_dict({"model": {"name": "test_tiny", "checkpoint": "none"}}))
    with pytest.raises(ValueError, match="run.amp needs a CUDA device"):
        Trainer(_config(challenge_folder, tmp_path / "r", run={"amp": True}))
    with pytest.raises(ValueError, match="plateau_metric 'val_dsc' needs data.val_root"):
        Trainer(_config(challenge_folder, tmp_path / "r", optim={"plateau_metric": "val_dsc"}))


def test_loss_falls_on_synthetic_data(challenge_folder, tmp_path) -> None:
    config = _config(
        challenge_folder,
        tmp_path / "run",
        loss={"terms": ["dice", "bce"], "mode": "fixed"},
        optim={"lr": 1e-2},
        data={"max_box_shift": 0, "flips": []},
        run={"epochs": 15, "batch_size": 4},
    )
    result = train(config)
    losses = result.step_losses
    third = len(losses) // 3
    assert sum(losses[-third:]) / third < 0.7 * sum(losses[:third]) / third


def test_embedding_cache_on_disk(challenge_folder, tmp_path) -> None:
    from umedsam.data.dataset import SegmentationDataset

    torch.manual_seed(0)
    model = build_model("test_tiny").eval()
    ds = SegmentationDataset(challenge_folder, image_size=64, load_images=False)
    keys = [ds.image_key(0), ds.image_key(1, ("horizontal",))]
    cache = FrozenEncoderEmbeddingCache(
        model, model_name="test_tiny", cache_dir=tmp_path / "c", storage_dtype=torch.float32
    )
    emb = cache.get(keys, ds.image_for_key)
    assert emb.shape == (2, 32, 16, 16)
    with torch.no_grad():
        expected = model.encode(torch.stack([ds.image_for_key(k) for k in keys]))
    torch.testing.assert_close(emb, expected)
    assert (cache.hits, cache.misses) == (0, 2)
    again = FrozenEncoderEmbeddingCache(
        model, model_name="test_tiny", cache_dir=tmp_path / "c", storage_dtype=torch.float32
    )
    torch.testing.assert_close(again.get(keys, ds.image_for_key), emb)
    assert (again.hits, again.misses) == (2, 0)
    # Other encoder weights -> another signature -> nothing reused.
    with torch.no_grad():
        next(model.image_encoder.parameters()).add_(1.0)
    other = FrozenEncoderEmbeddingCache(
        model, model_name="test_tiny", cache_dir=tmp_path / "c", storage_dtype=torch.float32
    )
    other.get(keys[:1], ds.image_for_key)
    assert other.misses == 1
    with pytest.raises(KeyError, match="does not belong"):
        ds.image_for_key("elsewhere|x.npz|2d|none")


@pytest.mark.parametrize("sharpness", ["none", "sam"])
def test_interactive_training_resumes_exactly(challenge_folder, tmp_path, sharpness) -> None:
    """Simulated interaction (rounds, clicks, scribbles) is deterministic across a resume."""
    sections = {
        "interaction": {"enabled": True, "min_rounds": 1, "max_rounds": 3},
        "model": {"trainable": ["prompt_encoder", "mask_decoder"]},
        "optim": {"sharpness": sharpness},
    }
    full = train(_config(challenge_folder, tmp_path / "full", **sections))
    assert full.steps >= 4 and all(math.isfinite(v) for v in full.step_losses)
    out = tmp_path / "split"
    k = full.steps // 2 + 1
    train(_config(challenge_folder, out, **sections, run={"max_steps": k}))
    resumed = train(_config(challenge_folder, out, **sections, run={"resume": "auto"}))
    assert resumed.step_losses == full.step_losses[k:]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
