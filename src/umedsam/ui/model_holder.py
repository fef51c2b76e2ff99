"""The web app's engines: the current model's, and the one that answers its corrections.

Opened on first use; :attr:`ModelHolder.lock` serialises inference (one job at a time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from umedsam.inference.backends.base import Backend
from umedsam.models.cards import PROMPT_KINDS

logger = logging.getLogger(__name__)


class ModelHolder:
    """Opens the engine once, on first use, and serialises inference (one job at a time).

    With the default model (boxes only), objects with clicks, scribbles or an imported mask go to
    the shipped interactive model, which runs the same image encoder: the image's embeddings
    serve both and only the mask decoder changes (``correction_model``), so the click tools are
    there without choosing a model.

    Args:
        loader_for: model name -> a function opening that model's engine.
        model: the model to start with.
        route_corrections: send corrections to ``correction_model(model)`` (off when the app
            was given its own checkpoint or loader).
        checkpoint: the user's weights file the app runs, or None (the model's own weights);
            the model's card then says how 3D propagation treats it, as for ``umedsam predict``.
    """

    def __init__(
        self,
        loader_for: Callable[[str], Callable[[], Backend]],
        model: str,
        route_corrections: bool = True,
        checkpoint: object = None,
    ) -> None:
        self._loader_for = loader_for
        self.checkpoint = checkpoint
        self.model = model
        self._route = route_corrections
        self._loader = loader_for(model)
        self._backend: Backend | None = None
        self._corrector: Backend | None = None
        self._opening = threading.Lock()  # opening the corrector needs no engine lock
        self.lock = threading.Lock()

    @property
    def corrector_model(self) -> str | None:
        """The other model that takes this model's clicks, scribbles and masks, or None."""
        from umedsam.models.cards import correction_model

        name = correction_model(self.model) if self._route else None
        return None if name == self.model else name

    @property
    def bounded(self) -> tuple[bool, bool]:
        """Whether the box model and the correcting model keep propagation inside extents."""
        from umedsam.models.cards import bounded_propagation

        box_model = bounded_propagation(self.model, self.checkpoint)  # as umedsam predict
        corrector = self.corrector_model
        return box_model, bounded_propagation(corrector) if corrector else box_model

    @property
    def prompt_kinds(self) -> tuple[str, ...]:
        """The prompt kinds the app takes with the current model (and its corrector)."""
        from umedsam.models.cards import model_prompts

        helper = self.corrector_model
        kinds = set(model_prompts(self.model)) | set(model_prompts(helper) if helper else ())
        return tuple(k for k in PROMPT_KINDS if k in kinds)

    def switch(self, model: str) -> bool:
        """Use ``model`` from now on (opened at its first use); call with :attr:`lock` held.

        Returns:
            Whether image embeddings made with the previous model stay valid (same encoder).
        """
        from umedsam.models.cards import encoder_of

        same_encoder = self._route and encoder_of(model) == encoder_of(self.model)
        previous = self.corrector_model
        self.model = model
        self._loader = self._loader_for(model)
        self._backend = None
        if self.corrector_model != previous:
            self._corrector = None
        return same_encoder

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._backend is not None

    @property
    def engine_name(self) -> str | None:
        """The engine the model runs on (``auto`` resolved), once loaded."""
        return None if self._backend is None else self._backend.name

    def backend(self) -> Backend:
        """The inference backend; call with :attr:`lock` held."""
        if self._backend is None:
            logger.info("opening the engine")
            self._backend = self._loader()
        return self._backend

    def corrector_or_none(self) -> Callable[[], Backend] | None:
        """:meth:`corrector` when another model answers corrections, else None."""
        return self.corrector if self.corrector_model else None

    def corrector(self) -> Backend:
        """The backend for objects with clicks, scribbles or masks.

        Without a corrector model this is :meth:`backend` (call with :attr:`lock` held); a
        corrector is opened once, under a lock of its own, so that images keep encoding meanwhile.
        """
        name = self.corrector_model
        if name is None:
            return self.backend()
        with self._opening:
            if self._corrector is None:
                logger.info("opening %s for corrections", name)
                self._corrector = self._loader_for(name)()
            return self._corrector


def warm_up_decoders(
    embedding: np.ndarray,
    image_hw: tuple[int, int],
    engine: Backend | None,
    clicks_engine: Backend | None = None,
) -> None:
    """Throwaway decoder calls: a box on ``engine``, a click and a mask on ``clicks_engine``.

    OpenVINO and ONNX Runtime prepare a graph's kernels at its first calls (about 80 ms for the
    LiteMedSAM decoder on OpenVINO); the first prompt would otherwise wait for that. A failure
    here only costs that time later, so it is logged, not raised.
    """
    from umedsam.data.frames import frame_of
    from umedsam.inference.prompts import encode_prompts

    h, w = image_hw
    try:
        if engine is not None:
            size = engine.image_size
            engine.decode(embedding, np.array([[0, 0, size // 2, size // 2]], np.float32))
        if clicks_engine is not None:
            frame = frame_of(clicks_engine)
            side = frame.low_res
            prompts = encode_prompts(
                (h, w),
                frame,
                boxes=np.array([[w // 4, h // 4, 3 * w // 4, 3 * h // 4]], np.float64),
                points=[np.array([[w // 2, h // 2]], np.float64)],
                point_labels=[np.array([1])],
                mask_input=np.zeros((1, 1, side, side), np.float32),
            )
            clicks_engine.decode_prompts(embedding, prompts)
    except Exception as err:  # noqa: BLE001 - an optional speed-up
        logger.info("decoder warm-up skipped: %r", err)
