"""Whole-case segmentation on arrays: a 2D image with N boxes, or a volume with N 3D boxes."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from umedsam.data.frames import Frame, frame_of
from umedsam.data.npz import Case, label_dtype
from umedsam.data.transforms import resize_bilinear
from umedsam.errors import InputError
from umedsam.evaluation.confidence import CUE_COLUMNS
from umedsam.inference.backends.base import Backend
from umedsam.inference.predictor import UPSAMPLE_CHUNK, Prediction, Predictor
from umedsam.inference.propagation import PropagationStats, paint_labels, propagate
from umedsam.inference.uncertainty_config import CueWeights, cue_weights_of

if TYPE_CHECKING:  # the uncertainty code uses torch; it is imported only when asked for
    from umedsam.inference import uncertainty as U
    from umedsam.inference.uncertainty_config import UncertaintyConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseUncertainty:
    """Uncertainty outputs of one case (see :mod:`umedsam.inference.uncertainty`).

    Attributes:
        unc: uint8 0-255, same shape as ``segs``: the highest per-pixel uncertainty over objects.
        confidence: (N,) per-object confidence in [0, 1] (the configured rule).
        predicted_iou: (N,) IoU-head estimate (3D: mean over slices weighted by mask area).
        scores: every per-object cue (entropy, expected Dice, box and ensemble agreement).
        area: (N,) pixels/voxels of each label in ``segs``.
        slice_confidence: 3D only, (N, D) per-slice confidence, NaN where the object is absent.
        seconds: time spent on uncertainty beyond the plain prediction.
    """

    unc: NDArray[np.uint8]
    confidence: NDArray[np.float32]
    predicted_iou: NDArray[np.float32]
    scores: U.ObjectScores
    area: NDArray[np.int64]
    slice_confidence: NDArray[np.float32] | None = None
    seconds: float = 0.0

    def rows(self, case: str) -> list[tuple[str, int, float, float, int, tuple[float, ...]]]:
        """``(case, object, confidence, predicted_iou, area, cues)`` per object (object = 1-based
        label; cues: :data:`CUE_COLUMNS` of ``scores``, NaN where not computed)."""
        cues = self.scores.cues()
        return [
            (
                case,
                i + 1,
                float(c),
                float(q),
                int(a),
                tuple(float(cues[name][i]) for name in CUE_COLUMNS),
            )
            for i, (c, q, a) in enumerate(
                zip(self.confidence, self.predicted_iou, self.area, strict=True)
            )
        ]


@dataclass(frozen=True)
class CaseSegmentation:
    """Label map and per-object IoU-head scores of one case.

    Attributes:
        segs: (H, W) or (D, H, W) uint8/uint16 label map, label i+1 for box i.
        iou: (N,) IoU estimate per object (3D: on its key slice).
        stats: propagation counters (3D only).
        uncertainty: uncertainty outputs when requested, else None.
    """

    segs: NDArray
    iou: NDArray[np.float32]
    stats: PropagationStats | None = None
    uncertainty: CaseUncertainty | None = None


def label_areas(segs: NDArray, num_objects: int) -> NDArray[np.int64]:
    """(N,) pixel/voxel count of labels 1..N in a label map."""
    counts = np.bincount(segs.ravel(), minlength=num_objects + 1)[1 : num_objects + 1]
    return counts.astype(np.int64)


def segment_image(
    backend: Backend,
    image: NDArray,
    boxes: NDArray,
    uncertainty: UncertaintyConfig | None = None,
) -> CaseSegmentation:
    """Segment N boxes (N, 4) on one 2D image: one encoder call, batched decoder calls.

    Args:
        backend: the engine.
        image: (H, W) or (H, W, 3).
        boxes: (N, 4) xyxy in original pixels.
        uncertainty: also estimate uncertainty (None = off). ``segs`` is unchanged by it unless
            ``uncertainty.ensemble_masks`` is set.
    """
    predictor = Predictor(backend)
    predictor.set_image(image)
    pred = predictor.predict(boxes, return_logits=False)
    segs = np.zeros(image.shape[:2], dtype=label_dtype(len(boxes)))
    paint_labels(segs, pred.masks, np.arange(1, len(boxes) + 1))
    if uncertainty is None:
        return CaseSegmentation(segs=segs, iou=pred.iou)
    return add_image_uncertainty(predictor, image, boxes, pred, segs, uncertainty)


def add_image_uncertainty(
    predictor: Predictor,
    image: NDArray,
    boxes: NDArray,
    pred: Prediction,
    segs: NDArray,
    config: UncertaintyConfig,
) -> CaseSegmentation:
    """Uncertainty outputs for a 2D prediction already made by ``predictor`` (image set).

    Args:
        predictor: the predictor holding the image embedding.
        image: the (H, W) or (H, W, 3) image.
        boxes: (N, 4) boxes that were predicted.
        pred: the base prediction of those boxes.
        segs: the label map painted from ``pred``.
        config: what to estimate.

    Returns:
        A CaseSegmentation with ``uncertainty`` set (``segs`` replaced only with
        ``config.ensemble_masks``).
    """
    import torch

    from umedsam.inference import uncertainty as U

    start = time.perf_counter()
    backend, frame = predictor.backend, predictor.frame
    orig_hw = (int(image.shape[0]), int(image.shape[1]))
    new_hw = frame.low_res_hw(orig_hw)
    boxes_model = frame.boxes_to_low_res(np.asarray(boxes).reshape(-1, 4), orig_hw)
    if frame.low_res != frame.size and (config.ensemble or config.flip):
        # jittered and mirrored members are drawn in LiteMedSAM's frame (logits = frame)
        logger.info("%s: no decoder ensemble in this model's frame; IoU and entropy only", frame)
        config = replace(config, ensemble=0, flip=False)
    flipped = None
    if config.flip:
        array, _ = frame.preprocess_image(np.ascontiguousarray(image[:, ::-1]))
        flipped = backend.encode(array)
    rng = np.random.default_rng(config.seed)
    members = U.decode_ensemble(
        backend, predictor.embedding, boxes_model, new_hw, config, rng, flipped
    )
    base = U.crop_to_content(pred.low_res_logits[:, 0], new_hw).float()
    weights = cue_weights_of(backend)
    scores, unc_maps = U.object_scores(base, pred.iou, members, config.rule, boxes_model, weights)
    if config.ensemble_masks:
        mean, _ = U.ensemble_mean_var(torch.cat([base[None], members]))
        segs = np.zeros_like(segs)
        for lo in range(0, mean.shape[0], UPSAMPLE_CHUNK):
            chunk = resize_bilinear(mean[lo : lo + UPSAMPLE_CHUNK].numpy(), orig_hw)
            labels = np.arange(lo + 1, lo + 1 + chunk.shape[0])
            paint_labels(segs, chunk > 0.5, labels)
    result = CaseUncertainty(
        unc=U.max_uncertainty_map(unc_maps, orig_hw),
        confidence=scores.confidence,
        predicted_iou=scores.predicted_iou,
        scores=scores,
        area=label_areas(segs, len(scores.confidence)),
        seconds=time.perf_counter() - start,
    )
    return CaseSegmentation(segs=segs, iou=pred.iou, uncertainty=result)


def segment_volume_case(
    backend: Backend,
    volume: NDArray,
    boxes_3d: NDArray,
    cache_mb: float = 1024.0,
    progress: Callable[[int], None] | None = None,
    uncertainty: UncertaintyConfig | None = None,
    clip_to_box: bool = False,
) -> CaseSegmentation:
    """Segment N 3D boxes (N, 6) in a (D, H, W) volume by slice propagation.

    ``clip_to_box`` keeps every propagated box inside its 3D box's x/y range (the boxes are the
    objects' extents, as in the challenge format); False is the official rule.

    With ``uncertainty``, each slice's decoder logits also give per-slice entropy maps and scores
    (no decoder ensemble in 3D: the slice embeddings are not kept); the per-object confidence
    pools entropy and area-weighted IoU-head estimates over the object's slices.
    """
    n = boxes_3d.shape[0]
    segs = np.zeros(volume.shape, dtype=label_dtype(n))
    iou = np.zeros(n, dtype=np.float32)
    stats = PropagationStats()
    acc = None
    if uncertainty is not None:
        rule = "combined" if uncertainty.rule == "ensemble" else uncertainty.rule
        acc = _VolumeAccumulator(volume.shape, n, frame_of(backend), rule, cue_weights_of(backend))
    extents = boxes_3d[:, [0, 1, 3, 4]] if clip_to_box else None
    for res in propagate(
        backend,
        volume,
        boxes_3d,
        cache_mb=cache_mb,
        stats=stats,
        progress=progress,
        clip_boxes=extents,
    ):
        paint_labels(segs[res.z], res.masks, res.object_ids + 1)
        iou[res.object_ids[res.is_start]] = res.iou[res.is_start]
        if acc is not None:
            acc.add(res.z, res.object_ids, res.low_res_logits, res.iou)
    if acc is None or uncertainty is None:  # both None together
        return CaseSegmentation(segs=segs, iou=iou, stats=stats)
    if uncertainty.has_ensemble:
        logger.info("3D case: no decoder ensemble (slice embeddings are not kept); entropy only")
    return CaseSegmentation(segs=segs, iou=iou, stats=stats, uncertainty=acc.finish(segs, boxes_3d))


class _VolumeAccumulator:
    """Per-object sums over slices for 3D uncertainty, and the per-slice maps."""

    def __init__(
        self,
        shape: tuple[int, ...],
        n: int,
        frame: Frame,
        rule: str,
        weights: CueWeights | None = None,
    ) -> None:
        from umedsam.inference import uncertainty as U  # noqa: F811

        d, h, w = shape
        self.rule = rule
        self.slice_rule = rule if rule in ("iou", "entropy", "expected_dice") else "combined"
        self.orig_hw = (h, w)
        self.new_hw = frame.low_res_hw((h, w))
        self.weights = weights
        self.unc = np.zeros(shape, dtype=np.uint8)
        self.sums = U.SliceSums.zeros(n)
        self.slice_conf = np.full((n, d), math.nan, dtype=np.float32)
        self.seconds = 0.0

    def add(self, z: int, ids: NDArray, low_res: NDArray, iou: NDArray) -> None:
        import torch

        from umedsam.inference import uncertainty as U  # noqa: F811

        start = time.perf_counter()
        base = U.crop_to_content(low_res[:, 0], self.new_hw).float()
        scores, maps = U.object_scores(base, iou, None, self.slice_rule, weights=self.weights)
        self.sums.add(ids, torch.sigmoid(base), iou)
        self.slice_conf[ids, z] = scores.confidence
        U.max_uncertainty_map(maps, self.orig_hw, out=self.unc[z])
        self.seconds += time.perf_counter() - start

    def finish(self, segs: NDArray, boxes_3d: NDArray) -> CaseUncertainty:
        from umedsam.inference import uncertainty as U  # noqa: F811

        start = time.perf_counter()
        n = boxes_3d.shape[0]
        mask_boxes = np.full((n, 6), np.nan)
        for i in range(n):
            mask_boxes[i] = U.mask_bounding_boxes((segs == i + 1)[None])[0]
        box = U.box_agreement(mask_boxes, boxes_3d)
        scores = U.aggregate_slices(self.sums, box, self.rule, self.weights)
        return CaseUncertainty(
            unc=self.unc,
            confidence=scores.confidence,
            predicted_iou=scores.predicted_iou,
            scores=scores,
            area=label_areas(segs, n),
            slice_confidence=self.slice_conf,
            seconds=self.seconds + time.perf_counter() - start,
        )


def segment_case(
    backend: Backend,
    case: Case,
    cache_mb: float = 1024.0,
    progress: Callable[[int], None] | None = None,
    uncertainty: UncertaintyConfig | None = None,
    mask_prompts: bool = True,
    clip_to_box: bool = False,
    thin_strokes: bool | None = None,
) -> CaseSegmentation:
    """Segment a validated challenge case (2D or 3D), optionally with uncertainty outputs.

    A case with interactive prompts (clicks, scribbles, a previous mask) goes through
    :mod:`umedsam.inference.interactive`; ``mask_prompts`` then says whether its previous mask
    is fed as the dense prompt (for models trained to take it). ``clip_to_box``: 3D propagation
    keeps each object inside its 3D box (:func:`segment_volume_case`; every model but the
    official one, ``umedsam.models.cards.bounded_propagation``). ``thin_strokes``: strokes on a
    ridge become the thin structure they lie on (:mod:`umedsam.inference.thin`, and
    :mod:`umedsam.inference.thin_volume` on volumes; None: the package's rule).

    Raises:
        InputError: uncertainty asked for an interactive case.
    """
    if case.prompts is not None:
        if uncertainty is not None:
            raise InputError(
                case.name,
                "uncertainty is not available yet for cases with clicks, scribbles or a "
                "previous mask; predict them without --uncertainty",
            )
        from umedsam.inference.interactive import segment_interactive_case

        segs, iou = segment_interactive_case(
            backend,
            case,
            mask_prompts,
            cache_mb,
            clip_to_box=clip_to_box,
            thin_strokes=thin_strokes,
        )
        return CaseSegmentation(segs=segs, iou=iou)
    if case.is_3d:
        return segment_volume_case(
            backend,
            case.imgs,
            case.boxes,
            cache_mb,
            progress,
            uncertainty=uncertainty,
            clip_to_box=clip_to_box,
        )
    return segment_image(backend, case.imgs, case.boxes, uncertainty=uncertainty)


def segment_with_uncertainty(
    backend: Backend,
    case: Case,
    config: UncertaintyConfig | None = None,
    cache_mb: float = 1024.0,
) -> CaseSegmentation:
    """Segment a case and estimate its uncertainty (default :class:`UncertaintyConfig`).

    Returns:
        A CaseSegmentation whose ``uncertainty`` holds ``unc``, per-object confidence, the IoU-head
        estimate and the area of each label.
    """
    from umedsam.inference.uncertainty_config import UncertaintyConfig

    return segment_case(backend, case, cache_mb, uncertainty=config or UncertaintyConfig())
