"""Batch prediction on a Dask cluster: largest cases first, one model per worker, bounded retries.

The client (this process) plans the run, submits one task per case and records each outcome in
the run manifest as it arrives (see :mod:`umedsam.inference.manifest`). Workers read the case
and write ``<output>/<case>.npz`` themselves (atomically), so the input and output folders must
be visible at the same paths on every worker (a shared filesystem on a real cluster).

Each worker process builds its model once, on its first case, and keeps it in a per-process
cache keyed by model name and checkpoint sha256. A case whose task dies with its worker (a
segfault, the out-of-memory killer, ``os._exit``) is resubmitted up to ``retries`` times and then
recorded as failed; the other cases carry on. Errors in a case (bad input) are not retried.
Outputs come from the same :func:`~umedsam.inference.runner.predict_case_file` as the
single-process run, so they are identical.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from umedsam.data.npz import npz_headers
from umedsam.errors import InputError, MissingExtraError, UmedsamError
from umedsam.inference.manifest import RunManifest, finish_run, start_run
from umedsam.inference.runner import (
    CaseOutcome,
    ensure_writable,
    find_cases,
    predict_case_file,
    write_confidence_csv,
)

logger = logging.getLogger(__name__)

_BACKENDS: dict[tuple[str, str, str], Any] = {}
"""Per-process model cache of a worker: (model name, checkpoint sha256) -> backend."""


@dataclass(frozen=True)
class ModelSpec:
    """Which model every worker must load.

    Attributes:
        name: registered model name.
        checkpoint: weights file as a string path (None: the model's default weights); the path
            must exist on every worker.
        sha256: expected sha256 of the weights; a worker that loads different bytes refuses.
            For the torch engine it is the checkpoint's hash (``load_pretrained``); for the
            exported engines it is ``factory.weights_sha256`` (the export cache key).
        threads: threads per worker process (None: the engine's default).
        engine: a name of ``factory.ENGINES`` other than ``auto`` (resolve ``auto`` first, see
            :func:`resolve_engine`, so that every worker runs the same engine).
        export_dir: for an exported engine, the folder of its graphs (see
            :func:`prepare_spec_engine`); like ``checkpoint`` it must exist on every worker.
    """

    name: str
    checkpoint: str | None
    sha256: str
    threads: int | None = None
    engine: str = "torch"
    export_dir: str | None = None


@dataclass(frozen=True)
class CaseJob:
    """One case to predict and its size (bytes of the decoded ``imgs``, else of the file)."""

    path: Path
    size: int


@dataclass
class BatchProgress:
    """Counts reported to the progress callback after every finished case.

    Attributes:
        total: cases in the run (including skipped ones).
        done: cases predicted by this run.
        failed: cases that failed (bad input, or too many worker crashes).
        skipped: valid outputs kept from an earlier run.
        retried: resubmissions after a worker died.
        last: the case that just finished (None for the initial report).
        outcomes: every outcome of this run, in the order they finished.
    """

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    last: CaseOutcome | None = None
    outcomes: list[CaseOutcome] = field(default_factory=list)

    @property
    def finished(self) -> int:
        """Cases no longer pending (done + failed + skipped)."""
        return self.done + self.failed + self.skipped


@dataclass
class BatchResult:
    """Outcome of :func:`predict_batch`.

    Attributes:
        outcomes: every case of the run (skipped ones are ok, seconds from the earlier run), in
            name order.
        progress: the final counts.
        manifest: the run manifest (already saved).
    """

    outcomes: list[CaseOutcome]
    progress: BatchProgress
    manifest: RunManifest = field(repr=False)


def case_size(path: str | Path) -> int:
    """Bytes of the decoded ``imgs`` array, from the npz header; the file size if unreadable."""
    path = Path(path)
    try:
        shape, dtype = npz_headers(path)["imgs"]
        return math.prod(shape) * dtype.itemsize
    except (InputError, KeyError, OSError):
        try:
            return path.stat().st_size
        except OSError:
            return 0


def plan_cases(paths: Sequence[Path]) -> list[CaseJob]:
    """Order cases largest first (by :func:`case_size`), ties by name, so the long ones start early."""
    jobs = [CaseJob(Path(p), case_size(p)) for p in paths]
    return sorted(jobs, key=lambda j: (-j.size, j.path.name))


def worker_backend(spec: ModelSpec) -> Any:
    """The model of this process for ``spec``, built and loaded on first use, then kept.

    Raises:
        CheckpointError: the weights found here do not have ``spec.sha256``.
    """
    key = (spec.name, spec.sha256, spec.engine)
    backend = _BACKENDS.get(key)
    if backend is not None:
        return backend
    from umedsam.errors import CheckpointError

    if spec.engine == "torch":
        import torch

        from umedsam.inference.backends.torch import TorchBackend
        from umedsam.models.pretrained import load_pretrained

        if spec.threads:
            torch.set_num_threads(spec.threads)
        model, report = load_pretrained(spec.name, spec.checkpoint)
        where, sha = str(report.path), report.sha256
        backend = TorchBackend(model)
    else:
        from umedsam.inference.backends.factory import create_backend, weights_sha256

        where, sha = spec.checkpoint or spec.name, weights_sha256(spec.name, spec.checkpoint)
        backend = None
    if sha != spec.sha256:
        raise CheckpointError(
            f"{where}: sha256 {sha[:12]}... on worker pid {os.getpid()} differs "
            f"from the client's {spec.sha256[:12]}...; give every worker the same weights"
        )
    if backend is None:
        backend = create_backend(
            spec.engine,
            spec.name,
            spec.checkpoint,
            export_dir=spec.export_dir,
            threads=spec.threads,
        )
    _BACKENDS.clear()  # one model per process: a new spec replaces the old one
    _BACKENDS[key] = backend
    logger.info(
        "worker pid %d loaded %s (%s) on %s", os.getpid(), spec.name, spec.sha256[:12], spec.engine
    )
    return backend


def resolve_engine(engine: str) -> str:
    """A concrete engine for ``engine`` (``auto``: the first installed in ``AUTO_ORDER``)."""
    from umedsam.inference.backends.factory import AUTO_ORDER, available_engines

    if engine != "auto":
        return engine
    installed = available_engines()
    return next(e for e in AUTO_ORDER if e in installed)


def prepare_spec_engine(spec: ModelSpec) -> ModelSpec:
    """``spec`` with ``export_dir`` set: the export an exported engine needs, made once here.

    Otherwise every worker would export the same graphs at the same time on first use. The torch
    engine needs nothing: ``spec`` is returned unchanged.
    """
    if spec.engine == "torch" or spec.export_dir is not None:
        return spec
    from umedsam.inference.backends.factory import ensure_export

    folder = ensure_export(spec.engine, spec.name, spec.checkpoint)
    return dataclasses.replace(spec, export_dir=str(folder))


def predict_case_task(
    spec: ModelSpec,
    path: str,
    output_dir: str,
    overlay_dir: str | None = None,
    cache_mb: float = 1024.0,
    options: Mapping[str, Any] | None = None,
) -> CaseOutcome:
    """The task a worker runs for one case: cached model, then ``predict_case_file``.

    Args:
        spec: the model to use.
        path: input case file.
        output_dir: folder for ``<case>.npz``.
        overlay_dir: optional PNG overlay folder.
        cache_mb: bound of the 3D embedding cache.
        options: extra keyword arguments for ``predict_case_file``.

    Returns:
        The CaseOutcome (a failure to load the model is a failed outcome too).
    """
    try:
        backend = worker_backend(spec)
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        return CaseOutcome(Path(path).name, False, 0.0, f"model not loaded on worker: {err}")
    return predict_case_file(
        backend,
        Path(path),
        Path(output_dir),
        None if overlay_dir is None else Path(overlay_dir),
        cache_mb,
        **dict(options or {}),
    )


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as err:
        raise MissingExtraError("distributed", "dist", "Prediction on Dask workers") from err
    return distributed


def _local_cluster(workers: int) -> Any:
    """A LocalCluster of ``workers`` single-threaded worker processes (no dashboard)."""
    import dask

    distributed = _import_distributed()
    # A dead worker fails its task at once (we retry ourselves, a bounded number of times), and
    # each worker holds only the task it runs, so a crash never takes innocent queued cases along.
    with dask.config.set(
        {
            "distributed.scheduler.allowed-failures": 0,
            "distributed.scheduler.worker-saturation": 1.0,
        }
    ):
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
        )


def predict_batch(
    cases: Sequence[Path] | str | Path,
    output_dir: str | Path,
    spec: ModelSpec,
    *,
    workers: int | None = 2,
    scheduler: str | None = None,
    retries: int = 2,
    overlay_dir: str | Path | None = None,
    cache_mb: float = 1024.0,
    resume: bool = True,
    progress: Callable[[BatchProgress], None] | None = None,
    case_fn: Callable[..., CaseOutcome] | None = None,
    options: Mapping[str, Any] | None = None,
) -> BatchResult:
    """Predict cases on Dask workers, recording each outcome in ``<output>/manifest.json``.

    Args:
        cases: a folder of ``*.npz`` cases or a list of case files.
        output_dir: receives ``<case>.npz``, ``efficiency.csv`` and ``manifest.json``; it is
            checked for writability before any work.
        spec: the model every worker loads (once per worker process).
        workers: size of the local cluster of worker processes (ignored with ``scheduler``).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``) to use instead.
        retries: how many times a case is resubmitted after its worker died; then it fails.
        overlay_dir: optional folder for PNG overlays.
        cache_mb: bound of the per-volume embedding cache on each worker.
        resume: keep outputs of an earlier run that validate (see ``manifest.start_run``).
        progress: called with the counts at the start and after every finished case.
        case_fn: the task run per case (default :func:`predict_case_task`, same signature);
            a hook for instrumentation and fault-injection tests.
        options: extra keyword arguments for ``predict_case_file`` on the workers.

    Returns:
        A BatchResult.

    Raises:
        FileNotFoundError, InputError: no input folder, no cases, output not writable.
        ValueError: neither ``workers`` >= 1 nor ``scheduler`` given, or ``retries`` < 0.
        MissingExtraError: dask.distributed is not installed.
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0; got {retries}")
    if scheduler is None and (workers is None or workers < 1):
        raise ValueError(f"workers must be >= 1 (or give a scheduler address); got {workers}")
    paths = find_cases(cases) if isinstance(cases, (str, Path)) else [Path(c) for c in cases]
    out = ensure_writable(output_dir)
    ov = ensure_writable(overlay_dir) if overlay_dir is not None else None
    distributed = _import_distributed()
    with_unc = (options or {}).get("uncertainty") is not None
    manifest, plan = start_run(
        paths,
        out,
        model=spec.name,
        checkpoint_sha256=spec.sha256,
        resume=resume,
        required=("segs", "unc") if with_unc else ("segs",),
    )
    state = BatchProgress(total=len(paths), skipped=len(plan.skipped))
    if progress:
        progress(state)
    jobs = plan_cases(plan.todo)
    if jobs:
        fn = case_fn or predict_case_task
        args = (str(out), None if ov is None else str(ov), cache_mb, dict(options or {}))
        cluster = None if scheduler else _local_cluster(int(workers or 1))
        try:
            with distributed.Client(scheduler or cluster) as client:
                _run_on_client(
                    client, distributed, jobs, fn, spec, args, retries, manifest, state, progress
                )
        finally:
            if cluster is not None:
                cluster.close()
    finish_run(manifest, out)
    if with_unc:
        write_confidence_csv(out / "confidence.csv", state.outcomes)
    return BatchResult(outcomes=manifest.outcomes(), progress=state, manifest=manifest)


def _worker_threads(client: Any) -> int:
    """Threads of the workers connected now (at least 1)."""
    try:
        return max(1, sum(client.nthreads().values()))
    except (OSError, TimeoutError, ValueError) as err:
        logger.debug("cannot query worker threads (%s)", err)
        return 1


def _run_on_client(
    client: Any,
    distributed: Any,
    jobs: list[CaseJob],
    fn: Callable[..., CaseOutcome],
    spec: ModelSpec,
    args: tuple[Any, ...],
    retries: int,
    manifest: RunManifest,
    state: BatchProgress,
    progress: Callable[[BatchProgress], None] | None,
) -> None:
    """Feed jobs (largest first) to the workers, retry those whose worker died, record outcomes.

    At most one task per worker thread is in flight, so a worker that dies takes only the case
    it was running with it, and the largest-first order is kept exactly.
    """
    run_id = uuid.uuid4().hex
    serial = itertools.count()
    attempts: dict[Path, int] = {}
    starts: dict[Path, float] = {}
    in_flight: dict[Any, CaseJob] = {}
    waiting = deque(jobs)
    queue = distributed.as_completed()
    limit, checked = _worker_threads(client), time.monotonic()

    def fill() -> None:
        while waiting and len(in_flight) < limit:
            job = waiting.popleft()
            attempts[job.path] = attempts.get(job.path, 0) + 1
            starts.setdefault(job.path, time.perf_counter())
            future = client.submit(
                fn,
                spec,
                str(job.path),
                *args,
                key=f"umedsam-case-{run_id}-{next(serial)}",
                pure=False,
            )
            in_flight[future] = job
            queue.add(future)

    fill()
    for future in queue:
        job = in_flight.pop(future)
        outcome = None
        try:
            outcome = future.result()
        except Exception as err:  # noqa: BLE001 - any task failure (a dead worker above all) is retried
            reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            if attempts[job.path] <= retries:
                state.retried += 1
                logger.warning(
                    "%s: attempt %d lost (%s); retrying", job.path.name, attempts[job.path], reason
                )
                waiting.appendleft(job)  # a retried case goes first
            else:
                outcome = CaseOutcome(
                    job.path.name,
                    False,
                    time.perf_counter() - starts[job.path],
                    f"{job.path}: gave up after {attempts[job.path]} attempts, each ended by a "
                    f"crashed worker or task error (last: {reason})",
                )
        finally:
            future.release()
        if outcome is not None:
            manifest.record(outcome, attempts=attempts[job.path])
            state.outcomes.append(outcome)
            if outcome.ok:
                state.done += 1
            else:
                state.failed += 1
                logger.error("%s", outcome.error)
            state.last = outcome
            if progress:
                progress(state)
        if time.monotonic() - checked > 2.0:
            limit, checked = _worker_threads(client), time.monotonic()
        fill()
