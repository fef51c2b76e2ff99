"""NIfTI reader: axis order, affine round trip through write_mask, and clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from umedsam.data.readers import read_image
from umedsam.data.writers import write_mask
from umedsam.errors import InputError

nib = pytest.importorskip("nibabel")

# oblique, flipped, anisotropic affine with a translation: catches any axis mix-up
AFFINE = np.array(
    [
        [0.0, 0.0, -2.5, 40.0],
        [-0.8, 0.0, 0.0, 12.0],
        [0.0, 0.7, 0.0, -30.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _save(path: Path, data_xyz: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data_xyz, affine), str(path))
    return path


def test_volume_is_zyx_with_spacing_in_array_order(tmp_path: Path) -> None:
    data = np.arange(5 * 4 * 3, dtype=np.int16).reshape(5, 4, 3)  # nibabel (x, y, z)
    volume, meta = read_image(_save(tmp_path / "a.nii.gz", data))
    assert volume.shape == (3, 4, 5)
    assert volume[2, 1, 4] == data[4, 1, 2]
    assert volume.dtype == np.int16
    # voxel x step |(0,-0.8,0)| = 0.8, y step 0.7, z step 2.5 -> array order (z, y, x)
    np.testing.assert_allclose(meta.spacing, (2.5, 0.7, 0.8))
    np.testing.assert_allclose(meta.affine_array(), AFFINE)
    np.testing.assert_allclose(meta.origin, (40.0, 12.0, -30.0))
    assert meta.source_format == "nifti"
    assert meta.spacing_xyz() == tuple(reversed(meta.spacing))


@pytest.mark.parametrize("name", ["m.nii.gz", "m.nii"])
def test_written_mask_has_image_affine_and_shape(tmp_path: Path, name: str) -> None:
    image_path = _save(tmp_path / "img.nii.gz", np.zeros((6, 5, 4), dtype=np.float32))
    volume, meta = read_image(image_path)
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[1, 2, 3] = 1
    mask[3, 0, 5] = 2
    out = write_mask(tmp_path / name, mask, meta)
    back = nib.load(str(out))
    assert back.shape == nib.load(str(image_path)).shape
    np.testing.assert_allclose(back.affine, AFFINE, atol=1e-6)
    np.testing.assert_allclose(back.get_qform(), AFFINE, atol=1e-5)
    stored = np.asarray(back.dataobj)
    assert stored[3, 2, 1] == 1
    assert stored[5, 0, 3] == 2
    again, meta2 = read_image(out)
    np.testing.assert_array_equal(again, mask)
    np.testing.assert_allclose(meta2.affine_array(), meta.affine_array(), atol=1e-6)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_four_d_single_volume_squeezed_and_series_refused(tmp_path: Path) -> None:
    volume, _ = read_image(_save(tmp_path / "one.nii", np.ones((4, 3, 2, 1), dtype=np.uint8)))
    assert volume.shape == (2, 3, 4)
    with pytest.raises(InputError, match=r"4D series"):
        read_image(_save(tmp_path / "many.nii", np.ones((4, 3, 2, 5), dtype=np.uint8)))


def test_two_d_nifti_becomes_one_slice(tmp_path: Path) -> None:
    volume, meta = read_image(_save(tmp_path / "flat.nii", np.ones((4, 3), dtype=np.uint8)))
    assert volume.shape == (1, 3, 4)
    assert meta.is_3d


def test_truncated_gzip_is_one_line_input_error(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.nii.gz", np.random.default_rng(0).random((30, 30, 30)))
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="bad.nii.gz") as info:
        read_image(bad)
    assert "\n" not in str(info.value)


def test_truncated_uncompressed_data(tmp_path: Path) -> None:
    good = _save(tmp_path / "good.nii", np.ones((20, 20, 20), dtype=np.float32))
    bad = tmp_path / "cut.nii"
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(InputError, match="cut.nii"):
        read_image(bad)


def test_not_nifti_and_empty_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.nii.gz"
    text.write_bytes(gzip.compress(b"hello, this is not an image" * 20))
    with pytest.raises(InputError, match="not a readable NIfTI"):
        read_image(text)
    empty = tmp_path / "empty.nii"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(empty)
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.nii.gz")


def test_enormous_declared_size_refused_before_reading(tmp_path: Path) -> None:
    path = _save(tmp_path / "huge.nii", np.zeros((2, 2, 2), dtype=np.float32))
    raw = bytearray(path.read_bytes())
    dims = np.frombuffer(bytes(raw[40:56]), dtype="<i2").copy()
    dims[1:4] = 30000  # 30000**3 float32 voxels, far above the limit
    raw[40:56] = dims.astype("<i2").tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="GiB limit"):
        read_image(path)


def test_missing_nibabel_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from umedsam.errors import MissingExtraError

    path = _save(tmp_path / "a.nii", np.zeros((2, 2, 2), dtype=np.uint8))
    monkeypatch.setitem(__import__("sys").modules, "nibabel", None)
    with pytest.raises(MissingExtraError, match=r"umedsam\[nifti\]"):
        read_image(path)


@pytest.mark.parametrize("subject", ["003", "017", "025"])
def test_shared_hippocampus_matches_dev_geometry(formats_dir: Path, subject: str) -> None:
    image, meta = read_image(formats_dir / "nifti" / f"hippocampus_{subject}_image.nii.gz")
    labels, label_meta = read_image(formats_dir / "nifti" / f"hippocampus_{subject}_label.nii.gz")
    raw = nib.load(str(formats_dir / "nifti" / f"hippocampus_{subject}_image.nii.gz"))
    assert image.shape == tuple(reversed(raw.shape))
    assert labels.shape == image.shape
    np.testing.assert_allclose(meta.affine_array(), raw.affine)
    np.testing.assert_allclose(meta.spacing, (1.0, 1.0, 1.0))
    assert set(np.unique(labels)) <= {0, 1, 2}
