"""Simulated user interaction from ground truth: correction clicks and scribbles (pure numpy).

Two users of this module: the evaluation protocol of the CVPR 2025 interactive challenge
(:func:`challenge_click`, reproduced exactly) and training with simulated interaction
(:func:`correction_click`, :func:`simulate_scribble`), which draws varied prompts so that a
model does not learn one drawing style.

Conventions: masks are boolean arrays of one object, 2D (H, W) or 3D (D, H, W); clicks are array
indices (``(y, x)`` or ``(z, y, x)``); scribbles are stroke maps of the mask's shape.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

SCRIBBLE_FAMILIES = ("centerline", "curve", "contour", "background")
"""Scribble styles drawn when none is named: the object's centre line (skeleton), a random smooth
curve inside it, a stroke along the inside of its contour, and a negative stroke in the
background near it."""
MORE_FAMILIES = ("zigzag",)
"""Styles drawn only when named (so that earlier training runs draw as they did): a loose
zig-zag across the object along its long axis."""
CHALLENGE_BOX_SEED = 2025
"""Seed of the CVPR 2025 challenge's box script (``get_boxes.py``): its random box margins."""


class Click(NamedTuple):
    """A simulated click: array index and whether it marks the object (fg) or not (bg)."""

    index: tuple[int, ...]  # type: ignore[assignment]  # a field named like tuple.index
    positive: bool


def _largest_error_component(pred: NDArray, gt: NDArray) -> NDArray[np.bool_] | None:
    """The largest connected component of ``pred XOR gt`` (full connectivity), or None."""
    error = np.asarray(pred, bool) != np.asarray(gt, bool)
    if not error.any():
        return None
    structure = ndimage.generate_binary_structure(error.ndim, error.ndim)
    labels, _ = ndimage.label(error, structure=structure)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _edt_in_padded_box(component: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Euclidean distance transform of a component inside its bounding box, padded by
    max(25 %, 1) voxels per axis (the challenge's rule), splatted back to full size."""
    coords = np.argwhere(component)
    lo, hi = coords.min(0), coords.max(0) + 1
    shape = hi - lo
    pad = np.maximum((shape * 0.25).astype(int), 1)
    crop = np.zeros(shape + 2 * pad, np.uint8)
    inner = tuple(slice(p, p + s) for p, s in zip(pad, shape, strict=True))
    crop[inner] = component[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    edt = ndimage.distance_transform_edt(crop)[inner]
    full = np.zeros(component.shape, np.float64)
    full[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = edt
    return full


def challenge_click(pred: NDArray, gt: NDArray) -> Click | None:
    """The next click of the CVPR 2025 interactive protocol for one class, or None if perfect.

    The error ``pred XOR gt`` is split into connected components (26-connected in 3D,
    8-connected in 2D); in the largest, the voxel farthest from the component's border (the
    distance-transform maximum, voxel units, computed in the component's bounding box padded by
    max(25 %, 1) voxels) is clicked; ties are broken as the challenge does (seed 42, uniform
    choice). The click is foreground where the ground truth is the object, else background.
    """
    component = _largest_error_component(pred, gt)
    if component is None:
        return None
    edt = _edt_in_padded_box(component)
    candidates = np.argwhere(edt == edt.max())
    chosen = candidates[np.random.RandomState(42).choice(len(candidates))]
    index = tuple(int(v) for v in chosen)
    return Click(index, bool(np.asarray(gt, bool)[index]))


def challenge_boxes_3d(gts: NDArray, seed: int = CHALLENGE_BOX_SEED) -> list[dict[str, int]]:
    """The CVPR 2025 interactive challenge's box of each label of a 3D ground truth, as its dicts.

    As the challenge's ``get_boxes.py`` makes them: ``z_min``/``z_max`` are the label's z-range;
    ``z_mid`` is the slice of its median voxel (voxels in C order, so sorted by z); the 2D box is
    the label's tight box on that slice, each side moved out by ``int(s * W / 256)`` pixels in x
    and ``int(s * H / 256)`` in y, clipped to the image, with one ``s`` per label drawn uniformly
    from 0-5 by a ``RandomState(seed)`` started afresh per case (labels in ascending order).

    Returns:
        One dict per label present in ``gts`` (ascending), keys ``z_min, z_max, z_mid,
        z_mid_x_min, z_mid_y_min, z_mid_x_max, z_mid_y_max``.
    """
    gts = np.asarray(gts)
    if gts.ndim != 3:
        raise ValueError(f"challenge boxes need a (D, H, W) ground truth; got shape {gts.shape}")
    _, h, w = gts.shape
    rng = np.random.RandomState(seed)
    out = []
    for label in np.unique(gts)[1:]:
        z_idx, _, _ = np.nonzero(gts == label)
        z_mid = int(z_idx[len(z_idx) // 2])
        ys, xs = np.nonzero(gts[z_mid] == label)
        shift = int(rng.randint(0, 6, 1)[0])
        dx, dy = int(shift * w / 256), int(shift * h / 256)
        out.append(
            {
                "z_min": int(z_idx.min()),
                "z_max": int(z_idx.max()),
                "z_mid": z_mid,
                "z_mid_x_min": max(0, int(xs.min()) - dx),
                "z_mid_y_min": max(0, int(ys.min()) - dy),
                "z_mid_x_max": min(w - 1, int(xs.max()) + dx),
                "z_mid_y_max": min(h - 1, int(ys.max()) + dy),
            }
        )
    return out


def challenge_boxes(gts: NDArray, seed: int = CHALLENGE_BOX_SEED) -> NDArray[np.int64]:
    """Box prompts of objects 1..N of a ground truth, by the challenge's rule.

    2D: each object's tight box, each side moved out by a margin drawn as in
    :func:`challenge_boxes_3d` (0-5 px at the 256 model scale, one draw per object from a
    ``RandomState(seed)`` started afresh per case), clipped to the image. 3D: each object's tight
    3D extent, as the challenge's 3D box cases store it.

    Returns:
        ``(N, 4)`` ``x0, y0, x1, y1`` or ``(N, 6)`` ``x0, y0, z0, x1, y1, z1`` int64 rows.
    """
    from umedsam.data.convert import boxes_from_objects

    gts = np.asarray(gts)
    tight = boxes_from_objects(gts)
    if gts.ndim == 3:
        return tight
    h, w = gts.shape
    rng = np.random.RandomState(seed)
    out = tight.copy()
    for row in out:
        shift = int(rng.randint(0, 6, 1)[0])
        dx, dy = int(shift * w / 256), int(shift * h / 256)
        row[:] = [max(0, row[0] - dx), max(0, row[1] - dy), min(w - 1, row[2] + dx),
                  min(h - 1, row[3] + dy)]  # fmt: skip
    return out


def correction_click(
    pred: NDArray, gt: NDArray, rng: np.random.Generator, centre: bool = True
) -> Click | None:
    """A training correction click in the largest error component, or None if there is none.

    Args:
        pred: predicted mask.
        gt: ground-truth mask.
        rng: random generator (tie-breaking and random positions).
        centre: at the distance-transform maximum (as the challenge clicks); else at a uniformly
            random voxel of the component.
    """
    component = _largest_error_component(pred, gt)
    if component is None:
        return None
    if centre:
        edt = _edt_in_padded_box(component)
        candidates = np.argwhere(edt == edt.max())
    else:
        candidates = np.argwhere(component)
    index = tuple(int(v) for v in candidates[rng.integers(len(candidates))])
    return Click(index, bool(np.asarray(gt, bool)[index]))


def _skeleton(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Morphological skeleton (Lantuéjoul): union of erosions minus their openings."""
    kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    current = mask.astype(bool)
    skeleton = np.zeros_like(current)
    while current.any():
        opened = cv2.morphologyEx(current.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
        skeleton |= current & ~opened
        current = cv2.erode(current.astype(np.uint8), kernel).astype(bool)
    return skeleton


def _smooth_curve(points: NDArray, samples: int = 64) -> NDArray:
    """A Catmull-Rom curve through (K, 2) xy points, ``samples`` points per segment."""
    if len(points) < 2:
        return points
    p = np.concatenate([points[:1], points, points[-1:]])
    t = np.linspace(0, 1, samples)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    return np.concatenate(out)


def _draw(shape: tuple[int, int], xy: NDArray, thickness: int) -> NDArray[np.bool_]:
    canvas = np.zeros(shape, np.uint8)
    if len(xy) >= 2:
        pts = np.round(xy).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, 1, thickness=max(1, thickness))
    elif len(xy) == 1:
        x, y = np.round(xy[0]).astype(int)
        cv2.circle(canvas, (int(x), int(y)), max(1, thickness // 2), 1, -1)
    return canvas.astype(bool)


def _deform(stroke: NDArray[np.bool_], rng: np.random.Generator, amount: float) -> NDArray:
    """Warp a stroke map by a random smooth displacement field of about ``amount`` pixels."""
    h, w = stroke.shape
    if amount <= 0 or not stroke.any():
        return stroke
    coarse = rng.normal(0, amount, size=(2, 4, 4)).astype(np.float32)
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(stroke.astype(np.uint8), gx + dx, gy + dy, cv2.INTER_NEAREST, borderValue=0)
    return warped.astype(bool)


def _random_arc(ring: NDArray[np.bool_], rng: np.random.Generator, fraction: float) -> NDArray:
    """A connected arc of about ``fraction`` of the longest contour of ``ring``, as xy points."""
    contours, _ = cv2.findContours(ring.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2))
    contour = max(contours, key=len)[:, 0, :].astype(np.float64)
    n = len(contour)
    length = max(2, int(n * fraction))
    start = int(rng.integers(n))
    return contour[(start + np.arange(length)) % n]


def _zigzag_points(mask: NDArray[np.bool_], rng: np.random.Generator) -> NDArray:
    """Corner points of a loose zig-zag across ``mask`` along its long axis (xy): 3-7 turns,
    swinging over about half its width, each corner jittered."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    centre = pts.mean(0)
    _, _, axes = np.linalg.svd(pts - centre, full_matrices=False)
    along, across = axes[0], axes[1]
    t = (pts - centre) @ along
    u = (pts - centre) @ across
    turns = int(rng.integers(3, 8))
    lengths = np.linspace(np.quantile(t, 0.1), np.quantile(t, 0.9), turns + 1)
    swing = 0.5 * (np.quantile(u, 0.9) - np.quantile(u, 0.1)) * rng.uniform(0.6, 1.0)
    sides = np.where(np.arange(turns + 1) % 2 == 0, 1.0, -1.0) * swing
    jitter = rng.normal(0, 0.1 * max(swing, 1.0), size=(turns + 1, 2))
    return centre + np.outer(lengths, along) + np.outer(sides, across) + jitter


def break_stroke(
    stroke: NDArray[np.bool_], rng: np.random.Generator, gaps: int | None = None
) -> NDArray[np.bool_]:
    """``stroke`` with 1-3 (or ``gaps``) short pieces left out, as a hand lifts the pen: each
    gap removes the stroke pixels within a few pixels of a random stroke pixel."""
    ys, xs = np.nonzero(stroke)
    if len(ys) < 20:
        return stroke
    out = stroke.copy()
    count = int(rng.integers(1, 4)) if gaps is None else gaps
    yy, xx = np.indices(stroke.shape)
    for k in rng.choice(len(ys), size=min(count, len(ys)), replace=False):
        radius = max(2.0, 0.04 * np.sqrt(len(ys)))
        out[(yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= radius**2] = False
    return out if out.any() else stroke


def simulate_scribble(
    mask: NDArray,
    rng: np.random.Generator,
    family: str | None = None,
    thickness: int | None = None,
    deform: float | None = None,
) -> NDArray[np.bool_]:
    """A simulated scribble for a 2D object mask: a stroke map (possibly empty for tiny objects).

    Args:
        mask: (H, W) bool object mask.
        rng: random generator.
        family: one of :data:`SCRIBBLE_FAMILIES` (None: random) or :data:`MORE_FAMILIES`.
            ``background`` strokes lie
            outside the object near its border (a negative scribble); the others inside it.
        thickness: brush width in pixels (None: random 1-6).
        deform: size of the smooth random warp in pixels (None: random 0-4).

    Returns:
        (H, W) bool stroke pixels, clipped to the object (or to its outside for ``background``).
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"simulate_scribble takes a 2D mask; got shape {mask.shape}")
    family = family or str(rng.choice(SCRIBBLE_FAMILIES))
    if family not in SCRIBBLE_FAMILIES + MORE_FAMILIES:
        raise ValueError(
            f"unknown scribble family {family!r}; expected {SCRIBBLE_FAMILIES + MORE_FAMILIES}"
        )
    thickness = int(rng.integers(1, 7)) if thickness is None else thickness
    deform = float(rng.uniform(0, 4)) if deform is None else deform
    h, w = mask.shape
    if not mask.any():
        return np.zeros_like(mask)
    if family == "centerline":
        stroke = _skeleton(mask)
        if stroke.any() and rng.random() < 0.5:  # often only part of the centre line is drawn
            ys, xs = np.nonzero(stroke)
            keep = rng.random() * 0.7 + 0.3
            order = np.argsort(xs if np.ptp(xs) > np.ptp(ys) else ys)
            cut = order[: max(1, int(len(order) * keep))]
            stroke = np.zeros_like(stroke)
            stroke[ys[cut], xs[cut]] = True
        kernel = np.ones((thickness, thickness), np.uint8)
        stroke = cv2.dilate(stroke.astype(np.uint8), kernel).astype(bool)
    elif family == "curve":
        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        ys, xs = np.nonzero(inner if inner.any() else mask)
        k = int(rng.integers(2, 7))
        pick = rng.integers(len(ys), size=k)
        pts = np.stack([xs[pick], ys[pick]], 1).astype(np.float64)
        stroke = _draw((h, w), _smooth_curve(pts), thickness)
    elif family == "zigzag":
        stroke = _draw((h, w), _smooth_curve(_zigzag_points(mask, rng), 16), thickness)
    elif family == "contour":
        depth = int(rng.integers(1, 4)) + thickness // 2
        inner = cv2.erode(mask.astype(np.uint8), np.ones((2 * depth + 1,) * 2, np.uint8))
        ring = inner.astype(bool) if inner.any() else mask
        stroke = _draw((h, w), _random_arc(ring, rng, rng.uniform(0.2, 0.8)), thickness)
    else:  # background
        gap = int(rng.integers(2, 8)) + thickness // 2
        outer = cv2.dilate(mask.astype(np.uint8), np.ones((2 * gap + 1,) * 2, np.uint8))
        stroke = _draw(
            (h, w), _random_arc(outer.astype(bool), rng, rng.uniform(0.1, 0.5)), thickness
        )
    stroke = _deform(stroke, rng, deform)
    return stroke & ~mask if family == "background" else stroke & mask


def correction_scribble(
    pred: NDArray, gt: NDArray, rng: np.random.Generator
) -> tuple[NDArray[np.bool_], bool] | None:
    """A corrective scribble in the largest error region of a 2D prediction, or None.

    Returns:
        ``(stroke map, positive)``: a stroke inside the missed region (positive) or inside the
        false region (negative), drawn like an inside scribble of that region.
    """
    component = _largest_error_component(pred, gt)
    if component is None:
        return None
    positive = bool(np.asarray(gt, bool)[component].mean() >= 0.5)
    family = str(rng.choice(("centerline", "curve")))
    stroke = simulate_scribble(component, rng, family=family, deform=0.0)
    if not stroke.any():
        stroke = component & cv2.erode(component.astype(np.uint8), np.ones((1, 1))).astype(bool)
    return stroke, positive
