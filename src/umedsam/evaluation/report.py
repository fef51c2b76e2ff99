"""Evaluate a folder of predictions against ground truth; rows, summaries, CSV and JSON.

Rows follow the official ``metrics.csv`` (``case`` is the npz file name, DSC/NSD rounded to 4
decimals with ``np.round`` as the official script does), with extra columns. Summaries are means
of the rounded per-case values, so the overall mean is the one the official CSV gives.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.atomic import write_bytes_atomic
from umedsam.data.naming import modality_from_name
from umedsam.errors import InputError
from umedsam.evaluation.metrics import CaseMetrics, SpacingOrder, case_metrics

logger = logging.getLogger(__name__)

#: Decimals of the official metrics.csv.
DECIMALS = 4

CASE_COLUMNS = ("case", "modality", "dims", "n_labels", "dsc", "nsd")
LABEL_COLUMNS = ("case", "modality", "label", "dsc", "nsd", "gt_voxels", "pred_voxels")


def _round(value: float) -> float:
    return float(np.round(value, DECIMALS)) if not math.isnan(value) else math.nan


@dataclass(frozen=True)
class CaseRow:
    """One evaluated case, values rounded as in the official CSV.

    Attributes:
        case: npz file name (``<case>.npz``), as in the official CSV.
        modality: from the name, see :func:`modality_from_name`.
        dims: 2 or 3.
        n_labels: number of labels scored (``max(gts)``).
        dsc: case DSC rounded to 4 decimals.
        nsd: case NSD rounded to 4 decimals.
        metrics: the unrounded :class:`CaseMetrics`, including one entry per label.
    """

    case: str
    modality: str
    dims: int
    n_labels: int
    dsc: float
    nsd: float
    metrics: CaseMetrics

    def as_dict(self) -> dict[str, Any]:
        """Values for :data:`CASE_COLUMNS`."""
        return {
            "case": self.case,
            "modality": self.modality,
            "dims": self.dims,
            "n_labels": self.n_labels,
            "dsc": self.dsc,
            "nsd": self.nsd,
        }

    def label_dicts(self) -> list[dict[str, Any]]:
        """One dict per label for :data:`LABEL_COLUMNS` (per-label NSD is not zeroed by the rule)."""
        return [
            {
                "case": self.case,
                "modality": self.modality,
                "label": m.label,
                "dsc": _round(m.dsc),
                "nsd": _round(m.nsd),
                "gt_voxels": m.gt_voxels,
                "pred_voxels": m.pred_voxels,
            }
            for m in self.metrics.labels
        ]


def make_case_row(case: str, metrics: CaseMetrics, modality: str | None = None) -> CaseRow:
    """Wrap :class:`CaseMetrics` of ``case`` in a rounded :class:`CaseRow`.

    ``modality`` defaults to the one the challenge file name (``<case>.npz``) carries.
    """
    return CaseRow(
        case=case,
        modality=modality or modality_from_name(case),
        dims=3 if metrics.is_3d else 2,
        n_labels=len(metrics.labels),
        dsc=_round(metrics.dsc),
        nsd=_round(metrics.nsd),
        metrics=metrics,
    )


@dataclass(frozen=True)
class Failure:
    """A case that could not be evaluated.

    Attributes:
        case: npz file name.
        problem: one line saying what is wrong (includes the path where useful).
    """

    case: str
    problem: str


@dataclass(frozen=True)
class Stat:
    """Mean, population standard deviation (ddof=0) and count of a metric."""

    mean: float
    std: float
    n: int


def _stat(values: Sequence[float]) -> Stat:
    finite = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if finite.size == 0:
        return Stat(math.nan, math.nan, 0)
    return Stat(float(finite.mean()), float(finite.std()), int(finite.size))


@dataclass(frozen=True)
class Summary:
    """Per-modality and overall DSC/NSD of a set of case rows (means of the rounded values).

    Attributes:
        per_modality: modality -> {"dsc": Stat, "nsd": Stat}, sorted by modality name.
        overall: {"dsc": Stat, "nsd": Stat} over all cases.
    """

    per_modality: dict[str, dict[str, Stat]]
    overall: dict[str, Stat]


def summarize(rows: Sequence[CaseRow]) -> Summary:
    """Per-modality (mean, std, n) and overall statistics of case rows."""
    by_modality: dict[str, list[CaseRow]] = {}
    for row in rows:
        by_modality.setdefault(row.modality, []).append(row)
    per_modality = {
        modality: {
            "dsc": _stat([r.dsc for r in group]),
            "nsd": _stat([r.nsd for r in group]),
        }
        for modality, group in sorted(by_modality.items())
    }
    overall = {"dsc": _stat([r.dsc for r in rows]), "nsd": _stat([r.nsd for r in rows])}
    return Summary(per_modality=per_modality, overall=overall)


def format_4(value: float) -> str:
    """``value`` with 4 decimals, rounding its shortest decimal form half up ("nan" for NaN).

    Means of 4-decimal values often end in a 5 at the 5th decimal (0.90045); binary ``:.4f``
    formatting would print 0.9004 where the decimal value, and the challenge tables, say 0.9005.
    """
    if math.isnan(value):
        return "nan"
    return str(Decimal(repr(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def format_table(summary: Summary) -> str:
    """A fixed-width text table: one line per modality, then the overall mean."""
    header = (
        f"{'modality':<14} {'n':>4} {'DSC mean':>9} {'DSC std':>8} {'NSD mean':>9} {'NSD std':>8}"
    )
    lines = [header, "-" * len(header)]

    def line(name: str, stats: Mapping[str, Stat]) -> str:
        d, s = stats["dsc"], stats["nsd"]
        return (
            f"{name:<14} {d.n:>4} {format_4(d.mean):>9} {format_4(d.std):>8} "
            f"{format_4(s.mean):>9} {format_4(s.std):>8}"
        )

    lines.extend(line(name, stats) for name, stats in summary.per_modality.items())
    lines.append("-" * len(header))
    lines.append(line("overall", summary.overall))
    return "\n".join(lines)


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def summary_to_dict(summary: Summary) -> dict[str, Any]:
    """JSON-ready form of a :class:`Summary` (NaN becomes null)."""

    def stats(d: Mapping[str, Stat]) -> dict[str, Any]:
        return {
            "n": d["dsc"].n,
            "dsc_mean": _json_number(d["dsc"].mean),
            "dsc_std": _json_number(d["dsc"].std),
            "nsd_mean": _json_number(d["nsd"].mean),
            "nsd_std": _json_number(d["nsd"].std),
        }

    return {
        "overall": stats(summary.overall),
        "per_modality": {name: stats(d) for name, d in summary.per_modality.items()},
    }


def write_csv_atomic(
    path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> Path:
    """Write dict rows as CSV (header ``columns``; floats printed as Python ``repr``) atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key in columns})
    return write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (strict: no NaN allowed) atomically."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def load_label_npz(path: str | Path, key: str) -> tuple[NDArray[Any], NDArray[np.float64] | None]:
    """Read a label map (``key``, e.g. ``"segs"`` or ``"gts"``) and the optional ``spacing``.

    Args:
        path: an npz file.
        key: the array to read.

    Returns:
        ``(labels, spacing)``; ``spacing`` is None when the file has none.

    Raises:
        InputError: unreadable file, missing key, non-integer labels or bad rank.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                raise InputError(path, f"missing key '{key}' (keys: {', '.join(data.files)})")
            labels = data[key]
            spacing = data["spacing"] if "spacing" in data.files else None
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(path, f"cannot read npz ({type(err).__name__}: {err})") from err
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_):
        raise InputError(path, f"'{key}' must hold integer labels; got dtype {labels.dtype}")
    if labels.ndim not in (2, 3):
        raise InputError(path, f"'{key}' must be 2D (H, W) or 3D (D, H, W); got {labels.shape}")
    if spacing is not None:
        try:
            spacing = np.asarray(spacing, dtype=np.float64).ravel()
        except (TypeError, ValueError) as err:
            raise InputError(path, f"'spacing' is not numeric ({err})") from err
    return labels, spacing


@dataclass
class EvaluationResult:
    """What :func:`evaluate_folders` produced.

    Attributes:
        rows: one :class:`CaseRow` per evaluated case, sorted by case name.
        failures: cases that could not be evaluated (missing seg, extra seg, unreadable file ...).
        summary: statistics of ``rows``.
    """

    rows: list[CaseRow]
    failures: list[Failure]
    summary: Summary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarize(self.rows)

    def label_dicts(self) -> list[dict[str, Any]]:
        """Per-label rows of every case (see :data:`LABEL_COLUMNS`)."""
        return [d for row in self.rows for d in row.label_dicts()]


def evaluate_case_files(
    seg_path: str | Path,
    gt_path: str | Path,
    tolerance: float = 2.0,
    spacing_order: SpacingOrder = "official",
) -> CaseRow:
    """Evaluate one ``segs`` npz against its ``gts`` npz.

    Raises:
        InputError: unreadable files, missing keys, mismatched shapes, 3D gts without spacing,
            gts without foreground.
    """
    seg_path, gt_path = Path(seg_path), Path(gt_path)
    segs, _ = load_label_npz(seg_path, "segs")
    gts, spacing = load_label_npz(gt_path, "gts")
    if segs.shape != gts.shape:
        raise InputError(
            seg_path, f"segs shape {segs.shape} differs from gts shape {gts.shape} in {gt_path}"
        )
    if gts.ndim == 3 and spacing is None:
        raise InputError(gt_path, "3D gts need a 'spacing' array (3 values); none found")
    try:
        metrics = case_metrics(
            segs, gts, spacing=spacing, tolerance=tolerance, spacing_order=spacing_order
        )
    except (TypeError, ValueError) as err:
        raise InputError(gt_path, str(err)) from err
    return make_case_row(gt_path.name, metrics)


def evaluate_folders(
    segs_dir: str | Path,
    gts_dir: str | Path,
    tolerance: float = 2.0,
    spacing_order: SpacingOrder = "official",
    progress: Callable[[int], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> EvaluationResult:
    """Evaluate every ``<case>.npz`` of ``gts_dir`` against the same name in ``segs_dir``.

    A gt without a seg, a seg without a gt, and any unreadable or inconsistent file become a
    :class:`Failure`; the other cases are still evaluated.

    Args:
        segs_dir: folder of predictions (npz with ``segs``).
        gts_dir: folder of ground truth (npz with ``gts`` and, in 3D, ``spacing``).
        tolerance: NSD tolerance (mm in 3D, pixels in 2D).
        spacing_order: see :func:`umedsam.evaluation.metrics.case_metrics`.
        progress: called with 1 after each case.
        on_failure: called with each failure as it happens (e.g. to print it at once).

    Returns:
        The rows, failures and summary.

    Raises:
        FileNotFoundError: if a folder does not exist.
    """
    segs_dir, gts_dir = Path(segs_dir), Path(gts_dir)
    for name, folder in (("segs", segs_dir), ("gts", gts_dir)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{name} folder not found: {folder}")
    gt_names = sorted(p.name for p in gts_dir.glob("*.npz"))
    seg_names = {p.name for p in segs_dir.glob("*.npz")}
    failures: list[Failure] = []

    def fail(case: str, problem: str) -> None:
        failure = Failure(case, problem)
        failures.append(failure)
        logger.debug("failure: %s: %s", case, problem)
        if on_failure is not None:
            on_failure(failure)

    rows: list[CaseRow] = []
    for name in gt_names:
        if name not in seg_names:
            fail(name, f"no prediction {segs_dir / name} for ground truth {gts_dir / name}")
        else:
            try:
                rows.append(
                    evaluate_case_files(
                        segs_dir / name,
                        gts_dir / name,
                        tolerance=tolerance,
                        spacing_order=spacing_order,
                    )
                )
            except InputError as err:
                fail(name, str(err))
        if progress is not None:
            progress(1)
    for name in sorted(seg_names - set(gt_names)):
        fail(name, f"prediction {segs_dir / name} has no ground truth {gts_dir / name}")
    return EvaluationResult(rows=rows, failures=failures)
