"""Property tests of the NIfTI, NRRD, DICOM and image readers: random and damaged files.

Each read either returns an array with its ImageMeta, or raises InputError (or
MissingExtraError when the optional library is absent), within the time bound and a memory bound
proportional to the ``max_bytes`` limit the readers are given (a flipped header byte can declare
any size; the readers must refuse sizes above the limit before allocating).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from umedsam.data.readers import read_image
from umedsam.errors import InputError, MissingExtraError

SUFFIXES = [".nii", ".nii.gz", ".nrrd", ".dcm", ".png", ".jpg", ".bmp", ".tif"]
DTYPES = ["uint8", "int16", "uint16", "int32", "float32", "float64"]


MAX_BYTES = 16 * 2**20
"""Decoded-size limit given to the readers: a damaged header may declare any size up to it."""


def _read(path: Path, bounded, **kw):  # type: ignore[no-untyped-def]
    """read_image (limit MAX_BYTES) under the bounds; returns (array, meta) or the clean error."""
    with bounded(mib=16 * MAX_BYTES / 2**20):
        try:
            return read_image(path, max_bytes=MAX_BYTES, **kw)
        except (InputError, MissingExtraError) as err:
            return err


def _check(result) -> None:  # type: ignore[no-untyped-def]
    if isinstance(result, Exception):
        assert str(result)
        assert "Traceback" not in str(result)
        return
    arr, meta = result
    assert arr.ndim in (2, 3)
    assert arr.size > 0
    assert len(meta.spacing) == (3 if meta.is_3d else 2) or len(meta.spacing) == arr.ndim


def _damage(data: bytes, how: str, where: float) -> bytes:
    if how == "truncate":
        return data[: int(len(data) * where)]
    if how == "flip" and data:
        pos = int((len(data) - 1) * where)
        return data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1 :]
    if how == "empty":
        return b""
    return data


DAMAGE = st.sampled_from(["none", "none", "truncate", "flip", "empty"])


@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=600))
def test_random_bytes_any_format(tmp_path: Path, bounded, suffix: str, data: bytes) -> None:
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(data)
    _check(_read(path, bounded))


@st.composite
def volumes(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=2, max_size=4)))
    arr = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) % 50
    arr = arr.astype(dtype)
    if dtype.kind == "f" and draw(st.booleans()):
        arr.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return arr


@given(
    arr=volumes(),
    damage=DAMAGE,
    where=st.floats(0, 1),
    gz=st.booleans(),
    zooms=st.lists(
        st.one_of(st.floats(-5, 5), st.sampled_from([np.nan, np.inf, 0.0])), min_size=4, max_size=4
    ),
)
def test_nifti(tmp_path: Path, bounded, arr, damage, where, gz, zooms) -> None:
    nib = pytest.importorskip("nibabel")
    img = nib.Nifti1Image(arr, np.eye(4))
    img.header["pixdim"][1:5] = zooms
    buf = io.BytesIO()
    file_map = nib.Nifti1Image.make_file_map({"image": buf, "header": buf})
    img.to_file_map(file_map)
    data = buf.getvalue()
    if gz:
        import gzip

        data = gzip.compress(data)
    path = tmp_path / ("v.nii.gz" if gz else "v.nii")
    path.write_bytes(_damage(data, damage, where))
    _check(_read(path, bounded))


@given(
    dims=st.lists(st.integers(2**11, 2**15 - 1), min_size=3, max_size=3),
    dtype=st.sampled_from(["int16", "float32"]),
)
def test_nifti_enormous_declared_size(tmp_path: Path, bounded, dims, dtype) -> None:
    nib = pytest.importorskip("nibabel")
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.dtype(dtype))
    hdr.set_data_shape(dims)
    path = tmp_path / "huge.nii"
    path.write_bytes(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 1024)
    result = _read(path, bounded)
    assert isinstance(result, InputError)


@given(
    rows=st.integers(0, 65535),
    cols=st.integers(0, 65535),
    bits=st.sampled_from([1, 8, 12, 16, 32]),
    frames=st.integers(0, 3),
    extra=st.integers(-64, 64),
    damage=DAMAGE,
    where=st.floats(0, 1),
    photometric=st.sampled_from(["MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL"]),
)
def test_dicom(
    tmp_path: Path, bounded, rows, cols, bits, frames, extra, damage, where, photometric
) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, max(bits - 1, 0)
    ds.PixelRepresentation = 1
    ds.SamplesPerPixel = 3 if photometric in ("RGB", "YBR_FULL") else 1
    ds.PhotometricInterpretation = photometric
    if frames:
        ds.NumberOfFrames = frames
    ds.PixelSpacing = [0.7, 0.7]
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    n = max(0, min(rows * cols * max(bits // 8, 1) * max(frames, 1), 4096) + extra)
    ds.PixelData = bytes(range(256)) * (n // 256) + bytes(n % 256)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    path = tmp_path / "slice.dcm"
    path.write_bytes(_damage(buf.getvalue(), damage, where))
    _check(_read(path, bounded))


@given(
    h=st.integers(1, 64),
    w=st.integers(1, 64),
    mode=st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "I", "F", "1"]),
    fmt=st.sampled_from(["png", "bmp", "tif", "jpg"]),
    damage=DAMAGE,
    where=st.floats(0, 1),
    labels=st.booleans(),
)
def test_images(tmp_path: Path, bounded, h, w, mode, fmt, damage, where, labels) -> None:
    pil = pytest.importorskip("PIL.Image")
    img = pil.new(mode, (w, h))
    buf = io.BytesIO()
    try:
        img.save(buf, format={"tif": "TIFF", "jpg": "JPEG"}.get(fmt, fmt.upper()))
    except (OSError, ValueError, KeyError):
        return  # this mode cannot be written in this format: nothing to read
    path = tmp_path / f"img.{fmt}"
    path.write_bytes(_damage(buf.getvalue(), damage, where))
    _check(_read(path, bounded, labels=labels))


@given(side=st.integers(2**16, 2**20))
def test_png_enormous_declared_size(tmp_path: Path, bounded, side: int) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    result = _read(path, bounded)
    assert isinstance(result, InputError)


@given(
    data=st.binary(max_size=300),
    dims=st.lists(st.integers(-3, 2**31), min_size=1, max_size=4),
    kind=st.sampled_from(["uint8", "short", "float", "double", "bogus"]),
    encoding=st.sampled_from(["raw", "gzip", "ascii", "bzip2"]),
)
def test_nrrd(tmp_path: Path, bounded, data, dims, kind, encoding) -> None:
    header = (
        f"NRRD0004\ntype: {kind}\ndimension: {len(dims)}\nsizes: {' '.join(map(str, dims))}\n"
        f"encoding: {encoding}\n\n"
    ).encode()
    path = tmp_path / "v.nrrd"
    path.write_bytes(header + data)
    _check(_read(path, bounded))
