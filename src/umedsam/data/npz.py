"""Challenge cases: read and validate ``imgs``/``boxes``/``spacing`` and prompts, write ``segs``.

2D case: ``imgs`` (H, W, 3) (or (H, W) grey), ``boxes`` (N, 4) xyxy.
3D case: ``imgs`` (D, H, W), ``boxes`` (N, 6) as x_min, y_min, z_min, x_max, y_max, z_max, and
``spacing`` (3,) as stored by the challenge (SimpleITK x, y, z order).
2D vs 3D is decided by the array shapes, never by the file name.

Interactive cases (see docs/interactive.md) hold prompts beyond boxes, read into
:class:`CasePrompts`:

- CVPR 2024 scribble task: ``scribbles``, an integer map of the spatial shape; id k (k >= 1,
  k != 1000) marks strokes on object k, 1000 background strokes (negative prompts for the
  objects nearest to them, :mod:`umedsam.data.strokes`);
  ``segs`` uses the ids as labels. Optional ``boxes`` give one row per id, in ascending id order.
- CVPR 2025 interactive task: ``boxes`` (a pickled list of dicts ``z_min, z_max, z_mid,
  z_mid_x_min, z_mid_y_min, z_mid_x_max, z_mid_y_max``, or a numeric array), ``clicks`` (a
  pickled list, one ``{'fg': [[z, y, x], ...], 'bg': [...]}`` per object; ``[y, x]`` in 2D),
  ``clicks_order`` and ``prev_pred`` (the previous label map). Object i is label i + 1. The
  pickled keys go through :mod:`umedsam.data.safe_pickle`; every other key stays pickle-free.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from umedsam.atomic import atomic_open
from umedsam.data.strokes import background_owners
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
    prompts: CasePrompts | None = None

    @property
    def num_objects(self) -> int:
        """Number of objects (= output labels)."""
        if self.prompts is not None:
            return len(self.prompts.labels)
        return int(self.boxes.shape[0])


SCRIBBLE_BACKGROUND = 1000
"""Scribble id of background strokes in the CVPR 2024 scribble format."""


@dataclass(frozen=True)
class CasePrompts:
    """Interactive prompts of a case, one entry per object.

    Attributes:
        labels: (N,) label of each object in ``segs``.
        boxes: (N, 4) or (N, 6) float boxes (NaN rows: no box), or None.
        start_slices: (N,) slice each 3D box starts on (the CVPR 2025 ``z_mid``), or None.
        clicks: per object (K, 2) ``(y, x)`` or (K, 3) ``(z, y, x)`` int64 indices, in order.
        click_labels: per object (K,) 1 foreground / 0 background.
        scribbles: per-object stroke ids map of the spatial shape (CVPR 2024), or None.
        prev_pred: the previous label map (labels of ``labels``), or None.
    """

    labels: NDArray[np.int64]
    boxes: NDArray[np.float64] | None
    start_slices: NDArray[np.int64] | None
    clicks: tuple[NDArray[np.int64], ...]
    click_labels: tuple[NDArray[np.int64], ...]
    scribbles: NDArray | None = None
    prev_pred: NDArray | None = None

    @classmethod
    def of_strokes(cls, scribbles: NDArray) -> CasePrompts:
        """The prompts of one object (label 1) drawn with strokes alone: ``scribbles`` is its
        CVPR 2024 map (1 on its strokes, :data:`SCRIBBLE_BACKGROUND` on background strokes)."""
        empty = np.zeros((0, np.asarray(scribbles).ndim), np.int64)
        return cls(
            labels=np.array([1]),
            boxes=None,
            start_slices=None,
            clicks=(empty,),
            click_labels=(np.zeros(0, np.int64),),
            scribbles=np.asarray(scribbles),
        )

    def scribble_map(self, i: int) -> NDArray[np.int8] | None:
        """Object i's scribble as a stroke map: 1 its strokes, -1 the background strokes it
        takes (those nearest to it: :mod:`umedsam.data.strokes`), else 0."""
        if self.scribbles is None:
            return None
        out = np.zeros(self.scribbles.shape, np.int8)
        background = np.nonzero(self.scribbles == SCRIBBLE_BACKGROUND)
        owned = self._background_owners[i]
        out[tuple(axis[owned] for axis in background)] = -1
        out[self.scribbles == self.labels[i]] = 1
        return out

    @cached_property
    def _background_owners(self) -> NDArray[np.bool_]:
        """(N, P) which objects take each background-stroke pixel."""
        assert self.scribbles is not None
        return background_owners(
            self.scribbles,
            self.labels,
            boxes=self.boxes,
            start_slices=self.start_slices,
            clicks=self.clicks,
            click_labels=self.click_labels,
            background_id=SCRIBBLE_BACKGROUND,
        )


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


def holds_interactive_prompts(path: str | Path) -> bool:
    """Whether a case file holds clicks, scribbles or a previous mask (from its headers only)."""
    try:
        return bool({"scribbles", "clicks", "prev_pred"} & set(npz_headers(path)))
    except InputError:
        return False


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
    """Read and validate one challenge case (box, scribble or interactive format).

    Raises:
        InputError: unreadable file, missing key, wrong dtype/rank, NaN, empty or constant image,
            a bad box or prompt, or a refused pickle; the message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    headers = npz_headers(path)
    pickled = {k for k, (_, dtype) in headers.items() if dtype.hasobject}
    refused = sorted(pickled - {"boxes", "clicks", "clicks_order"})
    if refused:
        raise InputError(
            path,
            f"not a readable .npz file ('{refused[0]}' contains pickled object arrays, which are "
            "refused; only boxes, clicks and clicks_order of the interactive format may be pickled)",
        )
    interactive = bool({"scribbles", "clicks", "prev_pred"} & set(headers)) or "boxes" in pickled
    keys = ("imgs", "boxes", "spacing", "scribbles", "prev_pred")
    data = _read_arrays(path, tuple(k for k in keys if k not in pickled))
    if "imgs" not in data:
        have = ", ".join(data["__keys__"].tolist()) or "none"
        raise InputError(path, f"missing key 'imgs' (keys present: {have})")
    if interactive:
        return _interactive_case(path, data, pickled)
    if "boxes" not in data:
        have = ", ".join(data["__keys__"].tolist()) or "none"
        raise InputError(path, f"missing key 'boxes' (keys present: {have})")
    imgs, boxes = data["imgs"], np.asarray(data["boxes"])
    _check_image(path, imgs)
    _check_numeric(path, "boxes", boxes)
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
    boxes = validate_boxes(boxes, imgs.shape, is_3d, path)
    spacing = _spacing(path, data, is_3d)
    return Case(name=path.name, imgs=imgs, boxes=boxes, spacing=spacing, is_3d=is_3d)


def _check_image(path: Path, imgs: NDArray) -> None:
    _check_numeric(path, "imgs", imgs)
    if imgs.size > MAX_PIXELS:
        raise InputError(path, f"'imgs' is too large ({imgs.shape})")
    if imgs.ndim not in (2, 3):
        raise InputError(
            path,
            f"cannot tell 2D from 3D: 'imgs' must be (H, W), (H, W, 3) or (D, H, W); got {imgs.shape}",
        )
    if min(imgs.shape) == 0:
        raise InputError(path, f"'imgs' is empty (shape {imgs.shape})")
    if imgs.min() == imgs.max():
        raise InputError(
            path, f"'imgs' is constant (every value is {imgs.flat[0]}): nothing to segment"
        )


def _spacing(path: Path, data: dict[str, NDArray], is_3d: bool) -> NDArray[np.float64] | None:
    if "spacing" not in data:
        return None
    spacing = np.asarray(data["spacing"], dtype=np.float64).reshape(-1)
    if is_3d and (spacing.size != 3 or not np.isfinite(spacing).all() or (spacing <= 0).any()):
        raise InputError(path, f"'spacing' must be 3 positive numbers; got {spacing.tolist()}")
    return spacing


_BOX_DICT_KEYS = ("z_mid_x_min", "z_mid_y_min", "z_min", "z_mid_x_max", "z_mid_y_max", "z_max")


def _interactive_case(path: Path, data: dict[str, NDArray], pickled: set[str]) -> Case:
    """A case with scribbles, clicks or a previous prediction (see the module docstring)."""
    from umedsam.data.safe_pickle import load_pickled_key

    imgs = data["imgs"]
    _check_image(path, imgs)
    scribbles, prev = data.get("scribbles"), data.get("prev_pred")
    box_dicts = load_pickled_key(path, "boxes") if "boxes" in pickled else None
    numeric_boxes = np.asarray(data["boxes"]) if "boxes" in data else None
    clicks_raw = load_pickled_key(path, "clicks") if "clicks" in pickled else None
    stored = data.get("__keys__", np.array([])).tolist()
    if clicks_raw is None and "clicks" in stored:
        raise InputError(
            path, "'clicks' must be a list with one {'fg': [...], 'bg': [...]} per object"
        )
    order_raw = load_pickled_key(path, "clicks_order") if "clicks_order" in pickled else None
    if order_raw is None and "clicks_order" in stored:
        with np.load(path, allow_pickle=False) as npz:
            order_raw = npz["clicks_order"].tolist()
    is_3d = _is_volume(imgs, scribbles, box_dicts, numeric_boxes, prev, clicks_raw)
    spatial = tuple(imgs.shape) if is_3d else tuple(imgs.shape[:2])
    cols = 6 if is_3d else 4
    boxes, start = _prompt_boxes(path, box_dicts, numeric_boxes, is_3d)
    if scribbles is not None:
        labels = _scribbled_objects(path, scribbles, spatial)
    else:
        n = len(boxes) if boxes is not None else len(clicks_raw or [])
        if n == 0:
            raise InputError(path, "no objects: give 'boxes', 'clicks' or 'scribbles'")
        labels = np.arange(1, n + 1, dtype=np.int64)
    n = len(labels)
    if boxes is not None:
        boxes = _checked_boxes(path, boxes, start, n, imgs.shape, is_3d)
    clicks, click_labels = _parse_clicks(path, clicks_raw, order_raw, n, spatial)
    if prev is not None:
        _check_previous(path, prev, spatial, labels)
    prompts = CasePrompts(labels, boxes, start, clicks, click_labels, scribbles, prev)
    box_array = np.zeros((0, cols), np.int64) if boxes is None else boxes.astype(np.int64)
    return Case(path.name, imgs, box_array, _spacing(path, data, is_3d), is_3d, prompts)


def _is_volume(
    imgs: NDArray,
    scribbles: NDArray | None,
    box_dicts: object,
    numeric_boxes: NDArray | None,
    prev: NDArray | None,
    clicks_raw: list | None,
) -> bool:
    """Whether an interactive case is 3D, from the shapes of what it holds."""
    if imgs.ndim == 2:
        return False
    if scribbles is not None:
        return tuple(scribbles.shape) == tuple(imgs.shape)
    if box_dicts is not None:
        return True
    if numeric_boxes is not None and numeric_boxes.ndim == 2:
        return bool(numeric_boxes.shape[1] == 6)
    if prev is not None:
        return tuple(prev.shape) == tuple(imgs.shape)
    if clicks_raw:
        coords = (
            c
            for obj in clicks_raw
            if isinstance(obj, dict)
            for c in obj.get("fg", []) + obj.get("bg", [])
        )
        first = next(coords, None)
        return first is not None and len(first) == 3
    return imgs.shape[2] not in (1, 3)


def _prompt_boxes(
    path: Path, box_dicts: object, numeric_boxes: NDArray | None, is_3d: bool
) -> tuple[NDArray[np.float64] | None, NDArray[np.int64] | None]:
    """The case's boxes as (N, 4 or 6) floats and, for the challenge's 3D dicts, each box's start
    slice ``z_mid``; (None, None) without boxes."""
    cols = 6 if is_3d else 4
    if box_dicts is not None:
        if not isinstance(box_dicts, list) or not all(isinstance(b, dict) for b in box_dicts):
            raise InputError(path, "'boxes' must be numbers or a list of dicts (z_min, z_max, ...)")
        try:
            boxes = np.array([[float(b[k]) for k in _BOX_DICT_KEYS] for b in box_dicts])
            start = np.array([int(b["z_mid"]) for b in box_dicts], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(
                path, f"'boxes' dicts need the keys z_mid and {', '.join(_BOX_DICT_KEYS)} ({err})"
            ) from err
        if not is_3d:
            raise InputError(path, "'boxes' dicts describe 3D boxes but the image is 2D")
        return boxes.reshape(-1, 6), start
    if numeric_boxes is None:
        return None, None
    _check_numeric(path, "boxes", numeric_boxes)
    if numeric_boxes.size % cols:
        raise InputError(path, f"boxes must be (N, {cols}); got shape {numeric_boxes.shape}")
    return np.asarray(numeric_boxes, np.float64).reshape(-1, cols), None


def _scribbled_objects(
    path: Path, scribbles: NDArray, spatial: tuple[int, ...]
) -> NDArray[np.int64]:
    """The object ids of a scribble map (background strokes are not objects), checked."""
    if tuple(scribbles.shape) != spatial:
        raise InputError(
            path,
            f"'scribbles' must have the image's spatial shape {spatial}; got {scribbles.shape}",
        )
    if scribbles.dtype.kind not in "iub":
        raise InputError(path, f"'scribbles' must hold integer ids; got dtype {scribbles.dtype}")
    ids = np.unique(scribbles)
    labels = ids[(ids != 0) & (ids != SCRIBBLE_BACKGROUND)].astype(np.int64)
    if labels.size == 0:
        what = "only background strokes" if (ids == SCRIBBLE_BACKGROUND).any() else "no strokes"
        raise InputError(path, f"'scribbles' has {what}: nothing to segment")
    return labels


def _checked_boxes(
    path: Path,
    boxes: NDArray[np.float64],
    start: NDArray[np.int64] | None,
    n: int,
    shape: tuple[int, ...],
    is_3d: bool,
) -> NDArray[np.float64]:
    """One valid box per object (and each start slice inside its box's z range)."""
    if len(boxes) != n:
        raise InputError(
            path,
            f"{len(boxes)} boxes for {n} scribbled objects; give one per id in ascending order",
        )
    int_boxes = validate_boxes(boxes, shape, is_3d, path)
    if start is not None:
        bad = (start < int_boxes[:, 2]) | (start > int_boxes[:, 5])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(path, f"box {i}: z_mid {start[i]} lies outside its z range")
    return int_boxes.astype(np.float64)


def _check_previous(
    path: Path, prev: NDArray, spatial: tuple[int, ...], labels: NDArray[np.int64]
) -> None:
    """A previous prediction must be a label map of the image's shape holding only the objects."""
    if tuple(prev.shape) != spatial:
        raise InputError(
            path, f"'prev_pred' shape {prev.shape} does not match the image's {spatial}"
        )
    if prev.dtype.kind not in "iub":
        raise InputError(path, f"'prev_pred' must be a label map; got dtype {prev.dtype}")
    unknown = np.setdiff1d(np.unique(prev), np.concatenate([[0], labels]))
    if unknown.size:
        raise InputError(
            path,
            f"'prev_pred' holds labels {unknown[:5].tolist()} that are no object of this case "
            f"({labels[:10].tolist()})",
        )


def _parse_clicks(
    path: Path, raw: object, order: object, n: int, spatial: tuple[int, ...]
) -> tuple[tuple[NDArray[np.int64], ...], tuple[NDArray[np.int64], ...]]:
    """Per-object click indices and labels from the CVPR 2025 ``clicks``/``clicks_order``."""
    if raw is None:
        empty = tuple(np.zeros((0, len(spatial)), np.int64) for _ in range(n))
        return empty, tuple(np.zeros(0, np.int64) for _ in range(n))
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise InputError(
            path, "'clicks' must be a list with one {'fg': [...], 'bg': [...]} per object"
        )
    if len(raw) > n:
        raise InputError(path, f"'clicks' has {len(raw)} entries for {n} objects")
    coords_out, labels_out = [], []
    for i in range(n):
        entry = raw[i] if i < len(raw) else {}
        lists = {}
        for kind in ("fg", "bg"):
            items = entry.get(kind, [])
            try:
                arr = np.asarray(items, dtype=np.float64).reshape(-1, len(spatial))
            except (TypeError, ValueError) as err:
                raise InputError(
                    path,
                    f"object {i + 1}: '{kind}' clicks must be [{', '.join('zyx'[3 - len(spatial) :])}] indices ({err})",
                ) from None
            if not np.isfinite(arr).all() or not np.allclose(arr, np.round(arr)):
                raise InputError(path, f"object {i + 1}: '{kind}' clicks must be integer indices")
            arr = arr.astype(np.int64)
            outside = ((arr < 0) | (arr >= np.asarray(spatial))).any(1)
            if outside.any():
                raise InputError(
                    path,
                    f"object {i + 1}: click {arr[outside][0].tolist()} lies outside the image {spatial}",
                )
            lists[kind] = arr
        seq = None
        if isinstance(order, (list, tuple)) and i < len(order):
            seq = [str(o) for o in np.asarray(order[i]).ravel().tolist()]
            if sorted(seq) != sorted(["fg"] * len(lists["fg"]) + ["bg"] * len(lists["bg"])):
                seq = None  # an order that does not match the clicks: fall back to fg, then bg
        if seq is None:
            seq = ["fg"] * len(lists["fg"]) + ["bg"] * len(lists["bg"])
        taken = {"fg": 0, "bg": 0}
        coords, labs = [], []
        for kind in seq:
            coords.append(lists[kind][taken[kind]])
            labs.append(1 if kind == "fg" else 0)
            taken[kind] += 1
        coords_out.append(np.asarray(coords, np.int64).reshape(-1, len(spatial)))
        labels_out.append(np.asarray(labs, np.int64))
    return tuple(coords_out), tuple(labels_out)


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
