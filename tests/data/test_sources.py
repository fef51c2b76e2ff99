"""Labelled sources: image/mask folders, nnU-Net raw, npz folders; bad data; weighted mixing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from umedsam.data.dataset import SegmentationDataset, epoch_order
from umedsam.data.nnunet import NnUNetRawSource
from umedsam.data.sources import (
    ImageMaskFolderSource,
    NpzFolderSource,
    open_source,
    sources_from_config,
)


def _disk_image(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 5, (200, 180, 160), -1)
    return image


def _disk_mask(size: int = 64, value: int = 255) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), size // 5, value, -1)
    return mask


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


@pytest.fixture
def folder_pairs(tmp_path: Path) -> Path:
    """Good pairs a, b (PNG/JPEG images, 0/255 masks) and one of each kind of bad data."""
    root = tmp_path / "polyps"
    _write(root / "images" / "a.png", _disk_image(seed=1))
    _write(root / "masks" / "a.png", _disk_mask())
    _write(root / "images" / "b.jpg", _disk_image(seed=2))
    _write(root / "masks" / "b.png", _disk_mask())
    _write(root / "images" / "lonely.png", _disk_image())  # no mask
    _write(root / "masks" / "orphan.png", _disk_mask())  # no image
    _write(root / "images" / "small.png", _disk_image(32))  # mask of another size
    _write(root / "masks" / "small.png", _disk_mask(64))
    _write(root / "images" / "empty.png", _disk_image())
    _write(root / "masks" / "empty.png", np.zeros((64, 64), np.uint8))
    _write(root / "images" / "jpegmask.png", _disk_image())  # a smoothed mask: many values
    soft = cv2.GaussianBlur(_disk_mask(), (15, 15), 5)
    _write(root / "masks" / "jpegmask.png", soft)
    _write(root / "images" / "broken.png", _disk_image())
    (root / "masks" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_folder_source_reports_each_bad_pair_once_and_keeps_the_good(folder_pairs) -> None:
    source = ImageMaskFolderSource(
        folder_pairs / "images", folder_pairs / "masks", modality="Endoscopy"
    )
    assert source.name == "polyps"
    assert source.problems == [
        "lonely.png: no mask with stem 'lonely' in " + str(folder_pairs / "masks"),
        "orphan.png: no image with stem 'orphan' in " + str(folder_pairs / "images"),
    ]
    dataset = SegmentationDataset(source, image_size=64)
    assert sorted(ref.case for ref in dataset.refs) == ["a", "b"]
    bad = dataset.problems[2:]
    assert len(bad) == 4
    for stem, words in (
        ("small", "differs from the image's 32x32"),
        ("empty", "empty mask"),
        ("jpegmask", "not a binary or label mask"),
        ("broken", "broken.png"),
    ):
        (line,) = [p for p in bad if f"{stem}.png" in p]
        assert words in line, line
    sample = dataset.sample(0, np.random.default_rng(0))
    assert sample.image is not None and sample.image.shape == (3, 64, 64)
    assert sample.modality == "Endoscopy" and sample.mask.sum() > 100


def test_jpeg_masks_are_read_as_binary_masks(tmp_path, caplog) -> None:
    """A lossy mask carries stray values along its edges; it is one object, not many labels."""
    _write(tmp_path / "images" / "k.png", _disk_image())
    _write(tmp_path / "masks" / "k.jpg", _disk_mask())
    stray = np.unique(cv2.imread(str(tmp_path / "masks" / "k.jpg"), cv2.IMREAD_GRAYSCALE))
    assert 2 < stray.size <= 64  # what made it a 'label map' with specks before
    with caplog.at_level("WARNING"):
        source = ImageMaskFolderSource(tmp_path / "images", tmp_path / "masks", modality="US")
    assert "1 mask(s) in JPEG" in caplog.text
    gts = source.load("k").gts
    assert set(np.unique(gts)) == {0, 1}
    assert abs(int(gts.sum()) - int((_disk_mask() > 0).sum())) < 20


def test_nothing_valid_left_stops_before_training(tmp_path) -> None:
    _write(tmp_path / "images" / "x.png", _disk_image())
    _write(tmp_path / "masks" / "x.png", np.zeros((64, 64), np.uint8))
    source = ImageMaskFolderSource(tmp_path / "images", tmp_path / "masks", modality="US")
    with pytest.raises(ValueError, match="no usable object .* 1 problem"):
        SegmentationDataset(source)


def test_objects_are_labels_or_components_and_ignore_masks_cut(tmp_path) -> None:
    two = np.zeros((64, 64), np.uint8)
    two[5:15, 5:15] = 255
    two[40:50, 40:50] = 255
    _write(tmp_path / "images" / "p.png", _disk_image())
    _write(tmp_path / "masks" / "p.png", two)
    labelled = np.zeros((64, 64), np.uint8)
    labelled[5:15, 5:15] = 1
    labelled[40:50, 40:50] = 2
    _write(tmp_path / "images" / "q.png", _disk_image())
    _write(tmp_path / "masks" / "q.png", labelled)
    fov = np.zeros((64, 64), np.uint8)
    fov[:32] = 255
    _write(tmp_path / "fov" / "p.png", fov)
    _write(tmp_path / "fov" / "q.png", fov)
    images, masks = tmp_path / "images", tmp_path / "masks"

    as_labels = ImageMaskFolderSource(images, masks, modality="Fundus")
    assert as_labels.load("p").gts.max() == 1  # binary: one object
    assert as_labels.load("q").gts.max() == 2  # label values: one object each
    parts = ImageMaskFolderSource(images, masks, modality="Fundus", objects="components")
    assert parts.load("p").gts.max() == 2
    cut = ImageMaskFolderSource(images, masks, modality="Fundus", ignore=tmp_path / "fov")
    case = cut.load("q")
    assert case.gts.max() == 1 and not case.gts[32:].any()  # label 2 lies outside the FOV
    assert case.valid is not None and case.valid[:32].all() and not case.valid[32:].any()
    assert cut.case_names() == ["p", "q"]
    only = ImageMaskFolderSource(images, masks, modality="Fundus", cases=["q", "zz"])
    assert only.case_names() == ["q"] and "'zz'" in only.problems[0]


def _nnunet(root: Path, ending: str) -> Path:
    """A tiny nnU-Net v2 raw dataset: two CT volumes (NIfTI) or two RGB 2D cases (PNG)."""
    import nibabel as nib

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    channels = {"0": "CT"} if ending == ".nii.gz" else {"0": "R", "1": "G", "2": "B"}
    spec = {"channel_names": channels, "labels": {"background": 0, "organ": 1}, "numTraining": 2}
    (root / "dataset.json").write_text(json.dumps({**spec, "file_ending": ending}))
    for i in range(2):
        if ending == ".nii.gz":
            hu = np.full((40, 32, 6), -1000, np.int16)  # x, y, z as NIfTI stores it
            hu[10:25, 8:20, 1:5] = 60
            labels = (hu > 0).astype(np.uint8)
            affine = np.diag([0.8, 0.8, 2.5, 1.0])
            nib.save(nib.Nifti1Image(hu, affine), root / "imagesTr" / f"ct_{i:03d}_0000.nii.gz")
            nib.save(nib.Nifti1Image(labels, affine), root / "labelsTr" / f"ct_{i:03d}.nii.gz")
        else:
            image = _disk_image(seed=i)
            for c in range(3):
                _write(root / "imagesTr" / f"rgb_{i:03d}_{c:04d}.png", image[..., c])
            _write(root / "labelsTr" / f"rgb_{i:03d}.png", (_disk_mask() > 0).astype(np.uint8))
    _write(root / "imagesTr" / f"nolabel_0000{ending}".replace(".nii.gz", ".png"), _disk_image())
    return root


def test_nnunet_raw_volumes_are_windowed_and_keep_spacing(tmp_path) -> None:
    source = NnUNetRawSource(_nnunet(tmp_path / "Dataset001_Tiny", ".nii.gz"))
    assert source.case_names() == ["ct_000", "ct_001"] and source.modality("ct_000") == "CT"
    case = source.load("ct_000")
    assert case.imgs.dtype == np.uint8 and case.imgs.shape == (6, 32, 40)
    assert case.gts.shape == (6, 32, 40) and case.gts.max() == 1
    np.testing.assert_allclose(case.spacing, [0.8, 0.8, 2.5])
    assert case.imgs[2, 10, 12] == 140 and case.imgs[0, 0, 0] == 0  # soft tissue: W400 L40
    dataset = SegmentationDataset(source, image_size=64)
    assert {ref.z for ref in dataset.refs} == {1, 2, 3, 4}


def test_nnunet_raw_2d_rgb_stacks_its_three_channels(tmp_path) -> None:
    source = NnUNetRawSource(_nnunet(tmp_path / "Dataset002_Rgb", ".png"))
    assert source.case_names() == ["rgb_000", "rgb_001"]
    case = source.load("rgb_001")
    np.testing.assert_array_equal(case.imgs, _disk_image(seed=1))
    assert case.spacing is None and case.gts.max() == 1


def test_open_source_from_config_mappings(folder_pairs, tmp_path, case_dir) -> None:
    lst = tmp_path / "train.txt"
    lst.write_text("# the training stems\na\n\nb  # second\n")
    source = open_source(
        {
            "kind": "folder",
            "images": str(folder_pairs / "images"),
            "masks": str(folder_pairs / "masks"),
            "modality": "Endoscopy",
            "weight": 0.5,
            "cases": str(lst),
        }
    )
    assert source.case_names() == ["a", "b"] and source.weight == 0.5
    with pytest.raises(ValueError, match="unknown key"):
        open_source({"kind": "folder", "images": "x", "masks": "y", "modality": "X", "bad": 1})
    with pytest.raises(ValueError, match="kind must be one of"):
        open_source({"kind": "zip"})
    with pytest.raises(ValueError, match="'modality' is required"):
        open_source({"kind": "folder", "images": "x", "masks": "y"})
    unlabelled = {"kind": "folder", "images": str(folder_pairs / "images"), "modality": "E"}
    with pytest.raises(ValueError, match="distillation only"):
        sources_from_config(None, [unlabelled])
    both = sources_from_config(str(case_dir), [unlabelled], labelled=False)
    assert isinstance(both[0], NpzFolderSource) and not both[1].labelled
    items = SegmentationDataset(both, image_size=64)
    assert sum(1 for ref in items.refs if ref.source == 1) == 7  # every image, no labels


def test_sources_mix_by_weight_and_one_source_keeps_its_order() -> None:
    modalities = ["CT"] * 4 + ["Endoscopy"] * 400
    sources = [0] * 4 + [1] * 400
    kw = {"seed": 3, "epoch": 1, "num_samples": 4000}
    mixed = epoch_order(modalities, sources=sources, source_weights=[1.0, 1.0], **kw)
    share_ct = np.mean(mixed < 4)
    assert 0.46 < share_ct < 0.54  # 4 CT items drawn as often as 400 polyps
    assert np.array_equal(
        mixed, epoch_order(modalities, sources=sources, source_weights=[1.0, 1.0], **kw)
    )
    skewed = epoch_order(modalities, sources=sources, source_weights=[1.0, 3.0], **kw)
    assert 0.22 < np.mean(skewed < 4) < 0.28
    single = epoch_order(modalities, sources=[0] * 404, **kw)
    assert np.array_equal(single, epoch_order(modalities, **kw))
