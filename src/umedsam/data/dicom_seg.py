"""DICOM Segmentation (SEG) objects that reference their source series (highdicom, extra dicom).

A label map predicted on a DICOM image or series becomes one SEG instance: one segment per
label (``object <label>``), binary frames aligned with the source slices, in a new series of the
source's study. Readers (3D Slicer, OHIF, highdicom itself) overlay it on the source images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from umedsam.atomic import atomic_path
from umedsam.extras import import_optional


def write_dicom_seg(
    path: str | Path, labels: NDArray, source_files: Sequence[str], names: Sequence[str] = ()
) -> Path:
    """Write ``labels`` as a DICOM SEG referencing ``source_files`` (atomically).

    Args:
        path: the output ``.dcm``.
        labels: ``(D, H, W)`` or ``(H, W)`` integer label map on the source's array grid (slice
            ``k`` is ``source_files[k]``).
        source_files: the DICOM files of the image, in the array's slice order.
        names: optional segment labels (label i gets ``names[i - 1]``; default ``object i``).

    Raises:
        ValueError: the map and the files disagree, or no label is present.
        MissingExtraError: highdicom / pydicom are not installed.
    """
    hd = import_optional(
        "highdicom", package="highdicom", extra="dicom", purpose="Writing DICOM SEG"
    )
    pydicom = import_optional("pydicom", package="pydicom", extra="dicom", purpose="DICOM SEG")
    from pydicom.sr.codedict import codes

    from umedsam import __version__

    frames = labels[None] if labels.ndim == 2 else labels
    if frames.shape[0] != len(source_files):
        raise ValueError(
            f"the mask has {frames.shape[0]} slices but the source series {len(source_files)}"
        )
    present = [int(v) for v in np.unique(frames) if v > 0]
    if not present:
        raise ValueError("the mask holds no label: a DICOM SEG needs at least one segment")
    sources = [pydicom.dcmread(str(f)) for f in source_files]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="umedsam", version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = []
    for number, label in enumerate(present, start=1):
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=(names[label - 1] if label - 1 < len(names) else "")
                or f"object {label}",
                segmented_property_category=codes.SCT.Tissue,
                segmented_property_type=codes.SCT.Tissue,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    stack = np.stack([frames == label for label in present], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=stack,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=9001,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="umedsam",
        manufacturer_model_name="umedsam",
        software_versions=__version__,
        device_serial_number="0",
        omit_empty_frames=False,
    )
    path = Path(path)
    with atomic_path(path, suffix=".dcm") as tmp:
        seg.save_as(str(tmp))
    return path
