"""NRRD reader: LPS space directions become an RAS affine; axes become (z, y, x)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umedsam.data.readers import read_image
from umedsam.data.writers import write_mask
from umedsam.errors import InputError

nrrd = pytest.importorskip("nrrd")


def test_lps_nrrd_to_ras_affine_and_zyx(tmp_path: Path) -> None:
    data = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2)  # (x, y, z), Fortran order
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.5, 0.6, 3.0]),
        "space origin": np.array([10.0, 20.0, -5.0]),
    }
    nrrd.write(str(tmp_path / "v.nrrd"), data, header, index_order="F")
    volume, meta = read_image(tmp_path / "v.nrrd")
    assert volume.shape == (2, 3, 4)
    assert volume[1, 2, 3] == data[3, 2, 1]
    np.testing.assert_allclose(meta.spacing, (3.0, 0.6, 0.5))
    np.testing.assert_allclose(meta.origin, (-10.0, -20.0, -5.0))
    np.testing.assert_allclose(meta.affine_array()[:3, :3], np.diag([-0.5, -0.6, 3.0]))


def test_nrrd_mask_as_nifti_keeps_geometry(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    data = np.zeros((4, 3, 2), dtype=np.uint8)
    header = {
        "space": "LPS",
        "space directions": np.diag([0.5, 0.6, 3.0]),
        "space origin": np.zeros(3),
    }
    nrrd.write(str(tmp_path / "v.nrrd"), data, header, index_order="F")
    volume, meta = read_image(tmp_path / "v.nrrd")
    out = write_mask(tmp_path / "m.nii.gz", np.ones(volume.shape, dtype=np.uint8), meta)
    img = nib.load(str(out))
    assert img.shape == (4, 3, 2)
    np.testing.assert_allclose(img.affine, meta.affine_array(), atol=1e-6)


def test_vector_nrrd_refused(tmp_path: Path) -> None:
    data = np.zeros((3, 4, 5), dtype=np.float32)
    nrrd.write(str(tmp_path / "vec.nrrd"), data, {"kinds": ["vector", "domain", "domain"]})
    with pytest.raises(InputError, match="scalar NRRD"):
        read_image(tmp_path / "vec.nrrd")


def test_garbage_nrrd(tmp_path: Path) -> None:
    (tmp_path / "bad.nrrd").write_text("NRRD0004\ntype: nonsense\n")
    with pytest.raises(InputError, match="bad.nrrd"):
        read_image(tmp_path / "bad.nrrd")


def test_shared_brain_nrrd(formats_dir: Path) -> None:
    image, meta = read_image(formats_dir / "nrrd" / "brain1_image.nrrd")
    labels, label_meta = read_image(formats_dir / "nrrd" / "brain1_label.nrrd")
    assert image.shape == labels.shape == (25, 256, 256)
    np.testing.assert_allclose(meta.spacing, (6.5, 0.78125, 0.78125))
    np.testing.assert_allclose(meta.affine_array(), label_meta.affine_array())
    assert set(np.unique(labels)) == {0, 1}
