"""DICOM series folders and single files via pydicom (extra ``dicom``).

Geometry: DICOM positions are LPS; :class:`ImageMeta` holds RAS, so the affine built from
ImagePositionPatient / ImageOrientationPatient / PixelSpacing is left-multiplied by
``diag(-1, -1, 1, 1)``. A mask written as NIfTI with that affine overlays the DICOM series in any
viewer (3D Slicer, ITK-SNAP, ...).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.data.readers.guards import (
    DEFAULT_MAX_BYTES,
    check_declared_size,
    check_nonempty_file,
    first_line,
)
from umedsam.data.readers.meta import (
    LPS_TO_RAS,
    ImageMeta,
    _as_matrix,
    meta_from_affine,
    plain_2d_meta,
)
from umedsam.errors import InputError
from umedsam.extras import import_optional

logger = logging.getLogger(__name__)

_POSITION_TOL_MM = 1e-3


def _pydicom() -> Any:
    return import_optional("pydicom", package="pydicom", extra="dicom", purpose="Reading DICOM")


def read_dicom(
    path: str | Path,
    *,
    series_uid: str | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> tuple[NDArray, ImageMeta]:
    """Read a DICOM series folder as a volume, or a single DICOM file.

    A folder is scanned (not recursively) for DICOM images; files that are not DICOM, and
    non-image objects such as RT Structure Sets, are skipped. Slices are sorted by the projection
    of ImagePositionPatient on the slice normal (the cross product of the two
    ImageOrientationPatient vectors), and each slice's RescaleSlope/RescaleIntercept (or Modality
    LUT) is applied, so CT comes out in Hounsfield units. MONOCHROME1 images are inverted so that
    bright means dense, as displayed.

    Args:
        path: series folder, or one ``.dcm`` file.
        series_uid: SeriesInstanceUID to read when the folder holds several series.
        max_bytes: refuse data whose headers declare a larger array (None: no limit).

    Returns:
        ``(array, ImageMeta)``. A folder with two or more slices gives a ``(D, H, W)`` volume whose
        first slice is the one at the lowest position along the normal. A single file gives a 2D
        ``(H, W)`` (or ``(H, W, 3)`` colour) image whose meta still carries the 3D affine of that
        slice when the file has one; a multi-frame grey file gives a volume. Dtype: int16/int32
        when the rescale keeps integers, float32 otherwise; ``meta.modality`` is the Modality tag.

    Raises:
        MissingExtraError: pydicom is not installed (``pip install 'umedsam[dicom]'``).
        FileNotFoundError: ``path`` does not exist.
        InputError: no DICOM image found, several series without ``series_uid``, slices of
            different size or orientation, duplicate positions, compressed data without a
            decoder, truncated or oversized pixel data.
    """
    path = Path(path)
    if path.is_dir():
        return _read_series(path, series_uid=series_uid, max_bytes=max_bytes)
    return _read_file(check_nonempty_file(path), max_bytes=max_bytes)


def list_dicom_files(folder: Path) -> tuple[dict[str, list[tuple[Path, Any]]], list[Path]]:
    """Headers (without pixels) of the DICOM files directly in ``folder``.

    Returns:
        ``(images_by_series_uid, rtstruct_paths)``: image files grouped by SeriesInstanceUID as
        ``(path, dataset)`` pairs, and RT Structure Set files found alongside.
    """
    pydicom = _pydicom()
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    rtstructs: list[Path] = []
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(str(file), stop_before_pixels=True)
        except Exception as err:  # noqa: BLE001 - pydicom raises many types on damaged files
            logger.debug("skipping %s: not DICOM (%s)", file, first_line(err))
            continue
        if str(ds.get("Modality", "")).upper() == "RTSTRUCT":
            rtstructs.append(file)
        elif "Rows" in ds and "Columns" in ds:
            series[str(ds.get("SeriesInstanceUID", "unknown"))].append((file, ds))
    return series, rtstructs


def _read_series(
    folder: Path, *, series_uid: str | None, max_bytes: int | None
) -> tuple[NDArray, ImageMeta]:
    series, _ = list_dicom_files(folder)
    if not series:
        raise InputError(
            folder, "no DICOM image files in this folder (subfolders are not searched)"
        )
    if series_uid is not None:
        if series_uid not in series:
            raise InputError(
                folder, f"no series {series_uid!r} here; found {', '.join(sorted(series))}"
            )
        entries = series[series_uid]
    elif len(series) > 1:
        listing = "; ".join(
            f"{uid} ({items[0][1].get('Modality', '?')}, "
            f"{items[0][1].get('SeriesDescription', '')!s}, {len(items)} files)"
            for uid, items in sorted(series.items())
        )
        raise InputError(folder, f"the folder holds {len(series)} series, pick one: {listing}")
    else:
        entries = next(iter(series.values()))
    if len(entries) == 1:
        return _read_file(entries[0][0], max_bytes=max_bytes)

    first = entries[0][1]
    rows, cols = int(first.Rows), int(first.Columns)
    samples = int(first.get("SamplesPerPixel", 1))
    if samples != 1:
        raise InputError(
            folder, f"colour DICOM series (SamplesPerPixel={samples}) are not supported"
        )
    for file, ds in entries:
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise InputError(
                file, f"slice size {ds.Rows}x{ds.Columns} differs from the series' {rows}x{cols}"
            )
    check_declared_size(folder, (len(entries), rows, cols), 4, max_bytes)

    ordered, slice_vector = _sort_slices(folder, entries)
    slices = [_pixels(file, max_bytes=max_bytes)[0] for file, _ in ordered]
    volume = _stack(slices)
    first_ds = ordered[0][1]
    row_dir, col_dir = _orientation(first_ds)
    row_spacing, col_spacing = _pixel_spacing(first_ds)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * col_spacing  # voxel x = column index
    affine_lps[:3, 1] = col_dir * row_spacing  # voxel y = row index
    affine_lps[:3, 2] = slice_vector  # voxel z = slice index
    affine_lps[:3, 3] = _position(first_ds)
    meta = meta_from_affine(
        LPS_TO_RAS @ affine_lps,
        volume.shape,
        source_format="dicom",
        modality=_modality(first_ds),
        source_dtype=str(volume.dtype),
    )
    meta = replace(meta, source_files=tuple(str(file.resolve()) for file, _ in ordered))
    logger.debug("read series %s: %s slices, spacing %s", folder, len(slices), meta.spacing)
    return volume, meta


def _sort_slices(
    folder: Path, entries: list[tuple[Path, Any]]
) -> tuple[list[tuple[Path, Any]], NDArray[np.float64]]:
    """Sort by position along the normal; return the files and the mean slice step vector (LPS)."""
    missing = [file.name for file, ds in entries if "ImagePositionPatient" not in ds]
    if missing or any("ImageOrientationPatient" not in ds for _, ds in entries):
        raise InputError(
            folder,
            "slices lack ImagePositionPatient/ImageOrientationPatient, so they cannot be ordered "
            f"into a volume ({', '.join(missing[:3]) or 'orientation missing'}); read them one by one",
        )
    row_dir, col_dir = _orientation(entries[0][1])
    for file, ds in entries[1:]:
        other_row, other_col = _orientation(ds)
        if not (
            np.allclose(other_row, row_dir, atol=1e-4)
            and np.allclose(other_col, col_dir, atol=1e-4)
        ):
            raise InputError(file, "slice orientation differs from the rest of the series")
    normal = np.cross(row_dir, col_dir)
    keyed = sorted(entries, key=lambda item: float(_position(item[1]) @ normal))
    positions = np.array([_position(ds) for _, ds in keyed])
    along = positions @ normal
    steps = np.diff(along)
    if np.any(steps < _POSITION_TOL_MM):
        dup = [keyed[i + 1][0].name for i in np.flatnonzero(steps < _POSITION_TOL_MM)[:3]]
        raise InputError(
            folder,
            f"several slices share one position (e.g. {', '.join(dup)}): the folder mixes "
            "acquisitions or time points; put one volume per folder",
        )
    if steps.max() - steps.min() > max(0.01 * steps.mean(), _POSITION_TOL_MM):
        logger.warning(
            "%s: slice spacing varies from %.3f to %.3f mm; using the mean %.3f mm",
            folder, steps.min(), steps.max(), steps.mean(),
        )  # fmt: skip
    slice_vector = (positions[-1] - positions[0]) / (len(positions) - 1)
    return keyed, slice_vector


def _read_file(path: Path, *, max_bytes: int | None) -> tuple[NDArray, ImageMeta]:
    array, ds = _pixels(path, max_bytes=max_bytes)
    samples = int(ds.get("SamplesPerPixel", 1))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    modality = _modality(ds)
    if frames > 1:
        if samples != 1:
            raise InputError(
                path, f"multi-frame colour DICOM ({frames} frames) is not supported; export a frame"
            )
        return array, _multiframe_meta(path, ds, array.shape, modality)
    channels = samples
    has_geometry = "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
    row_spacing, col_spacing = _pixel_spacing(ds)
    if not has_geometry:
        meta = plain_2d_meta(
            array.shape[:2], source_format="dicom", channels=channels, source_dtype=str(array.dtype)
        )
        meta = replace(meta, spacing=(row_spacing, col_spacing), modality=modality)
        return array, meta
    row_dir, col_dir = _orientation(ds)
    normal = np.cross(row_dir, col_dir)
    thickness = float(ds.get("SpacingBetweenSlices", 0) or ds.get("SliceThickness", 0) or 1.0)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * col_spacing
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = normal * thickness
    affine_lps[:3, 3] = _position(ds)
    affine = LPS_TO_RAS @ affine_lps
    flip = LPS_TO_RAS[:3, :3]
    direction = np.stack([flip @ col_dir, flip @ row_dir, flip @ normal], axis=1)
    meta = ImageMeta(
        shape=(int(array.shape[0]), int(array.shape[1])),
        spacing=(row_spacing, col_spacing),
        origin=tuple(float(v) for v in affine[:3, 3]),
        direction=_as_matrix(direction),
        source_format="dicom",
        affine=_as_matrix(affine),
        modality=modality,
        channels=channels,
        source_dtype=str(array.dtype),
        source_files=(str(path.resolve()),),
    )
    return array, meta


def _multiframe_meta(
    path: Path, ds: Any, shape: tuple[int, ...], modality: str | None
) -> ImageMeta:
    """Geometry of a multi-frame grey file from its functional groups, when present."""
    row_spacing, col_spacing = _pixel_spacing(ds)
    try:
        shared = ds.SharedFunctionalGroupsSequence[0]
        orientation = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        measures = shared.PixelMeasuresSequence[0]
        row_spacing, col_spacing = (float(v) for v in measures.PixelSpacing)
        positions = np.array(
            [
                [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
                for item in ds.PerFrameFunctionalGroupsSequence
            ]
        )
        row_dir = np.array([float(v) for v in orientation[:3]])
        col_dir = np.array([float(v) for v in orientation[3:]])
    except (AttributeError, IndexError, KeyError, ValueError, TypeError):
        logger.warning("%s: multi-frame file without plane geometry; assuming 1 mm frames", path)
        affine = np.diag([col_spacing, row_spacing, 1.0, 1.0])
        return meta_from_affine(affine, shape, source_format="dicom", modality=modality)
    normal = np.cross(row_dir, col_dir)
    along = positions @ normal
    if len(positions) != shape[0] or np.any(np.diff(along) <= _POSITION_TOL_MM):
        raise InputError(path, "frame positions are not strictly increasing along the normal")
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_dir * col_spacing
    affine_lps[:3, 1] = col_dir * row_spacing
    affine_lps[:3, 2] = (positions[-1] - positions[0]) / max(len(positions) - 1, 1)
    affine_lps[:3, 3] = positions[0]
    return meta_from_affine(
        LPS_TO_RAS @ affine_lps, shape, source_format="dicom", modality=modality
    )


def _pixels(path: Path, *, max_bytes: int | None) -> tuple[NDArray, Any]:
    """Decoded, modality-LUT-applied pixels of one file, and its dataset."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as err:  # noqa: BLE001 - pydicom raises many types on damaged files
        raise InputError(path, f"not a readable DICOM file ({first_line(err)})") from err
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        kind = ds.get("Modality", "") or ds.get("SOPClassUID", "unknown")
        raise InputError(path, f"this DICOM object ({kind}) holds no image pixels")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    shape = (
        frames,
        int(ds.get("Rows", 0)),
        int(ds.get("Columns", 0)),
        int(ds.get("SamplesPerPixel", 1)),
    )
    check_declared_size(path, shape, max(bits // 8, 1), max_bytes)
    try:
        raw = ds.pixel_array
    except (RuntimeError, NotImplementedError) as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise InputError(
            path,
            f"cannot decode pixel data with transfer syntax {name!r} ({first_line(err)}); "
            "install a decoder such as 'pylibjpeg[all]' or convert the file to uncompressed DICOM",
        ) from err
    except (ValueError, EOFError, AttributeError, KeyError, TypeError) as err:
        raise InputError(
            path, f"the pixel data is truncated or corrupt ({first_line(err)})"
        ) from err
    array = _modality_lut(raw, ds)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        array = (array.max() + array.min()) - array
    return array, ds


def _modality_lut(raw: NDArray, ds: Any) -> NDArray:
    if ds.get("ModalityLUTSequence"):
        try:
            from pydicom.pixels import apply_modality_lut
        except ImportError:  # pydicom 2.x
            from pydicom.pixel_data_handlers.util import (  # type: ignore[no-redef]
                apply_modality_lut,
            )

        return np.asarray(apply_modality_lut(raw, ds))
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if slope == 1.0 and intercept == 0.0:
        return raw
    if slope == 1.0 and intercept.is_integer():
        out = raw.astype(np.int32) + int(intercept)
        if out.min() >= np.iinfo(np.int16).min and out.max() <= np.iinfo(np.int16).max:
            return out.astype(np.int16)
        return out
    return (raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def _stack(slices: list[NDArray]) -> NDArray:
    """Stack slices whose dtypes may differ (per-slice rescale) without losing values."""
    dtype = np.result_type(*slices)
    if dtype == np.float64:
        dtype = np.dtype(np.float32)
    return np.stack([s.astype(dtype, copy=False) for s in slices], axis=0)


def _orientation(ds: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    values = np.array([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
    if values.shape != (6,):
        raise InputError(None, f"ImageOrientationPatient must have 6 values, got {values.tolist()}")
    row_dir, col_dir = values[:3], values[3:]
    return row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)


def _position(ds: Any) -> NDArray[np.float64]:
    return np.array([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)


def _pixel_spacing(ds: Any) -> tuple[float, float]:
    """(row spacing, column spacing) in mm: PixelSpacing, else ImagerPixelSpacing, else 1."""
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    return 1.0, 1.0


def _modality(ds: Any) -> str | None:
    value = str(ds.get("Modality", "") or "").strip().upper()
    return value or None
