"""Property tests of checkpoint loading: damaged, truncated, random and pickle-carrying files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from umedsam.errors import CheckpointError
from umedsam.models.checkpoint import load_checkpoint, read_state_dict
from umedsam.models.registry import build_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.manual_seed(0)
    torch.save({"model": build_model("test_tiny").state_dict(), "epoch": 3}, path)
    return path.read_bytes()


@given(
    how=st.sampled_from(["truncate", "flip", "empty", "append"]),
    where=st.floats(0, 1),
    byte=st.integers(1, 255),
)
def test_damaged_checkpoint(tmp_path: Path, saved: bytes, bounded, how, where, byte) -> None:
    pos = int((len(saved) - 1) * where)
    data = {
        "truncate": saved[:pos],
        "flip": saved[:pos] + bytes([saved[pos] ^ byte]) + saved[pos + 1 :],
        "empty": b"",
        "append": saved + bytes([byte]) * 100,
    }[how]
    path = tmp_path / "ckpt.pt"
    path.write_bytes(data)
    model = build_model("test_tiny")
    message = ""
    with bounded():
        try:
            load_checkpoint(model, path)
        except CheckpointError as err:
            message = str(err)
    if message:
        assert str(path) in message
        if how in ("truncate", "empty"):
            assert "refused" not in message  # damage is not mistaken for a pickle payload


@given(data=st.binary(max_size=2000))
def test_random_bytes_checkpoint(tmp_path: Path, bounded, data: bytes) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(data)
    with bounded(), pytest.raises(CheckpointError):
        read_state_dict(path)


class _Payload:
    def __reduce__(self):  # pragma: no cover - never executed by a weights-only load
        return (exec, ("raise SystemExit('payload ran')",))


@given(wrap=st.sampled_from(["top", "nested", "raw_pickle"]))
def test_pickle_payload_refused(tmp_path: Path, bounded, wrap: str) -> None:
    path = tmp_path / "evil.pt"
    if wrap == "raw_pickle":
        path.write_bytes(pickle.dumps({"w": _Payload()}))
    else:
        obj = {"model": {"w": torch.zeros(1)}}
        if wrap == "top":
            obj["extra"] = _Payload()
        else:
            obj["model"]["x"] = [_Payload()]
        torch.save(obj, path)
    with bounded(), pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)
