"""Does the per-object confidence predict the true per-object DSC?

Given ``confidence.csv`` (columns ``case, object, confidence, predicted_iou, area``; ``object`` is
the 1-based label) and the true per-label DSC from :mod:`umedsam.evaluation.report`, this module
reports:

* Spearman rank correlation between confidence and true DSC;
* AUROC of ``1 - confidence`` (low confidence first) for flagging failed objects
  (true DSC < 0.8), computed from average ranks (Mann-Whitney U), NaN when only one class exists;
* a risk-coverage curve: mean true DSC of the most confident x% of objects, x = 10, 20, ..., 100;
* a reliability table: confidence bins against mean true DSC, and the expected calibration error.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

#: Objects with true DSC below this count as failures.
FAILURE_DSC = 0.8

#: Header of ``confidence.csv`` (written by :mod:`umedsam.inference.runner`, read here).
CUE_COLUMNS = ("entropy", "expected_dice", "box", "agreement")
"""The confidence's cues besides the IoU head (``umedsam.inference.uncertainty.ObjectScores``),
written per object so that cue weights can be fitted on training cases."""
CONFIDENCE_COLUMNS = ("case", "object", "confidence", "predicted_iou", "area", *CUE_COLUMNS)
OBJECT_COLUMNS = (
    "case",
    "object",
    "confidence",
    "predicted_iou",
    "area",
    *CUE_COLUMNS,
    "dsc",
    "failed",
)


@dataclass(frozen=True)
class ConfidenceRow:
    """One line of ``confidence.csv``.

    Attributes:
        case: case name as written (``<case>`` or ``<case>.npz``).
        object: 1-based label of the object.
        confidence: combined confidence in [0, 1].
        predicted_iou: the IoU head's estimate (NaN if the column is empty).
        area: predicted area in pixels/voxels (NaN if the column is empty).
        cues: the other cues, :data:`CUE_COLUMNS` (NaN where absent or not computed).
    """

    case: str
    object: int
    confidence: float
    predicted_iou: float
    area: float
    cues: tuple[float, ...] = (math.nan,) * len(CUE_COLUMNS)


def case_key(name: str) -> str:
    """Normalise a case name for matching: the file name without a trailing ``.npz``."""
    name = Path(name).name
    return name[:-4] if name.endswith(".npz") else name


def _float_or_nan(text: str | None) -> float:
    if text is None or text.strip() == "":
        return math.nan
    return float(text)


def read_confidence_csv(path: str | Path) -> list[ConfidenceRow]:
    """Read ``confidence.csv``.

    Args:
        path: CSV with header ``case, object, confidence`` and optionally ``predicted_iou, area``.

    Returns:
        One :class:`ConfidenceRow` per line.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: missing columns or a malformed value (the message gives the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"confidence file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in ("case", "object", "confidence") if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)}; expected "
                f"{', '.join(CONFIDENCE_COLUMNS)}, got {', '.join(columns) or 'no header'}"
            )
        rows = []
        for line_no, raw in enumerate(reader, start=2):
            try:
                rows.append(
                    ConfidenceRow(
                        case=raw["case"],
                        object=int(raw["object"]),
                        confidence=float(raw["confidence"]),
                        predicted_iou=_float_or_nan(raw.get("predicted_iou")),
                        area=_float_or_nan(raw.get("area")),
                        cues=tuple(_float_or_nan(raw.get(c)) for c in CUE_COLUMNS),
                    )
                )
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}, line {line_no}: bad value ({err})") from err
    return rows


@dataclass(frozen=True)
class MatchedObject:
    """A confidence row with the true DSC of the same object."""

    row: ConfidenceRow
    dsc: float


def match_objects(
    confidence_rows: Sequence[ConfidenceRow], true_dsc: Mapping[tuple[str, int], float]
) -> tuple[list[MatchedObject], list[ConfidenceRow]]:
    """Pair confidence rows with true DSC by ``(case_key(case), object)``.

    Args:
        confidence_rows: from :func:`read_confidence_csv`.
        true_dsc: ``(case_key, label) -> DSC``, e.g. from :func:`true_dsc_from_label_rows`.

    Returns:
        ``(matched, unmatched)``; rows whose true DSC is unknown or NaN are unmatched.
    """
    matched: list[MatchedObject] = []
    unmatched: list[ConfidenceRow] = []
    for row in confidence_rows:
        dsc = true_dsc.get((case_key(row.case), row.object))
        if dsc is None or math.isnan(dsc):
            unmatched.append(row)
        else:
            matched.append(MatchedObject(row, float(dsc)))
    return matched, unmatched


def true_dsc_from_label_rows(
    label_rows: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, int], float]:
    """``(case_key, label) -> dsc`` from per-label rows (keys ``case``, ``label``, ``dsc``)."""
    return {(case_key(str(r["case"])), int(r["label"])): float(r["dsc"]) for r in label_rows}


def _as_1d(name: str, values: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1D; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got {int((~np.isfinite(arr)).sum())} NaN/inf")
    return arr


def _check_pair(
    confidence: ArrayLike, dsc: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    conf = _as_1d("confidence", confidence)
    true = _as_1d("dsc", dsc)
    if conf.shape != true.shape:
        raise ValueError(
            f"confidence and dsc must have the same length; got {conf.shape} and {true.shape}"
        )
    return conf, true


def spearman(confidence: ArrayLike, dsc: ArrayLike) -> tuple[float, float]:
    """Spearman rank correlation (and its p-value) between confidence and true DSC.

    Returns:
        ``(rho, p_value)``; NaN for both with fewer than 3 objects or a constant input.

    Raises:
        ValueError: different lengths, non-1D or non-finite input.
    """
    conf, true = _check_pair(confidence, dsc)
    if conf.size < 3 or np.ptp(conf) == 0 or np.ptp(true) == 0:
        return math.nan, math.nan
    from scipy.stats import spearmanr

    result = spearmanr(conf, true)
    return float(result.statistic), float(result.pvalue)


def auroc(scores: ArrayLike, positive: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive``.

    The probability that a random positive scores higher than a random negative, ties counting
    one half; computed from average ranks (Mann-Whitney U).

    Returns:
        AUROC in [0, 1], or NaN when ``positive`` holds only one class (undefined).

    Raises:
        ValueError: different lengths, non-1D or non-finite scores.
    """
    from scipy.stats import rankdata

    values = _as_1d("scores", scores)
    labels = np.asarray(positive, dtype=bool)
    if labels.shape != values.shape:
        raise ValueError(
            f"scores and positive must have the same length; got {values.shape} and {labels.shape}"
        )
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(values)  # average ranks for ties, 1-based
    u_stat = float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2.0
    return u_stat / (n_pos * n_neg)


def failure_auroc(
    confidence: ArrayLike, dsc: ArrayLike, threshold: float = FAILURE_DSC
) -> tuple[float, str]:
    """AUROC of low confidence for flagging failed objects (true DSC < ``threshold``).

    Returns:
        ``(auroc, message)``: ``message`` is empty, or says why the AUROC is NaN (all objects
        failed, or none did).

    Raises:
        ValueError: different lengths, non-1D or non-finite input.
    """
    conf, true = _check_pair(confidence, dsc)
    failed = true < threshold
    n_failed = int(failed.sum())
    if n_failed == 0 or n_failed == failed.size:
        which = "no object" if n_failed == 0 else "every object"
        message = (
            f"AUROC undefined: {which} of {failed.size} has DSC < {threshold} (one class only)"
        )
        return math.nan, message
    return auroc(-conf, failed), ""


@dataclass(frozen=True)
class CoveragePoint:
    """Mean true DSC of the ``n`` most confident objects (``coverage`` percent of all)."""

    coverage: int
    n: int
    mean_dsc: float
    min_confidence: float


def risk_coverage(
    confidence: ArrayLike, dsc: ArrayLike, coverages: Sequence[int] = tuple(range(10, 101, 10))
) -> list[CoveragePoint]:
    """Mean true DSC of the most confident x% of objects for each x in ``coverages``.

    Objects are sorted by decreasing confidence (stable, so ties keep input order); x% keeps
    ``ceil(x / 100 * N)`` objects, at least one.

    Returns:
        One :class:`CoveragePoint` per coverage; empty input gives an empty list.

    Raises:
        ValueError: bad input, or a coverage outside (0, 100].
    """
    conf, true = _check_pair(confidence, dsc)
    for c in coverages:
        if not 0 < c <= 100:
            raise ValueError(f"coverages must be in (0, 100]; got {c}")
    if conf.size == 0:
        return []
    order = np.argsort(-conf, kind="stable")
    points = []
    for c in coverages:
        k = max(1, math.ceil(c / 100 * conf.size - 1e-9))
        top = order[:k]
        points.append(
            CoveragePoint(
                coverage=int(c),
                n=k,
                mean_dsc=float(true[top].mean()),
                min_confidence=float(conf[top].min()),
            )
        )
    return points


@dataclass(frozen=True)
class ReliabilityBin:
    """Objects whose confidence lies in ``[low, high)`` (the last bin includes 1.0)."""

    low: float
    high: float
    n: int
    mean_confidence: float
    mean_dsc: float


def reliability_table(
    confidence: ArrayLike, dsc: ArrayLike, n_bins: int = 10
) -> tuple[list[ReliabilityBin], float]:
    """Equal-width confidence bins on [0, 1] against the mean true DSC in each bin.

    Returns:
        ``(bins, ece)``: every bin (empty ones with n = 0 and NaN means) and the expected
        calibration error ``sum_b n_b / N * |mean_confidence_b - mean_dsc_b|`` (NaN if no objects).

    Raises:
        ValueError: bad input, ``n_bins`` < 1, or a confidence outside [0, 1].
    """
    conf, true = _check_pair(confidence, dsc)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise ValueError(
            f"confidence must lie in [0, 1]; got range [{conf.min():.4g}, {conf.max():.4g}]"
        )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.floor(conf * n_bins).astype(np.int64), 0, n_bins - 1)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        members = index == b
        n = int(members.sum())
        if n:
            mean_conf = float(conf[members].mean())
            mean_dsc = float(true[members].mean())
            ece += n / conf.size * abs(mean_conf - mean_dsc)
        else:
            mean_conf = mean_dsc = math.nan
        bins.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), n, mean_conf, mean_dsc))
    return bins, (ece if conf.size else math.nan)


@dataclass(frozen=True)
class ConfidenceReport:
    """Everything :func:`confidence_report` measures.

    Attributes:
        n_objects: objects with both a confidence and a true DSC.
        n_failed: of those, objects with DSC < ``failure_dsc``.
        n_unmatched: confidence rows without a true DSC (unknown case/label, or undefined DSC).
        failure_dsc: the failure threshold.
        spearman: rank correlation between confidence and DSC (NaN if undefined).
        spearman_p: its p-value.
        spearman_iou: the same for the ``predicted_iou`` column (NaN if absent).
        auroc: AUROC of low confidence for flagging failures (NaN if one class only).
        auroc_iou: the same for ``predicted_iou``.
        auroc_message: why ``auroc`` is NaN, else empty.
        risk_coverage: see :func:`risk_coverage`.
        reliability: see :func:`reliability_table`.
        ece: expected calibration error of confidence against DSC.
        objects: the matched objects.
    """

    n_objects: int
    n_failed: int
    n_unmatched: int
    failure_dsc: float
    spearman: float
    spearman_p: float
    spearman_iou: float
    auroc: float
    auroc_iou: float
    auroc_message: str
    risk_coverage: list[CoveragePoint]
    reliability: list[ReliabilityBin]
    ece: float
    objects: list[MatchedObject]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN becomes null; the objects themselves are left out)."""

        def num(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "n_objects": self.n_objects,
            "n_failed": self.n_failed,
            "n_unmatched": self.n_unmatched,
            "failure_dsc": self.failure_dsc,
            "spearman": num(self.spearman),
            "spearman_p": num(self.spearman_p),
            "spearman_predicted_iou": num(self.spearman_iou),
            "auroc": num(self.auroc),
            "auroc_predicted_iou": num(self.auroc_iou),
            "auroc_message": self.auroc_message,
            "ece": num(self.ece),
            "risk_coverage": [
                {
                    "coverage": p.coverage,
                    "n": p.n,
                    "mean_dsc": num(p.mean_dsc),
                    "min_confidence": num(p.min_confidence),
                }
                for p in self.risk_coverage
            ],
            "reliability": [
                {
                    "low": b.low,
                    "high": b.high,
                    "n": b.n,
                    "mean_confidence": num(b.mean_confidence),
                    "mean_dsc": num(b.mean_dsc),
                }
                for b in self.reliability
            ],
        }

    def object_dicts(self) -> list[dict[str, Any]]:
        """Per-object rows for :data:`OBJECT_COLUMNS` (true DSC beside the confidence)."""
        return [
            {
                "case": m.row.case,
                "object": m.row.object,
                "confidence": m.row.confidence,
                "predicted_iou": m.row.predicted_iou,
                "area": m.row.area,
                **dict(zip(CUE_COLUMNS, m.row.cues, strict=True)),
                "dsc": float(np.round(m.dsc, 4)),
                "failed": int(m.dsc < self.failure_dsc),
            }
            for m in self.objects
        ]

    def format_text(self) -> str:
        """Lines for the terminal: correlation, AUROC, risk-coverage and reliability tables."""

        def f(v: float) -> str:
            return "n/a" if math.isnan(v) else f"{v:.4f}"

        lines = [
            f"confidence vs true DSC: {self.n_objects} objects, {self.n_failed} failed "
            f"(DSC < {self.failure_dsc}), {self.n_unmatched} unmatched",
            f"  Spearman rho     {f(self.spearman)}  (IoU head alone {f(self.spearman_iou)})",
            f"  failure AUROC    {f(self.auroc)}  (IoU head alone {f(self.auroc_iou)})",
        ]
        if self.auroc_message:
            lines.append(f"  note: {self.auroc_message}")
        lines.append(f"  ECE              {f(self.ece)}")
        lines.append("  risk-coverage: coverage%  n  mean DSC")
        lines.extend(f"    {p.coverage:>3}% {p.n:>5}  {f(p.mean_dsc)}" for p in self.risk_coverage)
        lines.append("  reliability: confidence bin  n  mean conf  mean DSC")
        lines.extend(
            f"    [{b.low:.1f}, {b.high:.1f}{']' if b.high >= 1.0 else ')'} {b.n:>5}  "
            f"{f(b.mean_confidence):>9}  {f(b.mean_dsc)}"
            for b in self.reliability
            if b.n
        )
        return "\n".join(lines)


def _optional_column_metrics(
    values: NDArray[np.float64], dsc: NDArray[np.float64], threshold: float
) -> tuple[float, float]:
    if values.size == 0 or not np.all(np.isfinite(values)):
        return math.nan, math.nan
    rho, _ = spearman(values, dsc)
    score, _ = failure_auroc(values, dsc, threshold)
    return rho, score


def confidence_report(
    confidence_rows: Sequence[ConfidenceRow],
    true_dsc: Mapping[tuple[str, int], float],
    failure_dsc: float = FAILURE_DSC,
    n_bins: int = 10,
) -> ConfidenceReport:
    """Match confidence rows to true DSC and measure how well confidence predicts it.

    Args:
        confidence_rows: from :func:`read_confidence_csv`.
        true_dsc: ``(case_key, label) -> DSC`` (see :func:`true_dsc_from_label_rows`).
        failure_dsc: objects with DSC below this count as failures.
        n_bins: bins of the reliability table.

    Returns:
        A :class:`ConfidenceReport`.
    """
    matched, unmatched = match_objects(confidence_rows, true_dsc)
    if unmatched:
        logger.warning(
            "%d confidence row(s) have no true DSC (unknown case/object), e.g. %s object %d",
            len(unmatched),
            unmatched[0].case,
            unmatched[0].object,
        )
    conf = np.asarray([m.row.confidence for m in matched], dtype=np.float64)
    iou = np.asarray([m.row.predicted_iou for m in matched], dtype=np.float64)
    dsc = np.asarray([m.dsc for m in matched], dtype=np.float64)
    rho, p_value = spearman(conf, dsc)
    score, message = failure_auroc(conf, dsc, failure_dsc)
    rho_iou, score_iou = _optional_column_metrics(iou, dsc, failure_dsc)
    bins, ece = reliability_table(conf, dsc, n_bins=n_bins)
    return ConfidenceReport(
        n_objects=len(matched),
        n_failed=int((dsc < failure_dsc).sum()),
        n_unmatched=len(unmatched),
        failure_dsc=failure_dsc,
        spearman=rho,
        spearman_p=p_value,
        spearman_iou=rho_iou,
        auroc=score,
        auroc_iou=score_iou,
        auroc_message=message,
        risk_coverage=risk_coverage(conf, dsc),
        reliability=bins,
        ece=ece,
        objects=matched,
    )
