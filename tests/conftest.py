"""Shared fixtures: the tiny random model, synthetic challenge cases, the shared data folder.

Importing :mod:`tiny_models` registers the test-only models ``test_tiny`` and
``test_tiny_effvit``; subprocesses that build them import it as well (see that module).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_models  # noqa: F401 - registers test_tiny and test_tiny_effvit

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    torch.set_num_threads(1)  # tests are many small ops; one thread avoids oversubscription


@pytest.fixture(autouse=True, scope="session")
def _private_export_cache(tmp_path_factory) -> None:
    """Engine exports made by tests go to a session folder, never the user's cache."""
    os.environ["UMEDSAM_CACHE_DIR"] = str(tmp_path_factory.mktemp("umedsam-cache"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder: env ``UMEDSAM_SHARED_DIR``, else ``<repo>/../shared``; else skip.

    The one lookup of that folder for all tests; each test checks (and skips without) the files
    it needs below it.
    """
    env = os.environ.get("UMEDSAM_SHARED_DIR")
    path = Path(env) if env else REPO.parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path} (set UMEDSAM_SHARED_DIR)")
    return path


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    """A tiny random-weight MedSAMLite (64-px input) in eval mode, seeded."""
    from umedsam.models.registry import build_model

    torch.manual_seed(0)
    return build_model("test_tiny").eval()


@pytest.fixture(scope="session")
def real_model() -> torch.nn.Module:
    """LiteMedSAM with the bundled pretrained weights (skips if they are not installed)."""
    from umedsam.errors import CheckpointError
    from umedsam.models.pretrained import load_pretrained

    try:
        model, _ = load_pretrained("litemedsam")
    except CheckpointError as err:
        pytest.skip(f"LiteMedSAM weights not installed: {err}")
    return model


def disk_image(
    h: int = 96, w: int = 128, center=(48, 60), radius: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """A bright disk on a noisy background: (H, W, 3) uint8 image and its (H, W) bool mask."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2
    img = rng.integers(0, 60, size=(h, w)).astype(np.uint8)
    img[mask] = 200
    return np.repeat(img[:, :, None], 3, axis=-1), mask


def sphere_volume(
    d: int = 12, h: int = 64, w: int = 64, radius: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """A bright sphere in a (D, H, W) uint8 volume and its mask."""
    zz, yy, xx = np.mgrid[:d, :h, :w]
    mask = ((zz - d // 2) * 3) ** 2 + (yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= (3 * radius) ** 2
    vol = np.full((d, h, w), 20, dtype=np.uint8)
    vol[mask] = 220
    return vol, mask


@pytest.fixture
def make_disk():
    """Factory fixture: disk_image(h, w, center, radius)."""
    return disk_image


@pytest.fixture
def make_sphere():
    """Factory fixture: sphere_volume(d, h, w, radius)."""
    return sphere_volume


@pytest.fixture
def case_dir(tmp_path: Path) -> Path:
    """A folder with one synthetic 2D and one synthetic 3D challenge case (imgs/ and gts/)."""
    from umedsam.data.boxes import mask_to_box

    imgs, gts = tmp_path / "imgs", tmp_path / "gts"
    imgs.mkdir()
    gts.mkdir()
    img, mask = disk_image()
    box = mask_to_box(mask)[None]
    np.savez_compressed(imgs / "2DBox_Synthetic_disk.npz", imgs=img, boxes=box)
    np.savez_compressed(gts / "2DBox_Synthetic_disk.npz", gts=mask.astype(np.uint8), boxes=box)
    vol, sph = sphere_volume()
    box3 = mask_to_box(sph)[None]
    spacing = np.array([1.0, 1.0, 3.0])
    np.savez_compressed(imgs / "3DBox_Synthetic_sphere.npz", imgs=vol, boxes=box3, spacing=spacing)
    np.savez_compressed(
        gts / "3DBox_Synthetic_sphere.npz", gts=sph.astype(np.uint8), boxes=box3, spacing=spacing
    )
    return tmp_path


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
