"""Box prompts from a JSON or CSV file, for images that are not challenge npz cases.

Schema (coordinates in original pixels/voxels of the array returned by
:func:`umedsam.data.readers.read_image`, max indices inclusive, as in the challenge):

* 2D box: ``x_min, y_min, x_max, y_max`` (x = column, y = row).
* 3D box: ``x_min, y_min, z_min, x_max, y_max, z_max`` (x = last array axis, y = middle,
  z = first, i.e. the slice index).

JSON: either a list of boxes or an object with a ``"boxes"`` list; each box is a list of 4 or 6
numbers or an object with a ``"box"`` list and an optional ``"name"``::

    {"boxes": [{"name": "liver", "box": [120, 80, 260, 210, 30, 62]},
               [300, 90, 350, 160, 40, 55]]}

CSV: a header row naming the coordinate columns (``x_min,y_min,x_max,y_max`` or
``x_min,y_min,z_min,x_max,y_max,z_max``, any order) and an optional ``name`` column; one box per
row. Box *i* (from 1, in file order) becomes label *i* of the predicted mask. Fractional values
are rounded to the nearest integer.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.errors import InputError

logger = logging.getLogger(__name__)

COLUMNS_2D = ("x_min", "y_min", "x_max", "y_max")
COLUMNS_3D = ("x_min", "y_min", "z_min", "x_max", "y_max", "z_max")


@dataclass(frozen=True)
class BoxPrompts:
    """Boxes read from a prompt file.

    Attributes:
        boxes: ``(N, 4)`` or ``(N, 6)`` int64, see the module docstring for the axis order.
        names: one name per box (``""`` when the file gives none).
    """

    boxes: NDArray[np.int64]
    names: tuple[str, ...]


def load_boxes(path: str | Path, *, shape: tuple[int, ...] | None = None) -> NDArray[np.int64]:
    """Boxes from a JSON or CSV prompt file (see the module docstring for the schema).

    Args:
        path: ``.json`` or ``.csv`` file.
        shape: spatial shape of the image the boxes belong to, ``(H, W)`` or ``(D, H, W)``
            (``meta.shape``); when given, the box dimension must match it and every box must lie
            inside the image.

    Returns:
        ``(N, 4)`` (2D) or ``(N, 6)`` (3D) int64 boxes, file order = output label order.

    Raises:
        FileNotFoundError: no file at ``path``.
        InputError: unreadable file, wrong schema, non-finite numbers, min > max, mixed 2D/3D
            boxes, or boxes that do not fit ``shape``; the message names the file and the box.
    """
    return load_box_prompts(path, shape=shape).boxes


def load_box_prompts(path: str | Path, *, shape: tuple[int, ...] | None = None) -> BoxPrompts:
    """Like :func:`load_boxes`, also returning the optional box names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompt file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows, names = _read_json(path)
    elif suffix == ".csv":
        rows, names = _read_csv(path)
    else:
        raise InputError(
            path, f"box prompts must be a .json or .csv file; got {suffix or 'no suffix'}"
        )
    boxes = _validate(path, rows, shape)
    return BoxPrompts(boxes=boxes, names=tuple(names))


def _read_json(path: Path) -> tuple[list[list[Any]], list[str]]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from err
    if isinstance(content, dict):
        if "boxes" not in content:
            raise InputError(path, f"expected a 'boxes' key; found keys {sorted(content)}")
        content = content["boxes"]
    if not isinstance(content, list):
        raise InputError(path, f"'boxes' must be a list; got {type(content).__name__}")
    rows: list[list[Any]] = []
    names: list[str] = []
    for i, item in enumerate(content, start=1):
        if isinstance(item, dict):
            if "box" not in item:
                raise InputError(
                    path, f"box {i}: an object entry needs a 'box' list; got keys {sorted(item)}"
                )
            rows.append(item["box"])
            names.append(str(item.get("name", "")))
        else:
            rows.append(item)
            names.append("")
    return rows, names


def _read_csv(path: Path) -> tuple[list[list[Any]], list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            records = list(reader)
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"not a readable CSV file ({err})") from err
    columns = COLUMNS_3D if "z_min" in header or "z_max" in header else COLUMNS_2D
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(
            path,
            f"CSV header {header} lacks {missing}; expected columns {', '.join(COLUMNS_2D)} "
            f"(2D) or {', '.join(COLUMNS_3D)} (3D), plus an optional 'name'",
        )
    rows: list[list[Any]] = []
    names: list[str] = []
    for record in records:
        clean = {(k or "").strip().lower(): (v or "").strip() for k, v in record.items()}
        if not any(clean.values()):
            continue  # blank line
        rows.append([clean[c] for c in columns])
        names.append(clean.get("name", ""))
    return rows, names


def _number(path: Path, index: int, value: Any) -> float:
    if isinstance(value, bool):
        raise InputError(path, f"box {index}: coordinates must be numbers; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"box {index}: coordinates must be numbers; got {value!r}") from err
    if not math.isfinite(number):
        raise InputError(path, f"box {index}: coordinates must be finite; got {value!r}")
    return number


def _validate(
    path: Path, rows: list[list[Any]], shape: tuple[int, ...] | None
) -> NDArray[np.int64]:
    if not rows:
        raise InputError(path, "the file holds no boxes")
    lengths = set()
    values: list[list[int]] = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, (list, tuple)) or len(row) not in (4, 6):
            raise InputError(
                path,
                f"box {i}: expected 4 numbers [x_min, y_min, x_max, y_max] or 6 "
                f"[x_min, y_min, z_min, x_max, y_max, z_max]; got {row!r}",
            )
        lengths.add(len(row))
        values.append([round(_number(path, i, v)) for v in row])
    if len(lengths) > 1:
        raise InputError(path, "boxes mix 2D (4 numbers) and 3D (6 numbers) entries")
    boxes = np.asarray(values, dtype=np.int64)
    half = boxes.shape[1] // 2
    axes = ("x", "y", "z")[:half]
    for i, box in enumerate(boxes, start=1):
        for a, axis in enumerate(axes):
            if box[a] < 0:
                raise InputError(path, f"box {i}: {axis}_min = {box[a]} is negative")
            if box[a] > box[a + half]:
                raise InputError(path, f"box {i}: {axis}_min {box[a]} > {axis}_max {box[a + half]}")
    if shape is not None:
        ndim = len(shape)
        if ndim != half:
            kind = "3D (6 numbers)" if ndim == 3 else "2D (4 numbers)"
            raise InputError(path, f"the image is {ndim}D {tuple(shape)}, so boxes must be {kind}")
        # size along x, y, z = last, middle, first array axis
        sizes = tuple(reversed(shape))
        for i, box in enumerate(boxes, start=1):
            for a, axis in enumerate(axes):
                if box[a + half] >= sizes[a]:
                    raise InputError(
                        path,
                        f"box {i}: {axis}_max = {box[a + half]} is outside the image "
                        f"({axis} size {sizes[a]}, shape {tuple(shape)})",
                    )
    logger.debug("read %d boxes from %s", len(boxes), path)
    return boxes


def load_interactive_prompts(path: str | Path, *, shape: tuple[int, ...]) -> Any:
    """Boxes, clicks, scribbles and a previous mask for an image file, from a JSON prompt file.

    Schema (coordinates as for boxes: ``x`` = column, ``y`` = row, ``z`` = slice)::

        {"objects": [
            {"name": "lesion", "box": [x_min, y_min, (z_min,) x_max, y_max, (z_max)],
             "start_slice": z,                      # 3D, optional: the slice the box is drawn on
             "clicks": [[x, y, (z)], ...], "click_labels": [1, 0, ...]},
            ...],
         "scribbles": "strokes.png",     # optional label map: value i = object i, 1000 = background
         "previous_mask": "mask.nii.gz"} # optional label map of an earlier result (label i = object i)

    Every key but ``objects`` is optional, and so is each object's box (then it needs clicks, a
    scribble or a previous mask). Object i (from 1) becomes label i. Map files are read with
    :func:`umedsam.data.readers.read_image` and must have the image's shape; relative paths are
    relative to the prompt file.

    Returns:
        :class:`umedsam.data.npz.CasePrompts`.

    Raises:
        InputError: malformed JSON, out-of-image clicks or boxes, maps of the wrong shape.
    """
    from umedsam.data.npz import CasePrompts

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prompt file")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from err
    if not isinstance(content, dict) or not isinstance(content.get("objects"), list):
        raise InputError(path, "expected an object with an 'objects' list")
    objects = content["objects"]
    if not objects:
        raise InputError(path, "'objects' is empty")
    ndim, n = len(shape), len(objects)
    boxes = np.full((n, 2 * ndim), np.nan)
    starts = np.full(n, -1, np.int64)
    clicks, labels = [], []
    for i, obj in enumerate(objects, start=1):
        if not isinstance(obj, dict):
            raise InputError(path, f"object {i}: expected a JSON object; got {obj!r}")
        if "box" in obj:
            boxes[i - 1] = _validate(path, [obj["box"]], shape)[0]
        if "start_slice" in obj:
            starts[i - 1] = round(_number(path, i, obj["start_slice"]))
        points, marks = _object_clicks(path, i, obj, shape)
        clicks.append(points)
        labels.append(marks)
    maps = _prompt_maps(path, content, shape, n)
    object_labels = np.arange(1, n + 1, dtype=np.int64)
    has_start = starts >= 0
    return CasePrompts(
        labels=object_labels,
        boxes=None if np.isnan(boxes).all() else boxes,
        start_slices=np.where(has_start, starts, -1) if ndim == 3 and has_start.any() else None,
        clicks=tuple(clicks),
        click_labels=tuple(labels),
        scribbles=maps.get("scribbles"),
        prev_pred=maps.get("previous_mask"),
    )


def _object_clicks(
    path: Path, i: int, obj: dict, shape: tuple[int, ...]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Object ``i``'s clicks as array indices (K, ndim) and their 1/0 labels, checked."""
    ndim = len(shape)
    sizes = tuple(reversed(shape))  # x, y(, z)
    raw = obj.get("clicks", [])
    marks = obj.get("click_labels", [1] * len(raw))
    if not isinstance(raw, list) or not isinstance(marks, list) or len(raw) != len(marks):
        raise InputError(path, f"object {i}: 'clicks' and 'click_labels' must be equal lists")
    pts = []
    for point in raw:
        if not isinstance(point, list) or len(point) != ndim:
            raise InputError(path, f"object {i}: a click needs {ndim} numbers; got {point!r}")
        xyz = [round(_number(path, i, v)) for v in point]
        if any(not 0 <= v < s for v, s in zip(xyz, sizes, strict=True)):
            raise InputError(path, f"object {i}: click {xyz} lies outside the image {shape}")
        pts.append(xyz[::-1])  # (x, y, z) -> array index (z, y, x)
    if any(m not in (0, 1) for m in marks):
        raise InputError(path, f"object {i}: click labels must be 1 or 0; got {marks}")
    return np.asarray(pts, np.int64).reshape(-1, ndim), np.asarray(marks, np.int64)


def _prompt_maps(
    path: Path, content: dict, shape: tuple[int, ...], n: int
) -> dict[str, NDArray[np.int64]]:
    """The scribble map and previous mask a prompt file names, read and checked against the
    image's shape and its ``n`` objects (1000 = background strokes)."""
    from umedsam.data.npz import SCRIBBLE_BACKGROUND
    from umedsam.data.readers import read_image

    maps = {}
    for key in ("scribbles", "previous_mask"):
        if key not in content:
            continue
        file = (path.parent / str(content[key])).resolve()
        array, _ = read_image(file)
        array = np.asarray(array)
        if array.ndim == len(shape) + 1 and array.shape[-1] in (1, 3):
            array = array[..., 0]
        if tuple(array.shape) != tuple(shape):
            raise InputError(file, f"{key} must have the image's shape {shape}; got {array.shape}")
        maps[key] = np.rint(array).astype(np.int64)
    if "previous_mask" in maps:
        unknown = np.setdiff1d(np.unique(maps["previous_mask"]), np.arange(n + 1))
        if unknown.size:
            raise InputError(
                path, f"previous_mask holds labels {unknown[:5].tolist()} beyond the {n} objects"
            )
    if "scribbles" in maps:
        bad = np.setdiff1d(np.unique(maps["scribbles"]), [*range(n + 1), SCRIBBLE_BACKGROUND])
        if bad.size:
            raise InputError(
                path, f"scribbles hold ids {bad[:5].tolist()}; expected 1..{n} or 1000"
            )
    return maps
