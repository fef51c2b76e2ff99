"""Thin, branching structures from a stroke on a volume (3D): vessels and airways.

The 3D counterpart of :mod:`umedsam.inference.thin`. A stroke drawn along a vessel on one slice
asks for the tube it lies on, through the slices above and below, which the model's 256-px
slice masks cannot outline. The image answers at full resolution:

1. **Ridge response.** Frangi's vesselness in 3D (the eigenvalues of the scale-normalised
   Hessian: two large of the stroke's sign and one small along the tube), at :data:`SIGMAS`
   in-plane voxels; with a voxel spacing the scales along z follow it (a 5 mm slice holds less
   of a 1 mm vessel than a 0.7 mm pixel). The filter runs on the region around the strokes that
   :func:`filter_region` picks (the whole volume up to :data:`MAX_VOXELS`): the first stroke
   costs about 1.3 s on two cores for 48 x 192 x 192 voxels and 3.4 s for a 120 x 512 x 512
   volume (``benchmarks/thin_volume.py``); later strokes on the same region reuse the response.
2. **Is the stroke on a ridge?** The stroke is taken as its centre line on each slice (where
   the user aimed; a brush wider than the vessel paints voxels beside it). It is on a ridge
   when its median response beats :data:`RIDGE_RANK` of the region's voxels that curve the
   stroke's way (a response above zero): in a volume most voxels have no response at all, so
   the 2D test over every pixel would pass the inside of a ball.
3. **Mask.** The voxels above :data:`GROW_FRACTION` of the
   :data:`~umedsam.inference.thin.STROKE_QUANTILE` percentile of the centre line's response,
   less those a negative stroke covers, keeping the 26-connected pieces the centre line comes
   within two pixels of.

No 3D vessel annotations are in the project's data, so nothing was tuned on real volumes: the
scales (in voxels) are the 2D path's, which were chosen on DRIVE; the ridge test and the centre
line were set on the unit tests' phantoms and the threshold's fraction on synthetic design
volumes; the check is a synthetic one on other seeds (``benchmarks/thin_volume.py``,
docs/interactive.md). The path runs only when asked for (a thin stroke in the web app or napari,
``umedsam predict --thin-structures``); an automatic rule like the 2D one would need 3D data to
be chosen on.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from umedsam.inference import thin

SIGMAS = (1.0, 1.5, 2.0, 3.0)
"""Hessian scales in in-plane voxels (radii of about 1-4 voxels)."""

MAX_VOXELS = 4_000_000
"""The filter's region holds at most this many voxels (about 3 s on two cores)."""

SLAB = 24
"""A volume larger than :data:`MAX_VOXELS` is filtered this many slices beyond its strokes."""

RIDGE_RANK = 0.95
"""A stroke is on a ridge when its median response beats this fraction of the voxels with a
response (synthetic phantoms: a stroke along a tube 0.99, across the inside of a ball 0.82)."""

GROW_FRACTION = 0.3
"""The mask's threshold is this fraction of the :data:`~umedsam.inference.thin.STROKE_QUANTILE`
percentile of the response on the stroke's centre line (lower than the 2D path's fraction of
the whole stroke's, because the centre line holds the ridge's peak; chosen on synthetic design
volumes: docs/interactive_log.md)."""

ALPHA = 0.5
"""Frangi's weight of the plate-versus-line ratio."""

BETA = 0.5
"""Frangi's weight of the blob ratio."""

_NEIGHBOURS = np.ones((3, 3, 3), bool)
_IN_PLANE = np.ones((1, 3, 3), bool)
_ORDERS = ((2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 0), (1, 0, 1), (0, 1, 1))

Region = tuple[slice, slice, slice]


def _eigenvalues(hessian: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """(3, ...) eigenvalues of symmetric 3x3 matrices given as (zz, yy, xx, zy, zx, yx), sorted
    by magnitude (closed form: Smith's trigonometric solution)."""
    a, b, c, d, e, f = hessian
    q = (a + b + c) / 3.0
    p = np.sqrt(((a - q) ** 2 + (b - q) ** 2 + (c - q) ** 2 + 2.0 * (d * d + e * e + f * f)) / 6.0)
    p = np.maximum(p, np.float32(1e-12))
    b11, b22, b33 = (a - q) / p, (b - q) / p, (c - q) / p
    b12, b13, b23 = d / p, e / p, f / p
    det = b11 * (b22 * b33 - b23 * b23) - b12 * (b12 * b33 - b23 * b13)
    det += b13 * (b12 * b23 - b22 * b13)
    phi = np.arccos(np.clip(det / 2.0, -1.0, 1.0)) / 3.0
    largest = q + 2.0 * p * np.cos(phi)
    smallest = q + 2.0 * p * np.cos(phi + np.float32(2.0 * np.pi / 3.0))
    values = np.stack([largest, 3.0 * q - largest - smallest, smallest]).astype(np.float32)
    return np.take_along_axis(values, np.argsort(np.abs(values), axis=0), axis=0)


def _hessian(data: NDArray[np.float32], sigma_zyx: tuple[float, float, float]) -> list[NDArray]:
    """Scale-normalised second derivatives (zz, yy, xx, zy, zx, yx) at ``sigma_zyx`` voxels."""

    def derivative(order: tuple[int, int, int]) -> NDArray[np.float32]:
        out = ndimage.gaussian_filter(data, sigma_zyx, order=order, mode="nearest")
        norm = np.prod([s**k for s, k in zip(sigma_zyx, order, strict=True)])
        return np.asarray(out * np.float32(norm), np.float32)

    with ThreadPoolExecutor(2) as pool:  # scipy's filters release the GIL
        return list(pool.map(derivative, _ORDERS))


def vesselness(
    data: NDArray, dark: bool, spacing_zyx: Sequence[float] | None = None
) -> NDArray[np.float32]:
    """(D, H, W) float32 Frangi vesselness of ``data`` for dark (or bright) tubes, the maximum
    over :data:`SIGMAS`; ``spacing_zyx`` (mm) scales the z sigma by in-plane over slice spacing."""
    data = np.asarray(data, np.float32)
    ratio = 1.0
    if spacing_zyx is not None and spacing_zyx[0] > 0:
        ratio = float(np.clip(np.mean(spacing_zyx[1:]) / spacing_zyx[0], 0.2, 5.0))
    response = np.zeros(data.shape, np.float32)
    for sigma in SIGMAS:
        small, middle, large = _eigenvalues(_hessian(data, (sigma * ratio, sigma, sigma)))
        norm = np.sqrt(small * small + middle * middle + large * large)
        c = max(float(norm.max()) / 2.0, 1e-10)
        ra = np.abs(middle) / np.maximum(np.abs(large), 1e-10)
        rb = np.abs(small) / np.sqrt(np.maximum(np.abs(middle * large), 1e-20))
        v = (1.0 - np.exp(-(ra**2) / (2 * ALPHA**2))) * np.exp(-(rb**2) / (2 * BETA**2))
        v *= 1.0 - np.exp(-(norm**2) / (2 * c * c))
        wrong_sign = (middle < 0) | (large < 0) if dark else (middle > 0) | (large > 0)
        v[wrong_sign] = 0.0
        np.maximum(response, v.astype(np.float32), out=response)
    return response


def filter_region(shape: tuple[int, int, int], positive: NDArray[np.bool_]) -> Region:
    """The part of a ``shape`` volume the filter runs on: all of it up to :data:`MAX_VOXELS`;
    else the strokes' slices and :data:`SLAB` on each side, and in-plane a window centred on the
    strokes as large as the budget allows (never smaller than the strokes' extent)."""
    d, h, w = shape
    if d * h * w <= MAX_VOXELS:
        return slice(0, d), slice(0, h), slice(0, w)
    zyx = np.argwhere(positive)
    low, high = zyx.min(0), zyx.max(0) + 1
    z0, z1 = max(0, int(low[0]) - SLAB), min(d, int(high[0]) + SLAB)
    side = int(np.sqrt(MAX_VOXELS / (z1 - z0)))
    window = []
    for axis, size in ((1, h), (2, w)):
        extent = max(side, int(high[axis] - low[axis]))
        centre = (int(low[axis]) + int(high[axis])) // 2
        start = int(np.clip(centre - extent // 2, 0, max(0, size - extent)))
        window.append(slice(start, min(size, start + extent)))
    return slice(z0, z1), window[0], window[1]


def thin_structure_volume(
    volume: NDArray,
    positive: NDArray[np.bool_],
    negative: NDArray[np.bool_] | None = None,
    spacing_zyx: Sequence[float] | None = None,
    responses: dict[tuple, NDArray[np.float32]] | None = None,
) -> NDArray[np.bool_] | None:
    """The thin structure a positive stroke lies on in a volume, or None if it lies on no ridge.

    Args:
        volume: (D, H, W) image in original intensities.
        positive: (D, H, W) the object's positive stroke voxels.
        negative: (D, H, W) its negative stroke voxels, or None.
        spacing_zyx: voxel size in mm (None: isotropic voxels).
        responses: ridge responses by (polarity, region), filled as they are computed; pass the
            same dict for the same volume and a later stroke on that region skips the filter.
    """
    positive = np.asarray(positive, bool)
    if positive.sum() < 3:
        return None
    data = np.asarray(volume, np.float32)
    core = _stroke_core(positive)
    dark = thin.stroke_is_dark(data, core)
    region = filter_region(data.shape, positive)
    key = (dark, tuple((s.start, s.stop) for s in region))
    response = None if responses is None else responses.get(key)
    if response is None:
        response = vesselness(data[region], dark, spacing_zyx)
        if responses is not None:
            responses[key] = response
    seeds = core[region]
    on_stroke = response[seeds]
    curved = response[response > 0]
    if on_stroke.size < 3 or not curved.size:
        return None
    if float(np.mean(curved < np.median(on_stroke))) < RIDGE_RANK:
        return None
    inside = response > GROW_FRACTION * np.percentile(on_stroke, thin.STROKE_QUANTILE)
    if negative is not None:  # a negative stroke cuts: what it severs from the seeds goes too
        inside &= ~np.asarray(negative, bool)[region]
    pieces, _ = ndimage.label(inside, structure=_NEIGHBOURS)
    near = ndimage.binary_dilation(seeds, structure=_IN_PLANE, iterations=2)
    touched = np.unique(pieces[near & inside])
    out = np.zeros(data.shape, bool)
    out[region] = np.isin(pieces, touched[touched > 0])
    return out


def _stroke_core(stroke: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The stroke's centre line on each of its slices, where the user aimed: a brush wider than
    the vessel paints voxels beside it, whose low response would lower the threshold."""
    from skimage.morphology import skeletonize

    core = np.zeros_like(stroke)
    for z in np.flatnonzero(stroke.any((1, 2))):
        core[z] = skeletonize(stroke[z])
    return core if core.sum() >= 3 else stroke


class VolumeTracer:
    """A volume's thin-structure tracer: :func:`thin_structure_volume` with the filter's
    responses kept across strokes (the web app's and napari's corrections, one case of
    ``umedsam predict``)."""

    def __init__(self, volume: NDArray, spacing_zyx: Sequence[float] | None = None):
        self.volume = volume
        self.spacing_zyx = spacing_zyx
        self._responses: dict[tuple, NDArray[np.float32]] = {}

    def trace(self, strokes: NDArray, box: NDArray | None = None) -> NDArray[np.bool_] | None:
        """The thin structure an object's (D, H, W) stroke map (1 its strokes, -1 background
        strokes) lies on, inside its 3D ``box`` (x0, y0, z0, x1, y1, z1; x/y max exclusive, z
        max inclusive) when given; None when the strokes lie on no ridge."""
        strokes = np.asarray(strokes)
        found = thin_structure_volume(
            self.volume, strokes > 0, strokes < 0, self.spacing_zyx, self._responses
        )
        if found is None or box is None or np.isnan(np.asarray(box, np.float64)).any():
            return found
        x0, y0, z0, x1, y1, z1 = (int(round(float(v))) for v in box)
        inside = np.zeros_like(found)
        inside[max(0, z0) : max(0, z1 + 1), max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
        return found & inside
