"""The umedsam dock widget: box, click and scribble prompts as napari layers, one label map.

Choose an image layer (and a model and engine; the defaults are the CLI's): choosing it, or
Start, encodes the image in a worker thread (the progress bar) while prompts already work. Prompt layers:

* ``umedsam boxes`` (Shapes, rectangles): a new rectangle starts a new object; moving or
  resizing it segments the current object again. On a volume a rectangle drawn on a slice
  spans that slice +- "3D half-depth" slices and the mask propagates through them, or, with
  "to the ends", every slice, each way until the mask vanishes.
* ``umedsam clicks`` (Points): positive (green) or negative (red) clicks correct the current
  object; T toggles the kind of the next click.
* ``umedsam scribbles`` (Labels): paint 1 on the object, 2 on the background, 3 along a thin
  structure (a vessel: the object becomes the structure the stroke lies on, on 2D images; the
  "Trace thin structures" box or V switches the brush between 1 and 3).

Every change segments the current object at once, off the event loop, and writes it into the
target Labels layer (``umedsam objects`` unless another is chosen) as the next free label; other
labels stay locked unless unlocked. Keys: N new object, T click kind, V thin-structure brush,
U undo, Shift-U redo, K next to check.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from umedsam.errors import InputError
from umedsam.napari.annotator import (
    Annotator,
    Computed,
    ObjectPrompts,
    describe,
    shown_estimate,
)
from umedsam.napari.layers import CLICK_COLORS, box_vertices, painted, set_points, set_rectangle
from umedsam.napari.prompts import (
    POSITIVE,
    THIN,
    in_given_order,
    point_clicks,
    rectangle_box,
    scribble_strokes,
    whole_image_box,
)
from umedsam.napari.reader import METADATA_KEY, image_from_layer
from umedsam.ui.corrections import Stroke

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

BOXES, CLICKS, SCRIBBLES, OBJECTS = (
    "umedsam boxes",
    "umedsam clicks",
    "umedsam scribbles",
    "umedsam objects",
)


def _holder(model: str, engine: str):
    """The engines for ``model`` on ``engine``, opened as the web app opens them."""
    from umedsam.inference.engines import EngineSpec, open_engine
    from umedsam.ui.model_holder import ModelHolder

    def loader_for(name: str):
        return lambda: open_engine(EngineSpec(model=name, engine=engine, interactive=True)).backend

    return ModelHolder(loader_for, model)


class UmedsamWidget(QWidget):
    """Dock widget of the umedsam plugin (see the module docstring for the workflow)."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.annotator: Annotator | None = None
        self._target: Any = None
        self._busy = False
        self._queued: ObjectPrompts | None = None
        self._positive = True
        self._rectangles = 0
        self._shown_box: tuple[np.ndarray, tuple[int, ...]] | None = None
        self._checked: set[tuple[int, int | None]] = set()  # "next to check" visited
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._show_progress)
        self._bind_keys()
        viewer.layers.events.inserted.connect(lambda _e=None: self._fill_layer_lists())
        viewer.layers.events.removed.connect(lambda _e=None: self._fill_layer_lists())

    # ----- layout --------------------------------------------------------------------------
    def _build(self) -> None:
        from umedsam.inference.engines import ENGINES
        from umedsam.models.cards import DEFAULT_MODEL, available_models

        self.image_box, self.target_box = QComboBox(), QComboBox()
        self.model_box, self.engine_box = QComboBox(), QComboBox()
        self.model_box.addItems(available_models())
        self.model_box.setCurrentText(DEFAULT_MODEL)
        self.engine_box.addItems(list(ENGINES))
        self.engine_box.setCurrentText("auto")
        self.half_depth = QSpinBox()
        self.half_depth.setRange(0, 10000)
        self.half_depth.setSpecialValueText("auto (10 %)")
        self.half_depth.setToolTip("3D: slices on each side of a new box's slice; 0 = auto")
        self.to_ends = QCheckBox("3D boxes to the ends (until the mask vanishes)")
        self.to_ends.setToolTip(
            "a new 3D box spans every slice; each way it stops where its mask vanishes"
        )
        self.thin_box = QCheckBox("Trace thin structures (vessels): scribbles paint 3")
        self.thin_box.setToolTip(
            "a stroke along a vessel: the object becomes the thin structure it lies on"
        )
        self.thin_box.toggled.connect(self._set_thin_brush)
        self.lock_box = QCheckBox("Lock other labels")
        self.lock_box.setChecked(True)
        self.lock_box.toggled.connect(self._set_locked)
        form = QFormLayout()
        for text, field in (
            ("Image", self.image_box),
            ("Model", self.model_box),
            ("Engine", self.engine_box),
            ("Label layer", self.target_box),
            ("3D half-depth", self.half_depth),
        ):
            form.addRow(text, field)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.image_box.activated.connect(lambda _i: self.start())  # a user's choice starts it
        self.progress = QProgressBar()
        self.progress.setFormat("encoding %v / %m")
        self.status = QLabel("Choose an image and press Start.")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.to_ends)
        layout.addWidget(self.thin_box)
        layout.addWidget(self.lock_box)
        layout.addWidget(self.start_button)
        layout.addWidget(self.progress)
        layout.addLayout(self._action_row())
        layout.addLayout(self._label_row())
        layout.addWidget(self.status)
        self.objects = QTableWidget(0, 3)
        self.objects.setHorizontalHeaderLabels(["label", "size", "estimate"])
        self.objects.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.objects.cellClicked.connect(lambda row, _col: self._go_to_row(row))
        layout.addWidget(self.objects)
        layout.addStretch(1)
        self._fill_layer_lists()

    def _action_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, text, slot in (
            ("new", "New object [N]", self.new_object),
            ("undo", "Undo [U]", self.undo),
            ("redo", "Redo", self.redo),
            ("check", "Next to check [K]", self.next_to_check),
        ):
            button = QPushButton(text)
            button.clicked.connect(lambda _c=False, s=slot: s())
            button.setEnabled(False)
            self.buttons[key] = button
            row.addWidget(button)
        return row

    def _label_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, 2**31 - 1)
        correct = QPushButton("Correct this label")
        correct.clicked.connect(lambda: self.start_from_label(self.label_spin.value()))
        save = QPushButton("Save...")
        save.clicked.connect(self._save_dialog)
        for button in (correct, save):
            button.setEnabled(False)
        self.buttons["correct"], self.buttons["save"] = correct, save
        row.addWidget(self.label_spin)
        row.addWidget(correct)
        row.addWidget(save)
        return row

    def _fill_layer_lists(self) -> None:
        from napari.layers import Image, Labels

        own = {BOXES, CLICKS, SCRIBBLES}
        images = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        labels = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and layer.name not in own
        ]
        for box, names, keep in (
            (self.image_box, images, None),
            (self.target_box, labels, OBJECTS),
        ):
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            box.addItems(names + ([keep] if keep and keep not in names else []))
            if current in names or current == keep:
                box.setCurrentText(current)
            elif keep:
                box.setCurrentText(keep)
            box.blockSignals(False)

    def _bind_keys(self) -> None:
        for key, action in (
            ("n", self.new_object),
            ("t", self.toggle_click_kind),
            ("v", self.thin_box.toggle),
            ("u", self.undo),
            ("Shift-U", self.redo),
            ("k", self.next_to_check),
        ):
            self.viewer.bind_key(key, lambda _v, a=action: a(), overwrite=True)

    # ----- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """Open the chosen image for annotation: prompt layers, target labels, encoding ahead."""
        from napari.layers import Labels

        layer = self.viewer.layers[self.image_box.currentText()]
        try:
            image = layer.metadata.get(METADATA_KEY) or image_from_layer(
                layer.data, layer.name, tuple(layer.scale), bool(layer.rgb)
            )
        except InputError as err:
            self._say(str(err))
            return
        shape = tuple(image.meta.shape)
        target = self._target_layer(shape, layer, Labels)
        if self.annotator is not None:
            self.annotator.close()
        holder = _holder(self.model_box.currentText(), self.engine_box.currentText())
        try:
            self.annotator = Annotator(image, holder, target.data, locked=self.lock_box.isChecked())
        except InputError as err:
            self._say(str(err))
            return
        self._target = target
        self._checked = set()
        self._make_prompt_layers(layer, shape)
        threading.Thread(target=self.annotator.precompute, daemon=True).start()
        self.progress.setRange(0, image.pixels.shape[0] if image.is_3d else 1)
        self.progress.setValue(0)
        self._timer.start()
        for button in self.buttons.values():
            button.setEnabled(True)
        self._say(f"Draw a box ({BOXES}); prompts work while the image is encoded.")
        self.viewer.layers.selection.active = self.viewer.layers[BOXES]

    def _target_layer(self, shape: tuple[int, ...], image_layer: Any, labels_cls: Any) -> Any:
        """The chosen Labels layer (made C-contiguous), or a new ``umedsam objects`` layer."""
        name = self.target_box.currentText() or OBJECTS
        if name in self.viewer.layers and tuple(self.viewer.layers[name].data.shape) == shape:
            target = self.viewer.layers[name]
            data = np.asarray(target.data)
            if (
                not data.flags.c_contiguous
                or not data.flags.writeable
                or data.dtype.kind not in "iu"
            ):
                target.data = np.ascontiguousarray(data.astype(np.int32, copy=False))
            return target
        if name in self.viewer.layers:
            self._say(f"{name!r} has another shape than the image: a new {OBJECTS!r} layer")
            name = OBJECTS if name != OBJECTS else f"{OBJECTS} {image_layer.name}"
        return self.viewer.add_labels(
            np.zeros(shape, np.int32),
            name=name,
            scale=image_layer.scale[-len(shape) :],
            translate=image_layer.translate[-len(shape) :],
        )

    def _make_prompt_layers(self, image_layer: Any, shape: tuple[int, ...]) -> None:
        """Fresh prompt layers on the image's grid; their changes segment the current object."""
        for name in (BOXES, CLICKS, SCRIBBLES):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        grid = {
            "scale": image_layer.scale[-len(shape) :],
            "translate": image_layer.translate[-len(shape) :],
        }
        scribbles = self.viewer.add_labels(np.zeros(shape, np.uint8), name=SCRIBBLES, **grid)
        scribbles.brush_size = 3
        scribbles.selected_label = THIN if self.thin_box.isChecked() else POSITIVE
        scribbles.events.paint.connect(lambda _e=None: self._prompts_changed())
        points = self.viewer.add_points(
            np.zeros((0, len(shape))), name=CLICKS, size=max(3, shape[-1] // 80), **grid
        )
        points.features = {"positive": np.zeros(0, bool)}
        points.feature_defaults = {"positive": True}
        points.events.data.connect(lambda _e=None: self._prompts_changed())
        boxes = self.viewer.add_shapes(
            ndim=len(shape), name=BOXES, edge_color="yellow", face_color="transparent", **grid
        )
        boxes.mode = "add_rectangle"
        boxes.events.data.connect(lambda _e=None: self._boxes_changed())
        self._rectangles = 0

    # ----- prompts -> segmentation ---------------------------------------------------------
    def _layer(self, name: str) -> Any:
        return self.viewer.layers[name]

    def _current_box(self) -> tuple[int, ...] | None:
        """The box of the last rectangle; the same box as long as the rectangle is unchanged
        (a volume's box keeps its slice range however the rectangle was shown again)."""
        assert self.annotator is not None
        boxes = self._layer(BOXES)
        if not len(boxes.data):
            return None
        vertices = np.asarray(boxes.data[-1])
        known = self._shown_box
        if (
            known is not None
            and known[0].shape == vertices.shape
            and np.allclose(known[0], vertices)
        ):
            return known[1]
        shape = tuple(self.annotator.image.meta.shape)
        half = shape[0] if self.to_ends.isChecked() else (self.half_depth.value() or None)
        box = rectangle_box(vertices, shape, half)
        self._shown_box = None if box is None else (vertices.copy(), box)
        return box

    def _boxes_changed(self) -> None:
        """A new rectangle starts a new object; an edited one re-segments the current object."""
        if self.annotator is None:
            return
        boxes = self._layer(BOXES)
        count = len(boxes.data)
        if count > self._rectangles and self.annotator.prompts.box is not None:
            self.annotator.new_object()
            self._reset_prompt_layers(keep_last_box=True)
        self._rectangles = len(boxes.data)
        self._prompts_changed()

    def _collect(self) -> ObjectPrompts:
        """The current object's prompts from the layers, in the order they were given."""
        assert self.annotator is not None
        shape = tuple(self.annotator.image.meta.shape)
        points = self._layer(CLICKS)
        positive = np.asarray(points.features.get("positive", np.ones(len(points.data), bool)))
        clicks = point_clicks(points.data, positive.astype(bool), shape)
        strokes = scribble_strokes(self._layer(SCRIBBLES).data)
        ordered = in_given_order(self.annotator.prompts.clicks, clicks + strokes)
        box = self._current_box()
        if (
            box is None
            and self.annotator.prompts.box is not None
            and not len(self._layer(BOXES).data)
        ):
            box = self.annotator.prompts.box  # a label taken for correction has no rectangle
        if box is None and any(getattr(p, "thin", False) for p in ordered):
            box = whole_image_box(shape)  # a thin stroke alone: traced in the whole image
        return ObjectPrompts(box, tuple(ordered))

    def _prompts_changed(self) -> None:
        """Segment the current object again if its prompts changed."""
        if self.annotator is None:
            return
        prompts = self._collect()
        if prompts.box is None:
            if prompts.clicks:
                self._say(f"Draw a box first ({BOXES}, rectangle), or correct an existing label.")
            return
        if prompts == self.annotator.prompts:
            return
        self.request(prompts)

    def request(self, prompts: ObjectPrompts) -> None:
        """Segment ``prompts`` off the event loop; while a request runs only the newest waits."""
        if self._busy:
            self._queued = prompts
            return
        from napari.qt.threading import create_worker

        assert self.annotator is not None
        self._busy = True
        worker = create_worker(self.annotator.compute, prompts)
        worker.returned.connect(self._computed)
        worker.errored.connect(self._failed)
        worker.start()

    def _computed(self, result: Computed) -> None:
        assert self.annotator is not None
        self.annotator.apply(result)
        self._target.refresh()
        self._fill_objects()
        label = self.annotator.label
        self.label_spin.setValue(label)
        self._say(
            f"Object {label}: {describe(result.row, self.annotator.is_3d)} ({result.seconds * 1000:.0f} ms)."
        )
        self._next_request()

    def _failed(self, err: Exception) -> None:
        self._say(str(err) if isinstance(err, InputError) else f"segmentation failed: {err!r}")
        if not isinstance(err, InputError):
            logger.warning("segmentation failed: %r", err)
        self._next_request()

    def _next_request(self) -> None:
        self._busy = False
        queued, self._queued = self._queued, None
        if queued is not None and self.annotator is not None and queued != self.annotator.prompts:
            self.request(queued)

    @property
    def idle(self) -> bool:
        """Whether no segmentation is running or waiting."""
        return not self._busy and self._queued is None

    # ----- actions -------------------------------------------------------------------------
    def toggle_click_kind(self) -> None:
        """The next click is negative if it was positive, and the other way round."""
        self._positive = not self._positive
        points = self._layer(CLICKS) if CLICKS in self.viewer.layers else None
        if points is not None:
            points.feature_defaults = {"positive": self._positive}
            points.current_face_color = CLICK_COLORS[self._positive]
        self._say(f"Next click: {'positive' if self._positive else 'negative'}.")

    def new_object(self) -> None:
        """Finish the current object; the next box makes the next free label."""
        if self.annotator is None:
            return
        label = self.annotator.new_object()
        self._reset_prompt_layers()
        self.label_spin.setValue(label)
        self._say(f"New object: label {label}. Draw its box.")

    def undo(self) -> None:
        """Take back the last change of the label map and its prompt."""
        if self.annotator is not None and self.idle and self.annotator.undo() is not None:
            self._after_history("Undone")

    def redo(self) -> None:
        """Apply again the change taken back last."""
        if self.annotator is not None and self.idle and self.annotator.redo() is not None:
            self._after_history("Redone")

    def _after_history(self, what: str) -> None:
        assert self.annotator is not None
        self._target.refresh()
        self._fill_objects()
        self._show_prompts(self.annotator.prompts)
        self._say(f"{what}: object {self.annotator.label}.")

    def start_from_label(self, label: int) -> None:
        """Correct the existing ``label``: its mask is what the next click or stroke refines."""
        if self.annotator is None:
            return
        try:
            prompts = self.annotator.start_from_label(label)
        except InputError as err:
            self._say(str(err))
            return
        self._show_prompts(ObjectPrompts(None, ()), box_hint=prompts.box)
        self._say(f"Correcting label {label}: click or paint on it.")

    def next_to_check(self) -> None:
        """Go to the least confident object (slice) not visited yet."""
        if self.annotator is None:
            return
        for item in self.annotator.review():
            if (item.label, item.z) in self._checked:
                continue
            self._checked.add((item.label, item.z))
            if item.z is not None:
                self.viewer.dims.set_current_step(0, item.z)
            self.label_spin.setValue(item.label)
            where = "" if item.z is None else f", slice {item.z + 1}"
            self._say(f"Check object {item.label}{where}: estimate {shown_estimate(item.score)}.")
            return
        self._say("Every object (and slice) has been checked.")

    def save(self, path: str | Path) -> Path:
        """Save the label map (NIfTI, npz, PNG for 2D, DICOM SEG as ``.dcm``) with the image's
        geometry."""
        assert self.annotator is not None
        written = self.annotator.save(path)
        self._say(f"Saved {written.name}.")
        return written

    def _save_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(
            self, "Save labels", "", "NIfTI (*.nii.gz);;npz (*.npz);;PNG (*.png);;DICOM SEG (*.dcm)"
        )
        if path:
            try:
                self.save(path)
            except (InputError, ValueError, OSError) as err:
                self._say(f"Not saved: {err}")

    # ----- the objects table --------------------------------------------------------------
    def _fill_objects(self) -> None:
        """One row per object the plugin made: label, size, confidence (2D) or the lowest
        per-slice IoU estimate (3D), least confident first."""
        assert self.annotator is not None
        rows = self.annotator.object_summaries()
        self.objects.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate((str(row.label), row.size, shown_estimate(row.score))):
                self.objects.setItem(r, c, QTableWidgetItem(text))

    def _go_to_row(self, row: int) -> None:
        """Select the object of a table row and show its least confident slice."""
        item = self.objects.item(row, 0)
        if item is None or self.annotator is None:
            return
        label = int(item.text())
        self.label_spin.setValue(label)
        worst = [i for i in self.annotator.review() if i.label == label]
        if worst and worst[0].z is not None:
            self.viewer.dims.set_current_step(0, worst[0].z)

    # ----- helpers -------------------------------------------------------------------------
    def _set_thin_brush(self, thin: bool) -> None:
        """Paint thin-structure strokes (3) or ordinary positive ones (1) with the scribble layer."""
        if SCRIBBLES in self.viewer.layers:
            self._layer(SCRIBBLES).selected_label = THIN if thin else POSITIVE
            self.viewer.layers.selection.active = self._layer(SCRIBBLES)

    def _set_locked(self, locked: bool) -> None:
        if self.annotator is not None:
            self.annotator.locked = locked

    def _reset_prompt_layers(self, keep_last_box: bool = False) -> None:
        """Empty the prompt layers (a new object), keeping the rectangle just drawn if asked."""
        boxes, points, scribbles = (self._layer(n) for n in (BOXES, CLICKS, SCRIBBLES))
        with boxes.events.data.blocker(), points.events.data.blocker():
            kept = np.asarray(boxes.data[-1]) if keep_last_box and len(boxes.data) else None
            set_rectangle(boxes, kept)
            set_points(points, np.zeros((0, points.data.shape[1])), np.zeros(0, bool))
            scribbles.data = np.zeros_like(scribbles.data)
        self._rectangles = len(boxes.data)

    def _show_prompts(
        self, prompts: ObjectPrompts, box_hint: tuple[int, ...] | None = None
    ) -> None:
        """Show ``prompts`` in the layers (after undo/redo) without segmenting again.

        Clicks come back as points and strokes as painted pixels; ``box_hint`` is drawn as a
        rectangle without being a new object (an existing label taken for correction).
        """
        boxes, points, scribbles = (self._layer(n) for n in (BOXES, CLICKS, SCRIBBLES))
        box = prompts.box if prompts.box is not None else box_hint
        ndim = points.data.shape[1]
        with boxes.events.data.blocker(), points.events.data.blocker():
            vertices = None if box is None else box_vertices(box, ndim)
            set_rectangle(boxes, vertices)
            self._shown_box = None if box is None or vertices is None else (vertices, box)
            clicks = [c for c in prompts.clicks if not isinstance(c, Stroke)]
            coords = [list(c[:-1])[::-1] for c in clicks]
            positive = np.array([c[-1] == 1 for c in clicks], bool)
            set_points(points, np.asarray(coords, float).reshape(-1, ndim), positive)
            scribbles.data = painted(
                [c for c in prompts.clicks if isinstance(c, Stroke)], scribbles.data.shape
            )
        self._rectangles = len(boxes.data)

    def _show_progress(self) -> None:
        if self.annotator is None:
            return
        done = self.annotator.progress()
        self.progress.setValue(done["embedded"])
        if done["error"]:
            self._say(f"encoding failed: {done['error']}")
            self._timer.stop()
        elif done["ready"]:
            self._timer.stop()

    def _say(self, text: str) -> None:
        self.status.setText(text)
