"""The one run orchestrator: a set of cases -> predictions, on a local or a Dask executor.

:func:`run_cases` plans the engine once (``auto`` resolved, weights hashed, graphs exported),
opens the run manifest and decides what a resumed run still has to do, hands the cases to an
executor, records every outcome as it arrives, and writes ``efficiency.csv``, ``confidence.csv``
(with uncertainty) and the final manifest once at the end. Executors only run cases:
:class:`LocalExecutor` in this process, :class:`~umedsam.inference.dask_executor.DaskExecutor` on
Dask workers. Both call the same :func:`~umedsam.inference.cases.predict_case_file` with the same
typed :class:`~umedsam.inference.cases.CaseOptions`, so their outputs are identical.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from umedsam.atomic import write_text_atomic
from umedsam.evaluation.confidence import CONFIDENCE_COLUMNS
from umedsam.inference.cases import CaseOptions, CaseOutcome, ensure_writable, predict_case_file
from umedsam.inference.engines import Engine, EnginePlan, EngineSpec, open_engine, plan_engine
from umedsam.inference.manifest import RunManifest, finish_run, start_run

logger = logging.getLogger(__name__)

Report = Callable[[CaseOutcome, int], None]
"""Called by an executor for every finished case with its outcome and the attempts it took."""


class Executor(Protocol):
    """Runs cases with a planned engine and reports each outcome; owns no run bookkeeping."""

    where: str

    def run(
        self,
        plan: EnginePlan,
        cases: Sequence[Path],
        output_dir: Path,
        options: CaseOptions,
        report: Report,
    ) -> None:
        """Predict every case (each writes ``output_dir/<name>``) and ``report`` each outcome."""
        ...


@dataclass
class RunProgress:
    """Counts reported to the progress callback: once at the start, then after every case.

    Attributes:
        total: cases in the run (including skipped ones).
        engine: the concrete engine name.
        where: where the cases run ("this process", "2 local worker processes" ...).
        engine_seconds: time taken to plan the engine (hash, export).
        done: cases predicted by this run.
        failed: cases that failed.
        skipped: valid outputs kept from an earlier run.
        retried: resubmissions after a worker died (Dask).
        last: the case that just finished (None for the first report).
    """

    total: int
    engine: str
    where: str
    engine_seconds: float = 0.0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    last: CaseOutcome | None = None

    @property
    def finished(self) -> int:
        """Cases no longer pending (done + failed + skipped)."""
        return self.done + self.failed + self.skipped


@dataclass
class RunResult:
    """Outcome of :func:`run_cases`.

    Attributes:
        outcomes: every case of the run in name order (skipped ones are ok, with the seconds
            recorded when they were made).
        progress: the final counts.
        manifest: the saved run manifest.
        new_outcomes: outcomes of the cases predicted by this run, in the order they finished.
    """

    outcomes: list[CaseOutcome]
    progress: RunProgress
    manifest: RunManifest = field(repr=False)
    new_outcomes: list[CaseOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseOutcome]:
        """The failed cases."""
        return [o for o in self.outcomes if not o.ok]


class LocalExecutor:
    """Runs the cases one after another in this process, with the engine opened once.

    Args:
        engine: an engine already open in this process to use (None: open the planned one).
    """

    where = "this process"

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine

    def run(
        self,
        plan: EnginePlan,
        cases: Sequence[Path],
        output_dir: Path,
        options: CaseOptions,
        report: Report,
    ) -> None:
        """See :class:`Executor`."""
        if not cases:
            return
        backend = self.engine.backend if self.engine is not None else open_engine(plan).backend
        for path in cases:
            report(predict_case_file(backend, Path(path), output_dir, options), 1)


def write_confidence_csv(path: Path, outcomes: Sequence[CaseOutcome]) -> None:
    """``confidence.csv`` (case, object, confidence, predicted_iou, area and the other cues) of
    successful cases.

    Rows already in ``path`` for cases not predicted in this run are kept (a resumed run adds to
    the file instead of replacing it); rows of re-predicted cases are replaced.
    """
    redone = {o.name for o in outcomes}
    rows: list[list[str]] = []
    if path.is_file():
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            if next(reader, None) == list(CONFIDENCE_COLUMNS):
                rows = [r for r in reader if r and r[0] not in redone]
    for o in outcomes:
        if o.ok:
            rows.extend(
                [c, str(obj), f"{conf:.4f}", f"{iou:.4f}", str(area), *(f"{v:.4f}" for v in cues)]
                for c, obj, conf, iou, area, cues in o.confidence_rows
            )
    rows.sort(key=lambda r: (r[0], int(r[1])))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CONFIDENCE_COLUMNS)
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _plan_of(engine: EngineSpec | EnginePlan | Engine) -> EnginePlan:
    """The plan of what :func:`run_cases` runs: an open engine's, a given plan, or a spec's."""
    if isinstance(engine, Engine):
        return engine.plan
    return engine if isinstance(engine, EnginePlan) else plan_engine(engine)


def run_cases(
    cases: Sequence[Path],
    output_dir: str | Path,
    engine: EngineSpec | EnginePlan | Engine,
    options: CaseOptions | None = None,
    *,
    executor: Executor | None = None,
    resume: bool = True,
    progress: Callable[[RunProgress], None] | None = None,
) -> RunResult:
    """Predict ``cases`` into ``output_dir`` and keep the run's records there.

    Args:
        cases: challenge ``*.npz`` case files (see :func:`~umedsam.inference.cases.find_cases`).
        output_dir: receives ``<case>.npz``, ``efficiency.csv``, ``manifest.json`` and, with
            uncertainty, ``confidence.csv``; checked for writability before any work.
        engine: what to run: a spec (planned here, once, for every executor), a plan, or an
            engine already open in this process (then the default executor uses it).
        options: how each case is predicted and written.
        executor: where the cases run (default :class:`LocalExecutor`).
        resume: keep outputs of an earlier run that validate (see ``manifest.start_run``).
        progress: called with the counts at the start and after every finished case.

    Returns:
        A RunResult.

    Raises:
        FileNotFoundError, InputError: output folder not writable.
        UmedsamError, ValueError, ParityError: the engine cannot be planned (see ``plan_engine``).
    """
    options = options or CaseOptions()
    if executor is None:
        executor = LocalExecutor(engine if isinstance(engine, Engine) else None)
    out = ensure_writable(output_dir)
    if options.overlay_dir is not None:
        ensure_writable(options.overlay_dir)
    start = time.perf_counter()
    plan = _plan_of(engine)
    manifest, resume_plan = start_run(
        [Path(c) for c in cases],
        out,
        model=plan.model,
        checkpoint_sha256=plan.sha256,
        resume=resume,
        required=options.required_arrays,
    )
    state = RunProgress(
        total=len(cases),
        engine=plan.engine,
        where=executor.where,
        engine_seconds=time.perf_counter() - start,
        skipped=len(resume_plan.skipped),
    )
    if progress:
        progress(state)
    new: list[CaseOutcome] = []

    def report(outcome: CaseOutcome, attempts: int) -> None:
        manifest.record(outcome, attempts=attempts)
        new.append(outcome)
        if outcome.ok:
            state.done += 1
        else:
            state.failed += 1
            logger.error("%s", outcome.error)
        state.last = outcome
        if progress:
            progress(state)

    try:
        executor.run(plan, resume_plan.todo, out, options, report)
    finally:
        state.retried = getattr(executor, "retried", 0)
        finish_run(manifest, out)
        if options.uncertainty is not None:
            write_confidence_csv(out / "confidence.csv", new)
    return RunResult(
        outcomes=manifest.outcomes(), progress=state, manifest=manifest, new_outcomes=new
    )
