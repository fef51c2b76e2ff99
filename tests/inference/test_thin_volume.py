"""Thin structures from a stroke on a volume: the 3D filter, the mask and where it is used."""

from __future__ import annotations

import numpy as np
import pytest

import umedsam.inference.thin_volume as thin_volume
from umedsam.inference.thin_volume import VolumeTracer, filter_region, thin_structure_volume
from vessel_picture import vessel_volume


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _stroke_on_slice(tube: np.ndarray, z: int) -> np.ndarray:
    """The tube's centre row on slice ``z`` where it crosses that slice."""
    stroke = np.zeros_like(tube)
    columns = np.flatnonzero(tube[z, 32])
    stroke[z, 32, columns] = True
    return stroke


def test_the_eigenvalues_are_those_of_numpy_sorted_by_magnitude() -> None:
    rng = np.random.default_rng(0)
    matrices = rng.normal(size=(500, 3, 3)).astype(np.float32)
    matrices = matrices + matrices.transpose(0, 2, 1)
    entries = [matrices[:, i, j] for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))]
    found = thin_volume._eigenvalues(entries).T
    expected = np.linalg.eigvalsh(matrices.astype(np.float64))
    expected = np.take_along_axis(expected, np.argsort(np.abs(expected), 1), 1)
    assert np.abs(found - expected).max() < 1e-4


def test_a_stroke_on_one_slice_gives_the_tube_through_the_slices_not_the_stray_one() -> None:
    volume, tube = vessel_volume()
    mask = thin_structure_volume(volume, _stroke_on_slice(tube, 11))
    assert mask is not None
    assert _dice(mask, tube) > 0.6
    reached = np.flatnonzero(mask.any((1, 2)))
    assert reached.min() <= 7 and reached.max() >= 16  # far beyond the stroked slice
    assert not mask[:, 45:].any()  # the stray tube is not touched by the stroke


def test_a_negative_stroke_across_the_tube_cuts_off_what_lies_beyond() -> None:
    volume, tube = vessel_volume()
    negative = np.zeros_like(tube)
    negative[9:19, 26:39, 40:46] = True  # across the tube (slices 12-15 there)
    mask = thin_structure_volume(volume, _stroke_on_slice(tube, 11), negative)
    assert mask is not None and not mask[negative].any()
    assert not mask[:, :, 47:].any() and mask[:, :, 20:30].any()


def test_a_brush_wider_than_the_tube_traces_the_same_tube() -> None:
    """The stroke counts by its centre line: the app's default brush (radius 3) or a wider one
    over a tube of radius 1.5 gives about the mask of a one-pixel stroke, not a fatter one."""
    from umedsam.ui.corrections import stroke_from_entry, stroke_map

    volume, tube = vessel_volume()
    masks = []
    for radius in (1, 3, 8):
        entry = {"stroke": [[23, 32], [36, 32]], "label": 1, "radius": radius, "z": 11}
        strokes = stroke_map([stroke_from_entry(entry, volume.shape, 0)], volume.shape)
        assert strokes is not None
        mask = thin_structure_volume(volume, strokes > 0)
        assert mask is not None and _dice(mask, tube) > 0.6
        masks.append(mask)
    assert _dice(masks[0], masks[2]) > 0.9


def test_a_stroke_inside_a_flat_blob_is_not_thin() -> None:
    rng = np.random.default_rng(1)
    z, y, x = np.mgrid[:20, :64, :64]
    volume = 60.0 + rng.normal(0.0, 3.0, z.shape)
    volume[(z - 10) ** 2 + (y - 32) ** 2 + (x - 32) ** 2 < 12**2] = 200.0
    for rows, columns in ((slice(32, 33), slice(24, 40)), (slice(27, 38), slice(14, 50))):
        stroke = np.zeros(z.shape, bool)
        stroke[10, rows, columns] = True  # inside it; a wide one across its edges
        assert thin_structure_volume(volume.astype(np.uint8), stroke) is None
    assert thin_structure_volume(volume.astype(np.uint8), np.zeros(z.shape, bool)) is None


def test_a_dark_tube_is_found_as_well() -> None:
    volume, tube = vessel_volume(stray=False)
    mask = thin_structure_volume(255 - volume, _stroke_on_slice(tube, 11))
    assert mask is not None and _dice(mask, tube) > 0.6


def test_coarse_slices_narrow_the_filter_along_z() -> None:
    """With slices four times the pixel size, a tube crossing slices is filtered at a z scale a
    quarter of the in-plane one, and the response differs from the isotropic one."""
    volume, tube = vessel_volume(stray=False)
    iso = thin_volume.vesselness(volume, dark=False)
    coarse = thin_volume.vesselness(volume, dark=False, spacing_zyx=(4.0, 1.0, 1.0))
    assert not np.allclose(iso, coarse)
    assert coarse[tube].mean() > 0 and iso[tube].mean() > 0


def test_a_large_volume_is_filtered_around_its_strokes(monkeypatch) -> None:
    volume, tube = vessel_volume()
    stroke = _stroke_on_slice(tube, 11)
    assert filter_region(volume.shape, stroke) == (slice(0, 24), slice(0, 64), slice(0, 64))
    monkeypatch.setattr(thin_volume, "MAX_VOXELS", 24 * 40 * 40)
    monkeypatch.setattr(thin_volume, "SLAB", 4)
    region = filter_region(volume.shape, stroke)
    assert region[0] == slice(7, 16)
    inside = np.zeros_like(stroke)
    inside[region] = True
    assert inside[stroke].all()  # the strokes' extent is kept whatever the budget
    mask = thin_structure_volume(volume, stroke)
    assert mask is not None and not mask[~inside].any() and mask[tube & inside].mean() > 0.5


def test_the_tracer_reuses_the_response_and_keeps_the_mask_in_its_box(monkeypatch) -> None:
    volume, tube = vessel_volume()
    calls = []
    original = thin_volume.vesselness
    monkeypatch.setattr(thin_volume, "vesselness", lambda *a: calls.append(1) or original(*a))
    tracer = VolumeTracer(volume)
    strokes = _stroke_on_slice(tube, 11).astype(np.int8)
    whole = tracer.trace(strokes)
    boxed = tracer.trace(strokes, np.array([0, 0, 9, 64, 64, 14], np.float64))
    assert len(calls) == 1 and whole is not None and boxed is not None
    assert boxed.any() and not boxed[:9].any() and not boxed[15:].any()
    assert np.array_equal(boxed[9:15], whole[9:15])


@pytest.fixture
def scribble_case():
    """Prompts of a 3D case: object 1 drawn with a stroke along the tube alone."""
    from umedsam.data.npz import CasePrompts

    volume, tube = vessel_volume()
    scribbles = np.zeros(volume.shape, np.int16)
    scribbles[_stroke_on_slice(tube, 11)] = 1
    prompts = CasePrompts.of_strokes(scribbles)
    return volume, tube, prompts


def test_a_case_asking_for_thin_structures_is_traced_without_the_model(
    tiny_model, scribble_case, monkeypatch
) -> None:
    import umedsam.inference.interactive as interactive
    from umedsam.inference.backends.torch import TorchBackend

    volume, tube, prompts = scribble_case
    backend = TorchBackend(tiny_model)
    segs, iou = interactive.segment_interactive_volume(backend, volume, prompts)
    assert _dice(segs == 1, tube) < 0.5  # the tiny random model does not find the tube
    monkeypatch.setattr(interactive, "propagate", None)  # every object traced: no model call
    segs, iou = interactive.segment_interactive_volume(
        backend, volume, prompts, thin_strokes=True, spacing_zyx=(1.0, 1.0, 1.0)
    )
    assert _dice(segs == 1, tube) > 0.6 and np.isnan(iou[0])


def test_in_the_apps_a_thin_stroke_on_a_slice_traces_and_a_negative_click_cuts(
    tiny_model, tmp_path
) -> None:
    """The web app's (and napari's) session on a volume: a thin stroke on slice 11 traces the
    tube through the slices with no estimate; a negative click across it on slice 15 cuts off
    the part beyond."""
    from umedsam.inference.backends.torch import TorchBackend
    from umedsam.ui.images import LoadedImage, npz_meta
    from umedsam.ui.session import Session

    volume, tube = vessel_volume()
    image = LoadedImage("v", volume, npz_meta(volume.shape, None, 1))
    session = Session("s", image, tmp_path)
    backend = TorchBackend(tiny_model)
    box = [0, 0, 0, 64, 64, 23]
    columns = np.flatnonzero(tube[11, 32])
    stroke = {
        "stroke": [[int(columns[0]), 32], [int(columns[-1]), 32]],
        "label": 1,
        "radius": 1,
        "z": 11,
        "thin": True,
    }
    summary = session.segment(backend, [box], [[stroke]])
    assert session.segs is not None and _dice(session.segs == 1, tube) > 0.6
    assert summary["objects"][0]["iou"] is None
    session.segment(backend, [box], [[stroke, [42, 32, 15, 0]]])
    cut = session.segs == 1
    assert cut[:, :, 20:30].any() and not cut[:, :, 47:].any()
