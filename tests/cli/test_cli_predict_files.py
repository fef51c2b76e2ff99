"""`umedsam predict IMAGE --boxes FILE`: NIfTI and PNG in, a mask with the same geometry out."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from umedsam.cli.main import main


@pytest.fixture
def tiny_ckpt(tiny_model, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), path)
    return path


def test_nifti_volume_round_trip(tiny_ckpt: Path, make_sphere, tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    vol, sph = make_sphere(d=10, h=40, w=48)
    affine = np.array([[-0.8, 0, 0, 10.0], [0, 0.8, 0, -5.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    # nibabel arrays are (x, y, z); umedsam volumes are (z, y, x)
    nib.save(
        nib.Nifti1Image(vol.transpose(2, 1, 0).astype(np.int16) * 4, affine),
        tmp_path / "img.nii.gz",
    )
    zs, ys, xs = np.nonzero(sph)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(
        json.dumps(
            {
                "boxes": [
                    [
                        int(xs.min()),
                        int(ys.min()),
                        int(zs.min()),
                        int(xs.max()),
                        int(ys.max()),
                        int(zs.max()),
                    ]
                ]
            }
        )
    )
    out = tmp_path / "mask.nii.gz"
    code = main(
        [
            "predict",
            "-i",
            str(tmp_path / "img.nii.gz"),
            "--boxes",
            str(boxes),
            "-o",
            str(out),
            "--model",
            "test_tiny",
            "--checkpoint",
            str(tiny_ckpt),
            "--modality",
            "MR",
        ]
    )
    assert code == 0
    mask = nib.load(out)
    np.testing.assert_allclose(mask.affine, affine, atol=1e-5)
    assert mask.shape == (48, 40, 10)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}


def test_png_with_csv_boxes(tiny_ckpt: Path, make_disk, tmp_path: Path) -> None:
    img, _ = make_disk()
    cv2.imwrite(str(tmp_path / "img.png"), img[:, :, 0])
    (tmp_path / "boxes.csv").write_text("x_min,y_min,x_max,y_max\n40,28,80,68\n5,5,30,30\n")
    out = tmp_path / "mask.png"
    assert (
        main(
            [
                "predict",
                "-i",
                str(tmp_path / "img.png"),
                "--boxes",
                str(tmp_path / "boxes.csv"),
                "-o",
                str(out),
                "--model",
                "test_tiny",
                "--checkpoint",
                str(tiny_ckpt),
            ]
        )
        == 0
    )
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == img.shape[:2] and mask.max() <= 2


def test_image_without_boxes_or_bad_boxes(
    tiny_ckpt: Path, make_disk, tmp_path: Path, capsys
) -> None:
    img, _ = make_disk()
    cv2.imwrite(str(tmp_path / "img.png"), img)
    assert main(["predict", "-i", str(tmp_path / "img.png"), "-o", str(tmp_path / "m.png")]) == 2
    assert "--boxes" in capsys.readouterr().err
    (tmp_path / "b.json").write_text("[[0, 0, 999, 10]]")
    code = main(
        [
            "predict",
            "-i",
            str(tmp_path / "img.png"),
            "--boxes",
            str(tmp_path / "b.json"),
            "-o",
            str(tmp_path / "m.png"),
            "--model",
            "test_tiny",
            "--checkpoint",
            str(tiny_ckpt),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "b.json" in err and not (tmp_path / "m.png").exists()
