"""Cases on a Dask cluster: largest first, one engine per worker process, bounded retries.

The client submits one task per case; workers read the case and write ``<output>/<case>.npz``
themselves (atomically), so the input and output folders must be visible at the same paths on
every worker (a shared filesystem on a real cluster). The run's records (manifest, resume,
``efficiency.csv``, ``confidence.csv``) stay with :func:`umedsam.inference.runner.run_cases`.

Each worker process opens the planned engine once, on its first case, after checking that the
weights it finds have the identity the client planned with. A case whose task dies with its
worker (a segfault, the out-of-memory killer, ``os._exit``) is resubmitted up to ``retries``
times and then recorded as failed; the other cases carry on. Errors in a case (bad input) are not
retried.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from umedsam.data.npz import npz_headers
from umedsam.errors import CheckpointError, InputError, UmedsamError
from umedsam.extras import import_optional
from umedsam.inference.backends.base import Backend
from umedsam.inference.cases import CaseOptions, CaseOutcome, predict_case_file
from umedsam.inference.engines import EnginePlan, open_engine, weights_sha256
from umedsam.inference.runner import Report

logger = logging.getLogger(__name__)

_WORKER_ENGINE: dict[EnginePlan, Backend] = {}
"""The engine of this worker process (one at a time), keyed by the plan it was opened from."""

CaseTask = Callable[[EnginePlan, str, str, CaseOptions], CaseOutcome]


@dataclass(frozen=True)
class CaseJob:
    """One case to predict and its size (bytes of the decoded ``imgs``, else of the file)."""

    path: Path
    size: int


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


def check_worker_weights(plan: EnginePlan) -> None:
    """Refuse to run when the weights this worker sees are not the ones the client planned with.

    The torch engine hashes the checkpoint here; an exported engine compares the identity its
    export folder's manifest records.

    Raises:
        CheckpointError: the identities differ.
    """
    spec = plan.spec
    if spec.export_dir is None:
        found, where = (
            weights_sha256(spec.model, spec.checkpoint),
            str(spec.checkpoint or spec.model),
        )
    else:
        from umedsam.inference.export_folder import read_manifest

        found, where = read_manifest(spec.export_dir).checkpoint_sha256, str(spec.export_dir)
    if found != plan.sha256:
        raise CheckpointError(
            f"{where}: sha256 {found[:12]}... on worker pid {os.getpid()} differs "
            f"from the client's {plan.sha256[:12]}...; give every worker the same weights"
        )


def worker_engine(plan: EnginePlan) -> Backend:
    """The engine of this process for ``plan``, checked and opened on first use, then kept.

    Raises:
        CheckpointError: the weights found here do not have ``plan.sha256``.
    """
    backend = _WORKER_ENGINE.get(plan)
    if backend is None:
        check_worker_weights(plan)
        _WORKER_ENGINE.clear()  # one engine per process: a new plan replaces the old one
        backend = _WORKER_ENGINE[plan] = open_engine(plan).backend
        logger.info("worker pid %d opened %s on %s", os.getpid(), plan.model, plan.engine)
    return backend


def predict_case_task(
    plan: EnginePlan, path: str, output_dir: str, options: CaseOptions
) -> CaseOutcome:
    """The task a worker runs for one case: its cached engine, then ``predict_case_file``.

    Returns:
        The CaseOutcome (an engine that cannot be opened is a failed outcome too).
    """
    try:
        backend = worker_engine(plan)
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        return CaseOutcome(Path(path).name, False, 0.0, f"model not loaded on worker: {err}")
    return predict_case_file(backend, Path(path), Path(output_dir), options)


def _import_distributed() -> Any:
    return import_optional(
        "distributed", package="distributed", extra="dist", purpose="Prediction on Dask workers"
    )


def local_cluster(workers: int, preload: Sequence[str] = ()) -> Any:
    """A LocalCluster of ``workers`` single-threaded worker processes (no dashboard).

    Args:
        workers: number of worker processes.
        preload: modules every worker imports at start (e.g. one registering extra models).
    """
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
            **({"preload": list(preload)} if preload else {}),
        )


class DaskExecutor:
    """Runs cases on a local cluster of ``workers`` processes or on a running scheduler.

    Args:
        workers: size of the local cluster (ignored with ``scheduler``).
        scheduler: address of a running Dask scheduler (``tcp://host:8786``).
        retries: how many times a case is resubmitted after its worker died; then it fails.
        task: the function run per case (default :func:`predict_case_task`, same signature); a
            hook for instrumentation and fault-injection tests.
        preload: modules the workers of a local cluster import at start.
        client: an existing ``distributed.Client`` to use (then nothing is started or closed).

    Raises:
        ValueError: neither ``workers`` >= 1 nor ``scheduler``, or ``retries`` < 0.
        MissingExtraError: dask.distributed is not installed.
    """

    def __init__(
        self,
        workers: int | None = 2,
        scheduler: str | None = None,
        retries: int = 2,
        task: CaseTask | None = None,
        preload: Sequence[str] = (),
        client: Any = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0; got {retries}")
        if client is None and scheduler is None and (workers is None or workers < 1):
            raise ValueError(f"workers must be >= 1 (or give a scheduler address); got {workers}")
        self.workers, self.scheduler, self.retries = workers, scheduler, retries
        self.task = task or predict_case_task
        self.preload = tuple(preload)
        self.client = client
        self.retried = 0
        self.where = scheduler or f"{workers} local worker processes"
        _import_distributed()

    def run(
        self,
        plan: EnginePlan,
        cases: Sequence[Path],
        output_dir: Path,
        options: CaseOptions,
        report: Report,
    ) -> None:
        """See :class:`umedsam.inference.runner.Executor`."""
        jobs = plan_cases(cases)
        if not jobs:
            return
        distributed = _import_distributed()
        if self.client is not None:
            self._run_on_client(self.client, distributed, jobs, plan, output_dir, options, report)
            return
        cluster = None if self.scheduler else local_cluster(int(self.workers or 1), self.preload)
        try:
            with distributed.Client(self.scheduler or cluster) as client:
                self._run_on_client(client, distributed, jobs, plan, output_dir, options, report)
        finally:
            if cluster is not None:
                cluster.close()

    def _run_on_client(
        self,
        client: Any,
        distributed: Any,
        jobs: list[CaseJob],
        plan: EnginePlan,
        output_dir: Path,
        options: CaseOptions,
        report: Report,
    ) -> None:
        """Feed jobs (largest first) to the workers, retry those whose worker died, report outcomes.

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
                    self.task,
                    plan,
                    str(job.path),
                    str(output_dir),
                    options,
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
                if attempts[job.path] <= self.retries:
                    self.retried += 1
                    logger.warning(
                        "%s: attempt %d lost (%s); retrying",
                        job.path.name,
                        attempts[job.path],
                        reason,
                    )
                    waiting.appendleft(job)  # a retried case goes first
                else:
                    outcome = CaseOutcome(
                        job.path.name,
                        False,
                        time.perf_counter() - starts[job.path],
                        f"{job.path}: gave up after {attempts[job.path]} attempts, each ended by "
                        f"a crashed worker or task error (last: {reason})",
                    )
            finally:
                future.release()
            if outcome is not None:
                report(outcome, attempts[job.path])
            if time.monotonic() - checked > 2.0:
                limit, checked = _worker_threads(client), time.monotonic()
            fill()


def _worker_threads(client: Any) -> int:
    """Threads of the workers connected now (at least 1)."""
    try:
        return max(1, sum(client.nthreads().values()))
    except (OSError, TimeoutError, ValueError) as err:
        logger.debug("cannot query worker threads (%s)", err)
        return 1
