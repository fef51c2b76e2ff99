"""The per-section builders of a training run."""

from __future__ import annotations

import pytest
import torch

from umedsam.losses.uncertainty import UncertaintyWeightedLoss
from umedsam.models.registry import build_model as build_registered
from umedsam.training.builders import (
    build_datasets,
    build_logs,
    build_loss,
    build_model,
    build_optimization,
    set_trainable,
    uses_embedding_cache,
)
from umedsam.training.config import DataConfig, LossConfig, ModelConfig, OptimConfig


def test_build_model_random_and_from_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    donor = build_registered("test_tiny")
    path = tmp_path / "tiny.pt"
    torch.save(donor.state_dict(), path)
    loaded = build_model(ModelConfig(name="test_tiny", checkpoint=str(path)))
    for key, value in donor.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    random = build_model(ModelConfig(name="test_tiny", checkpoint="none"))
    assert random.image_size == 64


def test_build_model_default_is_the_shipped_models_own_weights() -> None:
    from umedsam.models.cards import shipped_weights
    from umedsam.models.checkpoint import read_state_dict

    found = shipped_weights("umedsam_interactive")
    if found is None:
        pytest.skip("umedsam_interactive weights are not shipped")
    shipped = read_state_dict(found[1])
    model = build_model(ModelConfig(name="umedsam_interactive", checkpoint="default"))
    base = build_model(ModelConfig(name="litemedsam", checkpoint="default"))
    state, base_state = model.state_dict(), base.state_dict()
    changed = [k for k in shipped if not torch.equal(state[k], base_state[k])]
    assert changed, "the shipped file was not loaded over LiteMedSAM"
    for key in shipped:
        torch.testing.assert_close(state[key], shipped[key].to(state[key].dtype))
    for key in (k for k in state if k.startswith("image_encoder.")):
        assert torch.equal(state[key], base_state[key])


def test_set_trainable_freezes_all_but_the_parts() -> None:
    model = build_registered("test_tiny")
    set_trainable(model, ["mask_decoder"])
    assert all(p.requires_grad for p in model.mask_decoder.parameters())
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    assert model.mask_decoder.training
    assert not model.image_encoder.training


def test_embedding_cache_only_with_a_frozen_encoder() -> None:
    data = DataConfig(cache_embeddings=True)
    assert uses_embedding_cache(data, ModelConfig(trainable=("mask_decoder",)))
    assert not uses_embedding_cache(data, ModelConfig(trainable=("image_encoder",)))
    assert not uses_embedding_cache(
        DataConfig(cache_embeddings=False), ModelConfig(trainable=("mask_decoder",))
    )


def test_datasets_validation_is_unaugmented(challenge_folder, val_folder) -> None:
    data = DataConfig(
        train_root=str(challenge_folder), val_root=str(val_folder), val_slices_per_volume=1
    )
    train_set, val_set = build_datasets(data, image_size=64, load_images=False)
    assert val_set is not None
    assert len(train_set) > 0 and len(val_set) > 0
    assert val_set.flip_variants() == [()]
    only_train, none = build_datasets(
        DataConfig(train_root=str(challenge_folder)), image_size=64, load_images=False
    )
    assert none is None
    assert len(only_train) == len(train_set)


def test_loss_optimizer_and_scheduler() -> None:
    model = build_registered("test_tiny")
    criterion = build_loss(LossConfig(terms=("dice", "bce")), torch.device("cpu"))
    assert isinstance(criterion, UncertaintyWeightedLoss)
    assert list(criterion.terms) == ["dice", "bce"]
    optimizer, scheduler = build_optimization(OptimConfig(), model, criterion, has_validation=False)
    assert scheduler is not None and scheduler.mode == "min"
    assert len(optimizer.param_groups) >= 2  # model and loss weights
    _, by_dsc = build_optimization(
        OptimConfig(plateau_metric="val_dsc"), model, criterion, has_validation=True
    )
    assert by_dsc is not None and by_dsc.mode == "max"
    with pytest.raises(ValueError, match="'val_dsc' needs data.val_root"):
        build_optimization(
            OptimConfig(plateau_metric="val_dsc"), model, criterion, has_validation=False
        )


def test_logs_have_a_column_per_term(tmp_path) -> None:
    step_log, epoch_log = build_logs(tmp_path, ["dice", "bce"])
    assert step_log.path == tmp_path / "log.csv"
    assert step_log.columns[-4:] == ["loss_dice", "loss_bce", "weight_dice", "weight_bce"]
    assert epoch_log.path == tmp_path / "epochs.csv"
