"""PNG plots of evaluation results (optional extra ``plots``: matplotlib).

matplotlib is imported at first use only, through its object-oriented API (``Figure``), so no
global backend is selected and nothing is shown on screen. Every PNG is written atomically.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umedsam.atomic import write_bytes_atomic
from umedsam.evaluation.report import CaseRow
from umedsam.extras import import_optional

if TYPE_CHECKING:
    from umedsam.evaluation.confidence import ConfidenceReport

logger = logging.getLogger(__name__)


def _new_figure(width: float, height: float) -> Any:
    figure = import_optional(
        "matplotlib.figure", package="matplotlib", extra="plots", purpose="Writing evaluation plots"
    )
    return figure.Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Any, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    written = write_bytes_atomic(path, buffer.getvalue())
    logger.info("wrote %s", written)
    return written


def plot_modality_boxplots(rows: Sequence[CaseRow], path: str | Path) -> Path:
    """Box plots of per-case DSC and NSD, one box per modality, side by side.

    Args:
        rows: evaluated cases.
        path: PNG file to write.

    Returns:
        The written path.

    Raises:
        MissingExtraError: if matplotlib is not installed.
        ValueError: if ``rows`` is empty.
    """
    if not rows:
        raise ValueError("no evaluated cases to plot")
    fig = _new_figure(max(6.0, 1.2 * len({r.modality for r in rows}) + 2.0), 6.5)
    modalities = sorted({r.modality for r in rows})
    for i, metric in enumerate(("dsc", "nsd")):
        ax = fig.add_subplot(2, 1, i + 1)
        data = [
            [
                getattr(r, metric)
                for r in rows
                if r.modality == m and not math.isnan(getattr(r, metric))
            ]
            for m in modalities
        ]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(modalities) + 1))
        ax.set_xticklabels([f"{m}\n(n={len(d)})" for m, d in zip(modalities, data, strict=True)])
        ax.set_ylabel(metric.upper())
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Per-case DSC and NSD by modality")
    return _save(fig, path)


def plot_risk_coverage(report: ConfidenceReport, path: str | Path) -> Path:
    """Mean true DSC of the most confident x% of objects against x.

    Raises:
        MissingExtraError: if matplotlib is not installed.
        ValueError: if the report has no objects.
    """
    if not report.risk_coverage:
        raise ValueError("no matched objects: nothing to plot")
    fig = _new_figure(5.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    xs = [p.coverage for p in report.risk_coverage]
    ys = [p.mean_dsc for p in report.risk_coverage]
    ax.plot(xs, ys, marker="o", label="by confidence")
    ax.axhline(ys[-1], color="grey", linestyle="--", label="all objects")
    ax.set_xlabel("coverage: most confident objects kept (%)")
    ax.set_ylabel("mean true DSC")
    ax.set_xlim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    rho = "n/a" if math.isnan(report.spearman) else f"{report.spearman:.3f}"
    auc = "n/a" if math.isnan(report.auroc) else f"{report.auroc:.3f}"
    ax.set_title(f"Risk-coverage (n={report.n_objects}, Spearman {rho}, AUROC {auc})")
    return _save(fig, path)


def plot_reliability(report: ConfidenceReport, path: str | Path) -> Path:
    """Reliability diagram: mean true DSC per confidence bin, with the diagonal.

    Raises:
        MissingExtraError: if matplotlib is not installed.
        ValueError: if the report has no objects.
    """
    if report.n_objects == 0:
        raise ValueError("no matched objects: nothing to plot")
    fig = _new_figure(5.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    filled = [b for b in report.reliability if b.n]
    width = report.reliability[0].high - report.reliability[0].low
    ax.bar(
        [b.low for b in filled],
        [b.mean_dsc for b in filled],
        width=width,
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="mean true DSC",
    )
    for b in filled:
        ax.annotate(str(b.n), (b.low + width / 2, b.mean_dsc), ha="center", va="bottom", fontsize=8)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("confidence")
    ax.set_ylabel("mean true DSC")
    ece = "n/a" if math.isnan(report.ece) else f"{report.ece:.3f}"
    ax.set_title(f"Reliability (ECE {ece}; numbers: objects per bin)")
    ax.legend(loc="upper left")
    return _save(fig, path)
