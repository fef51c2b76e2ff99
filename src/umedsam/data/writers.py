"""Write label masks back to disk with the geometry of the image they were predicted on.

Every write is atomic: the data goes to a temporary file in the target folder, which is then
renamed over the target, so an interrupted run never leaves a half-written mask.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from umedsam.atomic import write_bytes_atomic
from umedsam.data.npz import label_dtype, save_npz_atomic
from umedsam.data.readers.meta import ImageMeta
from umedsam.extras import import_optional

logger = logging.getLogger(__name__)

MASK_FORMATS = ("nifti", "png", "npz", "dicom-seg")


def mask_format(path: str | Path) -> str:
    """The mask format implied by a file name: ``nifti`` (.nii/.nii.gz), ``png``, ``npz`` or
    ``dicom-seg`` (.dcm).

    Raises:
        ValueError: any other suffix.
    """
    name = Path(path).name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".dcm"):
        return "dicom-seg"
    if name.endswith(".png"):
        return "png"
    if name.endswith(".npz"):
        return "npz"
    raise ValueError(
        f"cannot tell the mask format of {path}: use .nii.gz, .nii, .png, .npz or .dcm (DICOM SEG)"
    )


def write_mask(
    path: str | Path, mask: NDArray, meta: ImageMeta | None = None, *, fmt: str | None = None
) -> Path:
    """Save a label mask so that it overlays its source image.

    Args:
        path: output file; parent folders are created.
        mask: ``(D, H, W)`` or ``(H, W)`` bool or integer labels (0 = background), with the
            spatial shape of the image it belongs to (``meta.shape``).
        meta: the :class:`ImageMeta` returned by :func:`umedsam.data.readers.read_image` for that
            image. Required for NIfTI; optional for PNG and npz (only the shape is checked).
        fmt: ``"nifti"``, ``"png"``, ``"npz"`` or ``"dicom-seg"``; default from the suffix of
            ``path`` (``.dcm`` is a DICOM SEG).

    Returns:
        The written path.

    Formats:
        * ``nifti``: the mask is transposed back to nibabel's ``(x, y, z)`` order and saved with
          ``meta``'s affine (sform and qform, keeping a NIfTI source's codes), so it has the
          image's shape and affine. DICOM and NRRD inputs carry an RAS affine too; 2D images
          become one-slice volumes. Dtype uint8, or uint16 above 255 labels.
        * ``png``: 2D only; the label values as stored (uint8, or uint16 above 255 labels), so a
          binary mask looks nearly black in a viewer.
        * ``npz``: the challenge output, key ``segs`` (plus ``spacing`` in (x, y, z) order for
          volumes when ``meta`` is given).
        * ``dicom-seg``: a DICOM Segmentation object (highdicom, extra ``dicom``) referencing the
          source series: one segment per label, frames aligned with the source slices. Needs a
          DICOM source (``meta.source_files``).

    Raises:
        ValueError: unknown format, a 3D mask for PNG, non-integer labels, or a shape that
            differs from ``meta.shape``.
        MissingExtraError: nibabel missing for NIfTI (``pip install 'umedsam[nifti]'``).
    """
    path = Path(path)
    fmt = fmt or mask_format(path)
    if fmt not in MASK_FORMATS:
        raise ValueError(f"mask format must be one of {MASK_FORMATS}; got {fmt!r}")
    labels = _label_array(mask)
    if meta is not None and tuple(labels.shape) != tuple(meta.shape):
        raise ValueError(
            f"mask shape {labels.shape} does not match the image shape {meta.shape}; "
            "pass the mask predicted on this image"
        )
    if labels.ndim not in (2, 3):
        raise ValueError(f"mask must be (H, W) or (D, H, W); got shape {labels.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dicom-seg":
        if meta is None or not meta.source_files:
            raise ValueError(
                "a DICOM SEG references its source images: write it for a DICOM input only"
            )
        from umedsam.data.dicom_seg import write_dicom_seg

        write_dicom_seg(path, labels, meta.source_files)
    elif fmt == "nifti":
        if meta is None:
            raise ValueError("writing a NIfTI mask needs the image's ImageMeta for its affine")
        _write_nifti(path, labels, meta)
    elif fmt == "png":
        if labels.ndim != 2:
            raise ValueError(f"PNG masks are 2D; got shape {labels.shape}: use .nii.gz or .npz")
        import cv2

        ok, encoded = cv2.imencode(".png", labels)
        if not ok:
            raise ValueError(
                f"OpenCV could not encode a {labels.dtype} mask of shape {labels.shape} as PNG"
            )
        write_bytes_atomic(path, encoded.tobytes())
    else:
        arrays: dict[str, NDArray] = {"segs": labels}
        if meta is not None and meta.is_3d:
            arrays["spacing"] = np.asarray(meta.spacing_xyz(), dtype=np.float64)
        save_npz_atomic(path, compress=True, **arrays)
    logger.info("wrote %s mask %s to %s", fmt, labels.shape, path)
    return path


def _label_array(mask: NDArray) -> NDArray:
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if np.issubdtype(mask.dtype, np.floating):
        if not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask)):
            raise ValueError("mask must hold integer labels; got non-integer float values")
    elif not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"mask must be bool or integer labels; got dtype {mask.dtype}")
    if mask.size and mask.min() < 0:
        raise ValueError(f"mask labels must be >= 0; got minimum {mask.min()}")
    top = int(mask.max()) if mask.size else 0
    if top > np.iinfo(np.uint16).max:
        raise ValueError(f"at most 65535 labels can be written; got label {top}")
    return mask.astype(label_dtype(top))


def _write_nifti(path: Path, labels: NDArray, meta: ImageMeta) -> None:
    nib = import_optional(
        "nibabel", package="nibabel", extra="nifti", purpose="Writing NIfTI masks"
    )
    # array (z, y, x) -> nibabel (x, y, z); a 2D (y, x) mask becomes (x, y, 1)
    data = labels.transpose(2, 1, 0) if labels.ndim == 3 else labels.T[:, :, np.newaxis]
    affine = meta.affine_array()
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    # both sform and qform hold the image's affine (codes kept from a NIfTI source, else 1), so
    # viewers that prefer either one place the mask where the image is
    qform_code, sform_code = meta.nifti_codes or (0, 0)
    image.set_sform(affine, code=int(sform_code or qform_code or 1))
    image.set_qform(affine, code=int(qform_code or sform_code or 1))
    image.header.set_data_dtype(data.dtype)
    compressed = path.name.lower().endswith(".gz")
    payload = image.to_bytes()
    if compressed:
        payload = gzip.compress(payload, compresslevel=6)
    write_bytes_atomic(path, payload)
