"""One case, file to file: read a case, segment it, write its outputs atomically.

This is where prediction touches the disk. A case that cannot be read or segmented becomes a
failed :class:`CaseOutcome` with a one-line reason naming the file; nothing half-written is left.
Which cases run, where, and what is recorded about the run is :mod:`umedsam.inference.runner`'s job.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from umedsam.atomic import write_bytes_atomic
from umedsam.data.npz import Case, load_case, save_npz_atomic
from umedsam.errors import InputError, UmedsamError
from umedsam.inference.backends.base import Backend
from umedsam.inference.overlay import render_overlay
from umedsam.inference.segment import CaseSegmentation, segment_case
from umedsam.inference.uncertainty_config import UncertaintyConfig

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("npz",)
"""Output formats of case folders: ``npz`` (challenge ``segs``, plus ``unc`` with uncertainty)."""


@dataclass(frozen=True)
class CaseOptions:
    """How each case of a run is predicted and written (the same on every executor).

    Attributes:
        overlay_dir: also write a PNG overlay per case here (None: no overlays).
        uncertainty: also write ``unc`` and per-object confidence (None: off).
        cache_mb: bound of a volume's slice-embedding cache.
        output_format: one of :data:`OUTPUT_FORMATS`.
        prompt_kinds: prompt kinds the model takes (``umedsam.models.cards``); a case
            holding another kind fails with a message naming a model that takes it.
        clip_to_box: 3D propagation keeps each object inside its 3D box (every model but the
            official one; ``umedsam.models.cards.bounded_propagation``).
        thin_strokes: strokes on a ridge become the thin structure they lie on, in 2D and 3D
            (``umedsam predict --thin-structures``; None: the package's rule).
    """

    overlay_dir: Path | None = None
    uncertainty: UncertaintyConfig | None = None
    cache_mb: float = 1024.0
    output_format: str = "npz"
    prompt_kinds: tuple[str, ...] = ("box",)
    clip_to_box: bool = False
    thin_strokes: bool | None = None

    def __post_init__(self) -> None:
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(
                f"output format must be one of {', '.join(OUTPUT_FORMATS)}; "
                f"got {self.output_format!r}"
            )
        if self.cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0; got {self.cache_mb}")
        if self.overlay_dir is not None and not isinstance(self.overlay_dir, Path):
            object.__setattr__(self, "overlay_dir", Path(self.overlay_dir))

    @property
    def required_arrays(self) -> tuple[str, ...]:
        """Arrays an output must hold to count as done (for resume)."""
        return ("segs",) if self.uncertainty is None else ("segs", "unc")


@dataclass(frozen=True)
class CaseOutcome:
    """What happened to one case.

    Attributes:
        name: input file name.
        ok: whether a valid output was written.
        seconds: wall time for reading, segmenting and writing.
        error: one-line reason when not ok.
        num_objects: boxes in the case (0 if unreadable).
        confidence_rows: with uncertainty, ``(case, object, confidence, predicted_iou, area,
            cues)`` per object (see CaseUncertainty.rows).
    """

    name: str
    ok: bool
    seconds: float
    error: str = ""
    num_objects: int = 0
    confidence_rows: tuple[tuple[str, int, float, float, int, tuple[float, ...]], ...] = ()


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


def check_prompt_kinds(case: Case, accepted: tuple[str, ...]) -> None:
    """Refuse a case holding prompts the model was not trained to take, naming one that was.

    Raises:
        InputError: naming the case, the prompt kinds and the models that take them.
    """
    from umedsam.inference.interactive import case_prompt_kinds
    from umedsam.models.cards import models_taking

    missing = case_prompt_kinds(case) - set(accepted)
    if missing:
        takers = models_taking(case_prompt_kinds(case))
        hint = f"; use --model {takers[0]}" if takers else ""
        raise InputError(
            case.name,
            f"holds {', '.join(sorted(missing))} prompts, which this model was not trained to "
            f"take (it takes {', '.join(accepted)}){hint}",
        )


def _overlay_image(case: Case, result: CaseSegmentation) -> np.ndarray:
    heat = result.uncertainty.unc if result.uncertainty is not None else None
    if not case.is_3d:
        return render_overlay(
            case.imgs, result.segs, case.boxes if len(case.boxes) else None, heat=heat
        )
    areas = (result.segs > 0).reshape(result.segs.shape[0], -1).sum(1)
    z = int(np.argmax(areas))
    boxes = [b[[0, 1, 3, 4]] for b in case.boxes if b[2] <= z <= b[5]]
    return render_overlay(
        case.imgs[z],
        result.segs[z],
        np.array(boxes) if boxes else None,
        heat=None if heat is None else heat[z],
    )


def _write_overlay(case: Case, result: CaseSegmentation, overlay_dir: Path) -> None:
    rgb = _overlay_image(case, result)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode the overlay of {case.name} as PNG")
    write_bytes_atomic(overlay_dir / (Path(case.name).stem + ".png"), buf.tobytes())


def predict_case_file(
    backend: Backend, path: Path, output_dir: Path, options: CaseOptions | None = None
) -> CaseOutcome:
    """Predict one case file and write ``output_dir/<name>``; errors become a failed outcome.

    With ``options.uncertainty``, the npz also holds ``unc`` (uint8, shape of ``segs``) and the
    outcome carries the per-object confidence rows.
    """
    options = options or CaseOptions()
    start = time.perf_counter()
    n = 0
    rows: tuple[tuple[str, int, float, float, int, tuple[float, ...]], ...] = ()
    try:
        case = load_case(path)
        n = case.num_objects
        check_prompt_kinds(case, options.prompt_kinds)
        result = segment_case(
            backend,
            case,
            cache_mb=options.cache_mb,
            uncertainty=options.uncertainty,
            mask_prompts="mask" in options.prompt_kinds,
            clip_to_box=options.clip_to_box,
            thin_strokes=options.thin_strokes,
        )
        if result.uncertainty is None:
            save_npz_atomic(output_dir / case.name, segs=result.segs)
        else:
            save_npz_atomic(output_dir / case.name, segs=result.segs, unc=result.uncertainty.unc)
            rows = tuple(result.uncertainty.rows(case.name))
        if options.overlay_dir is not None:
            _write_overlay(case, result, options.overlay_dir)
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
    boxes_path: str | Path | None,
    output_path: str | Path,
    fmt: str | None = None,
    modality: str | None = None,
    window: str | None = None,
    level: float | None = None,
    width: float | None = None,
    cache_mb: float = 1024.0,
    prompts_path: str | Path | None = None,
    prompt_kinds: tuple[str, ...] = ("box",),
    clip_to_box: bool = False,
    thin_strokes: bool | None = None,
) -> CaseOutcome:
    """Segment a NIfTI/NRRD/DICOM/PNG/JPEG/TIFF image from a prompt file.

    ``boxes_path`` is a JSON/CSV box file (:func:`umedsam.data.prompts.load_boxes`);
    ``prompts_path`` instead a JSON file of boxes, clicks, scribbles and a previous mask
    (:func:`umedsam.data.prompts.load_interactive_prompts`), which the model must take
    (``prompt_kinds``). The image is brought to uint8 like the challenge data (CT window or
    percentile clipping, see umedsam.data.intensity), segmented (3D by propagation) and the label
    mask written with the image's geometry (``fmt``: nifti, png or npz; default from the output
    suffix). ``clip_to_box`` and ``thin_strokes`` as in :class:`CaseOptions`.
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
        if prompts_path is not None:
            return _predict_prompted_image(
                backend, image_path, arr, meta, Path(prompts_path), Path(output_path), fmt,
                modality, window, level, width, cache_mb, prompt_kinds, start, clip_to_box,
                thin_strokes,
            )  # fmt: skip
        if boxes_path is None:
            raise InputError(image_path, "give box prompts (--boxes) or prompts (--prompts)")
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
            result = segment_volume_case(backend, img, boxes, cache_mb, clip_to_box=clip_to_box)
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


def _predict_prompted_image(
    backend: Backend,
    image_path: Path,
    arr: np.ndarray,
    meta: object,
    prompts_path: Path,
    output_path: Path,
    fmt: str | None,
    modality: str | None,
    window: str | None,
    level: float | None,
    width: float | None,
    cache_mb: float,
    prompt_kinds: tuple[str, ...],
    start: float,
    clip_to_box: bool,
    thin_strokes: bool | None = None,
) -> CaseOutcome:
    """The ``prompts_path`` branch of :func:`predict_image_file` (errors reach its caller)."""
    from umedsam.data.intensity import to_rgb, to_uint8
    from umedsam.data.prompts import load_interactive_prompts
    from umedsam.data.writers import write_mask

    shape = tuple(meta.shape)  # type: ignore[attr-defined]
    prompts = load_interactive_prompts(prompts_path, shape=shape)
    try:
        img = to_uint8(
            arr,
            modality=modality or meta.modality,  # type: ignore[attr-defined]
            window=window,
            level=level,
            width=width,
        )
    except ValueError as err:
        raise InputError(image_path, str(err)) from err
    is_3d = bool(meta.is_3d)  # type: ignore[attr-defined]
    cols = 6 if is_3d else 4
    boxes = np.zeros((0, cols), np.int64)
    if prompts.boxes is not None and not np.isnan(prompts.boxes).any():
        boxes = prompts.boxes.astype(np.int64)
    case = Case(image_path.name, img if is_3d else to_rgb(img), boxes, None, is_3d, prompts)
    check_prompt_kinds(case, prompt_kinds)
    result = segment_case(
        backend,
        case,
        cache_mb=cache_mb,
        mask_prompts="mask" in prompt_kinds,
        clip_to_box=clip_to_box,
        thin_strokes=thin_strokes,
    )
    write_mask(output_path, result.segs, meta, fmt=fmt)  # type: ignore[arg-type]
    n = case.num_objects
    return CaseOutcome(image_path.name, True, time.perf_counter() - start, "", n)
