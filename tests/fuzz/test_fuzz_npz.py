"""Property tests of the challenge npz reader: random arrays, damaged files, huge declared sizes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from umedsam.data.npz import MAX_PIXELS, Case, load_case, npz_headers
from umedsam.errors import InputError

# numpy warnings (overflowing casts ...) mean a value slipped through unchecked.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

DTYPES = ["uint8", "int16", "int64", "float32", "float64", "bool", "complex64", "<U3", "object"]


@st.composite
def arrays(draw, max_dims: int = 4, max_side: int = 12) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, max_side), min_size=0, max_size=max_dims)))
    n = int(np.prod(shape)) if shape else 1
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = draw(
            st.lists(
                st.integers(max(info.min, -(2**40)), min(info.max, 2**40)), min_size=n, max_size=n
            )
        )
        return np.array(values, dtype=dtype).reshape(shape)
    if dtype.kind == "f":
        values = draw(
            st.lists(
                st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=n, max_size=n
            )
        )
        return np.array(values, dtype=dtype).reshape(shape)
    if dtype.kind == "b":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool).reshape(shape)
    if dtype.kind == "c":
        return np.full(shape, 1 + 2j, dtype=dtype)
    if dtype.kind == "U":
        return np.full(shape, "ab", dtype=dtype)
    arr = np.empty(shape, dtype=object)
    arr.fill({"a": 1})
    return arr


@st.composite
def boxes(draw) -> np.ndarray:
    cols = draw(st.sampled_from([4, 6, 3, 5]))
    rows = draw(st.integers(0, 3))
    values = draw(
        st.lists(
            st.one_of(
                st.integers(-50, 300),
                st.floats(allow_nan=True, allow_infinity=True),
                st.floats(-1e9, 1e9),
            ),
            min_size=rows * cols,
            max_size=rows * cols,
        )
    )
    return np.array(values, dtype=np.float64).reshape(rows, cols)


@st.composite
def cases(draw) -> dict[str, np.ndarray]:
    """A case-like dict: sometimes plausible (disk image + box), sometimes anything."""
    out: dict[str, np.ndarray] = {}
    if draw(st.booleans()):
        h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        ndim = draw(st.sampled_from([2, 3]))
        shape = (
            (h, w)
            if ndim == 2
            else draw(st.sampled_from([(h, w, 3), (draw(st.integers(1, 6)), h, w)]))
        )
        img = np.zeros(shape, np.uint8)
        img.flat[:: max(1, img.size // 7)] = draw(st.integers(0, 255))
        out["imgs"] = img
    elif draw(st.booleans()):
        out["imgs"] = draw(arrays())
    if draw(st.integers(0, 4)) > 0:
        out["boxes"] = draw(boxes())
    if draw(st.booleans()):
        out["spacing"] = draw(arrays(max_dims=1, max_side=4))
    if draw(st.booleans()):
        out["wrong_key"] = np.zeros(2)
    return out


def _write(path: Path, content: dict[str, np.ndarray], damage: str, cut: float) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **content)  # object arrays are pickled by numpy here
    data = buf.getvalue()
    if damage == "truncate":
        data = data[: int(len(data) * cut)]
    elif damage == "empty":
        data = b""
    elif damage == "flip":
        pos = int((len(data) - 1) * cut)
        data = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]
    path.write_bytes(data)


@given(
    content=cases(),
    damage=st.sampled_from(["none", "none", "truncate", "empty", "flip"]),
    cut=st.floats(0, 1),
)
def test_load_case_works_or_input_error(tmp_path: Path, bounded, content, damage, cut) -> None:
    path = tmp_path / "case.npz"
    _write(path, content, damage, cut)
    with bounded():
        try:
            case = load_case(path)
        except InputError as err:
            case = err
    if isinstance(case, InputError):
        assert str(path) in str(case)
        assert "\n" not in case.problem
        return
    assert isinstance(case, Case)
    assert case.boxes.dtype == np.int64
    assert case.boxes.shape[1] == (6 if case.is_3d else 4)
    h, w = case.imgs.shape[1:3] if case.is_3d else case.imgs.shape[:2]
    assert (case.boxes[:, [0, 1]] >= 0).all()
    assert (case.boxes[:, -3 if case.is_3d else 2] <= w).all()
    assert (case.boxes[:, -2 if case.is_3d else 3] <= h).all()


def _header_only_npz(path: Path, shape: tuple[int, ...], dtype: str = "|u1") -> None:
    hdr = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        hdr, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    box = io.BytesIO()
    np.save(box, np.array([[0, 0, 1, 1]]))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("imgs.npy", hdr.getvalue() + b"\x00" * 64)
        zf.writestr("boxes.npy", box.getvalue())


@given(
    shape=st.lists(st.integers(1, 2**40), min_size=2, max_size=3).filter(
        lambda s: int(np.prod(s, dtype=object)) > MAX_PIXELS
    )
)
def test_enormous_declared_size_refused_before_decoding(tmp_path: Path, bounded, shape) -> None:
    path = tmp_path / "huge.npz"
    _header_only_npz(path, tuple(shape))
    assert npz_headers(path)["imgs"][0] == tuple(shape)
    with bounded(mib=16):
        err = None
        try:
            load_case(path)
        except InputError as caught:
            err = caught
    assert err is not None
    assert "more than" in str(err)


@given(data=st.binary(max_size=400))
def test_random_bytes(tmp_path: Path, bounded, data: bytes) -> None:
    path = tmp_path / "junk.npz"
    path.write_bytes(data)
    with bounded():
        try:
            load_case(path)
        except InputError:
            return
    raise AssertionError("random bytes were accepted as a case")
