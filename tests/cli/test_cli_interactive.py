"""``umedsam predict`` on the challenges' interactive formats (tiny model, every prompt kind)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.cli.main import main
from umedsam.data.npz import load_case
from umedsam.models.registry import build_model


@pytest.fixture
def tiny_ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(build_model("test_tiny").state_dict(), path)
    return path


def _predict(inp: Path, out: Path, ckpt: Path, *extra: str, model: str = "test_tiny") -> int:
    argv = ["predict", "-q", "-i", str(inp), "-o", str(out), "--engine", "torch"]
    argv += ["--checkpoint", str(ckpt), "--model", model, *extra]
    return main(argv)


def _scribble_case(folder: Path, make_disk) -> Path:
    img, mask = make_disk(60, 80, center=(30, 40), radius=14)
    scribbles = np.zeros(mask.shape, np.int32)
    scribbles[30, 32:48] = 7  # object id 7
    scribbles[2, 2:20] = 1000  # background strokes
    scribbles[50, 60:70] = 3  # object id 3
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "2DScribble_Synthetic_disk.npz"
    np.savez_compressed(path, imgs=img, scribbles=scribbles)
    return path


def _interactive_volume(folder: Path, make_sphere, **extra) -> Path:
    vol, mask = make_sphere(12, 48, 48)
    zs, ys, xs = np.nonzero(mask)
    box = {
        "z_min": np.int64(zs.min()),
        "z_max": np.int64(zs.max()),
        "z_mid": np.int64(zs[len(zs) // 2]),
        "z_mid_x_min": np.int64(xs.min()),
        "z_mid_y_min": np.int64(ys.min()),
        "z_mid_x_max": np.int64(xs.max()),
        "z_mid_y_max": np.int64(ys.max()),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "3D_Synthetic_sphere.npz"
    np.savez_compressed(path, imgs=vol, spacing=np.ones(3), boxes=[box], **extra)
    return path


def test_scribble_case_uses_ids_as_labels(tmp_path, make_disk, tiny_ckpt) -> None:
    case = _scribble_case(tmp_path / "in", make_disk)
    loaded = load_case(case)
    assert loaded.prompts is not None and loaded.prompts.labels.tolist() == [3, 7]
    assert _predict(tmp_path / "in", tmp_path / "out", tiny_ckpt) == 0
    with np.load(tmp_path / "out" / case.name) as data:
        segs = data["segs"]
    assert segs.shape == (60, 80)
    assert set(np.unique(segs)) <= {0, 3, 7}


def test_cvpr25_volume_with_clicks_and_previous_mask(tmp_path, make_sphere, tiny_ckpt) -> None:
    step1 = _interactive_volume(tmp_path / "in1", make_sphere)
    assert _predict(tmp_path / "in1", tmp_path / "out1", tiny_ckpt) == 0
    with np.load(tmp_path / "out1" / step1.name) as data:
        prev = data["segs"]
    assert prev.shape == (12, 48, 48)
    clicks = [{"fg": [[5, 24, 24]], "bg": [[5, 2, 2]]}]
    step2 = _interactive_volume(
        tmp_path / "in2", make_sphere, clicks=clicks, clicks_order=[["fg", "bg"]], prev_pred=prev
    )
    case = load_case(step2)
    assert case.prompts is not None
    assert case.prompts.clicks[0].tolist() == [[5, 24, 24], [5, 2, 2]]
    assert case.prompts.click_labels[0].tolist() == [1, 0]
    assert _predict(tmp_path / "in2", tmp_path / "out2", tiny_ckpt) == 0
    with np.load(tmp_path / "out2" / step2.name) as data:
        assert data["segs"].shape == (12, 48, 48)


def test_malicious_pickle_is_refused_and_the_rest_finish(
    tmp_path, make_sphere, make_disk, tiny_ckpt
) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    folder = tmp_path / "in"
    _scribble_case(folder, make_disk)
    vol, _ = make_sphere(8, 32, 32)
    np.savez(folder / "3D_evil.npz", imgs=vol, clicks=np.array([Evil()], dtype=object))
    code = _predict(folder, tmp_path / "out", tiny_ckpt)
    assert code == 1
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "out" / "2DScribble_Synthetic_disk.npz").is_file()
    assert not (tmp_path / "out" / "3D_evil.npz").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"clicks": [{"fg": [[50, 5, 5]], "bg": []}]}, "outside the image"),
        ({"clicks": [{"fg": [], "bg": []}, {"fg": [[1, 2, 3]], "bg": []}]}, "2 entries for 1"),
        ({"prev_pred": np.zeros((3, 3, 3), np.uint8)}, "does not match"),
        ({"prev_pred": np.full((12, 48, 48), 5, np.uint8)}, "no object of this case"),
    ],
)
def test_bad_interactive_inputs_are_one_clear_line(
    tmp_path, make_sphere, tiny_ckpt, capsys, extra, message
) -> None:
    _interactive_volume(tmp_path / "in", make_sphere, **extra)
    assert _predict(tmp_path / "in", tmp_path / "out", tiny_ckpt) == 1
    err = capsys.readouterr().err
    assert "3D_Synthetic_sphere.npz" in err and message in err
    assert not list((tmp_path / "out").glob("3D_*.npz"))


def test_empty_and_background_only_scribbles(tmp_path, make_disk, tiny_ckpt, capsys) -> None:
    img, _ = make_disk(40, 40, center=(20, 20), radius=8)
    folder = tmp_path / "in"
    folder.mkdir()
    np.savez(folder / "2D_empty.npz", imgs=img, scribbles=np.zeros((40, 40), np.int32))
    only_bg = np.zeros((40, 40), np.int32)
    only_bg[0, :10] = 1000
    np.savez(folder / "2D_bg.npz", imgs=img, scribbles=only_bg)
    assert _predict(folder, tmp_path / "out", tiny_ckpt) == 1
    err = capsys.readouterr().err
    assert "no strokes" in err and "only background strokes" in err


def test_box_model_refuses_clicks_and_names_one_that_takes_them(
    tmp_path, make_sphere, capsys, real_model
) -> None:
    _interactive_volume(tmp_path / "in", make_sphere, clicks=[{"fg": [[5, 24, 24]], "bg": []}])
    argv = ["predict", "-q", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    assert main([*argv, "--model", "litemedsam", "--engine", "torch"]) == 1
    err = capsys.readouterr().err
    assert "click prompts, which this model was not trained to take" in err
    assert "umedsam_interactive" in err


def test_image_file_with_prompt_json(tmp_path, make_disk, tiny_ckpt) -> None:
    import json

    import cv2

    img, mask = make_disk(60, 80, center=(30, 40), radius=14)
    cv2.imwrite(str(tmp_path / "image.png"), img)
    strokes = np.zeros((60, 80), np.uint8)
    strokes[30, 34:46] = 2  # object 2's scribble
    cv2.imwrite(str(tmp_path / "strokes.png"), strokes)
    prompts = {
        "objects": [
            {"box": [26, 16, 54, 44], "clicks": [[40, 30], [5, 5]], "click_labels": [1, 0]},
            {"clicks": [[42, 31]]},
        ],
        "scribbles": "strokes.png",
    }
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    out = tmp_path / "mask.png"
    argv = ["predict", "-q", "-i", str(tmp_path / "image.png"), "-o", str(out)]
    argv += ["--prompts", str(tmp_path / "prompts.json"), "--model", "test_tiny"]
    argv += ["--checkpoint", str(tiny_ckpt), "--engine", "torch"]
    assert main(argv) == 0
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written.shape == (60, 80) and set(np.unique(written)) <= {0, 1, 2}
    bad = {"objects": [{"clicks": [[400, 30]]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    argv[argv.index(str(tmp_path / "prompts.json"))] = str(tmp_path / "bad.json")
    assert main(argv) == 1


def test_thin_structures_flag_segments_the_vessel_a_scribble_follows(tmp_path, tiny_ckpt) -> None:
    from umedsam.inference.thin import thin_structure_mask

    rng = np.random.default_rng(0)
    image = 180.0 + rng.normal(0.0, 3.0, (120, 120))
    image[10:110, 40:42] -= 60.0  # a dark vessel
    grey = np.clip(image, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    scribbles = np.zeros((120, 120), np.int32)
    scribbles[20:60, 40:42] = 1
    (tmp_path / "in").mkdir()
    name = "2DScribble_Synthetic_vessel.npz"
    np.savez_compressed(tmp_path / "in" / name, imgs=rgb, scribbles=scribbles)
    assert _predict(tmp_path / "in", tmp_path / "thin", tiny_ckpt, "--thin-structures") == 0
    assert _predict(tmp_path / "in", tmp_path / "plain", tiny_ckpt) == 0
    with np.load(tmp_path / "thin" / name) as a, np.load(tmp_path / "plain" / name) as b:
        thin, plain = a["segs"], b["segs"]
    expected = thin_structure_mask(rgb, scribbles == 1)
    assert expected is not None and np.array_equal(thin == 1, expected)
    assert thin[90, 40:42].all() and not np.array_equal(thin, plain)


def test_thin_structures_flag_traces_a_tube_through_a_volume(tmp_path, tiny_ckpt) -> None:
    """A 3D CVPR 2024 scribble case: one stroke on one slice along a tube; with the flag the
    tube is traced through the slices at the case's spacing, without it the model segments."""
    from umedsam.inference.thin_volume import thin_structure_volume
    from vessel_picture import vessel_volume

    volume, tube = vessel_volume()
    scribbles = np.zeros(volume.shape, np.int32)
    scribbles[11, 32, np.flatnonzero(tube[11, 32])] = 1
    (tmp_path / "in").mkdir()
    name = "3DScribble_Synthetic_tube.npz"
    spacing = np.array([1.0, 1.0, 2.0])  # x, y, z as the challenge stores it
    np.savez_compressed(tmp_path / "in" / name, imgs=volume, scribbles=scribbles, spacing=spacing)
    assert _predict(tmp_path / "in", tmp_path / "thin", tiny_ckpt, "--thin-structures") == 0
    assert _predict(tmp_path / "in", tmp_path / "plain", tiny_ckpt) == 0
    with np.load(tmp_path / "thin" / name) as a, np.load(tmp_path / "plain" / name) as b:
        thin, plain = a["segs"], b["segs"]
    expected = thin_structure_volume(volume, scribbles == 1, spacing_zyx=(2.0, 1.0, 1.0))
    assert expected is not None and np.array_equal(thin == 1, expected)
    assert (thin == 1)[8].any() and not np.array_equal(thin, plain)
