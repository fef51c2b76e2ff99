"""TrainConfig: strict from_dict, YAML, overrides, and names in sync with the library."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError

import pytest

from umedsam.losses import uncertainty
from umedsam.optim import factory
from umedsam.training import config as cfg
from umedsam.training.config import TrainConfig, load_config


def test_defaults_follow_the_published_recipe() -> None:
    c = TrainConfig()
    assert c.optim.name == "adamw"
    assert c.optim.lr == 5e-5
    assert c.optim.weight_decay == 0.01
    assert (c.optim.plateau_factor, c.optim.plateau_patience) == (0.9, 5)
    assert c.model.trainable == ("mask_decoder",)
    assert c.loss.terms == ("dice", "bce", "iou", "shape")
    assert c.data.max_box_shift == 5


def test_round_trip_and_frozen() -> None:
    c = TrainConfig.from_dict({"optim": {"lr": 1, "sharpness": "sam"}, "loss": {"terms": ["dice"]}})
    assert c.optim.lr == 1.0
    assert isinstance(c.optim.lr, float)
    assert c.loss.terms == ("dice",)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(FrozenInstanceError):
        c.run.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"optimizer": {}}, r"unknown config section\(s\) \['optimizer'\]"),
        (
            {"optim": {"learning_rate": 1e-3}},
            r"unknown key\(s\) \['learning_rate'\] in config section 'optim'",
        ),
        ({"optim": {"lr": "fast"}}, "optim.lr must be a number"),
        ({"run": {"epochs": 2.5}}, "run.epochs must be an integer"),
        ({"run": {"amp": "yes"}}, "run.amp must be true/false"),
        ({"loss": {"terms": "dice"}}, "loss.terms must be a list"),
        ({"loss": {"terms": ["dice", "focal"]}}, "loss.terms must be a non-empty list"),
        ({"loss": {"mode": "softmax"}}, "loss.mode must be one of"),
        ({"model": {"trainable": ["decoder"]}}, "model.trainable must be a non-empty subset"),
        ({"optim": {"rho": 0.1}}, "needs optim.sharpness"),
        ({"optim": {"sharpness": "gsam"}}, "optim.sharpness must be one of"),
        ({"data": {"flips": ["diagonal"]}}, "data.flips must be"),
        ({"run": {"batch_size": 0}}, "run.batch_size must be >= 1"),
        ({"data": "x"}, "section 'data' must be a mapping"),
    ],
)
def test_bad_configs_raise(data, match) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(data)


def test_yaml_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1.0e-4\nrun:\n  epochs: 3\n  resume: null\n", encoding="utf-8")
    c = load_config(path, {"run.epochs": 7, "loss.fixed_weights": None})
    assert c.optim.lr == 1e-4
    assert c.run.epochs == 7
    with pytest.raises(ValueError, match="unknown config key 'run.epoch'"):
        load_config(path, {"run.epoch": 1})
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a mapping of sections"):
        load_config(bad)


def test_names_in_sync_with_library() -> None:
    assert cfg.TERM_NAMES == uncertainty.TERM_NAMES
    assert cfg.DEFAULT_TERMS == uncertainty.DEFAULT_TERMS
    assert cfg.MODES == uncertainty.MODES
    assert tuple(factory.OPTIMIZERS) == cfg.OPTIMIZERS
    assert cfg.SHARPNESS == factory.SHARPNESS
    assert cfg.SCHEDULERS == factory.SCHEDULERS


def test_config_module_does_not_import_torch() -> None:
    code = (
        "import sys, umedsam.training.config as c; c.TrainConfig(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_field_has_a_flag_with_help() -> None:
    flags = cfg.config_flags()
    fields = [(n, f) for n, s in cfg._SECTIONS.items() for f in s.__dataclass_fields__]
    assert len(flags) == len([1 for _, f in fields if f not in cfg.FILE_ONLY_KEYS])
    assert {f for n, f in fields if n == "data"} >= cfg.FILE_ONLY_KEYS  # lists of sources
    assert all(help_text for _, _, help_text in flags)


@pytest.mark.parametrize(
    "name", ["train_umedsam.yaml", "train_umedsam_code.yaml", "train_decoder_newdata.yaml"]
)
def test_shipped_configs_load(name) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / name
    config = load_config(path)
    assert config.model.trainable == ("mask_decoder",)
