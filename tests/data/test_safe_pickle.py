"""The restricted unpickler of the interactive format's pickled keys."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from umedsam.data.safe_pickle import load_pickled_key
from umedsam.errors import InputError


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _Custom:
    pass


def test_plain_challenge_data_loads(tmp_path: Path) -> None:
    path = tmp_path / "case.npz"
    clicks = [{"fg": [[1, 2, 3], np.array([4, 5, 6])], "bg": []}, {"fg": [], "bg": [[7, 8, 9]]}]
    boxes = [{"z_min": np.int64(1), "z_mid": np.int64(3), "z_max": np.float32(5.0)}]
    np.savez(path, clicks=np.array(clicks, dtype=object), boxes=np.array(boxes, dtype=object))
    got = load_pickled_key(path, "clicks")
    assert got[0]["fg"][0] == [1, 2, 3] and got[1]["bg"] == [[7, 8, 9]]
    assert np.array_equal(got[0]["fg"][1], [4, 5, 6])
    assert load_pickled_key(path, "boxes")[0]["z_mid"] == 3


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            np.array([_Evil()], dtype=object),
            "refused to load posix.system|refused to load nt.system",
        ),
        (np.array([_Custom()], dtype=object), "refused to load"),
        (np.array([{1: "x"}], dtype=object), "non-string key"),
        (np.array([b"bytes"], dtype=object), "holds a bytes"),
    ],
)
def test_anything_else_is_refused(tmp_path: Path, payload, message) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, clicks=payload)
    with pytest.raises(InputError, match=message) as info:
        load_pickled_key(path, "clicks")
    assert "evil.npz" in str(info.value) and "'clicks'" in str(info.value)


def test_missing_and_damaged_keys(tmp_path: Path) -> None:
    path = tmp_path / "case.npz"
    np.savez(path, imgs=np.zeros(3))
    with pytest.raises(InputError, match="missing key 'clicks'"):
        load_pickled_key(path, "clicks")
    raw = pickle.dumps([1, 2, 3])[:-3]  # truncated pickle after a valid .npy header
    header = np.lib.format.header_data_from_array_1_0(np.array([None], dtype=object))
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as zf:
        zf.writestr("clicks.npy", buf.getvalue() + raw)
    with pytest.raises(InputError, match="not a readable array"):
        load_pickled_key(tmp_path / "bad.npz", "clicks")
