"""The napari plugin's annotation state, without Qt: one image, one label map, one current object.

The model side is the web app's :class:`~umedsam.ui.session.Session` (the same embeddings ahead of
prompts, the same 2D decoding, 3D propagation and corrections, the same per-object confidence);
this module adds what a viewer with a user's own label layer needs:

* **One label map, nothing lost.** The current object is label :attr:`Annotator.label` (the next
  free label when it starts) and is written only where the map holds background or its own
  label while :attr:`Annotator.locked` (the default): other labels are never touched. Unlocked,
  it takes every pixel its mask covers.
* **Start from a label.** An existing label can be the current object: its box is the label's
  box and its mask is the state the next click or stroke refines.
* **Undo and redo.** Every change of the label map is kept as the voxels it changed (their old
  and new values) with the prompts before and after, so undo restores exactly the map and the
  prompts the user had, and the object's state one step back is what the next prompt refines.

Work is split so that a viewer can keep model calls off its event loop: :meth:`Annotator.compute`
runs the model (any thread) and :meth:`Annotator.apply` writes its result into the map (the
viewer's thread).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from umedsam.errors import InputError
from umedsam.ui.corrections import Prompt, Stroke
from umedsam.ui.images import LoadedImage
from umedsam.ui.model_holder import ModelHolder
from umedsam.ui.session import Session


@dataclass(frozen=True)
class ObjectPrompts:
    """The prompts of the current object.

    Attributes:
        box: the app's box, x_min, y_min, x_max, y_max (2D) or x_min, y_min, z_min, x_max,
            y_max, z_max (3D); x/y max exclusive, z inclusive. None before a box is drawn.
        clicks: clicks ``(x, y, (z,) label)`` and strokes in the order they were given.
    """

    box: tuple[int, ...] | None = None
    clicks: tuple[Prompt, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether there is nothing to segment."""
        return self.box is None and not self.clicks


@dataclass(frozen=True)
class AnnotatorState:
    """What an undo returns to: the current object's label and prompts."""

    label: int
    prompts: ObjectPrompts


@dataclass
class _Edit:
    """One change of the label map: the voxels it changed, their old and new values."""

    before: AnnotatorState
    after: AnnotatorState
    index: NDArray[np.int64]
    old: NDArray
    new: NDArray
    rows: tuple[dict | None, dict | None] = (None, None)  # the object's row before and after


@dataclass
class Computed:
    """A model result for :meth:`Annotator.apply`."""

    prompts: ObjectPrompts
    mask: NDArray[np.bool_]
    row: dict
    seconds: float


@dataclass
class ObjectSummary:
    """A row of the plugin's object table (``score`` NaN: no estimate, see :meth:`Annotator.review`)."""

    label: int
    size: str
    score: float


@dataclass
class ReviewItem:
    """An entry of "next to check": an object (and a slice of a volume) and its estimate (NaN
    where none describes the mask: a traced thin structure)."""

    label: int
    z: int | None
    score: float


def shown_estimate(score: float) -> str:
    """An estimate as the plugin shows it ("–" when there is none, NaN)."""
    return "–" if math.isnan(score) else f"{score:.2f}"


def least_confident_first(score: float) -> float:
    """Sort key of estimates: the lowest first, an unknown (NaN) one before all."""
    return -math.inf if math.isnan(score) else score


def next_free_label(labels: NDArray) -> int:
    """One more than the largest label in ``labels`` (1 for an empty map)."""
    return int(labels.max(initial=0)) + 1


@dataclass
class Annotator:
    """Interactive segmentation of one image into a label map the caller owns.

    Args:
        image: the image as the model reads it (uint8, umedsam's intensity window).
        holder: the engines (the CLI's default model and engine, or the user's choice).
        labels: the target label map, the image's spatial shape, written in place.
        folder: scratch folder of the session (None: a temporary one).
    """

    image: LoadedImage
    holder: ModelHolder
    labels: NDArray
    folder: Path | None = None
    locked: bool = True
    session: Session = field(init=False)
    label: int = field(init=False)
    prompts: ObjectPrompts = field(init=False, default_factory=ObjectPrompts)
    scores: dict[int, dict] = field(init=False, default_factory=dict)
    _undo: list[_Edit] = field(init=False, default_factory=list)
    _redo: list[_Edit] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        shape = tuple(self.image.meta.shape)
        if tuple(self.labels.shape) != shape:
            raise InputError(
                None,
                f"the label layer has shape {tuple(self.labels.shape)}; the image is {shape}",
            )
        if self.labels.dtype.kind not in "iu":
            raise InputError(None, f"a label layer holds integers; got {self.labels.dtype}")
        if not self.labels.flags.c_contiguous or not self.labels.flags.writeable:
            raise ValueError("the label map must be a writeable C-contiguous array")
        folder = self.folder or Path(tempfile.mkdtemp(prefix="umedsam-napari-"))
        self.session = Session("napari", self.image, folder)
        self.label = next_free_label(self.labels)

    # ----- model -------------------------------------------------------------------------
    @property
    def is_3d(self) -> bool:
        """Whether the image is a volume."""
        return self.image.is_3d

    def precompute(self) -> None:
        """Encode the image (every slice of a volume) before any prompt; for a worker thread.

        Prompts work meanwhile; :meth:`progress` tells how far it is.
        """
        holder = self.holder
        self.session.precompute(
            holder.backend, holder.lock, holder.model, holder.corrector_or_none()
        )

    def close(self) -> None:
        """Stop encoding ahead (the image is closed or replaced)."""
        self.session.closed = True

    def progress(self) -> dict:
        """``{"embedded", "total", "ready", "error", "seconds", "model"}`` of the encoding."""
        return self.session.status()

    def compute(self, prompts: ObjectPrompts) -> Computed:
        """The current object's mask for ``prompts`` (the model runs here; any thread).

        Raises:
            InputError: no box yet (clicks and strokes refine a box or a label), bad prompts, or
                clicks for a model that does not take them.
        """
        if prompts.box is None:
            raise InputError(
                None,
                "draw a box first (rectangle in the 'umedsam boxes' layer), or start from a label",
            )
        holder = self.holder
        clicks = [[c if isinstance(c, Stroke) else list(c) for c in prompts.clicks]]
        with holder.lock, self.session.lock:
            summary = self.session.segment(
                holder.backend(),
                [list(prompts.box)],
                clicks,
                holder.prompt_kinds,
                corrector=holder.corrector_or_none(),
                bounded=holder.bounded,
            )
            segs = self.session.segs
        assert segs is not None  # segment() always leaves a map
        return Computed(prompts, segs == 1, summary["objects"][0], summary["seconds"])

    # ----- the label map -----------------------------------------------------------------
    def apply(self, result: Computed) -> NDArray[np.int64]:
        """Write a computed mask as the current object (the viewer's thread); an undo step.

        Returns:
            The flat indices of the voxels that changed (for a viewer's partial refresh).
        """
        before = self.state
        label = self.label
        current = self.labels == label
        target = result.mask
        if self.locked:
            target = target & ((self.labels == 0) | current)
        changed = np.flatnonzero(current != target)
        old = self.labels.ravel()[changed].copy()
        new = np.where(target.ravel()[changed], label, 0).astype(self.labels.dtype)
        self.labels.ravel()[changed] = new
        self.prompts = result.prompts
        rows = (self.scores.get(label), result.row)
        self.scores[label] = result.row
        self._push(_Edit(before, self.state, changed, old, new, rows))
        return changed

    @property
    def state(self) -> AnnotatorState:
        """The current object's label and prompts."""
        return AnnotatorState(self.label, self.prompts)

    def _push(self, edit: _Edit) -> None:
        self._undo.append(edit)
        self._redo.clear()

    def new_object(self) -> int:
        """Finish the current object; the next prompts make a new one (the next free label).

        Returns:
            The new object's label.
        """
        before = self.state
        self.label = next_free_label(self.labels)
        self.prompts = ObjectPrompts()
        empty = np.zeros(0, np.int64)
        self._push(_Edit(before, self.state, empty, self.labels.ravel()[empty], empty))
        return self.label

    def start_from_label(self, label: int) -> ObjectPrompts:
        """Make the existing ``label`` the current object: its box, and its mask as the state
        the next click or stroke refines. It is unlocked for itself (other labels stay locked).

        Raises:
            InputError: no such label in the map.
        """
        from umedsam.ui.mask_import import drawn_box

        mask = self.labels == label
        if label <= 0 or not mask.any():
            raise InputError(None, f"label {label} is not in the label layer")
        before = self.state
        box = drawn_box(mask)
        self.session.adopt_mask(box, (), mask)
        self.label, self.prompts = int(label), ObjectPrompts(box)
        empty = np.zeros(0, np.int64)
        self._push(_Edit(before, self.state, empty, self.labels.ravel()[empty], empty))
        return self.prompts

    def undo(self) -> AnnotatorState | None:
        """Take back the last change (map and prompts); the state now current, or None."""
        if not self._undo:
            return None
        edit = self._undo.pop()
        self.labels.ravel()[edit.index] = edit.old
        self._redo.append(edit)
        self._set_row(edit.before.label if edit.rows[1] is not None else None, edit.rows[0])
        self._restore(edit.before)
        return edit.before

    def redo(self) -> AnnotatorState | None:
        """Apply again the last change taken back; the state now current, or None."""
        if not self._redo:
            return None
        edit = self._redo.pop()
        self.labels.ravel()[edit.index] = edit.new
        self._undo.append(edit)
        self._set_row(edit.after.label if edit.rows[1] is not None else None, edit.rows[1])
        self._restore(edit.after)
        return edit.after

    def _set_row(self, label: int | None, row: dict | None) -> None:
        """Put back the row an object had in a state undo or redo returns to."""
        if label is None:
            return
        if row is None:
            self.scores.pop(label, None)
        else:
            self.scores[label] = row

    def _restore(self, state: AnnotatorState) -> None:
        """Make ``state`` current; its mask (as the map holds it) is what the next prompt refines."""
        self.label, self.prompts = state.label, state.prompts
        if state.prompts.box is not None:
            with self.session.lock:
                self.session.adopt_mask(
                    state.prompts.box, state.prompts.clicks, self.labels == state.label
                )

    @property
    def can_undo(self) -> bool:
        """Whether there is a change to take back."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether there is a change taken back to apply again."""
        return bool(self._redo)

    # ----- review and output -------------------------------------------------------------
    def review(self) -> list[ReviewItem]:
        """Objects (volumes: each slice of each object) least confident first, as the web app's
        "next to check": the confidence where known, else the IoU head's estimate; an object no
        estimate describes (a traced thin structure) has a NaN score and comes first."""
        present = set(np.unique(self.labels).tolist())
        items = []
        for label, row in self.scores.items():
            if label not in present:
                continue
            per_slice = row.get("slice_iou")
            if per_slice:
                items += [ReviewItem(label, z, v) for z, v in enumerate(per_slice) if v is not None]
                continue
            score = row.get("confidence")
            score = row.get("iou") if score is None else score
            items.append(ReviewItem(label, None, math.nan if score is None else score))
        return sorted(items, key=lambda item: least_confident_first(item.score))

    def object_summaries(self) -> list[ObjectSummary]:
        """The objects the plugin made that are still in the map, least confident first: size
        (as its row says, with units) and the estimate "next to check" ranks them by."""
        worst: dict[int, float] = {}
        for item in self.review():
            worst.setdefault(item.label, item.score)
        unit = "mm³" if self.is_3d else "mm²"
        rows = [
            ObjectSummary(label, f"{self.scores[label]['size_mm']:g} {unit}", score)
            for label, score in worst.items()
        ]
        return sorted(rows, key=lambda row: least_confident_first(row.score))

    def reference_dsc(self, reference: NDArray) -> dict[int, float]:
        """DSC of each object the plugin made against the reference label it overlaps most."""
        from umedsam.ui.objects import reference_dsc

        made = sorted(label for label in self.scores if (self.labels == label).any())
        if not made:
            return {}
        relabelled = np.zeros(self.labels.shape, np.int64)
        for i, label in enumerate(made, start=1):
            relabelled[self.labels == label] = i
        return dict(zip(made, reference_dsc(relabelled, reference, len(made)), strict=True))

    def save(self, path: str | Path, fmt: str | None = None) -> Path:
        """Write the label map with the image's geometry (NIfTI, npz, PNG for 2D, DICOM SEG for
        DICOM sources) through umedsam's writers."""
        from umedsam.data.writers import write_mask

        return write_mask(path, self.labels, self.image.meta, fmt=fmt)


def describe(row: dict[str, Any], is_3d: bool) -> str:
    """A one-line summary of an object's row: size and the confidence estimate."""
    score, iou = row.get("confidence"), row.get("iou")
    estimate = "no estimate (traced thin structure)"
    if score is not None:
        estimate = f"confidence {score:.2f}"
    elif iou is not None:
        estimate = f"IoU estimate {iou:.2f}"
    unit = "mm³" if is_3d else "mm²"
    return (
        f"{row['voxels']} {'voxels' if is_3d else 'pixels'}, {row['size_mm']:g} {unit}, {estimate}"
    )
