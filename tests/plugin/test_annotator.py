"""The plugin's annotation state (Qt-free): one label map, locked labels, undo/redo, review."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.inference.backends.torch import TorchBackend
from umedsam.models.registry import build_model
from umedsam.napari.annotator import Annotator, Computed, ObjectPrompts, next_free_label
from umedsam.ui.images import LoadedImage, npz_meta
from umedsam.ui.model_holder import ModelHolder


def tiny_holder() -> ModelHolder:
    torch.manual_seed(0)
    backend = TorchBackend(build_model("test_tiny").eval())
    return ModelHolder(lambda _name: lambda: backend, "test_tiny", route_corrections=False)


def disk_image(depth: int | None = None) -> LoadedImage:
    yy, xx = np.mgrid[:48, :48]
    disk = (((yy - 24) ** 2 + (xx - 24) ** 2) < 120).astype(np.uint8) * 200 + 20
    if depth is None:
        return LoadedImage("disk", np.repeat(disk[..., None], 3, 2), npz_meta((48, 48), None, 3))
    pixels = np.ascontiguousarray(np.repeat(disk[None], depth, 0))
    return LoadedImage("disks", pixels, npz_meta((depth, 48, 48), np.array([1, 1, 2.5]), 1))


def result(prompts: ObjectPrompts, mask: np.ndarray) -> Computed:
    return Computed(prompts, mask, {"iou": 0.5, "confidence": 0.7, "voxels": 1}, 0.0)


def test_new_objects_never_overwrite_locked_labels(tmp_path: Path) -> None:
    labels = np.zeros((48, 48), np.int32)
    labels[0:10, 0:10] = 4
    annotator = Annotator(disk_image(), tiny_holder(), labels, tmp_path)
    assert annotator.label == 5 == next_free_label(labels)
    mask = np.zeros((48, 48), bool)
    mask[5:20, 5:20] = True
    annotator.apply(result(ObjectPrompts((5, 5, 20, 20)), mask))
    assert (labels[0:10, 0:10] == 4).all()  # label 4 kept its pixels
    assert (labels[10:20, 10:20] == 5).all() and (labels == 5).sum() == 225 - 25
    annotator.locked = False
    annotator.apply(result(ObjectPrompts((5, 5, 20, 20), ((6, 6, 1),)), mask))
    assert (labels[5:20, 5:20] == 5).all() and (labels == 4).sum() == 75  # unlocked: taken


def test_undo_and_redo_restore_the_exact_map_and_prompts(tmp_path: Path) -> None:
    labels = np.zeros((48, 48), np.int32)
    labels[40:, 40:] = 2
    annotator = Annotator(disk_image(), tiny_holder(), labels, tmp_path)
    maps, states = [labels.copy()], [annotator.state]
    rng = np.random.default_rng(0)
    for k in range(3):
        prompts = ObjectPrompts((0, 0, 48, 48), tuple((k, k, 1) for k in range(k)))
        annotator.apply(result(prompts, rng.random((48, 48)) > 0.5))
        maps.append(labels.copy())
        states.append(annotator.state)
    annotator.new_object()
    assert annotator.label == 4
    annotator.undo()
    for k in (3, 2, 1, 0):
        assert np.array_equal(labels, maps[k]) and annotator.state == states[k]
        if k:
            annotator.undo()
    assert annotator.undo() is None and annotator.can_redo
    annotator.redo()
    annotator.redo()
    assert np.array_equal(labels, maps[2]) and annotator.state == states[2]
    annotator.apply(result(states[2].prompts, np.zeros((48, 48), bool)))
    assert not annotator.can_redo  # a new change drops what was taken back


def test_the_real_pipeline_segments_corrects_and_saves(tmp_path: Path) -> None:
    labels = np.zeros((6, 48, 48), np.int32)
    labels[0, :4, :4] = 9
    annotator = Annotator(disk_image(6), tiny_holder(), labels, tmp_path / "work")
    annotator.precompute()
    assert annotator.progress()["ready"]
    box = (10, 10, 1, 38, 38, 4)
    annotator.apply(annotator.compute(ObjectPrompts(box)))
    first = labels.copy()
    clicked = ObjectPrompts(box, ((24, 24, 3, 1),))
    annotator.apply(annotator.compute(clicked))
    assert (labels[0, :4, :4] == 9).all() and set(np.unique(labels)) <= {0, 9, 10}
    annotator.undo()
    assert np.array_equal(labels, first)
    with pytest.raises(Exception, match="draw a box first"):
        annotator.compute(ObjectPrompts(None, ((1, 1, 1, 1),)))
    nib = pytest.importorskip("nibabel")
    saved = annotator.save(tmp_path / "labels.nii.gz")
    assert np.array_equal(np.asarray(nib.load(saved).dataobj).transpose(2, 1, 0), labels)


def test_start_from_label_refines_the_existing_mask(tmp_path: Path) -> None:
    labels = np.zeros((48, 48), np.int32)
    labels[10:30, 12:32] = 3
    annotator = Annotator(disk_image(), tiny_holder(), labels, tmp_path)
    prompts = annotator.start_from_label(3)
    assert prompts.box == (12, 10, 32, 30) and annotator.label == 3
    assert (prompts.box, ()) in annotator.session._objects  # the next click refines it
    with pytest.raises(Exception, match="label 7 is not"):
        annotator.start_from_label(7)


def test_review_lists_the_least_confident_first(tmp_path: Path) -> None:
    labels = np.zeros((48, 48), np.int32)
    annotator = Annotator(disk_image(), tiny_holder(), labels, tmp_path)
    for label, score in ((1, 0.9), (2, 0.4)):
        mask = np.zeros((48, 48), bool)
        mask[label * 10 : label * 10 + 5, :5] = True
        annotator.apply(
            Computed(ObjectPrompts((0, 0, 5, 5)), mask, {"iou": 0.8, "confidence": score}, 0.0)
        )
        annotator.new_object()
    assert [(i.label, i.score) for i in annotator.review()] == [(2, 0.4), (1, 0.9)]
    reference = labels * 5  # other numbers: each object is scored against the label it covers
    assert annotator.reference_dsc(reference) == {1: 1.0, 2: 1.0}
    assert annotator.reference_dsc(labels > 0) == {1: 0.6667, 2: 0.6667}


def test_a_label_map_of_another_shape_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="shape"):
        Annotator(disk_image(), tiny_holder(), np.zeros((40, 48), np.int32), tmp_path)


def test_the_object_table_follows_undo_and_redo(tmp_path: Path) -> None:
    labels = np.zeros((48, 48), np.int32)
    annotator = Annotator(disk_image(), tiny_holder(), labels, tmp_path)
    mask = np.zeros((48, 48), bool)
    mask[:10, :10] = True
    first = {"iou": 0.8, "confidence": 0.6, "voxels": 100, "size_mm": 100.0}
    second = {"iou": 0.9, "confidence": 0.9, "voxels": 100, "size_mm": 100.0}
    annotator.apply(Computed(ObjectPrompts((0, 0, 10, 10)), mask, first, 0.0))
    annotator.apply(Computed(ObjectPrompts((0, 0, 10, 10), ((1, 1, 1),)), mask, second, 0.0))
    assert [(r.label, r.score) for r in annotator.object_summaries()] == [(1, 0.9)]
    annotator.undo()
    assert [(r.label, r.size, r.score) for r in annotator.object_summaries()] == [
        (1, "100 mm²", 0.6)
    ]
    annotator.undo()
    assert annotator.object_summaries() == []
    annotator.redo()
    assert annotator.object_summaries()[0].score == 0.6
