"""Folder-level prediction: challenge npz cases in, ``segs`` npz + efficiency.csv out.

This is the only inference module that touches the disk. One bad case is reported and skipped;
the others finish. Outputs are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from umedsam.data.npz import Case, load_case, save_npz_atomic
from umedsam.errors import InputError, UmedsamError
from umedsam.inference.backends.base import Backend
from umedsam.inference.overlay import render_overlay
from umedsam.inference.segment import CaseSegmentation, segment_case
from umedsam.inference.uncertainty_config import UncertaintyConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one case.

    Attributes:
        name: input file name.
        ok: whether a valid output was written.
        seconds: wall time for reading, segmenting and writing.
        error: one-line reason when not ok.
        num_objects: boxes in the case (0 if unreadable).
        confidence_rows: with uncertainty, ``(case, object, confidence, predicted_iou, area)``
            per object (see CaseUncertainty.rows).
    """

    name: str
    ok: bool
    seconds: float
    error: str = ""
    num_objects: int = 0
    confidence_rows: tuple[tuple[str, int, float, float, int], ...] = ()


def find_cases(input_dir: str | Path) -> list[Path]:
    """Sorted ``*.npz`` files of a folder.

    Raises:
        FileNotFoundError: the folder does not exist.
        InputError: it holds no .npz files.
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder not found: {folder}")
    cases = sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))
    if not cases:
        raise InputError(folder, "no .npz cases in this folder")
    return cases


def ensure_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and check a file can be written there, before any work.

    Raises:
        InputError: the folder cannot be created or written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".umedsam-write-test"):
            pass
    except OSError as err:
        raise InputError(folder, f"output folder is not writable ({err.strerror or err})") from err
    return folder


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_efficiency_csv(path: Path, outcomes: list[CaseOutcome]) -> None:
    """``case,seconds`` for every successfully predicted case."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["case", "seconds"])
    for o in outcomes:
        if o.ok:
            writer.writerow([o.name, f"{o.seconds:.4f}"])
    write_text_atomic(path, buf.getvalue())


def _overlay_image(case: Case, result: CaseSegmentation) -> np.ndarray:
    heat = result.uncertainty.unc if result.uncertainty is not None else None
    if not case.is_3d:
        return render_overlay(case.imgs, result.segs, case.boxes, heat=heat)
    areas = (result.segs > 0).reshape(result.segs.shape[0], -1).sum(1)
    z = int(np.argmax(areas))
    boxes = [b[[0, 1, 3, 4]] for b in case.boxes if b[2] <= z <= b[5]]
    return render_overlay(
        case.imgs[z],
        result.segs[z],
        np.array(boxes) if boxes else None,
        heat=None if heat is None else heat[z],
    )


CONFIDENCE_COLUMNS = ("case", "object", "confidence", "predicted_iou", "area")


def write_confidence_csv(path: Path, outcomes: list[CaseOutcome]) -> None:
    """``confidence.csv`` (case, object, confidence, predicted_iou, area) of successful cases.

    Rows already in ``path`` for cases not predicted in this run are kept (a resumed run adds to
    the file instead of replacing it); rows of re-predicted cases are replaced.
    """
    redone = {o.name for o in outcomes}
    rows: list[list[str]] = []
    if path.is_file():
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header == list(CONFIDENCE_COLUMNS):
                rows = [r for r in reader if r and r[0] not in redone]
    for o in outcomes:
        if o.ok:
            rows.extend(
                [c, str(obj), f"{conf:.4f}", f"{iou:.4f}", str(area)]
                for c, obj, conf, iou, area in o.confidence_rows
            )
    rows.sort(key=lambda r: (r[0], int(r[1])))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CONFIDENCE_COLUMNS)
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def predict_case_file(
    backend: Backend,
    path: Path,
    output_dir: Path,
    overlay_dir: Path | None = None,
    cache_mb: float = 1024.0,
    uncertainty: UncertaintyConfig | None = None,
) -> CaseOutcome:
    """Predict one case file and write ``output_dir/<name>``; errors become a failed outcome.

    With ``uncertainty``, the npz also holds ``unc`` (uint8, shape of ``segs``) and the outcome
    carries the per-object confidence rows.
    """
    start = time.perf_counter()
    n = 0
    rows: tuple[tuple[str, int, float, float, int], ...] = ()
    try:
        case = load_case(path)
        n = case.num_objects
        result = segment_case(backend, case, cache_mb=cache_mb, uncertainty=uncertainty)
        if result.uncertainty is None:
            save_npz_atomic(output_dir / case.name, segs=result.segs)
        else:
            save_npz_atomic(output_dir / case.name, segs=result.segs, unc=result.uncertainty.unc)
            rows = tuple(result.uncertainty.rows(case.name))
        if overlay_dir is not None:
            rgb = _overlay_image(case, result)
            png = overlay_dir / (Path(case.name).stem + ".png")
            ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if ok:
                tmp = png.with_name(f".{png.name}.tmp")
                tmp.write_bytes(buf.tobytes())
                os.replace(tmp, png)
    except UmedsamError as err:
        return CaseOutcome(path.name, False, time.perf_counter() - start, str(err), n)
    except (MemoryError, RuntimeError, ValueError, OSError) as err:
        logger.debug("case %s failed", path, exc_info=True)
        return CaseOutcome(
            path.name, False, time.perf_counter() - start, f"{path}: {type(err).__name__}: {err}", n
        )
    return CaseOutcome(path.name, True, time.perf_counter() - start, "", n, rows)


def predict_image_file(
    backend: Backend,
    image_path: str | Path,
    boxes_path: str | Path,
    output_path: str | Path,
    fmt: str | None = None,
    modality: str | None = None,
    window: str | None = None,
    level: float | None = None,
    width: float | None = None,
    cache_mb: float = 1024.0,
) -> CaseOutcome:
    """Segment a NIfTI/NRRD/DICOM/PNG/JPEG/TIFF image with boxes from a JSON/CSV prompt file.

    The image is brought to uint8 like the challenge data (CT window or percentile clipping, see
    umedsam.data.intensity), segmented (3D by propagation) and the label mask written with the
    image's geometry (``fmt``: nifti, png or npz; default from the output suffix).
    """
    from umedsam.data.intensity import to_rgb, to_uint8
    from umedsam.data.prompts import load_boxes
    from umedsam.data.readers import read_image
    from umedsam.data.writers import write_mask
    from umedsam.inference.segment import segment_image, segment_volume_case

    image_path = Path(image_path)
    start = time.perf_counter()
    n = 0
    try:
        arr, meta = read_image(image_path)
        boxes = load_boxes(boxes_path, shape=meta.shape)
        n = int(boxes.shape[0])
        try:
            img = to_uint8(
                arr, modality=modality or meta.modality, window=window, level=level, width=width
            )
        except ValueError as err:
            raise InputError(image_path, str(err)) from err
        if meta.is_3d:
            if boxes.shape[1] != 6:
                raise InputError(Path(boxes_path), "a volume needs 3D boxes (N, 6)")
            result = segment_volume_case(backend, img, boxes, cache_mb)
        else:
            if boxes.shape[1] != 4:
                raise InputError(Path(boxes_path), "a 2D image needs 2D boxes (N, 4)")
            result = segment_image(backend, to_rgb(img), boxes)
        write_mask(output_path, result.segs, meta, fmt=fmt)
    except UmedsamError as err:
        return CaseOutcome(image_path.name, False, time.perf_counter() - start, str(err), n)
    except (FileNotFoundError, ValueError) as err:
        return CaseOutcome(image_path.name, False, time.perf_counter() - start, str(err), n)
    return CaseOutcome(image_path.name, True, time.perf_counter() - start, "", n)


def predict_folder(
    backend: Backend,
    input_dir: str | Path,
    output_dir: str | Path,
    overlay_dir: str | Path | None = None,
    cache_mb: float = 1024.0,
    on_case: Callable[[CaseOutcome], None] | None = None,
    cases: list[Path] | None = None,
    uncertainty: UncertaintyConfig | None = None,
) -> list[CaseOutcome]:
    """Predict every case of ``input_dir`` into ``output_dir`` and write ``efficiency.csv`` there.

    Args:
        backend: the inference engine (model loaded once for the whole folder).
        input_dir: folder of challenge ``*.npz`` cases.
        output_dir: receives ``<case>.npz`` with ``segs`` and ``efficiency.csv``.
        overlay_dir: optional folder for PNG overlays.
        cache_mb: bound of the per-volume embedding cache.
        on_case: called after each case (progress reporting).
        cases: predict only these files of ``input_dir`` (e.g. what a resumed run still needs).
        uncertainty: also write ``unc`` into each npz and ``confidence.csv`` (None = off).

    Returns:
        One CaseOutcome per input file, in name order.
    """
    cases = find_cases(input_dir) if cases is None else list(cases)
    out = ensure_writable(output_dir)
    ov = ensure_writable(overlay_dir) if overlay_dir is not None else None
    outcomes = []
    for path in cases:
        outcome = predict_case_file(backend, path, out, ov, cache_mb, uncertainty)
        if not outcome.ok:
            logger.error("%s", outcome.error)
        outcomes.append(outcome)
        if on_case:
            on_case(outcome)
    write_efficiency_csv(out / "efficiency.csv", outcomes)
    if uncertainty is not None:
        write_confidence_csv(out / "confidence.csv", outcomes)
    return outcomes
