"""Training dataset over challenge npz folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umedsam.data.dataset import (
    SegmentationDataset,
    epoch_order,
    sample_rng,
)
from umedsam.data.transforms import preprocess_image


def test_index_2d_and_3d(challenge_folder) -> None:
    ds = SegmentationDataset(challenge_folder, image_size=64)
    cases_2d = [r for r in ds.refs if r.z is None]
    slices = [r for r in ds.refs if r.z is not None]
    assert len(cases_2d) == 3
    assert {r.z for r in slices} <= set(range(6))
    assert len(slices) >= 3
    assert cases_2d[0].labels == (1, 2)
    assert set(ds.modalities) == {"US", "XRay", "Endoscopy", "MR"}


def test_slices_per_volume_and_modality_filter(challenge_folder) -> None:
    ds = SegmentationDataset(challenge_folder, image_size=64, slices_per_volume=2)
    assert sum(r.z is not None for r in ds.refs) == 2
    only_mr = SegmentationDataset(challenge_folder, image_size=64, modalities=["MR"])
    assert set(only_mr.modalities) == {"MR"}


def test_sample_is_consistent_with_preprocessing(challenge_folder) -> None:
    ds = SegmentationDataset(challenge_folder, image_size=64, max_box_shift=0, flips=())
    s = ds.make_sample(0, label=1)
    with np.load(challenge_folder / "imgs" / ds.refs[0].case) as data:
        expected, new_hw = preprocess_image(data["imgs"], 64)
    assert torch.equal(s.image, torch.from_numpy(expected[0]))
    assert s.new_hw == new_hw
    assert s.mask.shape == (1, 64, 64)
    assert s.mask.dtype == torch.float32
    ys, xs = torch.nonzero(s.mask[0], as_tuple=True)
    # the (un-jittered) box is the scaled tight box and encloses the resized mask (+-1 px)
    x0, y0, x1, y1 = s.box.tolist()
    assert x0 <= xs.min() + 1
    assert y0 <= ys.min() + 1
    assert x1 >= xs.max() - 1
    assert y1 >= ys.max() - 1
    assert s.mask[0, new_hw[0] :, :].sum() == 0  # padding stays empty
    assert s.image_key.endswith("|2d|none")


def test_flipped_sample_flips_image_mask_and_box(challenge_folder) -> None:
    ds = SegmentationDataset(challenge_folder, image_size=64, max_box_shift=0)
    plain = ds.make_sample(1, label=1)
    flipped = ds.make_sample(1, label=1, flips=("horizontal",))
    h, w = plain.new_hw
    assert torch.equal(flipped.mask[0, :h, :w], plain.mask[0, :h, :w].flip(-1))
    assert flipped.image_key.endswith("|h")
    assert abs((w - 1 - plain.box[2]) - flipped.box[0]) <= 1


def test_random_sample_deterministic(challenge_folder) -> None:
    ds = SegmentationDataset(challenge_folder, image_size=64)
    a = ds.sample(0, sample_rng(3, 1, 5))
    b = ds.sample(0, sample_rng(3, 1, 5))
    assert torch.equal(a.box, b.box)
    assert torch.equal(a.mask, b.mask)
    assert a.label == b.label
    boxes = {tuple(ds.sample(0, sample_rng(3, 1, p)).box.tolist()) for p in range(20)}
    assert len(boxes) > 1


def test_3d_sample_uses_its_slice(challenge_folder) -> None:
    ds = SegmentationDataset(challenge_folder, image_size=64, load_images=False)
    idx = next(i for i, r in enumerate(ds.refs) if r.z is not None)
    s = ds.make_sample(idx, label=1)
    assert s.image is None
    assert f"|z{ds.refs[idx].z}|" in s.image_key
    assert s.mask.sum() > 0


def test_flip_variants(challenge_folder) -> None:
    ds = SegmentationDataset(challenge_folder, image_size=64)
    assert ds.flip_variants() == [(), ("horizontal",), ("vertical",), ("vertical", "horizontal")]
    assert SegmentationDataset(challenge_folder, flips=()).flip_variants() == [()]


def test_epoch_order() -> None:
    mods = ["A"] * 8 + ["B"] * 2
    a = epoch_order(mods, seed=0, epoch=0)
    assert sorted(a.tolist()) == list(range(10))
    assert np.array_equal(a, epoch_order(mods, seed=0, epoch=0))
    assert not np.array_equal(a, epoch_order(mods, seed=0, epoch=1))
    assert len(epoch_order(mods, seed=0, epoch=0, num_samples=25)) == 25
    bal = epoch_order(mods, seed=0, epoch=0, num_samples=2000, balanced=True)
    share_b = np.isin(bal, [8, 9]).mean()
    assert 0.45 < share_b < 0.55
    with pytest.raises(ValueError, match="empty dataset"):
        epoch_order([], seed=0, epoch=0)


def test_epoch_order_modality_weights() -> None:
    mods = ["A"] * 8 + ["B"] * 2
    kw = {"seed": 0, "epoch": 0, "num_samples": 4000, "balanced": True}
    plain = epoch_order(mods, **kw)
    assert np.array_equal(plain, epoch_order(mods, modality_weights={"A": 1.0}, **kw))
    capped = epoch_order(mods, modality_weights={"B": 0.25}, **kw)
    assert 0.17 < np.isin(capped, [8, 9]).mean() < 0.23  # 0.25 / 1.25
    only_a = epoch_order(mods, modality_weights={"B": 0.0}, **kw)
    assert not np.isin(only_a, [8, 9]).any()
    with pytest.raises(ValueError, match="no modality"):
        epoch_order(mods, modality_weights={"A": 0.0, "B": 0.0}, **kw)


def test_bad_folders_and_options(tmp_path, challenge_folder) -> None:
    with pytest.raises(FileNotFoundError, match="folder not found"):
        SegmentationDataset(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no usable object"):
        SegmentationDataset(challenge_folder, modalities=["CT"])
    with pytest.raises(ValueError, match="unknown flip"):
        SegmentationDataset(challenge_folder, flips=("sideways",))
    ds = SegmentationDataset(challenge_folder, image_size=64)
    with pytest.raises(ValueError, match="label 7 is not on"):
        ds.make_sample(0, label=7)


def test_neighbour_box_prompts_a_slice_with_the_adjacent_slices_box(tmp_path) -> None:
    """As 3D propagation does: slice z prompted with the object's box on z-1 or z+1."""
    for sub in ("imgs", "gts"):
        (tmp_path / sub).mkdir()
    imgs = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    gts = np.zeros((3, 64, 64), np.uint8)
    for z, (lo, hi) in enumerate([(10, 40), (16, 34), (22, 28)]):  # shrinking towards z = 2
        gts[z, lo:hi, lo:hi] = 1
    box = np.array([[10, 10, 0, 39, 39, 2]])
    np.savez(tmp_path / "imgs" / "3DBox_MR_s.npz", imgs=imgs, boxes=box)
    np.savez(tmp_path / "gts" / "3DBox_MR_s.npz", gts=gts)
    common = {"image_size": 64, "max_box_shift": 0, "flips": (), "load_images": False}
    own = {
        tuple(SegmentationDataset(tmp_path, **common).make_sample(i, 1).box.tolist())
        for i in range(3)
    }
    assert own == {(10.0, 10.0, 39.0, 39.0), (16.0, 16.0, 33.0, 33.0), (22.0, 22.0, 27.0, 27.0)}
    ds = SegmentationDataset(tmp_path, neighbour_box_prob=1.0, **common)
    by_z = {ref.z: i for i, ref in enumerate(ds.refs)}
    first = ds.make_sample(by_z[0], 1, rng=np.random.default_rng(0)).box.tolist()
    assert first == [16.0, 16.0, 33.0, 33.0]  # slice 0 has one neighbour
    middle = {
        tuple(ds.make_sample(by_z[1], 1, rng=np.random.default_rng(s)).box.tolist())
        for s in range(8)
    }
    assert middle == {(10.0, 10.0, 39.0, 39.0), (22.0, 22.0, 27.0, 27.0)}
    off = SegmentationDataset(tmp_path, neighbour_box_prob=0.0, **common)
    rng = np.random.default_rng(5)
    off.make_sample(by_z[1], 1, rng=rng)
    assert rng.random() == np.random.default_rng(5).random()  # no draw: old runs unchanged
    with pytest.raises(ValueError, match="neighbour_box_prob"):
        SegmentationDataset(tmp_path, neighbour_box_prob=1.5, **common)
