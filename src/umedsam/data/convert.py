"""Turn an image (and optionally its label map) into a CVPR24 challenge case.

A case is a dict of arrays as stored in the challenge npz files:

* ``imgs``: uint8, ``(D, H, W)`` for volumes or ``(H, W, 3)`` for 2D images
  (see :func:`umedsam.data.intensity.to_uint8`).
* ``gts``: label map of ``imgs``' spatial shape, objects numbered 1..N (uint8, uint16 above 255).
* ``boxes``: ``(N, 4)`` ``[x_min, y_min, x_max, y_max]`` or ``(N, 6)``
  ``[x_min, y_min, z_min, x_max, y_max, z_max]`` int64, the tight box of object *i* on row
  *i - 1*, max indices inclusive.
* ``spacing``: volumes only, float64 in SimpleITK ``(x, y, z)`` order as the challenge stores it
  (``meta.spacing`` reversed).

Objects follow the challenge preprocessing (``pre_CT_MR.py``): for each label value, connected
components smaller than ``min_size`` voxels (26-connected; 8-connected pixels for 2D) are removed,
then, for volumes, 2D components smaller than ``min_size_2d`` pixels on each slice (8-connected).
With ``split_components`` every remaining connected component becomes its own object (one box per
label and connected object), ordered by label value and then by position of its first voxel.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from umedsam.data.intensity import to_rgb, to_uint8
from umedsam.data.npz import label_dtype
from umedsam.data.readers.meta import ImageMeta

logger = logging.getLogger(__name__)


def as_label_map(labels: NDArray, *, threshold: float | None = None) -> NDArray[np.int64]:
    """Integer label map from a label array as read from disk.

    Args:
        labels: integer, bool or float array (floats must hold whole numbers, as in NIfTI label
            files stored as float32).
        threshold: binarise instead: ``labels > threshold`` becomes label 1 (for JPEG masks and
            0/255 images).

    Returns:
        int64 array of the same shape, 0 = background.

    Raises:
        ValueError: negative labels, non-integer floats without ``threshold``, or NaN.
    """
    data = np.asarray(labels)
    if threshold is not None:
        return (data > threshold).astype(np.int64)
    if data.dtype == bool:
        return data.astype(np.int64)
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)):
            raise ValueError("labels contain NaN or infinite values")
        rounded = np.round(data)
        if not np.allclose(data, rounded, atol=1e-3):
            raise ValueError(
                "labels hold fractional values (a probability map?); pass a threshold to binarise"
            )
        data = rounded
    elif not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"labels must be integer, bool or float; got dtype {data.dtype}")
    out = data.astype(np.int64)
    if out.size and out.min() < 0:
        raise ValueError(f"labels must be >= 0; got minimum {out.min()}")
    return out


def _structure(ndim: int) -> NDArray[np.bool_]:
    return np.ones((3,) * ndim, dtype=bool)  # 8-connectivity in 2D, 26 in 3D


def remove_small_components(mask: NDArray[np.bool_], min_size: int) -> NDArray[np.bool_]:
    """Drop connected components (8-/26-connected) with fewer than ``min_size`` pixels/voxels."""
    if min_size <= 1 or not mask.any():
        return mask
    components, count = ndimage.label(mask, structure=_structure(mask.ndim))
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[components]


def extract_objects(
    labels: NDArray,
    *,
    min_size: int = 0,
    min_size_2d: int = 0,
    split_components: bool = True,
) -> NDArray[np.int64]:
    """Renumber a label map into objects 1..N after the challenge's small-object filtering.

    Args:
        labels: ``(D, H, W)`` or ``(H, W)`` integer label map (see :func:`as_label_map`).
        min_size: per label, drop connected components smaller than this (voxels in 3D,
            pixels in 2D); 0 keeps all. The challenge's hippocampus dev cases used 100.
        min_size_2d: volumes only: then, per label and slice, drop 2D components smaller than
            this; 0 keeps all. The hippocampus dev cases used 10.
        split_components: one object per connected component (True) or per label value (False).

    Returns:
        int64 map with objects numbered 1..N (label order, then first-voxel order).

    Raises:
        ValueError: labels that are not 2D or 3D.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be (H, W) or (D, H, W); got shape {labels.shape}")
    objects = np.zeros(labels.shape, dtype=np.int64)
    next_id = 1
    for value in np.unique(labels):
        if value == 0:
            continue
        mask = remove_small_components(labels == value, min_size)
        if labels.ndim == 3 and min_size_2d > 1:
            for z in range(mask.shape[0]):
                if mask[z].any():
                    mask[z] = remove_small_components(mask[z], min_size_2d)
        if not mask.any():
            logger.info("label %s: nothing left after removing small objects", value)
            continue
        if split_components:
            components, count = ndimage.label(mask, structure=_structure(mask.ndim))
            objects[components > 0] = components[components > 0] + (next_id - 1)
            next_id += count
        else:
            objects[mask] = next_id
            next_id += 1
    return objects


def boxes_from_objects(objects: NDArray) -> NDArray[np.int64]:
    """Tight boxes of objects 1..N, inclusive max indices.

    Args:
        objects: ``(H, W)`` or ``(D, H, W)`` map numbered 1..N without gaps.

    Returns:
        ``(N, 4)`` ``[x_min, y_min, x_max, y_max]`` or ``(N, 6)``
        ``[x_min, y_min, z_min, x_max, y_max, z_max]`` int64; ``(0, 4|6)`` when empty.

    Raises:
        ValueError: ids are not 1..N (a missing id would leave a row without an object).
    """
    objects = np.asarray(objects)
    count = int(objects.max()) if objects.size else 0
    half = objects.ndim
    boxes = np.zeros((count, 2 * half), dtype=np.int64)
    slices = ndimage.find_objects(objects.astype(np.int64), max_label=count)
    for i, found in enumerate(slices):
        if found is None:
            raise ValueError(f"object {i + 1} is missing; objects must be numbered 1..{count}")
        # array axes (z,) y, x -> box order x, y(, z)
        lows = [s.start for s in reversed(found)]
        highs = [s.stop - 1 for s in reversed(found)]
        boxes[i] = lows + highs
    return boxes


def _labelled_case(
    imgs: NDArray,
    labels: NDArray,
    spatial: tuple[int, ...],
    objects_kw: dict,
    crop_to_labels: bool,
) -> dict[str, NDArray]:
    """``gts`` and ``boxes`` (and ``imgs``, cropped to the labelled slices when asked) of a
    case with labels (see :func:`convert_case`)."""
    label_map = as_label_map(labels)
    if label_map.ndim == 3 and len(spatial) == 2 and label_map.shape[2] in (3, 4):
        raise ValueError("colour label maps must be converted to ids first (read with labels=True)")
    if tuple(label_map.shape) != spatial:
        raise ValueError(f"labels shape {label_map.shape} does not match the image's {spatial}")
    objects = extract_objects(label_map, **objects_kw)
    count = int(objects.max())
    if count == 0:
        raise ValueError("no object left in the labels (empty, or all removed by min_size)")
    out: dict[str, NDArray] = {}
    if crop_to_labels and len(spatial) == 3:
        z_any = np.flatnonzero(objects.any(axis=(1, 2)))
        z0, z1 = int(z_any[0]), int(z_any[-1]) + 1
        logger.info("cropping slices %d..%d of %d", z0, z1 - 1, objects.shape[0])
        objects = objects[z0:z1]
        out["imgs"] = np.ascontiguousarray(imgs[z0:z1])
    out["gts"] = objects.astype(label_dtype(count))
    out["boxes"] = boxes_from_objects(objects)
    return out


def convert_case(
    image: NDArray,
    meta: ImageMeta,
    labels: NDArray | None = None,
    *,
    boxes: NDArray | None = None,
    modality: str | None = None,
    window: str | None = None,
    level: float | None = None,
    width: float | None = None,
    min_size: int = 0,
    min_size_2d: int = 0,
    split_components: bool = True,
    crop_to_labels: bool = False,
) -> dict[str, NDArray]:
    """Build a challenge case dict from an image read by :func:`umedsam.data.readers.read_image`.

    Args:
        image: ``(D, H, W)``, ``(H, W)`` or ``(H, W, 3)`` in source intensities.
        meta: its :class:`ImageMeta` (spatial shape, spacing, modality hint).
        labels: optional label map of the image's spatial shape (see :func:`as_label_map`);
            gives ``gts`` and one box per object.
        boxes: optional prompts instead of labels, ``(N, 4)`` or ``(N, 6)``
            (e.g. from :func:`umedsam.data.prompts.load_boxes`).
        modality: intensity hint overriding ``meta.modality`` (``"CT"``, ``"MR"``, ...).
        window: CT window preset (see :data:`umedsam.data.intensity.CT_WINDOWS`).
        level: explicit CT window level; with ``width``.
        width: explicit CT window width; with ``level``.
        min_size: see :func:`extract_objects`.
        min_size_2d: see :func:`extract_objects`.
        split_components: one object per connected component (default) or per label.
        crop_to_labels: volumes only: keep the slices from the first to the last one holding an
            object (the challenge kept only labelled slices); boxes are then relative to the crop.

    Returns:
        ``{"imgs", "boxes"[, "gts"][, "spacing"]}`` as described in the module docstring.

    Raises:
        ValueError: labels and boxes both given, shapes that disagree, no object left after
            filtering, boxes of the wrong dimension, or ``crop_to_labels`` without labels.
    """
    image = np.asarray(image)
    spatial = tuple(meta.shape)
    if tuple(image.shape[: len(spatial)]) != spatial:
        raise ValueError(f"image shape {image.shape} does not match meta.shape {spatial}")
    if labels is not None and boxes is not None:
        raise ValueError("give labels (boxes are derived from them) or boxes, not both")
    if crop_to_labels and labels is None:
        raise ValueError("crop_to_labels needs labels")
    is_3d = len(spatial) == 3
    if is_3d and image.ndim != 3:
        raise ValueError(f"volumes must be (D, H, W) grey; got shape {image.shape}")
    imgs = to_uint8(
        image, modality=modality or meta.modality, window=window, level=level, width=width
    )
    if not is_3d:
        imgs = to_rgb(imgs)
    case: dict[str, NDArray] = {"imgs": imgs}
    if labels is not None:
        sizes = {"min_size": min_size, "min_size_2d": min_size_2d}
        objects_kw = {**sizes, "split_components": split_components}
        case.update(_labelled_case(imgs, labels, spatial, objects_kw, crop_to_labels))
    elif boxes is not None:
        boxes = np.asarray(boxes, dtype=np.int64)
        if boxes.ndim != 2 or boxes.shape[1] != 2 * len(spatial):
            raise ValueError(
                f"a {len(spatial)}D image needs boxes of shape (N, {2 * len(spatial)}); got {boxes.shape}"
            )
        case["boxes"] = boxes
    if is_3d:
        case["spacing"] = np.asarray(meta.spacing_xyz(), dtype=np.float64)
    return case
