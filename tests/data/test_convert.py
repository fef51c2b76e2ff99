"""Image + labels -> challenge case: objects, boxes, dust removal, crop, spacing order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umedsam.data.convert import (
    as_label_map,
    boxes_from_objects,
    convert_case,
    extract_objects,
)
from umedsam.data.readers.meta import ImageMeta, meta_from_affine, plain_2d_meta


def _volume_meta(shape: tuple[int, int, int], spacing_zyx=(3.0, 0.5, 0.8)) -> ImageMeta:
    affine = np.diag([spacing_zyx[2], spacing_zyx[1], spacing_zyx[0], 1.0])
    return meta_from_affine(affine, shape, source_format="nifti")


def test_boxes_are_tight_inclusive_xyz() -> None:
    objects = np.zeros((5, 6, 7), dtype=np.int64)
    objects[1:3, 2:5, 3:4] = 1
    objects[4, 0, 6] = 2
    boxes = boxes_from_objects(objects)
    assert boxes.tolist() == [[3, 2, 1, 3, 4, 2], [6, 0, 4, 6, 0, 4]]
    flat = np.zeros((4, 5), dtype=np.int64)
    flat[1:3, 0:2] = 1
    assert boxes_from_objects(flat).tolist() == [[0, 1, 1, 2]]
    with pytest.raises(ValueError, match="missing"):
        boxes_from_objects(np.array([[0, 2]]))


def test_components_split_and_dust_removed() -> None:
    labels = np.zeros((4, 20, 20), dtype=np.int64)
    labels[:, 1:5, 1:5] = 3  # 64 voxels
    labels[:, 10:14, 10:14] = 3  # second component of the same label
    labels[0, 18, 18] = 3  # dust
    labels[1:3, 15:18, 1:4] = 5  # 18 voxels
    objects = extract_objects(labels, min_size=20)
    assert objects.max() == 2  # label 5 (18 voxels) and the dust voxel removed
    assert objects[0, 1, 1] == 1
    assert objects[0, 10, 10] == 2
    assert objects[0, 18, 18] == 0
    per_label = extract_objects(labels, split_components=False)
    assert per_label.max() == 2
    assert per_label[0, 10, 10] == 1
    assert per_label[1, 15, 1] == 2


def test_min_size_2d_drops_small_slice_pieces() -> None:
    labels = np.zeros((3, 10, 10), dtype=np.int64)
    labels[0, 2:6, 2:6] = 1  # 16 px
    labels[1, 2:6, 2:6] = 1
    labels[2, 2:4, 2:4] = 1  # 4 px on the last slice: dropped by min_size_2d=5
    objects = extract_objects(labels, min_size=10, min_size_2d=5)
    assert objects[2].max() == 0
    assert objects[:2].sum() == 32


def test_convert_volume_crop_and_spacing_order() -> None:
    image = np.full((6, 8, 9), -1000, dtype=np.int16)
    labels = np.zeros_like(image)
    labels[2:4, 1:3, 4:8] = 1
    meta = _volume_meta(image.shape)
    case = convert_case(image, meta, labels, modality="CT", crop_to_labels=True)
    assert case["imgs"].shape == (2, 8, 9)
    assert case["imgs"].max() == 0
    assert case["gts"].shape == (2, 8, 9)
    assert case["gts"].dtype == np.uint8
    assert case["boxes"].tolist() == [[4, 1, 0, 7, 2, 1]]
    np.testing.assert_allclose(case["spacing"], (0.8, 0.5, 3.0))  # SimpleITK (x, y, z)


def test_convert_2d_and_boxes_only() -> None:
    image = (np.arange(20 * 30).reshape(20, 30) * 50).astype(np.uint16)
    meta = plain_2d_meta(image.shape, source_format="png", channels=1)
    labels = np.zeros((20, 30), dtype=np.uint8)
    labels[5:10, 3:9] = 255
    case = convert_case(image, meta, labels)
    assert case["imgs"].shape == (20, 30, 3)
    assert case["imgs"].dtype == np.uint8
    assert "spacing" not in case
    assert case["boxes"].tolist() == [[3, 5, 8, 9]]
    prompts = convert_case(image, meta, boxes=np.array([[1, 2, 3, 4]]))
    assert "gts" not in prompts
    assert prompts["boxes"].tolist() == [[1, 2, 3, 4]]
    with pytest.raises(ValueError, match="shape"):
        convert_case(image, meta, boxes=np.array([[1, 2, 3, 4, 5, 6]]))
    with pytest.raises(ValueError, match="not both"):
        convert_case(image, meta, labels, boxes=np.array([[1, 2, 3, 4]]))
    with pytest.raises(ValueError, match="no object"):
        convert_case(image, meta, np.zeros((20, 30), np.uint8))
    with pytest.raises(ValueError, match="does not match"):
        convert_case(image, meta, np.zeros((3, 3), np.uint8))


def test_label_map_from_float_and_threshold() -> None:
    assert as_label_map(np.array([0.0, 1.0, 2.0], np.float32)).tolist() == [0, 1, 2]
    assert as_label_map(np.array([0, 130, 255]), threshold=127).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="fractional"):
        as_label_map(np.array([0.2, 0.7]))
    with pytest.raises(ValueError, match=">= 0"):
        as_label_map(np.array([-1, 0]))


@pytest.mark.parametrize("subject", ["003", "017", "025"])
def test_hippocampus_nifti_reproduces_dev_case(formats_dir: Path, subject: str) -> None:
    """MANIFEST.md: transpose to (z,y,x), MR percentile clip, per-label 3D dust <100 (26-conn)
    and 2D dust <10 px, slices containing labels kept: the converted NIfTI pair must equal the
    dev npz byte for byte."""
    from umedsam.data.readers import read_image

    dev = formats_dir.parent / "dev"
    name = f"3DBox_MR_HippocampusMSD_{subject}.npz"
    if not (dev / "imgs" / name).is_file():
        pytest.skip(f"dev case {name} not found")
    image, meta = read_image(formats_dir / "nifti" / f"hippocampus_{subject}_image.nii.gz")
    labels, _ = read_image(formats_dir / "nifti" / f"hippocampus_{subject}_label.nii.gz")
    case = convert_case(
        image, meta, labels, modality="MR", min_size=100, min_size_2d=10, crop_to_labels=True
    )
    with np.load(dev / "imgs" / name) as imgs, np.load(dev / "gts" / name) as gts:
        np.testing.assert_array_equal(case["imgs"], imgs["imgs"])
        np.testing.assert_array_equal(case["gts"], gts["gts"])
        np.testing.assert_array_equal(case["boxes"], imgs["boxes"])
        np.testing.assert_allclose(case["spacing"], imgs["spacing"])
