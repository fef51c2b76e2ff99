"""Label maps imported as starting objects: checks and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.errors import InputError
from umedsam.ui.mask_import import label_objects, read_label_map


def _npz(tmp_path, array, key="segs"):
    path = tmp_path / "m.npz"
    np.savez(path, **{key: array})
    return path


def test_boxes_follow_the_drawn_convention_in_2d_and_3d(tmp_path) -> None:
    labels = np.zeros((4, 10, 12), np.uint8)
    labels[1:3, 2:5, 3:7] = 2
    labels[0, 0, 0] = 1
    found = label_objects(read_label_map(_npz(tmp_path, labels), "m.npz", (4, 10, 12), 10**6))
    assert [(label, box) for label, box, _ in found] == [
        (1, (0, 0, 0, 1, 1, 0)),  # x/y max exclusive, z max inclusive
        (2, (3, 2, 1, 7, 5, 2)),
    ]
    assert found[1][2].sum() == 2 * 3 * 4
    flat = label_objects(read_label_map(_npz(tmp_path, labels[1]), "m.npz", (10, 12), 10**6))
    assert [box for _, box, _ in flat] == [(3, 2, 7, 5)]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((8, 8), 0.5), "integer labels"),
        (np.full((8, 8), -1), "negative"),
        (np.zeros((8, 8)), "no labels"),
        (np.arange(64 * 5).reshape(16, 20), "at most 255"),
        (np.ones((4, 4)), "this image is"),
    ],
)
def test_bad_masks_are_refused_with_the_shown_name(tmp_path, array, message) -> None:
    shape = array.shape if array.shape != (4, 4) else (8, 8)
    with pytest.raises(InputError, match=message) as err:
        read_label_map(_npz(tmp_path, array), "shown.npz", shape, 10**6)
    assert "shown.npz" in str(err.value)


def test_an_npz_without_a_label_array_is_refused(tmp_path) -> None:
    with pytest.raises(InputError, match="'segs' or 'gts'"):
        read_label_map(_npz(tmp_path, np.ones((8, 8)), key="imgs"), "x.npz", (8, 8), 10**6)
