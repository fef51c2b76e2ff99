"""CVPR24 "MedSAM on Laptop" cases: read and validate ``imgs``/``boxes``/``spacing``, write ``segs``.

2D case: ``imgs`` (H, W, 3) (or (H, W) grey), ``boxes`` (N, 4) xyxy.
3D case: ``imgs`` (D, H, W), ``boxes`` (N, 6) as x_min, y_min, z_min, x_max, y_max, z_max, and
``spacing`` (3,) as stored by the challenge (SimpleITK x, y, z order).
2D vs 3D is decided by the array shapes, never by the file name.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from umedsam.atomic import atomic_open
from umedsam.errors import InputError

MAX_PIXELS = 2**31  # refuse arrays declaring more elements than this (about 2 GB of uint8)
NPZ_READ_ERRORS = (
    zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, NotImplementedError,
    RuntimeError, OverflowError, MemoryError, zlib.error, struct.error,
)  # fmt: skip
"""What zipfile/numpy raise on damaged or crafted .npz files (all mean "unreadable")."""


@dataclass(frozen=True)
class Case:
    """One validated challenge case.

    Attributes:
        name: file name (``<case>.npz``) used for the output.
        imgs: (H, W, 3)/(H, W) image or (D, H, W) volume, as stored.
        boxes: (N, 4) or (N, 6) int64 boxes in original pixels (inclusive max).
        spacing: (3,) as stored, or None (2D, or 3D without spacing).
        is_3d: whether this is a volume.
    """

    name: str
    imgs: NDArray
    boxes: NDArray[np.int64]
    spacing: NDArray[np.float64] | None
    is_3d: bool

    @property
    def num_objects(self) -> int:
        """Number of box prompts (= output labels)."""
        return int(self.boxes.shape[0])


def npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an .npz, read from the .npy headers without decoding.

    Raises:
        InputError: not a readable .npz (or a member is not a valid .npy).
    """
    path = Path(path)
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    continue
                with zf.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                out[member[: -len(".npy")]] = (tuple(int(s) for s in shape), dtype)
    except NPZ_READ_ERRORS as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(path, f"not a readable .npz file ({text})") from err
    return out


def _read_arrays(path: Path, keys: tuple[str, ...]) -> dict[str, NDArray]:
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    for key, (shape, _) in npz_headers(path).items():
        if key in keys and math.prod(shape) > MAX_PIXELS:
            raise InputError(path, f"'{key}' declares {shape}, more than {MAX_PIXELS} elements")
    try:
        with np.load(path, allow_pickle=False) as data:
            present = set(data.files)
            out = {}
            for key in keys:
                if key in present:
                    arr = data[key]
                    out[key] = arr
            out["__keys__"] = np.asarray(sorted(present))
    except NPZ_READ_ERRORS as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "allow_pickle" in text or "Object arrays" in text:
            text = "contains pickled object arrays, which are refused"
        raise InputError(path, f"not a readable .npz file ({text})") from err
    return out


def _check_numeric(path: Path, key: str, arr: NDArray) -> None:
    if arr.dtype.kind not in "uif":
        raise InputError(path, f"'{key}' must be a real numeric array; got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(path, f"'{key}' is empty (shape {arr.shape})")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(path, f"'{key}' contains NaN or infinite values")


def validate_boxes(
    boxes: NDArray, image_shape: tuple[int, ...], is_3d: bool, path: Path | None = None
) -> NDArray[np.int64]:
    """Check boxes against the image; return them as int64.

    2D boxes are (N, 4) xyxy with 0 <= x_min < x_max <= W and 0 <= y_min < y_max <= H; 3D boxes are
    (N, 6) with additionally 0 <= z_min <= z_max < D.

    Raises:
        InputError: wrong shape, non-integral values, inverted or out-of-image boxes.
    """
    cols = 6 if is_3d else 4
    boxes = np.asarray(boxes)
    if boxes.ndim == 1 and boxes.size == cols:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != cols or boxes.shape[0] == 0:
        kind = "3D (N, 6) x_min,y_min,z_min,x_max,y_max,z_max" if is_3d else "2D (N, 4) xyxy"
        raise InputError(path, f"boxes must be {kind}; got shape {boxes.shape}")
    if boxes.dtype.kind not in "uif":
        raise InputError(path, f"boxes must be numeric; got dtype {boxes.dtype}")
    if boxes.dtype.kind == "f":
        if not np.isfinite(boxes).all():
            raise InputError(path, "boxes contain NaN or infinite values")
        if np.abs(boxes).max() > 2**31:
            raise InputError(
                path, f"box coordinates out of range (largest {np.abs(boxes).max():g})"
            )
        if not np.allclose(boxes, np.round(boxes)):
            raise InputError(path, "boxes must hold integer pixel coordinates")
        boxes = np.round(boxes)
    boxes = boxes.astype(np.int64)
    if is_3d:
        d, h, w = image_shape[:3]
        x0, y0, z0, x1, y1, z1 = boxes.T
    else:
        h, w = image_shape[:2]
        x0, y0, x1, y1 = boxes.T
    for i in range(boxes.shape[0]):
        label = f"box {i} {boxes[i].tolist()}"
        if x0[i] >= x1[i] or y0[i] >= y1[i]:
            raise InputError(
                path, f"{label} is inverted or empty (need x_min < x_max, y_min < y_max)"
            )
        if x0[i] < 0 or y0[i] < 0 or x1[i] > w or y1[i] > h:
            raise InputError(path, f"{label} lies outside the {w}x{h} (W x H) image")
        if is_3d:
            if z0[i] > z1[i]:
                raise InputError(path, f"{label} is inverted in z (z_min > z_max)")
            if z0[i] < 0 or z1[i] >= d:
                raise InputError(path, f"{label} lies outside the volume's {d} slices")
    return boxes


def load_case(path: str | Path) -> Case:
    """Read and validate one challenge case.

    Raises:
        InputError: unreadable file, missing key, wrong dtype/rank, NaN, empty or constant image,
            or a bad box; the message names the file and the problem.
    """
    path = Path(path)
    data = _read_arrays(path, ("imgs", "boxes", "spacing"))
    for key in ("imgs", "boxes"):
        if key not in data:
            have = ", ".join(data["__keys__"].tolist()) or "none"
            raise InputError(path, f"missing key '{key}' (keys present: {have})")
    imgs, boxes = data["imgs"], np.asarray(data["boxes"])
    _check_numeric(path, "imgs", imgs)
    _check_numeric(path, "boxes", boxes)
    if imgs.size > MAX_PIXELS:
        raise InputError(path, f"'imgs' is too large ({imgs.shape})")
    n_cols = boxes.shape[-1] if boxes.ndim >= 1 else 0
    if imgs.ndim == 2:
        is_3d = False
    elif imgs.ndim == 3 and n_cols == 6:
        is_3d = True
    elif imgs.ndim == 3 and imgs.shape[2] in (1, 3) and n_cols == 4:
        is_3d = False
    else:
        raise InputError(
            path,
            f"cannot tell 2D from 3D: imgs shape {imgs.shape} with boxes shape {boxes.shape} "
            "(expected imgs (H, W, 3) with boxes (N, 4), or imgs (D, H, W) with boxes (N, 6))",
        )
    if min(imgs.shape) == 0:
        raise InputError(path, f"'imgs' is empty (shape {imgs.shape})")
    if imgs.min() == imgs.max():
        raise InputError(
            path, f"'imgs' is constant (every value is {imgs.flat[0]}): nothing to segment"
        )
    boxes = validate_boxes(boxes, imgs.shape, is_3d, path)
    spacing = None
    if "spacing" in data:
        spacing = np.asarray(data["spacing"], dtype=np.float64).reshape(-1)
        if is_3d and (spacing.size != 3 or not np.isfinite(spacing).all() or (spacing <= 0).any()):
            raise InputError(path, f"'spacing' must be 3 positive numbers; got {spacing.tolist()}")
    return Case(name=path.name, imgs=imgs, boxes=boxes, spacing=spacing, is_3d=is_3d)


def label_dtype(num_objects: int) -> type[np.unsignedinteger]:
    """dtype of a label map with labels 1..num_objects: uint8 up to 255 objects, else uint16.

    The official code writes uint8 maps, which overflow past 255 objects.
    """
    return np.uint8 if num_objects <= 255 else np.uint16


def save_npz_atomic(path: str | Path, compress: bool = True, **arrays: NDArray) -> Path:
    """Write an .npz atomically: a temporary file in the same folder, then rename over ``path``.

    A crash mid-write never leaves a partial ``path``; a leftover ``.<name>.*.tmp`` file may
    remain (see :mod:`umedsam.atomic`).

    Args:
        path: the .npz file to write; its folder is created if needed.
        compress: use ``np.savez_compressed`` (else ``np.savez``).
        **arrays: the arrays to store, by key.

    Returns:
        ``path``.
    """
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        if compress:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        else:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
    return path
