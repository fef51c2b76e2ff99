"""write_mask: formats, dtypes, shape checks, atomic replacement."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from umedsam.data.readers.meta import meta_from_affine, plain_2d_meta
from umedsam.data.writers import mask_format, write_mask


def test_png_round_trip_uint8_and_uint16(tmp_path: Path) -> None:
    meta = plain_2d_meta((4, 5), source_format="png", channels=3)
    mask = np.zeros((4, 5), dtype=np.int64)
    mask[1, 2] = 3
    write_mask(tmp_path / "m.png", mask, meta)
    back = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8
    assert np.array_equal(back, mask)
    mask[0, 0] = 300  # more than 255 labels: no uint8 overflow
    write_mask(tmp_path / "m.png", mask, meta)
    back = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    assert back[0, 0] == 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]  # replaced, no temp left


def test_npz_has_segs_and_xyz_spacing(tmp_path: Path) -> None:
    meta = meta_from_affine(np.diag([0.8, 0.5, 3.0, 1.0]), (2, 3, 4), source_format="nifti")
    mask = np.ones((2, 3, 4), dtype=bool)
    write_mask(tmp_path / "case.npz", mask, meta)
    with np.load(tmp_path / "case.npz") as data:
        assert data["segs"].dtype == np.uint8
        assert data["segs"].shape == (2, 3, 4)
        np.testing.assert_allclose(data["spacing"], (0.8, 0.5, 3.0))


def test_nifti_from_png_meta_is_one_slice(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    meta = plain_2d_meta((4, 5), source_format="png", channels=1)
    mask = np.zeros((4, 5), dtype=np.uint8)
    mask[3, 1] = 1
    write_mask(tmp_path / "m.nii.gz", mask, meta)
    img = nib.load(str(tmp_path / "m.nii.gz"))
    assert img.shape == (5, 4, 1)
    assert np.asarray(img.dataobj)[1, 3, 0] == 1


def test_errors(tmp_path: Path) -> None:
    meta = plain_2d_meta((4, 5), source_format="png", channels=1)
    with pytest.raises(ValueError, match=r"does not match the image shape \(4, 5\)"):
        write_mask(tmp_path / "m.png", np.zeros((5, 4), np.uint8), meta)
    with pytest.raises(ValueError, match="PNG masks are 2D"):
        write_mask(tmp_path / "m.png", np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="integer labels"):
        write_mask(tmp_path / "m.png", np.full((4, 5), 0.5), meta)
    with pytest.raises(ValueError, match=">= 0"):
        write_mask(tmp_path / "m.png", -np.ones((4, 5), np.int16), meta)
    with pytest.raises(ValueError, match="needs the image's ImageMeta"):
        write_mask(tmp_path / "m.nii.gz", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="cannot tell the mask format"):
        mask_format("m.jpg")
    assert mask_format("A.NII.GZ") == "nifti"
    assert not list(tmp_path.iterdir())
