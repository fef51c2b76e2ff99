"""Grouping rules of two benchmark scripts, on hand-made inputs: many-part objects in
benchmarks/scribble_new_dev.py and the cascade table of benchmarks/student_fallback.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(_DIR))  # scribble_new_dev imports its sibling interactive.py
    try:
        spec = importlib.util.spec_from_file_location(name, _DIR / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(_DIR))


scribbles = _load("scribble_new_dev")
fallback = _load("student_fallback")


def test_part_count_ignores_specks() -> None:
    mask = np.zeros((40, 40), bool)
    mask[2:10, 2:10] = True  # a piece of 64 px
    mask[20:30, 20:24] = True  # a piece of 40 px
    mask[35:37, 35:37] = True  # a speck of 4 px
    assert scribbles.part_count(mask) == 2
    assert scribbles.part_count(mask[:15, :15]) == 1


def _row(set_name: str, parts: object, protocol: str, dsc: object, nsd: object) -> dict:
    return {"set": set_name, "type": "lesion", "parts": parts, "protocol": protocol,
            "dsc": dsc, "nsd": nsd}  # fmt: skip


def test_many_part_objects_are_reported_across_task_types() -> None:
    rows = [_row("ct-covid", 3, p, 0.4, 0.5) for p in scribbles.PROTOCOLS]
    rows += [_row("polyp-cvc", "1", p, "0.9", "0.95") for p in scribbles.PROTOCOLS]  # as read
    lines = scribbles.table(rows).splitlines()
    many = [line for line in lines if line.startswith(f"| {scribbles.MANY_PART} | all |")]
    assert len(many) == 1 and "| 1 | 0.4000 / 0.5000 |" in many[0]
    lesions = next(line for line in lines if line.startswith("| lesion | all |"))
    assert "| 2 | 0.6500 / 0.7250 |" in lesions


def _case(student: float, teacher: float, confidence: float) -> dict:
    return {"student_dsc": student, "teacher_dsc": teacher, "student_confidence": confidence,
            "student_seconds": 0.1, "teacher_seconds": 1.0}  # fmt: skip


def test_cascade_reruns_the_least_confident_cases() -> None:
    rows = [_case(0.5, 0.9, 0.1), _case(0.9, 0.9, 0.9)]
    table = {share: (dsc, seconds) for share, dsc, seconds in fallback.cascade_table(rows)}
    assert table[0.0] == pytest.approx((0.7, 0.1))
    assert table[0.5] == pytest.approx((0.9, 0.6))  # the unsure case re-run: the teacher's DSC
    assert table[1.0] == pytest.approx((0.9, 1.1))
