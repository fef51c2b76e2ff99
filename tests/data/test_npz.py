"""Reading and validating challenge cases; atomic writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umedsam.data.npz import load_case, save_npz_atomic
from umedsam.errors import InputError


def _write(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_load_2d_and_3d(case_dir: Path) -> None:
    c2 = load_case(case_dir / "imgs" / "2DBox_Synthetic_disk.npz")
    assert not c2.is_3d and c2.num_objects == 1 and c2.boxes.dtype == np.int64
    c3 = load_case(case_dir / "imgs" / "3DBox_Synthetic_sphere.npz")
    assert c3.is_3d and c3.spacing is not None and c3.spacing.shape == (3,)


IMG = np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3).astype(np.uint8)
VOL = np.arange(4 * 32 * 32).reshape(4, 32, 32).astype(np.uint8)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"boxes": np.array([[1, 1, 5, 5]])}, "missing key 'imgs'"),
        ({"imgs": IMG}, "missing key 'boxes'"),
        ({"imgs": IMG.astype(bool), "boxes": np.array([[1, 1, 5, 5]])}, "real numeric"),
        ({"imgs": IMG.astype(np.float32) * np.nan, "boxes": np.array([[1, 1, 5, 5]])}, "NaN"),
        ({"imgs": np.zeros((64, 64, 3), np.uint8), "boxes": np.array([[1, 1, 5, 5]])}, "constant"),
        ({"imgs": IMG, "boxes": np.array([[1, 1, 70, 5]])}, "outside"),
        ({"imgs": IMG, "boxes": np.array([[5, 1, 5, 9]])}, "inverted"),
        ({"imgs": IMG, "boxes": np.array([[1, 1, 5]])}, "cannot tell 2D from 3D"),
        ({"imgs": IMG, "boxes": np.array([[1.0, np.nan, 5, 5]])}, "NaN"),
        ({"imgs": VOL, "boxes": np.array([[1, 1, 3, 5, 5, 1]])}, "inverted in z"),
        ({"imgs": VOL, "boxes": np.array([[1, 1, 0, 5, 5, 4]])}, "4 slices"),
        ({"imgs": VOL[:, :, :0], "boxes": np.array([[1, 1, 0, 5, 5, 1]])}, "empty"),
        ({"imgs": IMG[None, None], "boxes": np.array([[1, 1, 5, 5]])}, "cannot tell"),
    ],
)
def test_bad_inputs_name_file_and_problem(tmp_path: Path, arrays, message) -> None:
    path = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match=message) as info:
        load_case(path)
    assert "bad.npz" in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_case(empty)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(InputError, match="not a readable .npz"):
        load_case(junk)
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, imgs=np.array([object()], dtype=object), boxes=np.array([[1, 1, 2, 2]]))
    with pytest.raises(InputError, match="pickled"):
        load_case(pickled)
    with pytest.raises(InputError, match="not found"):
        load_case(tmp_path / "missing.npz")


def test_save_npz_atomic(tmp_path: Path) -> None:
    out = save_npz_atomic(tmp_path / "sub" / "x.npz", segs=np.ones((3, 3), np.uint8))
    with np.load(out) as data:
        assert data["segs"].sum() == 9
    assert [p.name for p in out.parent.iterdir()] == ["x.npz"]


def test_save_npz_atomic_failure_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = save_npz_atomic(tmp_path / "x.npz", segs=np.ones((3, 3), np.uint8))

    def broken(handle, **arrays) -> None:
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        save_npz_atomic(out, segs=np.zeros((3, 3), np.uint8))
    with np.load(out) as data:
        assert data["segs"].sum() == 9
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_save_npz_atomic_temporary_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # resumed runs delete `.{stem}.*.tmp` files (umedsam.inference.manifest): the temporary
    # file of an interrupted write must match that pattern
    seen: list[str] = []

    def record(handle, **arrays) -> None:
        seen.append(Path(handle.name).name)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", record)
    with pytest.raises(KeyboardInterrupt):
        save_npz_atomic(tmp_path / "case.npz", segs=np.zeros((3, 3), np.uint8))
    assert len(seen) == 1
    assert Path(seen[0]).match(".case.*.tmp")
    assert seen[0].startswith(".case.npz.")
    assert list(tmp_path.iterdir()) == []
