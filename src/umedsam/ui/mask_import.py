"""Existing masks as starting objects in the web app: read, check and split a label map.

The file is one the server stored under a name it chose (the client's name is only shown in
messages). Each label becomes an object whose box is the label's bounding box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from umedsam.errors import InputError

MAX_IMPORTED_LABELS = 255


def read_label_map(
    path: Path, shown_name: str, spatial_shape: tuple[int, ...], max_bytes: int
) -> NDArray[np.int64]:
    """The integer label map of a mask file (NIfTI, NRRD, PNG, npz ``segs``/``gts``).

    Raises:
        InputError: unreadable file, a shape other than ``spatial_shape``, non-integer or
            negative values, no labels, more than :data:`MAX_IMPORTED_LABELS` labels.
    """
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            key = next((k for k in ("segs", "gts") if k in data.files), None)
            if key is None:
                raise InputError(shown_name, "an npz mask needs a 'segs' or 'gts' array")
            labels = np.asarray(data[key])
    else:
        from umedsam.data.readers import read_image

        labels, _ = read_image(path, labels=True, max_bytes=max_bytes)
        labels = np.asarray(labels)
        if labels.ndim == len(spatial_shape) + 1 and labels.shape[-1] == 1:
            labels = labels[..., 0]
    if tuple(labels.shape) != spatial_shape:
        raise InputError(shown_name, f"the mask is {labels.shape}; this image is {spatial_shape}")
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise InputError(shown_name, "the mask must hold integer labels")
    labels = np.rint(labels).astype(np.int64)
    if labels.min() < 0:
        raise InputError(shown_name, "the mask holds negative labels")
    count = len(np.unique(labels[labels > 0]))
    if count == 0:
        raise InputError(shown_name, "the mask holds no labels: nothing to import")
    if count > MAX_IMPORTED_LABELS:
        raise InputError(
            shown_name, f"the mask holds {count} labels; at most {MAX_IMPORTED_LABELS}"
        )
    return labels


def label_objects(labels: NDArray[np.int64]) -> list[tuple[int, tuple[int, ...], NDArray]]:
    """Per label (ascending): the label, its box as drawn boxes are (:func:`drawn_box`), its mask."""
    objects = []
    for label in (int(v) for v in np.unique(labels) if v > 0):
        mask = labels == label
        objects.append((label, drawn_box(mask), mask))
    return objects


def drawn_box(mask: NDArray) -> tuple[int, ...]:
    """The box of a non-empty mask as the app's drawn boxes are: x_min, y_min, (z_min,) x_max,
    y_max, (z_max), with x_max and y_max exclusive and z inclusive.

    Raises:
        ValueError: an empty mask.
    """
    from umedsam.data.boxes import mask_to_box

    tight = mask_to_box(mask)
    if tight is None:
        raise ValueError("an empty mask has no box")
    corners = [int(v) for v in tight]
    half = len(corners) // 2
    corners[half] += 1
    corners[half + 1] += 1
    return tuple(corners)
