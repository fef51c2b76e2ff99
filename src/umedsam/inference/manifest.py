"""Run manifest and resume: what a batch run did to each case, and which outputs can be reused.

A run writes ``<output>/manifest.json`` (atomically, and again as cases finish) recording the
model name, the checkpoint sha256, the umedsam version and, per case, its status (``pending``,
``done``, ``failed`` or ``skipped``), seconds, attempts and error message.

Resuming is decided by the outputs themselves, not by trusting the manifest: a case is skipped
when ``<output>/<case>.npz`` exists and validates (readable, holds an integer ``segs`` of the
shape the input implies). The manifest only vetoes reuse when it records a different model or
checkpoint, since those outputs would not be what this run asks for.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umedsam import __version__
from umedsam.atomic import write_text_atomic
from umedsam.data.npz import NPZ_READ_ERRORS, npz_headers
from umedsam.errors import InputError
from umedsam.inference.cases import CaseOutcome

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
STATUSES = ("pending", "done", "failed", "skipped")


@dataclass
class CaseRecord:
    """One case in the manifest.

    Attributes:
        status: ``pending``, ``done`` (predicted by this run), ``failed`` or ``skipped`` (a valid
            output already existed and was kept).
        seconds: wall time of the successful (or last) attempt; for ``skipped`` the time recorded
            when the output was produced, if known.
        attempts: how many times the case was started in this run (worker crashes retry it).
        error: one-line reason when failed.
        num_objects: boxes in the case.
        finished: ISO-8601 UTC time the status was set.
    """

    status: str = "pending"
    seconds: float = 0.0
    attempts: int = 0
    error: str = ""
    num_objects: int = 0
    finished: str = ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class RunManifest:
    """The manifest of one output folder; see the module docstring.

    Attributes:
        path: the JSON file.
        model: registered model name.
        checkpoint_sha256: sha256 of the weights file used.
        version: umedsam version that produced the outputs.
        cases: case file name -> record.
        min_interval: :meth:`save` without ``force`` writes at most this often (seconds).
    """

    path: Path
    model: str
    checkpoint_sha256: str
    version: str = __version__
    cases: dict[str, CaseRecord] = field(default_factory=dict)
    started: str = field(default_factory=_now)
    min_interval: float = 0.5
    _last_save: float = field(default=0.0, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content (format version, model, hash, version, counts, cases)."""
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "checkpoint_sha256": self.checkpoint_sha256,
            "umedsam_version": self.version,
            "started": self.started,
            "updated": _now(),
            "counts": self.counts(),
            "cases": {name: asdict(rec) for name, rec in sorted(self.cases.items())},
        }

    def counts(self) -> dict[str, int]:
        """Number of cases per status."""
        out = dict.fromkeys(STATUSES, 0)
        for rec in self.cases.values():
            out[rec.status] = out.get(rec.status, 0) + 1
        return out

    def save(self, force: bool = True) -> bool:
        """Write the manifest atomically; without ``force`` skip if saved < min_interval ago.

        Returns:
            Whether the file was written.
        """
        now = time.monotonic()
        if not force and now - self._last_save < self.min_interval:
            return False
        write_text_atomic(self.path, json.dumps(self.to_dict(), indent=1) + "\n")
        self._last_save = now
        return True

    def record(self, outcome: CaseOutcome, attempts: int = 1) -> CaseRecord:
        """Store a finished case (done or failed) and save if due."""
        rec = CaseRecord(
            status="done" if outcome.ok else "failed",
            seconds=round(float(outcome.seconds), 4),
            attempts=attempts,
            error=outcome.error,
            num_objects=outcome.num_objects,
            finished=_now(),
        )
        self.cases[outcome.name] = rec
        self.save(force=not outcome.ok)
        return rec

    def outcomes(self) -> list[CaseOutcome]:
        """Finished cases as CaseOutcomes (``skipped`` counts as ok), in name order."""
        return [
            CaseOutcome(
                name, rec.status in ("done", "skipped"), rec.seconds, rec.error, rec.num_objects
            )
            for name, rec in sorted(self.cases.items())
            if rec.status != "pending"
        ]

    @classmethod
    def load(cls, path: str | Path) -> RunManifest | None:
        """Read a manifest written by :meth:`save`; None if absent or unreadable (logged)."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            cases = {
                str(name): CaseRecord(
                    **{k: v for k, v in rec.items() if k in CaseRecord.__annotations__}
                )
                for name, rec in raw.get("cases", {}).items()
            }
            return cls(
                path=path,
                model=str(raw["model"]),
                checkpoint_sha256=str(raw["checkpoint_sha256"]),
                version=str(raw.get("umedsam_version", "")),
                cases=cases,
                started=str(raw.get("started", "")),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            logger.warning("ignoring unreadable manifest %s (%s)", path, err)
            return None


def expected_segs_shape(case_path: str | Path) -> tuple[int, ...]:
    """The ``segs`` shape a case implies, read from the npz headers without decoding ``imgs``.

    2D cases (``imgs`` (H, W) or (H, W, 1|3) with (N, 4) boxes) give (H, W); volumes (D, H, W).
    Interactive cases: the shape of ``scribbles`` or ``prev_pred``; with pickled 3D box dicts,
    the volume's shape.

    Raises:
        InputError: unreadable input or missing/unusable ``imgs``/``boxes``.
    """
    headers = npz_headers(case_path)
    if "imgs" not in headers:
        raise InputError(case_path, "missing 'imgs'")
    imgs = headers["imgs"][0]
    for key in ("scribbles", "prev_pred"):
        if key in headers:
            return headers[key][0]
    if "boxes" not in headers:
        if "clicks" in headers and len(imgs) in (2, 3):
            return imgs if len(imgs) == 3 and imgs[2] not in (1, 3) else imgs[:2]
        raise InputError(case_path, "missing 'imgs' or 'boxes'")
    boxes, boxes_dtype = headers["boxes"]
    if boxes_dtype.hasobject and len(imgs) == 3:
        return imgs
    cols = boxes[-1] if boxes else 0
    if len(imgs) == 2:
        return imgs
    if len(imgs) == 3 and cols == 6:
        return imgs
    if len(imgs) == 3 and imgs[2] in (1, 3):
        return imgs[:2]
    raise InputError(case_path, f"cannot tell 2D from 3D: imgs {imgs}, boxes {boxes}")


def validate_output(
    output_path: str | Path, case_path: str | Path, required: Sequence[str] = ("segs",)
) -> str | None:
    """Check a prediction file against its input case.

    Valid means: a readable npz holding every ``required`` array, each decoding to an integer
    (or bool) dtype and the shape the input implies (see :func:`expected_segs_shape`).

    Returns:
        None if valid, else the reason it is not.
    """
    output_path = Path(output_path)
    if not output_path.is_file():
        return "missing"
    try:
        expected = expected_segs_shape(case_path)
    except InputError as err:
        return f"input cannot be checked ({err.problem})"
    try:
        with np.load(output_path, allow_pickle=False) as data:
            arrays = {}
            for key in required:
                if key not in data.files:
                    return f"no '{key}' array (keys: {', '.join(data.files) or 'none'})"
                arrays[key] = data[key]
    except NPZ_READ_ERRORS as err:
        return f"unreadable ({type(err).__name__}: {str(err)[:100]})"
    for key, arr in arrays.items():
        if arr.dtype.kind not in "iub":
            return f"'{key}' dtype {arr.dtype} is not an integer type"
        if tuple(arr.shape) != tuple(expected):
            return f"'{key}' shape {arr.shape} does not match the input's {expected}"
    return None


@dataclass(frozen=True)
class ResumePlan:
    """What a (re)started run has to do.

    Attributes:
        todo: cases to predict, in the given order.
        skipped: cases whose valid output is kept.
        redo: case name -> why an existing output is not reused.
    """

    todo: list[Path]
    skipped: list[Path]
    redo: dict[str, str]


def _remove_stale_temps(output_dir: Path, names: Iterable[str]) -> None:
    """Delete temporary files an interrupted atomic write left for these cases."""
    for name in names:
        stem = Path(name).stem
        for tmp in output_dir.glob(f".{stem}.*.tmp"):
            tmp.unlink(missing_ok=True)
            logger.debug("removed stale temporary file %s", tmp)


def start_run(
    cases: Sequence[Path],
    output_dir: str | Path,
    *,
    model: str,
    checkpoint_sha256: str,
    resume: bool = True,
    required: Sequence[str] = ("segs",),
) -> tuple[RunManifest, ResumePlan]:
    """Open the manifest of ``output_dir`` and decide which cases still need predicting.

    With ``resume``, a case is skipped when its output validates, unless the previous manifest
    names another model or checkpoint (then everything is redone). Without ``resume`` every case
    is predicted again. Stale temporary files of the cases to predict are removed. The manifest
    is written before returning, with every case to predict ``pending``.

    Args:
        cases: input case files (order kept in ``plan.todo``).
        output_dir: the run's output folder (must exist).
        model: registered model name.
        checkpoint_sha256: sha256 of the weights.
        resume: reuse valid outputs.
        required: arrays a reusable output must hold (e.g. ``("segs", "unc")``).

    Returns:
        ``(manifest, plan)``.
    """
    output_dir = Path(output_dir)
    path = output_dir / MANIFEST_NAME
    previous = RunManifest.load(path)
    reuse = resume
    if (
        resume
        and previous is not None
        and (previous.model != model or previous.checkpoint_sha256 != checkpoint_sha256)
    ):
        logger.warning(
            "outputs in %s were made with %s (checkpoint %s); this run uses %s (%s): "
            "predicting every case again",
            output_dir,
            previous.model,
            previous.checkpoint_sha256[:12],
            model,
            checkpoint_sha256[:12],
        )
        reuse = False
    manifest = RunManifest(path=path, model=model, checkpoint_sha256=checkpoint_sha256)
    todo: list[Path] = []
    skipped: list[Path] = []
    redo: dict[str, str] = {}
    for case in cases:
        out = output_dir / case.name
        reason = validate_output(out, case, required) if reuse else "resume disabled"
        if reason is None:
            old = previous.cases.get(case.name) if previous is not None else None
            manifest.cases[case.name] = CaseRecord(
                status="skipped",
                seconds=old.seconds if old is not None else 0.0,
                num_objects=old.num_objects if old is not None else 0,
                finished=_now(),
            )
            skipped.append(case)
            continue
        if out.exists():
            redo[case.name] = reason
            logger.info("%s: existing output not reused (%s)", out, reason)
        manifest.cases[case.name] = CaseRecord()
        todo.append(case)
    _remove_stale_temps(output_dir, (c.name for c in todo))
    manifest.save()
    return manifest, ResumePlan(todo=todo, skipped=skipped, redo=redo)


def write_efficiency_csv(path: Path, outcomes: Iterable[CaseOutcome]) -> None:
    """``case,seconds`` for every successful case, in the challenge's format."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["case", "seconds"])
    for o in outcomes:
        if o.ok:
            writer.writerow([o.name, f"{o.seconds:.4f}"])
    write_text_atomic(path, buf.getvalue())


def finish_run(manifest: RunManifest, output_dir: str | Path) -> None:
    """Write ``efficiency.csv`` (every done or skipped case) and the final manifest."""
    write_efficiency_csv(Path(output_dir) / "efficiency.csv", manifest.outcomes())
    manifest.save()
