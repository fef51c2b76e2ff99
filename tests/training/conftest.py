"""Synthetic challenge folders (2D disks and a 3D sphere) for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _disk(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _image_from_labels(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = rng.integers(0, 60, size=labels.shape).astype(np.int64)
    img = img + 120 * (labels > 0) + 40 * (labels == 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_challenge_folder(root: Path, seed: int = 0, n2d: int = 3) -> Path:
    """Write ``root/imgs`` + ``root/gts`` with ``n2d`` 2D cases and one 3D case."""
    rng = np.random.default_rng(seed)
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    (root / "gts").mkdir(parents=True, exist_ok=True)
    modalities = ["US", "XRay", "Endoscopy"]
    for i in range(n2d):
        h, w = (48, 64) if i % 2 == 0 else (40, 40)
        gts = np.zeros((h, w), dtype=np.uint8)
        gts[_disk(h, w, h / 2 + rng.integers(-4, 5), w / 3, 8 + i)] = 1
        if i % 2 == 0:
            gts[5:14, w - 20 : w - 6] = 2
        img = np.repeat(_image_from_labels(gts, rng)[:, :, None], 3, axis=2)
        boxes = []
        for lab in range(1, gts.max() + 1):
            ys, xs = np.nonzero(gts == lab)
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        name = f"2DBox_{modalities[i % len(modalities)]}_synth_{i:03d}.npz"
        np.savez_compressed(root / "imgs" / name, imgs=img, boxes=np.array(boxes, dtype=np.int64))
        np.savez_compressed(root / "gts" / name, gts=gts, boxes=np.array(boxes, dtype=np.int64))
    d, h, w = 6, 32, 36
    vol = np.zeros((d, h, w), dtype=np.uint8)
    zz, yy, xx = np.mgrid[:d, :h, :w]
    vol[((zz - 2.5) / 2.0) ** 2 + ((yy - 16) / 9.0) ** 2 + ((xx - 18) / 9.0) ** 2 <= 1] = 1
    img = _image_from_labels(vol, rng)
    zs, ys, xs = np.nonzero(vol)
    boxes = np.array([[xs.min(), ys.min(), zs.min(), xs.max(), ys.max(), zs.max()]])
    spacing = np.array([1.0, 1.0, 2.5])
    name = "3DBox_MR_synth_100.npz"
    np.savez_compressed(root / "imgs" / name, imgs=img, boxes=boxes, spacing=spacing)
    np.savez_compressed(root / "gts" / name, gts=vol, boxes=boxes, spacing=spacing)
    return root


@pytest.fixture
def challenge_folder(tmp_path: Path) -> Path:
    """A small training folder: three 2D cases and one 3D volume."""
    return write_challenge_folder(tmp_path / "train", seed=0)


@pytest.fixture
def val_folder(tmp_path: Path) -> Path:
    """A small held-out folder with a different seed."""
    return write_challenge_folder(tmp_path / "val", seed=1, n2d=2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
