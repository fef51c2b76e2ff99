"""``umedsam convert``: a NIfTI/NRRD/DICOM/image file (+ labels or boxes) -> a challenge npz case.

Examples::

    umedsam convert scan.nii.gz labels.nii.gz -o case.npz --modality MR
    umedsam convert dicom_series/ --boxes boxes.json -o case.npz --window lung
    umedsam convert photo.png mask.png --label-threshold 127 -o case.npz --min-size 10
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``convert`` options to ``parser``."""
    from umedsam.data.intensity import CT_WINDOWS

    parser.add_argument("image", type=Path, help="image file or DICOM series folder")
    parser.add_argument(
        "labels", type=Path, nargs="?", help="label map of the same geometry (gives gts and boxes)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="output case .npz")
    parser.add_argument(
        "--gts-output",
        type=Path,
        metavar="NPZ",
        help="write gts (+boxes, spacing) to this file instead of into --output, "
        "like the challenge's imgs/ and gts/ folders",
    )
    parser.add_argument(
        "--boxes", type=Path, metavar="FILE", help="box prompts (.json or .csv) instead of labels"
    )
    parser.add_argument(
        "--modality",
        help="intensity hint: CT uses a window, anything else the 0.5-99.5 percentile clip "
        "(default: the DICOM Modality tag, else percentiles)",
    )
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--window", choices=sorted(CT_WINDOWS), help="CT window preset")
    window.add_argument("--level", type=float, help="CT window level (HU); with --width")
    parser.add_argument("--width", type=float, help="CT window width (HU); with --level")
    parser.add_argument(
        "--min-size", type=int, default=0, help="drop label components smaller than this (voxels)"
    )
    parser.add_argument(
        "--min-size-2d",
        type=int,
        default=0,
        help="volumes: also drop per-slice components smaller than this (pixels)",
    )
    parser.add_argument(
        "--per-label",
        action="store_true",
        help="one object per label value instead of one per connected component",
    )
    parser.add_argument(
        "--crop-to-labels",
        action="store_true",
        help="volumes: keep only the slices between the first and last labelled one",
    )
    parser.add_argument(
        "--label-threshold",
        type=float,
        metavar="T",
        help="binarise the labels as labels > T (JPEG or 0/255 masks)",
    )
    parser.add_argument("--series-uid", help="DICOM SeriesInstanceUID when a folder holds several")


def run(args: argparse.Namespace) -> int:
    """Convert ``args.image`` (+ labels/boxes) to ``args.output``; 0 on success, 1 on bad input."""
    from umedsam.data.convert import as_label_map, convert_case
    from umedsam.data.npz import save_npz_atomic
    from umedsam.data.prompts import load_boxes
    from umedsam.data.readers import read_image
    from umedsam.errors import UmedsamError

    if args.labels is not None and args.boxes is not None:
        return _error("give LABELS or --boxes, not both")
    if (args.level is None) != (args.width is None):
        return _error("--level and --width go together")
    if args.labels is None and args.boxes is None:
        return _error("give LABELS or --boxes: a case needs box prompts")
    if args.gts_output is not None and args.labels is None:
        return _error("--gts-output needs LABELS")
    try:
        image, meta = read_image(args.image, series_uid=args.series_uid)
        labels = None
        if args.labels is not None:
            label_array, label_meta = read_image(
                args.labels, labels=True, series_uid=args.series_uid
            )
            _check_same_grid(args.labels, meta, label_meta)
            labels = as_label_map(label_array, threshold=args.label_threshold)
        boxes = load_boxes(args.boxes, shape=meta.shape) if args.boxes is not None else None
        case = convert_case(
            image,
            meta,
            labels,
            boxes=boxes,
            modality=args.modality,
            window=args.window,
            level=args.level,
            width=args.width,
            min_size=args.min_size,
            min_size_2d=args.min_size_2d,
            split_components=not args.per_label,
            crop_to_labels=args.crop_to_labels,
        )
    except (UmedsamError, FileNotFoundError, ValueError) as err:
        return _error(str(err))
    if args.gts_output is not None:
        gts = {k: case[k] for k in ("gts", "boxes", "spacing") if k in case}
        save_npz_atomic(args.gts_output, compress=True, **gts)
        case.pop("gts")
    save_npz_atomic(args.output, compress=True, **case)
    boxes_out = case.get("boxes")
    count = 0 if boxes_out is None else len(boxes_out)
    spacing = case.get("spacing")
    print(
        f"wrote {args.output}: imgs {tuple(case['imgs'].shape)} uint8, {count} boxes"
        + (
            ""
            if spacing is None
            else f", spacing (x, y, z) {[round(float(s), 4) for s in spacing]}"
        )
    )
    return 0


def _check_same_grid(path: Path, meta, label_meta) -> None:  # noqa: ANN001 - ImageMeta, lazy
    """Labels must share the image's voxel grid (shape and, when both have one, affine)."""
    import numpy as np

    from umedsam.errors import InputError

    if tuple(label_meta.shape) != tuple(meta.shape):
        raise InputError(
            path, f"label shape {label_meta.shape} differs from the image's {meta.shape}"
        )
    if meta.affine is not None and label_meta.affine is not None:
        a, b = np.array(meta.affine), np.array(label_meta.affine)
        if not np.allclose(a, b, atol=1e-3 * max(1.0, float(np.abs(a).max()))):
            logger.warning(
                "%s: the label affine differs from the image's; using the image geometry", path
            )


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run ``umedsam convert`` on ``argv`` without the top-level dispatcher (for tests/scripts)."""
    parser = argparse.ArgumentParser(prog="umedsam convert", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.set_defaults(quiet=False, verbose=False)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
