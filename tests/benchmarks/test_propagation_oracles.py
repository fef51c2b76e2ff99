"""The box-step probe (benchmarks/propagation_oracles.py): its package rule is the package's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from umedsam.data.transforms import preprocess_slices
from umedsam.inference.interactive import PROPAGATED_THRESHOLD
from umedsam.inference.predictor import as_backend
from umedsam.models.registry import build_model

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "propagation_oracles.py"
_SPEC = importlib.util.spec_from_file_location("propagation_oracles", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
probe = importlib.util.module_from_spec(_SPEC)
sys.modules["propagation_oracles"] = probe
_SPEC.loader.exec_module(probe)


def _case() -> tuple[object, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    backend = as_backend(build_model("test_tiny").eval())
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (6, 40, 48)).astype(np.uint8)
    gts = np.zeros(imgs.shape, np.uint8)
    gts[1:5, 10:25, 12:30] = 1
    gts[2:6, 20:35, 25:40] = 2
    boxes = np.array([[12, 10, 1, 29, 24, 4], [25, 20, 2, 39, 34, 5]])
    arrays, _ = preprocess_slices(imgs, backend.image_size)
    emb = np.concatenate([backend.encode(arrays[z : z + 1]) for z in range(len(imgs))])
    return backend, imgs, boxes, gts, emb


def _segs(backend, boxes, gts, emb, **row) -> np.ndarray:
    segs = np.zeros(gts.shape, np.uint8)
    for i, box in enumerate(boxes):
        m = probe.propagate_object(
            backend, emb, box.astype(np.float64), gts == i + 1, PROPAGATED_THRESHOLD, **row
        )
        segs[m & (segs < i + 1)] = i + 1
    return segs


def test_the_package_row_is_the_package_box_step() -> None:
    backend, imgs, boxes, gts, emb = _case()
    segs = _segs(backend, boxes, gts, emb)
    probe._check_against_package(backend, imgs, boxes, segs)  # raises SystemExit if not


def test_the_oracle_choice_beats_the_rule_next_to_the_start() -> None:
    box = np.array([20.0, 20.0, 40.0, 40.0])
    cands = probe._candidates(box)
    assert len(cands) == 27 and cands[0].tolist() == box.tolist()
    backend, _, boxes, gts, emb = _case()
    gt = gts == 1
    args = (backend, emb, boxes[0].astype(np.float64), gt, PROPAGATED_THRESHOLD)
    rule = probe.propagate_object(*args)
    oracle = probe.propagate_object(*args, select=probe.select_oracle)
    z_key = 2  # the middle of z 1-4, as the official code takes it
    assert np.array_equal(rule[z_key], oracle[z_key])  # the start slice has no candidates
    for z in (z_key - 1, z_key + 1):  # same previous mask, and the rule's box is a candidate
        assert probe._dsc(oracle[z], gt[z]) >= probe._dsc(rule[z], gt[z])
