"""``umedsam train`` in-process: YAML + flag overrides, errors, and predicting with the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umedsam.cli.main import main


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_then_predict(case_dir, tmp_path, capsys) -> None:
    data = case_dir
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  name: test_tiny\n  checkpoint: none\n"
        "optim:\n  lr: 1.0e-3\nrun:\n  epochs: 5\n  batch_size: 2\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            str(config),
            "--data.train-root",
            str(data),
            "--run.output-dir",
            str(out),
            "--run.epochs",
            "1",
            "--loss.terms",
            "dice",
            "bce",
            "--optim.sharpness",
            "sam",
            "--optim.rho",
            "0.1",
            "--data.flips",
            "horizontal",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "steps" in printed
    assert "best.pt" in printed
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["config"]["run"]["epochs"] == 1  # the flag beat the YAML
    assert ckpt["config"]["loss"]["terms"] == ("dice", "bce")
    assert ckpt["config"]["optim"]["rho"] == 0.1
    segs = tmp_path / "segs"
    code = main(
        [
            "predict",
            "-q",
            "-i",
            str(data / "imgs"),
            "-o",
            str(segs),
            "--model",
            "test_tiny",
            "--checkpoint",
            str(out / "best.pt"),
        ]
    )
    assert code == 0
    written = sorted(p.name for p in segs.glob("*.npz"))
    assert written == sorted(p.name for p in (data / "imgs").glob("*.npz"))
    with np.load(segs / written[0]) as seg:
        assert "segs" in seg.files


def test_print_config_applies_overrides(capsys) -> None:
    code = main(
        [
            "train",
            "--print-config",
            "--optim.lr",
            "0.5",
            "--data.modalities",
            "US",
            "MR",
            "--loss.mode",
            "fixed",
            "--loss.fixed-weights",
            "dice=2",
            "bce=0.5",
            "--no-data.balanced",
            "--run.max-steps",
            "none",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "lr: 0.5" in text
    assert "- US" in text
    assert "dice: 2.0" in text


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--optim.sharpness", "gsam"], "optim.sharpness must be one of"),
        (["--config", "missing.yaml"], "config file not found"),
        (["--data.train-root", "nowhere", "--model.checkpoint", "none"], "folder not found"),
    ],
)
def test_errors_exit_2(argv, match, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--run.output-dir", str(tmp_path / "o"), *argv]) == 2
    assert match in capsys.readouterr().err


def test_bad_flag_value_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        main(["train", "--optim.lr", "fast"])


def test_train_mixes_a_folder_source_with_a_challenge_folder(case_dir, tmp_path, capsys) -> None:
    """Image/mask folders train beside an npz folder; each bad pair is one warning line."""
    import cv2

    images, masks = tmp_path / "pairs" / "images", tmp_path / "pairs" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for i in range(3):
        image = np.full((48, 48, 3), 30, np.uint8)
        mask = np.zeros((48, 48), np.uint8)
        cv2.circle(image, (20 + i, 24), 9, (200, 190, 180), -1)
        cv2.circle(mask, (20 + i, 24), 9, 255, -1)
        cv2.imwrite(str(images / f"f{i}.jpg"), image)
        cv2.imwrite(str(masks / f"f{i}.png"), mask)
    cv2.imwrite(str(images / "nomask.png"), np.zeros((48, 48, 3), np.uint8))
    cv2.imwrite(str(masks / "f9.png"), np.zeros((48, 48), np.uint8))
    cv2.imwrite(str(images / "f9.png"), np.zeros((48, 48, 3), np.uint8))
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data:\n  train_root: {case_dir}\n  sources:\n"
        f"    - {{kind: folder, images: {images}, masks: {masks}, modality: Endoscopy, weight: 2}}\n"
        "model:\n  name: test_tiny\n  checkpoint: none\n"
        f"run:\n  epochs: 1\n  batch_size: 2\n  output_dir: {tmp_path / 'run'}\n",
        encoding="utf-8",
    )
    assert main(["train", "--config", str(config), "--data.samples-per-epoch", "6"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert any("nomask.png: no mask with stem 'nomask'" in line for line in lines)
    assert any("f9.png" in line and "empty mask" in line for line in lines)
    assert (tmp_path / "run" / "last.pt").is_file()
