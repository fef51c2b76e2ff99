"""The plugin in a real (headless) napari viewer with the real default model.

Open the bundled CT lesion volume through the plugin's sample data, draw a box on a slice, add
a click, and check the label layer: its DSC against the case's reference, and that a label that
was there before was not touched; then undo, redo, save. And the same on a 2D ultrasound image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.napari, pytest.mark.realweights]


def add_layers(viewer, layers) -> None:  # type: ignore[no-untyped-def]
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)


def start_widget(viewer, qtbot, by_choice: bool = False):  # type: ignore[no-untyped-def]
    """The widget on the first image layer, started by Start or by choosing the image."""
    from umedsam.napari.widget import UmedsamWidget

    widget = UmedsamWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.engine_box.setCurrentText("torch")
    assert widget.annotator is None  # nothing starts before the user asks
    if by_choice:
        widget.image_box.activated.emit(0)
    else:
        widget.start()
    qtbot.waitUntil(lambda: widget.annotator.progress()["ready"], timeout=300_000)
    return widget


def wait_steps(qtbot, widget, steps: int) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: widget.idle and len(widget.annotator._undo) >= steps, timeout=120_000)


def test_box_and_click_on_a_ct_volume(viewer, qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from umedsam.napari.samples import ct_lesion
    from umedsam.napari.widget import BOXES, CLICKS, OBJECTS

    add_layers(viewer, ct_lesion())
    image_layer, reference_layer = viewer.layers[0], viewer.layers[1]
    reference = np.asarray(reference_layer.data)
    assert tuple(image_layer.scale) == pytest.approx(
        image_layer.metadata["umedsam_image"].meta.spacing
    )
    # a label of the user's before the plugin starts: it must never be touched
    objects = viewer.add_labels(np.zeros(reference.shape, np.int32), name=OBJECTS)
    zs, ys, xs = np.nonzero(reference)
    mine = (slice(int(zs.min()), int(zs.max()) + 1), slice(int(ys.min()), int(ys.min()) + 4),
            slice(int(xs.min()), int(xs.max()) + 1))  # fmt: skip
    objects.data[mine] = 7
    widget = start_widget(viewer, qtbot)
    assert widget.annotator.label == 8

    z = int(np.median(zs))
    on_slice = np.nonzero(reference[z])
    (y0, y1), (x0, x1) = ((int(on_slice[k].min()), int(on_slice[k].max())) for k in (0, 1))
    corners = np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float)
    viewer.layers[BOXES].add_rectangles([corners])
    wait_steps(qtbot, widget, 1)
    assert (objects.data[mine] == 7).all()
    box_dsc = widget.annotator.reference_dsc(reference)[8]
    assert box_dsc > 0.75, box_dsc
    assert "Object 8" in widget.status.text()
    after_box = objects.data.copy()

    far = [z, float(np.mean(on_slice[0])), float(np.mean(on_slice[1]))]
    viewer.layers[CLICKS].add([far])
    wait_steps(qtbot, widget, 2)
    assert widget.annotator.prompts.clicks == ((int(round(far[2])), int(round(far[1])), z, 1),)
    assert (objects.data[mine] == 7).all()
    assert widget.annotator.reference_dsc(reference)[8] > 0.75
    after_click = objects.data.copy()

    widget.undo()
    assert np.array_equal(objects.data, after_box)
    assert len(viewer.layers[CLICKS].data) == 0  # the click is gone from its layer too
    widget.redo()
    assert np.array_equal(objects.data, after_click)

    nib = pytest.importorskip("nibabel")
    saved = widget.save(tmp_path / "labels.nii.gz")
    assert np.array_equal(np.asarray(nib.load(saved).dataobj).transpose(2, 1, 0), after_click)


def test_box_click_and_scribble_on_a_2d_image(viewer, qtbot) -> None:  # type: ignore[no-untyped-def]
    from umedsam.napari.samples import ultrasound
    from umedsam.napari.widget import BOXES, CLICKS, OBJECTS, SCRIBBLES

    add_layers(viewer, ultrasound())
    reference = np.asarray(viewer.layers[1].data)
    widget = start_widget(viewer, qtbot, by_choice=True)
    ys, xs = np.nonzero(reference)
    viewer.layers[BOXES].add_rectangles([[[ys.min(), xs.min()], [ys.max(), xs.max()]]])
    wait_steps(qtbot, widget, 1)
    objects = viewer.layers[OBJECTS]
    assert widget.annotator.reference_dsc(reference)[1] > 0.9
    viewer.layers[CLICKS].add([[float(ys.mean()), float(xs.mean())]])
    wait_steps(qtbot, widget, 2)
    scribbles = viewer.layers[SCRIBBLES]
    for x in range(int(xs.min()) + 20, int(xs.max()) - 20, 2):
        scribbles.paint((float(ys.mean()), float(x)), 1, refresh=False)
    wait_steps(qtbot, widget, 3)
    assert len(widget.annotator.prompts.clicks) > 1  # the click and the stroke's points
    assert widget.annotator.reference_dsc(reference)[1] > 0.9

    # a second box is a second object, under the next free label
    viewer.layers[BOXES].add_rectangles([[[0, 0], [30, 30]]])
    wait_steps(qtbot, widget, 5)
    assert widget.annotator.label == 2 and len(viewer.layers[BOXES].data) == 1
    assert set(np.unique(objects.data)) <= {0, 1, 2}
    table = {widget.objects.item(r, 0).text() for r in range(widget.objects.rowCount())}
    assert table == {"1", "2"}  # the objects table: one row per object, with its estimate
    widget.next_to_check()
    assert "Check object" in widget.status.text()


def test_the_thin_structure_brush_traces_a_vessel(viewer, qtbot) -> None:  # type: ignore[no-untyped-def]
    """ "Trace thin structures" (V) makes the scribble brush paint 3: a stroke along a vessel
    gives the vessel tree it lies on, and the table shows no estimate for it."""
    from umedsam.inference.thin import thin_structure_mask
    from umedsam.napari.prompts import THIN
    from umedsam.napari.widget import BOXES, OBJECTS, SCRIBBLES
    from vessel_picture import vessel_picture

    picture, tree = vessel_picture()
    viewer.add_image(picture, name="vessels")
    widget = start_widget(viewer, qtbot)
    widget.thin_box.setChecked(True)  # no rectangle: the thin stroke alone starts the object
    scribbles = viewer.layers[SCRIBBLES]
    assert scribbles.selected_label == THIN
    for y in range(30, 71):
        scribbles.paint((float(y), 60.0), scribbles.selected_label, refresh=False)
    wait_steps(qtbot, widget, 1)
    assert widget.annotator.prompts.box == (0, 0, 160, 160)
    assert not len(viewer.layers[BOXES].data)
    mask = np.asarray(viewer.layers[OBJECTS].data) == widget.annotator.label
    expected = thin_structure_mask(widget.annotator.image.pixels, scribbles.data == THIN)
    assert expected is not None  # (the session's predictor sees the image as the model reads it)
    assert 2 * (mask & expected).sum() / (mask.sum() + expected.sum()) > 0.99
    assert 2 * (mask & tree).sum() / (mask.sum() + tree.sum()) > 0.7
    assert widget.objects.item(0, 2).text() == "–"
    widget.thin_box.setChecked(False)
    assert scribbles.selected_label == 1


def test_the_thin_structure_brush_traces_a_vessel_through_the_slices(viewer, qtbot) -> None:  # type: ignore[no-untyped-def]
    """On a volume a thin stroke painted on one slice starts an object spanning every slice and
    gives the tube through the slices above and below."""
    from umedsam.napari.widget import BOXES, OBJECTS, SCRIBBLES
    from vessel_picture import vessel_volume

    volume, tube = vessel_volume()
    viewer.add_image(volume, name="tubes")
    widget = start_widget(viewer, qtbot)
    widget.thin_box.setChecked(True)
    scribbles = viewer.layers[SCRIBBLES]
    for x in np.flatnonzero(tube[11, 32]):
        scribbles.paint((11.0, 32.0, float(x)), scribbles.selected_label, refresh=False)
    wait_steps(qtbot, widget, 1)
    assert widget.annotator.prompts.box == (0, 0, 0, 64, 64, 23)
    assert not len(viewer.layers[BOXES].data)
    mask = np.asarray(viewer.layers[OBJECTS].data) == widget.annotator.label
    assert 2 * (mask & tube).sum() / (mask.sum() + tube.sum()) > 0.6
    assert mask[7].any() and mask[16].any()  # slices far from the painted one


def test_the_reader_opens_nifti_with_its_spacing(shared_dir) -> None:  # type: ignore[no-untyped-def]
    from umedsam.napari.reader import get_reader

    files = sorted((shared_dir / "data" / "formats").rglob("*.nii.gz"))
    if not files:
        pytest.skip("no NIfTI file in shared/data/formats")
    reader = get_reader(str(files[0]))
    assert reader is not None and get_reader("notes.txt") is None
    data, kwargs, kind = reader(str(files[0]))[0]
    image = kwargs["metadata"]["umedsam_image"]
    assert kind == "image" and data.dtype == np.uint8
    assert tuple(kwargs["scale"]) == tuple(image.meta.spacing)


def test_the_reader_opens_a_dicom_series_and_nrrd(shared_dir) -> None:  # type: ignore[no-untyped-def]
    """A DICOM series folder (CT: umedsam's soft-tissue window, the series' spacing) and an NRRD
    volume open through the plugin's reader; a DICOM image keeps its files for a DICOM SEG."""
    from umedsam.napari.reader import get_reader

    formats = shared_dir / "data" / "formats"
    series = formats / "dicom" / "ct_series"
    nrrd = formats / "nrrd" / "brain1_image.nrrd"
    if not series.is_dir() or not nrrd.is_file():
        pytest.skip("no DICOM series or NRRD file in shared/data/formats")
    for path in (series, nrrd):
        reader = get_reader(str(path))
        assert reader is not None, path
        data, kwargs, kind = reader(str(path))[0]
        image = kwargs["metadata"]["umedsam_image"]
        assert kind == "image" and data.ndim == 3 and data.dtype == np.uint8
        assert tuple(kwargs["scale"]) == tuple(image.meta.spacing)
    assert image.meta.source_format == "nrrd"
    dicom = get_reader(str(series))(str(series))[0][1]["metadata"]["umedsam_image"]
    assert dicom.meta.source_files and dicom.meta.modality == "CT"
