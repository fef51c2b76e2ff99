"""One stroke path: the same strokes give the same mask in the web app, napari and ``umedsam
predict`` (issue 37, item 4).

The web app sends strokes as polylines with a brush, the napari plugin paints them, and the CLI
reads a CVPR 2024 scribble map; all three reach the model through the stroke rules of
``umedsam predict`` (sampling along the union of an object's strokes, the first-prediction rules
for stroke-only objects, the previous mask as the dense prompt of a correction).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from umedsam.data.npz import SCRIBBLE_BACKGROUND, Case, CasePrompts
from umedsam.inference.interactive import segment_interactive_case
from umedsam.napari.annotator import Annotator, ObjectPrompts
from umedsam.napari.prompts import (
    NEGATIVE,
    POSITIVE,
    THIN,
    in_given_order,
    scribble_strokes,
)
from umedsam.ui.corrections import normalise_clicks, stroke_map
from umedsam.ui.images import LoadedImage, npz_meta
from umedsam.ui.model_holder import ModelHolder
from umedsam.ui.session import Session
from vessel_picture import vessel_picture

STROKES = (
    {"stroke": [[20, 22], [30, 26], [40, 30]], "label": 1, "radius": 2},
    {"stroke": [[10, 50], [20, 52]], "label": 0, "radius": 2},
    {"stroke": [[24, 34], [34, 38]], "label": 1, "radius": 1},
)


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    """The shipped interactive model (it takes strokes and mask prompts), on PyTorch."""
    from umedsam.inference.engines import EngineSpec, open_engine

    return open_engine(EngineSpec("umedsam_interactive", engine="torch")).backend


def image(depth: int | None) -> LoadedImage:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    disk = ((((yy - 30) ** 2 + (xx - 30) ** 2) < 300) * 180 + 30).astype(np.uint8)
    if depth is None:
        pixels = np.repeat(disk[..., None], 3, 2) + rng.integers(0, 20, (64, 64, 3), np.uint8)
        return LoadedImage("disk", pixels, npz_meta((64, 64), None, 3))
    volume = np.stack([np.roll(disk, k, axis=1) for k in range(depth)])
    return LoadedImage("disks", np.ascontiguousarray(volume), npz_meta(volume.shape, None, 1))


def with_z(entries: tuple[dict, ...], z: int | None) -> list[dict]:
    return [dict(e) if z is None else {**e, "z": z} for e in entries]


def web_masks(backend, loaded: LoadedImage, box: list[int], entries: list[dict], tmp: Path):  # type: ignore[no-untyped-def]
    """The web app's masks after each stroke, sent one at a time (a correction each)."""
    session = Session("s", loaded, tmp)
    masks = []
    for k in range(1, len(entries) + 1):
        session.segment(backend, [box], [entries[:k]])
        assert session.segs is not None
        masks.append(session.segs == 1)
    return masks


def cli_masks(
    backend, loaded: LoadedImage, box: list[int], entries: list[dict], thin: bool = False
):  # type: ignore[no-untyped-def]
    """``umedsam predict``'s masks for the same steps: a case holding the strokes so far as a
    CVPR 2024 scribble map and the previous step's mask as ``prev_pred``; with ``thin``,
    ``--thin-structures`` and no ``prev_pred`` (a traced object starts from its strokes)."""
    from umedsam.inference.propagation import SliceEmbeddingCache

    shape = tuple(loaded.meta.shape)
    strokes = list(normalise_clicks([entries], 1, shape)[0])
    masks, previous = [], None
    embeddings = SliceEmbeddingCache(256.0)  # each slice encoded once over the steps
    for k in range(1, len(strokes) + 1):
        smap = stroke_map(strokes[:k], shape)
        assert smap is not None
        scribbles = np.where(smap == 1, 1, np.where(smap == -1, SCRIBBLE_BACKGROUND, 0))
        empty = np.zeros((0, len(shape)), np.int64)
        prompts = CasePrompts(
            labels=np.array([1]),
            boxes=np.array([box], np.float64),
            start_slices=None,
            clicks=(empty,),
            click_labels=(np.zeros(0, np.int64),),
            scribbles=scribbles,
            prev_pred=None if thin else previous,
        )
        case = Case("c.npz", loaded.pixels, np.array([box]), None, len(shape) == 3, prompts)
        segs, _ = segment_interactive_case(
            backend, case, embeddings=embeddings, thin_strokes=thin or None
        )
        masks.append(segs == 1)
        previous = segs.astype(np.uint8)
    return masks


@pytest.mark.realweights
@pytest.mark.parametrize("depth", [None, 4])
def test_the_same_strokes_give_the_same_mask_everywhere(backend, depth, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    loaded = image(depth)
    box = [12, 12, 50, 50] if depth is None else [12, 12, 1, 50, 50, 3]
    entries = with_z(STROKES, None if depth is None else 2)
    web = web_masks(backend, loaded, box, entries, tmp_path / "web")
    cli = cli_masks(backend, loaded, box, entries)
    # the napari plugin: the same strokes painted in its scribble layer, one at a time
    holder = ModelHolder(lambda _n: lambda: backend, "umedsam_interactive", route_corrections=False)
    labels = np.zeros(loaded.meta.shape, np.int32)
    annotator = Annotator(loaded, holder, labels, tmp_path / "napari")
    painted = np.zeros(loaded.meta.shape, np.uint8)
    shown = []
    for stroke in normalise_clicks([entries], 1, tuple(loaded.meta.shape))[0]:
        plane = painted if stroke.z is None else painted[stroke.z]
        plane.reshape(-1)[list(stroke.pixels)] = POSITIVE if stroke.label else NEGATIVE
        ordered = in_given_order(annotator.prompts.clicks, scribble_strokes(painted))
        assert ordered[-1] == stroke
        annotator.apply(annotator.compute(ObjectPrompts(tuple(box), ordered)))
        shown.append(labels == annotator.label)
    for step, (a, b, c) in enumerate(zip(web, cli, shown, strict=True)):
        assert a.any(), step
        assert np.array_equal(a, b), f"web app and CLI differ after stroke {step + 1}"
        assert np.array_equal(a, c), f"web app and napari differ after stroke {step + 1}"


def vessel_image() -> tuple[LoadedImage, np.ndarray]:
    """The vessel picture (with a stray line) as a colour image, and the tree's mask."""
    grey, tree = vessel_picture(stray=True)
    pixels = np.repeat(grey[..., None], 3, 2)
    return LoadedImage("vessels", pixels, npz_meta((160, 160), None, 3)), tree


THIN_STROKES = (
    {"stroke": [[60, 30], [60, 70]], "label": 1, "radius": 1, "thin": True},
    {"stroke": [[72, 84], [74, 98]], "label": 0, "radius": 3},  # cuts the branch off
)


@pytest.mark.realweights
def test_thin_strokes_give_the_same_traced_mask_everywhere(backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A thin-structure stroke in the web app, the same pixels painted 3 in napari, and
    ``umedsam predict --thin-structures`` on the same box and strokes give one mask: the
    vessel the stroke lies on, inside the box; a negative stroke across the branch cuts it."""
    loaded, tree = vessel_image()
    box = [0, 0, 160, 160]
    entries = list(THIN_STROKES)
    web = web_masks(backend, loaded, box, entries, tmp_path / "web")
    strokes = list(normalise_clicks([entries], 1, (160, 160))[0])
    assert strokes[0].thin and not strokes[1].thin
    cli = cli_masks(backend, loaded, box, entries, thin=True)
    holder = ModelHolder(lambda _n: lambda: backend, "umedsam_interactive", route_corrections=False)
    labels = np.zeros((160, 160), np.int32)
    annotator = Annotator(loaded, holder, labels, tmp_path / "napari")
    painted = np.zeros((160, 160), np.uint8)
    shown = []
    for stroke in strokes:
        painted.reshape(-1)[list(stroke.pixels)] = THIN if stroke.thin else NEGATIVE
        ordered = in_given_order(annotator.prompts.clicks, scribble_strokes(painted))
        assert ordered[-1] == stroke
        result = annotator.compute(ObjectPrompts(tuple(box), ordered))
        annotator.apply(result)
        shown.append(labels == annotator.label)
        assert annotator.scores[annotator.label]["iou"] is None  # no estimate describes it
    for step, (a, b, c) in enumerate(zip(web, cli, shown, strict=True)):
        assert np.array_equal(a, b), f"web app and CLI differ after stroke {step + 1}"
        assert np.array_equal(a, c), f"web app and napari differ after stroke {step + 1}"
    traced, cut = web
    dice = 2 * (traced & tree).sum() / (traced.sum() + tree.sum())
    assert dice > 0.7 and not traced[:, 130:].any()  # the tree, not the stray line
    assert traced[110:125, 100:115].any() and not cut[95:, 78:].any()
    assert cut[120, 58:63].any()


def test_a_thin_stroke_must_be_positive() -> None:
    from umedsam.errors import InputError

    thin = {"stroke": [[5, 5], [9, 9]], "label": 1, "radius": 1, "thin": True}
    assert normalise_clicks([[thin]], 1, (32, 32))[0][0].to_json()["thin"] is True
    on_slice = normalise_clicks([[{**thin, "z": 1}]], 1, (4, 32, 32))[0][0]
    assert on_slice.thin and on_slice.z == 1  # volumes take them too
    for entry, shape in (
        ({**thin, "label": 0}, (32, 32)),
        ({**thin, "label": 0, "z": 1}, (4, 32, 32)),
        ({**thin, "thin": "yes"}, (32, 32)),
    ):
        with pytest.raises(InputError, match="thin"):
            normalise_clicks([[entry]], 1, shape)
