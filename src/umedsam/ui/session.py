"""One user's open image in the web app: display arrays, box prompts, cached masks, downloads.

Everything here works on arrays and on files inside the session's own folder; the web layer
(:mod:`umedsam.ui.app`) only parses requests and calls these methods. A session never opens a
path that the client named: uploads are written under a name the server chooses, and examples
come from a fixed list built at start-up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

from umedsam.data.npz import label_dtype, validate_boxes
from umedsam.errors import InputError
from umedsam.inference.backends.base import Backend
from umedsam.inference.propagation import SliceEmbeddingCache, extent_rows, propagate
from umedsam.inference.thin_volume import VolumeTracer
from umedsam.inference.uncertainty_config import cue_weights_of
from umedsam.ui.corrections import ObjectKey
from umedsam.ui.heat import object_heat, uncertainty_tools
from umedsam.ui.images import LoadedImage
from umedsam.ui.objects import ObjectResult, object_rows, reference_dsc, rounded
from umedsam.ui.png import heat_png, mask_png, picture_png

if TYPE_CHECKING:
    from umedsam.inference.predictor import Predictor

logger = logging.getLogger(__name__)

MASK_FORMATS = {
    "nifti": "_mask.nii.gz",
    "png": "_mask.png",
    "npz": "_mask.npz",
    "dicom-seg": "_seg.dcm",
}


def _session_cache(max_mb: float) -> SliceEmbeddingCache:
    """A volume's slice embeddings, kept as float16: half the memory of float32, and on all 3D
    dev cases the masks were identical to float32 ones (``benchmarks/slice_cache_dtype.py``)."""
    return SliceEmbeddingCache(max_mb, np.float16)


@dataclass
class Session:
    """The state of one open image.

    Attributes:
        sid: random token naming the session in URLs.
        image: the loaded image.
        folder: the session's private folder (uploads, downloads).
        boxes: the boxes of the last segmentation, in order (label i+1 for box i).
        segs: label map of the last segmentation, shape of the image's spatial shape.
        version: bumped on every segmentation (clients use it to refresh).
    """

    sid: str
    image: LoadedImage
    folder: Path
    boxes: list[ObjectKey] = field(default_factory=list)
    segs: NDArray | None = None
    uncertainty: NDArray[np.uint8] | None = None
    version: int = 0
    last_used: float = field(default_factory=time.monotonic)
    _objects: dict[ObjectKey, ObjectResult] = field(default_factory=dict)
    _predictor: Predictor | None = None
    _tracer: VolumeTracer | None = None  # a volume's thin-structure filter, kept across strokes
    _embeddings: SliceEmbeddingCache = field(default_factory=lambda: _session_cache(1024.0))
    lock: threading.Lock = field(default_factory=threading.Lock)
    embedded: int = 0
    precompute_error: str = ""
    closed: bool = False
    autosave_dir: Path | None = None
    generation: int = 0  # bumped when the model changes; older precompute threads stop
    encode_seconds: float | None = None  # from opening to every embedding ready
    encoded_by: str = ""  # the model whose encoder computed the embeddings

    @property
    def depth(self) -> int:
        """Number of slices (1 for 2D images)."""
        return int(self.image.pixels.shape[0]) if self.image.is_3d else 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """(D, H, W) or (H, W)."""
        return tuple(self.image.meta.shape)

    def info(self) -> dict:
        """JSON-ready description the page needs to draw the image."""
        shape = self.spatial_shape
        h, w = shape[-2:]
        stored = self.image.stored_boxes
        return {
            "session": self.sid,
            "name": self.image.name,
            "is_3d": self.image.is_3d,
            "depth": self.depth,
            "height": int(h),
            "width": int(w),
            "spacing": [round(float(s), 6) for s in self.image.meta.spacing],
            "source_format": self.image.meta.source_format,
            "modality": self.image.meta.modality,
            "stored_boxes": None if stored is None else stored.tolist(),
            "has_ground_truth": self.image.ground_truth is not None,
            "formats": (["nifti", "npz"] if self.image.is_3d else ["nifti", "png", "npz"])
            + (["dicom-seg"] if self.image.meta.source_files else []),
            "uncertainty": uncertainty_tools() is not None,
            "saved": self._saved_summary(),
        }

    def _saved_summary(self) -> dict | None:
        saved = self.saved_work()
        if not saved or not saved["objects"]:
            return None
        return {"objects": len(saved["objects"]), "saved": saved.get("saved", "")}

    # ----- imported masks -----------------------------------------------------------------
    def import_mask(self, path: Path, shown_name: str, max_bytes: int) -> dict:
        """Take the labels of an existing mask (NIfTI, NRRD, PNG, npz ``segs``/``gts``) as objects.

        Each label becomes an object: its box is the label's bounding box (3D: with its slice
        range) and its current mask is the imported one, so it is shown as it is and the first
        click or scribble refines it (the imported mask is the dense prompt).

        Returns:
            ``{"boxes": [...], "labels": [...]}`` in label order.

        Raises:
            InputError: unreadable file, a shape other than the image's, no labels, non-integer
                or negative values, more than 255 labels.
        """
        from umedsam.ui.mask_import import label_objects, read_label_map

        labels = read_label_map(path, shown_name, self.spatial_shape, max_bytes)
        boxes, ids = [], []
        for label, box, mask in label_objects(labels):
            self.adopt_mask(box, (), mask)
            boxes.append(list(box))
            ids.append(label)
        return {"boxes": boxes, "labels": ids}

    def adopt_mask(self, box: tuple[int, ...], clicks: tuple, mask: NDArray) -> None:
        """Hold ``mask`` as the object (``box``, ``clicks``): shown as it is, and the state the
        object's next click or stroke refines (its dense prompt; 3D: its previous mask).

        Used for imported masks and, in the napari plugin, for an existing label taken as the
        start of a correction and for the state an undo returns to.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.spatial_shape:
            raise InputError(
                None, f"a mask of shape {mask.shape}; the image is {self.spatial_shape}"
            )
        self._objects[(tuple(int(v) for v in box), tuple(clicks))] = ObjectResult(mask, 1.0)

    # ----- embeddings ahead of prompts -----------------------------------------------------
    def precompute(
        self,
        backend: Callable[[], Backend],
        engine_lock: threading.Lock,
        model: str = "",
        corrector: Callable[[], Backend] | None = None,
    ) -> None:
        """Encode the image (2D) or every slice (3D) before any prompt; runs in a thread.

        Prompts keep working meanwhile (the engine lock is taken per slice; a prompt that needs
        a slice not encoded yet encodes it itself). Stops when the session closes. ``model``
        names the encoder for the status line; :attr:`encode_seconds` keeps the time to ready
        (engine start included). Ready means the box decoder has run once (:meth:`_warm_up`)
        and ``corrector`` (the engine of corrections, if another model answers them) is open.
        """
        from umedsam.inference.predictor import Predictor
        from umedsam.inference.propagation import encode_volume

        generation = self.generation
        start = time.monotonic()
        self.encoded_by, self.encode_seconds = model, None

        def outdated() -> bool:
            return self.closed or self.generation != generation

        try:
            with engine_lock:
                engine = backend()
            if not self.image.is_3d:
                with engine_lock, self.lock:
                    if self._predictor is None and not outdated():
                        predictor = Predictor(engine)
                        predictor.set_image(self.image.pixels)
                        self._predictor = predictor
            else:

                def done(count: int) -> None:  # the last slice counts once the decoder is warm
                    if not outdated():
                        self.embedded = min(count, self.depth - 1)

                encode_volume(
                    engine,
                    self.image.pixels,
                    self._embeddings,
                    progress=done,
                    should_stop=outdated,
                    lock=engine_lock,
                )
            if outdated():
                return
            # "ready": the box decoder is warm and the corrector (opened once) is open
            with engine_lock:
                self._warm_up(engine, None)
            clicks_engine = None
            if corrector is not None:
                try:
                    clicks_engine = corrector()
                except Exception as err:  # noqa: BLE001 - boxes work; the first click retries
                    logger.warning("opening the corrections engine failed: %r", err)
            complete = not self.image.is_3d or len(self._embeddings) >= self.depth
            if complete and not outdated():
                self.encode_seconds = time.monotonic() - start  # before "ready" shows
                self.embedded = self.depth if self.image.is_3d else 1
            if clicks_engine is not None and not outdated():
                with engine_lock:
                    self._warm_up(None, clicks_engine)
        except Exception as err:  # noqa: BLE001 - a background thread: report it in the page
            self.precompute_error = str(err) or type(err).__name__
            logger.warning("encoding %s ahead failed: %r", self.image.name, err)

    def _warm_up(self, engine: Backend | None, clicks_engine: Backend | None) -> None:
        """Warm the decoders on this image's (middle-slice) embedding; see ``warm_up_decoders``."""
        from umedsam.ui.model_holder import warm_up_decoders

        embedding: NDArray | None = None
        if self._predictor is not None:
            embedding = self._predictor.embedding
        elif self.image.is_3d:
            embedding = self._embeddings.get(self.depth // 2)
        if embedding is not None:
            h, w = (int(v) for v in self.spatial_shape[-2:])
            warm_up_decoders(embedding, (h, w), engine, clicks_engine)

    def forget_model(self, keep_embeddings: bool = False) -> None:
        """Drop what the previous model computed (masks; embeddings unless ``keep_embeddings``).

        ``keep_embeddings`` is for a new model with the same image encoder: the image is not
        encoded again, only its masks are recomputed.
        """
        self.generation += 1
        self._objects = {}
        self.precompute_error = ""
        if not keep_embeddings:
            self._embeddings = _session_cache(self._embeddings.max_mb)
            self._predictor = None
            self.embedded = 0

    def status(self) -> dict:
        """How far the embeddings ahead of prompts are: ``embedded`` of ``total``, ``ready``."""
        total = self.depth if self.image.is_3d else 1
        return {
            "embedded": int(self.embedded),
            "total": int(total),
            "ready": self.embedded >= total,
            "error": self.precompute_error or None,
            "seconds": rounded(self.encode_seconds),
            "model": self.encoded_by or None,
        }

    # ----- pictures -----------------------------------------------------------------------
    def _check_slice(self, z: int) -> int:
        if not 0 <= z < self.depth:
            raise InputError(None, f"slice {z} is outside 0..{self.depth - 1}")
        return z

    def slice_png(self, z: int) -> bytes:
        """PNG of slice ``z`` (grey for volumes, RGB for 2D images)."""
        self._check_slice(z)
        if self.image.is_3d:
            return picture_png(self.image.pixels[z])
        return picture_png(cv2.cvtColor(self.image.pixels, cv2.COLOR_RGB2BGR))

    def mask_png(self, z: int) -> bytes:
        """PNG of the labels on slice ``z``: label colours, transparent background."""
        self._check_slice(z)
        if self.segs is None:
            return mask_png(np.zeros(self.spatial_shape[-2:], dtype=np.uint8))
        return mask_png(self.segs[z] if self.image.is_3d else self.segs)

    def uncertainty_png(self, z: int) -> bytes:
        """RGBA PNG of the uncertainty on slice ``z`` (inferno colours, alpha = uncertainty).

        Raises:
            InputError: no uncertainty map (nothing segmented, or the module is missing).
        """
        self._check_slice(z)
        if self.uncertainty is None:
            raise InputError(
                None, "no uncertainty map: segment first (needs the uncertainty module)"
            )
        heat = self.uncertainty[z] if self.image.is_3d else self.uncertainty
        return heat_png(heat)

    # ----- segmentation -------------------------------------------------------------------
    def normalise_boxes(self, boxes: object) -> NDArray[np.int64]:
        """Validate client boxes: (N, 4) xyxy for 2D, (N, 6) x0,y0,z0,x1,y1,z1 for volumes.

        Raises:
            InputError: wrong shape, non-integers, inverted or out-of-image boxes.
        """
        cols = 6 if self.image.is_3d else 4
        try:
            array = np.asarray(boxes, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InputError(None, f"boxes must be lists of {cols} numbers") from err
        if array.size == 0:
            return np.zeros((0, cols), dtype=np.int64)
        shape = self.image.pixels.shape
        return validate_boxes(
            array.reshape(-1, cols) if array.ndim == 1 else array, shape, self.image.is_3d
        )

    def segment(
        self,
        backend: Backend,
        boxes: object,
        clicks: object = None,
        prompt_kinds: tuple[str, ...] = ("box", "click", "scribble", "mask"),
        overwrite: bool = False,
        names: object = None,
        corrector: Callable[[], Backend] | None = None,
        bounded: tuple[bool, bool] = (False, False),
    ) -> dict:
        """Segment ``boxes`` and their clicks (reusing results already computed); store the map.

        2D images are encoded once per session and all new boxes decoded in one batch; volumes
        propagate each new 3D box from the middle slice of its z-range (the challenge's rule).
        An object with clicks is corrected (see :mod:`umedsam.ui.corrections`).

        Args:
            backend: the engine.
            boxes: client boxes, (N, 4) or (N, 6).
            clicks: per box a list of ``[x, y, (z,) label]`` clicks, or None.
            prompt_kinds: what the app's model takes; clicks need ``click``.
            names: optional object names (kept with the autosaved work).
            overwrite: where masks overlap, a later object takes the pixels (the challenge's
                rule); by default an earlier object keeps its pixels, so a new object never
                overwrites one segmented before it.
            corrector: opens the engine for objects with clicks, when another model than
                ``backend``'s answers them (same image encoder; see ``ModelHolder``).
            bounded: whether the box model and the correcting model keep propagation inside a
                3D box that is the object's extent; only the case's stored boxes are extents
                (a box drawn in the app is one slice's).

        Returns:
            JSON-ready summary: version, per-object IoU estimate, voxel count and size in mm
            (mm^2 or mm^3), DSC against the ground truth for bundled examples, seconds.

        Raises:
            InputError: bad boxes or clicks, or clicks for a model that does not take them.
        """
        from umedsam.ui.corrections import normalise_clicks

        start = time.perf_counter()
        array = self.normalise_boxes(boxes)
        object_clicks = normalise_clicks(clicks, len(array), self.spatial_shape)
        if any(object_clicks) and "click" not in prompt_kinds:
            raise InputError(None, f"this model was not trained to take clicks{_click_hint()}")
        keys = [
            (tuple(int(v) for v in row), c) for row, c in zip(array, object_clicks, strict=True)
        ]
        new = [k for k in dict.fromkeys(keys) if k not in self._objects]
        plain = [k for k in new if not k[1]]
        corrected = [k for k in new if k[1]]
        if plain:
            self._compute(backend, np.asarray([k[0] for k in plain], dtype=np.int64), bounded[0])
        if corrected:
            self._correct(
                backend,
                corrected,
                mask_prompts="mask" in prompt_kinds,
                corrector=backend if corrector is None else corrector(),
                extents=self.image.extents if bounded[1] else frozenset(),
            )
        segs, heat = self._paint(keys, overwrite)
        self.boxes, self.segs, self.uncertainty = keys, segs, heat
        self.version += 1
        labels = [str(n)[:100] for n in names] if isinstance(names, list) else []
        autosave_error = self._autosave(keys, segs, overwrite, labels)
        summary: dict = {
            "version": self.version,
            "autosave_error": autosave_error,
            "uncertainty": heat is not None,
            **self._object_scores(keys, segs),
            "seconds": round(time.perf_counter() - start, 3),
        }
        # keep only objects still in use, so undo + redo stays cheap but memory stays bounded
        in_use = set(keys)
        self._objects = {k: v for k, v in self._objects.items() if k in in_use}
        return summary

    def _object_scores(self, keys: list, segs: NDArray) -> dict:
        """``{"objects": rows}`` for the page, and ``"dsc"`` (each row's too) when the image
        has a reference mask (bundled examples): each object against the label it overlaps."""
        objects = object_rows(keys, self._objects, segs, self.image.meta.spacing)
        gts = self.image.ground_truth
        if gts is None or not keys:
            return {"objects": objects}
        per_object = reference_dsc(segs, np.asarray(gts), len(keys))
        for row, score in zip(objects, per_object, strict=True):
            row["dsc"] = score
        return {"objects": objects, "dsc": round(float(np.mean(per_object)), 4)}

    def _paint(self, keys: list, overwrite: bool) -> tuple[NDArray, NDArray[np.uint8] | None]:
        """The label map of the objects ``keys`` (label i + 1 for key i) and their uncertainty.

        Where masks overlap, an earlier object keeps its pixels unless ``overwrite``.
        """
        segs = np.zeros(self.spatial_shape, dtype=label_dtype(len(keys)))
        heat: NDArray[np.uint8] | None = None
        for label, key in enumerate(keys, start=1):
            found = self._objects[key]
            segs[found.mask if overwrite else found.mask & (segs == 0)] = label
            if found.heat is not None:
                heat = found.heat.copy() if heat is None else np.maximum(heat, found.heat)
        return segs, heat

    def _compute(self, backend: Backend, boxes: NDArray[np.int64], bounded: bool) -> None:
        if self.image.is_3d:
            self._compute_volume(backend, boxes, bounded)
            return
        predictor = self._image_predictor(backend)
        pred = predictor.predict(boxes, return_logits=False)
        orig_hw = self.image.pixels.shape[:2]
        frame = predictor.frame
        heat = object_heat(
            pred.low_res_logits,
            pred.iou,
            frame.low_res_hw(orig_hw),
            orig_hw,
            boxes_model=frame.boxes_to_low_res(boxes, orig_hw),
            weights=cue_weights_of(backend),
        )
        for i, box in enumerate(boxes):
            self._objects[(tuple(int(v) for v in box), ())] = ObjectResult(
                pred.masks[i],
                float(pred.iou[i]),
                None if heat is None else heat[0][i],
                None if heat is None else float(heat[1][i]),
            )

    def _compute_volume(self, backend: Backend, boxes: NDArray[np.int64], bounded: bool) -> None:
        """Propagate new 3D boxes; each object's mask, key-slice IoU and uncertainty volume.

        With ``bounded``, a box that is one of the case's stored boxes keeps its propagation
        inside its x/y range, as ``umedsam predict`` does for such a model.

        Slice embeddings stay in the session's cache, so a later box on the same volume encodes
        only the slices no earlier box reached.
        """
        from umedsam.data.frames import frame_of

        volume = self.image.pixels
        d, h, w = volume.shape
        n = boxes.shape[0]
        masks = np.zeros((n, d, h, w), dtype=bool)
        heats = np.zeros((n, d, h, w), dtype=np.uint8) if uncertainty_tools() else None
        iou = np.zeros(n, dtype=np.float32)
        slice_iou = np.full((n, d), np.nan, np.float32)
        new_hw = frame_of(backend).low_res_hw((h, w))
        extents = self.image.extents if bounded else frozenset()
        for res in propagate(
            backend,
            volume,
            boxes,
            embeddings=self._embeddings,
            clip_boxes=extent_rows(boxes, extents),
            open_ends=self._open_ends(boxes),
        ):
            masks[res.object_ids, res.z] = res.masks
            iou[res.object_ids[res.is_start]] = res.iou[res.is_start]
            slice_iou[res.object_ids, res.z] = res.iou
            if heats is not None:
                heat = object_heat(res.low_res_logits, res.iou, new_hw, (h, w))
                if heat is not None:
                    for k, i in enumerate(res.object_ids):
                        heats[i, res.z] = heat[0][k]
        for i, box in enumerate(boxes):
            self._objects[(tuple(int(v) for v in box), ())] = ObjectResult(
                masks[i], float(iou[i]), None if heats is None else heats[i], None, slice_iou[i]
            )

    def _open_ends(self, boxes: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Which 3D boxes propagate until their mask vanishes: those drawn over every slice
        ("to the ends"); a case's stored boxes keep the challenge's rule."""
        stored = self.image.extents
        whole = (boxes[:, 2] == 0) & (boxes[:, 5] == self.depth - 1)
        return whole & np.array([tuple(int(v) for v in b) not in stored for b in boxes], bool)

    def _autosave(self, keys: list, segs: NDArray, overwrite: bool, names: list[str]) -> str | None:
        """Save the work of this image; the error message if that failed (work stays in memory)."""
        if self.autosave_dir is None:
            return None
        from umedsam.ui.autosave import save_work

        try:
            save_work(self.autosave_dir, self.image.name, keys, segs, overwrite, names)
        except OSError as err:
            logger.warning("autosave of %s failed: %s", self.image.name, err)
            return f"autosave failed ({err.strerror or err}); your work is kept in this page"
        return None

    def saved_work(self) -> dict | None:
        """The work saved earlier for this image (prompts, time), or None."""
        if self.autosave_dir is None:
            return None
        from umedsam.ui.autosave import load_work

        return load_work(self.autosave_dir)

    def _image_predictor(self, backend: Backend) -> Predictor:
        """The 2D predictor on ``backend``, the image encoded once per session.

        After a switch to a model with the same image encoder (``forget_model(True)``), the
        kept embedding is reused on the new backend.
        """
        from umedsam.inference.predictor import Predictor

        if self._predictor is None:
            predictor = Predictor(backend)
            predictor.set_image(self.image.pixels)
            self._predictor = predictor
        elif self._predictor.backend is not backend:
            self._predictor = self._predictor.sharing_embedding(backend)
        return self._predictor

    def _correct(
        self,
        backend: Backend,
        keys: list,
        mask_prompts: bool,
        corrector: Backend,
        extents: frozenset[tuple[int, ...]],
    ) -> None:
        """Segment objects that have clicks (see :mod:`umedsam.ui.corrections`) on ``corrector``.

        ``corrector`` runs the same image encoder as ``backend``: the session's embeddings
        (made by ``backend``) serve both.
        """
        from umedsam.ui.corrections import segment_corrected

        predictor = None
        if not self.image.is_3d:
            predictor = self._image_predictor(backend)
            if corrector is not backend:
                predictor = predictor.sharing_embedding(corrector)
        elif self._tracer is None:
            self._tracer = VolumeTracer(self.image.pixels, self.image.meta.spacing)
        results = segment_corrected(
            corrector,
            self.image.pixels,
            keys,
            self._objects,
            mask_prompts,
            self._embeddings,
            predictor,
            extents,
            self._tracer,
        )
        for key, new in zip(keys, results, strict=True):
            self._objects[key] = ObjectResult(
                new.mask, new.iou, new.heat, new.confidence, new.slice_iou
            )

    # ----- downloads ----------------------------------------------------------------------
    def write_download(self, fmt: str, version: int | None = None) -> Path:
        """Write the current label map as ``fmt`` (nifti, png, npz, dicom-seg) in the session folder.

        ``version``, when given, is the segmentation the client shows; a download of any other
        (a link left from before an undo, say) is refused rather than served.

        Raises:
            InputError: nothing segmented yet, a version that is not the current one, PNG asked
                for a volume, or a DICOM SEG for an image that is not DICOM.
            ValueError: unknown format.
            MissingExtraError: nibabel missing for NIfTI.
        """
        if fmt not in MASK_FORMATS:
            raise ValueError(f"format must be one of {', '.join(MASK_FORMATS)}; got {fmt!r}")
        if self.segs is None or not self.boxes:
            raise InputError(None, "nothing to download yet: draw a box and press Segment")
        if version is not None and version != self.version:
            raise InputError(
                None,
                f"the mask changed since this link was made (version {version}, now "
                f"{self.version}): download again from the page",
            )
        if fmt == "png" and self.image.is_3d:
            raise InputError(None, "PNG holds 2D masks only; download a volume as NIfTI or npz")
        if fmt == "dicom-seg" and not self.image.meta.source_files:
            raise InputError(None, "a DICOM SEG references DICOM source images: this image is not")
        from umedsam.data.writers import write_mask

        out = self.folder / "downloads" / f"{self.image.name}{MASK_FORMATS[fmt]}"
        return write_mask(out, self.segs, self.image.meta, fmt=fmt)


def _click_hint() -> str:
    """``: start the app with --model NAME`` naming a model trained for clicks, or ``""``."""
    from umedsam.models.cards import models_taking

    takers = models_taking({"box", "click"})
    return f": start the app with --model {takers[0]}" if takers else ""
