"""Benchmark a model on labelled data as users keep it (image/mask folders, nnU-Net raw).

Each case of a :mod:`umedsam.data.sources` source is prompted with boxes drawn from its own
masks by the challenge's rule (:func:`umedsam.data.interaction.challenge_boxes`), segmented on
the engine as ``umedsam predict`` segments a challenge case (2D images at any size, volumes by
propagation), and scored with the challenge's DSC and NSD. Pixels outside a source's ignore
(field-of-view) mask are not scored. A case that cannot be read or segmented is one failure
line; the others finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from umedsam.data.interaction import CHALLENGE_BOX_SEED, challenge_boxes
from umedsam.data.npz import Case
from umedsam.data.sources import CaseSource, LabelledCase
from umedsam.errors import InputError
from umedsam.evaluation.metrics import case_metrics
from umedsam.evaluation.report import EvaluationResult, Failure, make_case_row
from umedsam.inference.backends.base import Backend

logger = logging.getLogger(__name__)


def box_prompted_case(name: str, labelled: LabelledCase, seed: int = CHALLENGE_BOX_SEED) -> Case:
    """A labelled case as ``umedsam predict`` takes it: its image, prompted by boxes drawn from
    its masks by the challenge's rule (margins from ``seed``).

    Raises:
        InputError: an object one pixel wide or high whose box has no area (a speck).
    """
    boxes = challenge_boxes(labelled.gts, seed)
    half = boxes.shape[1] // 2  # x0, y0[, z0], x1, y1[, z1]
    flat = np.nonzero((boxes[:, half] <= boxes[:, 0]) | (boxes[:, half + 1] <= boxes[:, 1]))[0]
    if flat.size:
        raise InputError(
            None,
            f"object {int(flat[0]) + 1} is one pixel wide or high: the challenge's box rule "
            "gives it no area (drop such specks with --min-size PIXELS)",
        )
    return Case(
        name=name,
        imgs=labelled.imgs,
        boxes=boxes,
        spacing=labelled.spacing,
        is_3d=labelled.gts.ndim == 3,
    )


def evaluate_source(
    backend: Backend,
    source: CaseSource,
    *,
    clip_to_box: bool = False,
    tolerance: float = 2.0,
    seed: int = CHALLENGE_BOX_SEED,
    progress: Callable[[int], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> EvaluationResult:
    """Segment every case of ``source`` from boxes of its masks and score it.

    Args:
        backend: the engine's backend (``open_engine(spec).backend``).
        source: a labelled source.
        clip_to_box: keep 3D propagation inside each box (the model card's rule, as predict).
        tolerance: NSD tolerance (pixels in 2D, mm in 3D).
        seed: seed of the boxes' margins.
        progress: called with 1 after each case.
        on_failure: called with each failure as it happens.

    Returns:
        Rows named by case (modality from the source), failures and summary.
    """
    from umedsam.inference.segment import segment_case

    rows, failures = [], []
    for name in source.case_names():
        try:
            labelled = source.load(name)
            case = box_prompted_case(name, labelled, seed)
            segs = segment_case(backend, case, clip_to_box=clip_to_box).segs
            if labelled.valid is not None:
                segs = np.where(labelled.valid, segs, 0)
            metrics = case_metrics(
                segs, labelled.gts, spacing=labelled.spacing, tolerance=tolerance
            )
            rows.append(make_case_row(name, metrics, labelled.modality))
        except (InputError, ValueError, FileNotFoundError) as err:
            failure = Failure(name, str(err))
            failures.append(failure)
            logger.debug("failure: %s: %s", name, err)
            if on_failure is not None:
                on_failure(failure)
        if progress is not None:
            progress(1)
    return EvaluationResult(rows=sorted(rows, key=lambda r: r.case), failures=failures)
