"""Boxes of a labelled case for benchmarking (umedsam.evaluation.benchmark.box_prompted_case)."""

from __future__ import annotations

import numpy as np
import pytest

from umedsam.data.sources import LabelledCase
from umedsam.errors import InputError
from umedsam.evaluation.benchmark import box_prompted_case


def _labelled(gts: np.ndarray) -> LabelledCase:
    return LabelledCase(np.zeros((*gts.shape, 3), np.uint8), gts, "US")


def test_boxes_follow_the_challenge_rule() -> None:
    gts = np.zeros((50, 50), np.int64)
    gts[10:20, 5:30] = 1
    case = box_prompted_case("c", _labelled(gts))
    assert case.name == "c" and not case.is_3d
    (x0, y0, x1, y1) = case.boxes[0]
    assert x0 <= 5 and y0 <= 10 and x1 >= 29 and y1 >= 19  # the tight box, moved out


def test_an_object_one_pixel_high_is_a_clear_error() -> None:
    gts = np.zeros((50, 50), np.int64)  # 50 px: every challenge margin rounds to 0
    gts[10:20, 5:30] = 1
    gts[40, 5:30] = 2
    with pytest.raises(InputError, match="object 2 is one pixel wide or high.*--min-size"):
        box_prompted_case("c", _labelled(gts))
