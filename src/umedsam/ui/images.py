"""Images the web app opens: accepted uploads, zipped DICOM series, challenge cases, geometry.

Nothing here uses a name the client sent as a path: an upload keeps only its suffix, and the
members of a zipped series are written under numbered names.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from umedsam.data.npz import load_case
from umedsam.data.readers.meta import ImageMeta, meta_from_affine, plain_2d_meta
from umedsam.errors import InputError

UPLOAD_SUFFIXES = (
    ".npz",
    ".nii.gz",
    ".nii",
    ".nrrd",
    ".dcm",
    ".dicom",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".zip",
)
"""File types the app accepts; a ``.zip`` holds one DICOM series."""

MAX_ZIP_MEMBERS = 5000


def upload_suffix(filename: str) -> str:
    """The accepted suffix of a client-side file name (lower case), e.g. ``.nii.gz``.

    Only the suffix of the name is used; the rest is discarded.

    Raises:
        InputError: the suffix is not one of :data:`UPLOAD_SUFFIXES`.
    """
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for suffix in UPLOAD_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    raise InputError(
        None,
        f"cannot open {filename!r}: upload one of {', '.join(UPLOAD_SUFFIXES)} "
        "(a .zip holding one DICOM series)",
    )


def display_stem(filename: str) -> str:
    """A safe, short stem for download names derived from the uploaded file name."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in UPLOAD_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80]
    return stem or "image"


def extract_series_zip(archive: Path, target: Path, max_bytes: int) -> Path:
    """Unpack the files of a zipped DICOM series flat into ``target`` (member folders dropped).

    Member names are never used as paths: file ``k`` is written as ``target/k.dcm``.

    Args:
        archive: the uploaded zip file.
        target: empty folder to fill.
        max_bytes: limit on the total uncompressed size.

    Returns:
        ``target``.

    Raises:
        InputError: not a zip, no files, too many members or too large when unpacked.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if not members:
                raise InputError(archive.name, "the zip file holds no files")
            if len(members) > MAX_ZIP_MEMBERS:
                raise InputError(
                    archive.name, f"the zip holds {len(members)} files; at most {MAX_ZIP_MEMBERS}"
                )
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise InputError(
                    archive.name,
                    f"the zip unpacks to {total / 2**20:.0f} MiB, more than the "
                    f"{max_bytes / 2**20:.0f} MiB limit",
                )
            target.mkdir(parents=True, exist_ok=True)
            written = 0
            for k, member in enumerate(members):
                with zf.open(member) as src, (target / f"{k:05d}.dcm").open("wb") as dst:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise InputError(archive.name, "the zip unpacks to more than declared")
                        dst.write(chunk)
    except zipfile.BadZipFile as err:
        raise InputError(archive.name, f"not a readable zip file ({err})") from err
    return target


def npz_meta(shape: tuple[int, ...], spacing_xyz: NDArray | None, channels: int) -> ImageMeta:
    """Geometry for a challenge npz case: its spacing (stored x, y, z) on an axis-aligned grid."""
    if len(shape) == 2:
        return plain_2d_meta(shape, source_format="npz", channels=channels)
    spacing = np.ones(3) if spacing_xyz is None else np.asarray(spacing_xyz, dtype=np.float64)
    return meta_from_affine(np.diag([*spacing.tolist(), 1.0]), shape, source_format="npz")


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for the app: the uint8 model input plus what a writer needs.

    Attributes:
        name: stem used for download names.
        pixels: (H, W, 3) uint8 for 2D, (D, H, W) uint8 for volumes (challenge intensities).
        meta: geometry of the source file (shape = spatial shape of ``pixels``).
        stored_boxes: boxes saved with an npz case ((N, 4) or (N, 6)), else None.
        ground_truth: ``gts`` of a bundled example, for the DSC readout; else None.
    """

    name: str
    pixels: NDArray[np.uint8]
    meta: ImageMeta
    stored_boxes: NDArray[np.int64] | None = None
    ground_truth: NDArray | None = None

    @property
    def is_3d(self) -> bool:
        """Whether this is a (D, H, W) volume."""
        return self.pixels.ndim == 3 and self.meta.ndim == 3

    @property
    def extents(self) -> frozenset[tuple[int, ...]]:
        """The stored 3D boxes: the only boxes known to be their objects' extents (a box drawn
        in the app is one slice's box)."""
        if self.stored_boxes is None or not self.is_3d:
            return frozenset()
        return frozenset(tuple(int(v) for v in row) for row in self.stored_boxes)


def load_npz_case(path: Path, name: str, gts_path: Path | None = None) -> LoadedImage:
    """Open a challenge npz case (and its ground truth, for examples)."""
    from umedsam.data.intensity import to_rgb, to_uint8

    case = load_case(path)
    imgs = np.asarray(case.imgs)
    if case.is_3d:
        pixels = to_uint8(imgs)
        meta = npz_meta(tuple(imgs.shape), case.spacing, 1)
    else:
        pixels = to_rgb(to_uint8(imgs))
        meta = npz_meta(tuple(imgs.shape[:2]), None, 3)
    gts = None
    if gts_path is not None and gts_path.is_file():
        with np.load(gts_path, allow_pickle=False) as data:
            if "gts" in data.files and tuple(data["gts"].shape) == tuple(meta.shape):
                gts = np.asarray(data["gts"])
    return LoadedImage(name, np.ascontiguousarray(pixels), meta, case.boxes, gts)


def load_image_file(
    path: Path, name: str, *, max_bytes: int, window: str | None = None
) -> LoadedImage:
    """Open an uploaded NIfTI, NRRD, DICOM file or series folder, or 2D picture.

    Intensities become uint8 as the challenge prepared them (CT window, else percentile clip);
    ``window`` names a CT preset to use instead.

    Raises:
        InputError, MissingExtraError, FileNotFoundError: unreadable input (see ``read_image``).
        ValueError: unknown window preset, or an image the app cannot show.
    """
    from umedsam.data.intensity import to_rgb, to_uint8
    from umedsam.data.readers import read_image

    array, meta = read_image(path, max_bytes=max_bytes)
    pixels = to_uint8(array, modality=meta.modality, window=window)
    if meta.is_3d:
        if pixels.ndim != 3:
            raise InputError(name, f"expected a grey volume (D, H, W); got shape {array.shape}")
    else:
        pixels = to_rgb(pixels)
    if pixels.min() == pixels.max():
        raise InputError(name, "the image is constant after intensity scaling: nothing to segment")
    return LoadedImage(name, np.ascontiguousarray(pixels), meta)
