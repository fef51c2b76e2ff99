"""DICOM reader: slice sorting, rescale to HU, LPS->RAS affine, NIfTI mask overlay, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umedsam.data.readers import read_image
from umedsam.data.writers import write_mask
from umedsam.errors import InputError

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

ROW_DIR = np.array([0.0, 1.0, 0.0])  # IOP first triplet: direction of increasing column index
COL_DIR = np.array([0.0, 0.0, -1.0])  # IOP second triplet: direction of increasing row index
NORMAL = np.cross(ROW_DIR, COL_DIR)  # (-1, 0, 0): a sagittal series
ORIGIN = np.array([10.0, -20.0, 30.0])


def _ct_slice(
    path: Path,
    pixels: np.ndarray,
    *,
    position: np.ndarray,
    series_uid: str,
    slope: float = 1.0,
    intercept: float = -1024.0,
    spacing: tuple[float, float] = (0.5, 0.75),
) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [f"{spacing[0]}", f"{spacing[1]}"]
    ds.SliceThickness = "2.0"
    ds.ImageOrientationPatient = [f"{v}" for v in (*ROW_DIR, *COL_DIR)]
    ds.ImagePositionPatient = [f"{v}" for v in position]
    ds.RescaleSlope = f"{slope}"
    ds.RescaleIntercept = f"{intercept}"
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _series(folder: Path, stored: np.ndarray, *, step: float = 2.0, uid: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    order = [k for k in (2, 0, 3, 1, *range(4, len(stored))) if k < len(stored)]  # scrambled
    for name_index, k in enumerate(order):
        _ct_slice(
            folder / f"img{name_index}.dcm",
            stored[k],
            position=ORIGIN + k * step * NORMAL,
            series_uid=uid,
        )
    return folder


def _stored(n: int = 4, rows: int = 6, cols: int = 5) -> np.ndarray:
    return (np.arange(n * rows * cols).reshape(n, rows, cols) * 7 + 1000).astype(np.uint16)


def test_series_sorted_rescaled_and_affine_ras(tmp_path: Path) -> None:
    stored = _stored()
    volume, meta = read_image(_series(tmp_path / "ct", stored))
    assert volume.shape == (4, 6, 5)
    np.testing.assert_array_equal(volume, stored.astype(np.int32) - 1024)  # HU, sorted
    assert meta.modality == "CT"
    assert meta.source_format == "dicom"
    np.testing.assert_allclose(meta.spacing, (2.0, 0.5, 0.75))
    # world (RAS) of voxel (k, r, c) = RAS(ORIGIN + c*0.75*ROW + r*0.5*COL + k*2*NORMAL)
    k, r, c = 3, 4, 2
    lps = ORIGIN + c * 0.75 * ROW_DIR + r * 0.5 * COL_DIR + k * 2.0 * NORMAL
    ras = meta.affine_array() @ np.array([c, r, k, 1.0])
    np.testing.assert_allclose(ras[:3], lps * np.array([-1, -1, 1]), atol=1e-6)


def test_nifti_mask_for_dicom_overlays_the_series(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    volume, meta = read_image(_series(tmp_path / "ct", _stored()))
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[3, 4, 2] = 1
    out = write_mask(tmp_path / "mask.nii.gz", mask, meta)
    img = nib.load(str(out))
    assert img.shape == (5, 6, 4)
    voxel = np.argwhere(np.asarray(img.dataobj) == 1)[0]
    world = img.affine @ np.array([*voxel, 1.0])
    lps = ORIGIN + 2 * 0.75 * ROW_DIR + 4 * 0.5 * COL_DIR + 3 * 2.0 * NORMAL
    np.testing.assert_allclose(world[:3], lps * np.array([-1, -1, 1]), atol=1e-5)


def test_single_file_is_2d_with_slice_affine(tmp_path: Path) -> None:
    pixels = _stored(1)[0]
    path = _ct_slice(tmp_path / "one.dcm", pixels, position=ORIGIN, series_uid="9.9", slope=2.0)
    image, meta = read_image(path)
    assert image.shape == (6, 5)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, pixels * 2.0 - 1024)
    assert meta.shape == (6, 5)
    assert meta.spacing == (0.5, 0.75)
    np.testing.assert_allclose(meta.affine_array()[:3, 3], ORIGIN * np.array([-1, -1, 1]))
    out = write_mask(tmp_path / "m.nii.gz", np.ones((6, 5), dtype=bool), meta)
    nib = pytest.importorskip("nibabel")
    assert nib.load(str(out)).shape == (5, 6, 1)


def test_folder_with_two_series_needs_a_choice(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    _series(folder / "a", _stored(2), uid="1.1")
    _series(folder / "b", _stored(3), uid="2.2")
    for sub in ("a", "b"):
        for f in (folder / sub).iterdir():
            f.rename(folder / f"{sub}_{f.name}")
    (folder / "notes.txt").write_text("not dicom")
    with pytest.raises(InputError, match="2 series"):
        read_image(folder)
    volume, _ = read_image(folder, series_uid="2.2")
    assert volume.shape[0] == 3


def test_duplicate_positions_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="share one position"):
        read_image(_series(tmp_path / "dup", _stored(3), step=0.0))


def test_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM image"):
        read_image(tmp_path)


def test_truncated_pixel_data_is_input_error(tmp_path: Path) -> None:
    path = _ct_slice(tmp_path / "t.dcm", _stored(1)[0], position=ORIGIN, series_uid="1")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 30])
    with pytest.raises(InputError, match="t.dcm"):
        read_image(path)


def test_enormous_declared_rows_refused(tmp_path: Path) -> None:
    path = _ct_slice(tmp_path / "big.dcm", _stored(1)[0], position=ORIGIN, series_uid="1")
    ds = pydicom.dcmread(str(path))
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 1000
    ds.save_as(str(path), enforce_file_format=True)
    with pytest.raises(InputError, match="GiB limit"):
        read_image(path)


def test_shared_ct_series(formats_dir: Path) -> None:
    volume, meta = read_image(formats_dir / "dicom" / "ct_series")
    assert volume.shape == (2, 512, 512)
    assert meta.modality == "CT"
    np.testing.assert_allclose(meta.spacing, (5.0, 0.488281, 0.488281))
    # slices sorted by z: the first slice is at IPP z = 60, the second at 65 (RAS z = LPS z)
    assert meta.origin[2] == pytest.approx(60.0)
    assert volume.min() < -1000 <= volume.max()  # HU after RescaleIntercept -1024


def test_shared_single_ct_slice(formats_dir: Path) -> None:
    image, meta = read_image(formats_dir / "dicom" / "single" / "ct.0.dcm")
    assert image.shape == (512, 512)
    assert meta.modality == "CT"
    assert meta.affine is not None
    np.testing.assert_allclose(meta.spacing, (1.074219, 1.074219))


def test_rt_structure_set_alone_is_not_an_image(formats_dir: Path) -> None:
    with pytest.raises(InputError, match="no image pixels"):
        read_image(formats_dir / "dicom" / "single" / "rtss.dcm")
