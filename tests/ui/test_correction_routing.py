"""Corrections of the default model's objects go to the interactive model on the same embeddings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from umedsam.inference.backends.torch import TorchBackend
from umedsam.inference.predictor import Predictor
from umedsam.models.cards import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_BASE,
    INTERACTIVE_MODEL,
    LITEMEDSAM_ENCODER,
    available_models,
    card,
    correction_model,
    encoder_of,
    shipped,
)
from umedsam.models.registry import build_model
from umedsam.ui.images import LoadedImage, npz_meta
from umedsam.ui.session import Session


class Counting:
    """A backend proxy that counts the calls of each method."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def twin_backends() -> tuple[Counting, Counting]:
    """Two tiny models with the same image encoder and different mask decoders."""
    torch.manual_seed(0)
    boxes_model = build_model("test_tiny").eval()
    clicks_model = build_model("test_tiny").eval()
    clicks_model.load_state_dict(boxes_model.state_dict())
    with torch.no_grad():
        for p in clicks_model.mask_decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Counting(TorchBackend(boxes_model)), Counting(TorchBackend(clicks_model))


def disk_session(tmp_path: Path, depth: int | None = None) -> Session:
    """A session on a bright disk (2D RGB) or a stack of them (``depth`` slices)."""
    yy, xx = np.mgrid[:48, :48]
    disk = (((yy - 24) ** 2 + (xx - 24) ** 2) < 120).astype(np.uint8) * 200 + 20
    if depth is None:
        pixels = np.repeat(disk[..., None], 3, axis=2)
        meta = npz_meta((48, 48), None, 3)
    else:
        pixels = np.repeat(disk[None], depth, axis=0)
        meta = npz_meta((depth, 48, 48), None, 1)
    image = LoadedImage("disk", np.ascontiguousarray(pixels), meta)
    return Session(sid="s", image=image, folder=tmp_path)


def test_default_model_takes_clicks_through_the_interactive_model() -> None:
    assert encoder_of(DEFAULT_MODEL_BASE) == LITEMEDSAM_ENCODER
    assert encoder_of("umedsam_effvit_b0") == "umedsam_effvit_b0"
    assert correction_model("umedsam_effvit_b0") is None  # another encoder: refuses clicks
    assert correction_model("litemedsam") is None  # named explicitly: the official model only
    if shipped(INTERACTIVE_MODEL):
        assert encoder_of(INTERACTIVE_MODEL) == LITEMEDSAM_ENCODER
        assert correction_model(INTERACTIVE_MODEL) == INTERACTIVE_MODEL
        assert correction_model(DEFAULT_MODEL) == INTERACTIVE_MODEL


@pytest.mark.parametrize("name", sorted(n for n in available_models() if not card(n).bundled))
def test_litemedsam_derivatives_ship_no_image_encoder(name: str) -> None:
    """What encoder_of promises: these files leave LiteMedSAM's image encoder as it is."""
    if not shipped(name) or encoder_of(name) != LITEMEDSAM_ENCODER:
        pytest.skip(f"{name}: not shipped, or its own encoder")
    state = torch.load(card(name).weights_path, map_location="cpu", weights_only=True)
    assert state and not [k for k in state if k.startswith("image_encoder")]


def test_holder_routes_corrections_and_keeps_embeddings_on_a_same_encoder_switch() -> None:
    from umedsam.ui.model_holder import ModelHolder

    opened: Counter[str] = Counter()

    def loader_for(name: str):  # type: ignore[no-untyped-def]
        def load() -> str:
            opened[name] += 1
            return f"engine of {name}"

        return load

    holder = ModelHolder(loader_for, DEFAULT_MODEL)  # type: ignore[arg-type]
    if not shipped(INTERACTIVE_MODEL):
        pytest.skip("the interactive model is not shipped")
    assert holder.corrector_model == INTERACTIVE_MODEL
    assert holder.prompt_kinds == ("box", "click", "scribble", "mask")
    assert holder.corrector() == f"engine of {INTERACTIVE_MODEL}"
    holder.corrector()
    assert opened == {INTERACTIVE_MODEL: 1}  # opened once
    assert holder.switch(DEFAULT_MODEL_BASE) is True  # same encoder: embeddings stay
    assert holder.corrector_model is None and holder.prompt_kinds == ("box",)
    assert holder.corrector() == f"engine of {DEFAULT_MODEL_BASE}"
    assert holder.switch("umedsam_effvit_b0") is False  # another encoder
    plain = ModelHolder(loader_for, DEFAULT_MODEL, route_corrections=False)  # type: ignore[arg-type]
    assert plain.corrector_model is None and plain.prompt_kinds == ("box",)


def test_2d_correction_runs_on_the_corrector_without_encoding_again(tmp_path: Path) -> None:
    boxes, clicks = twin_backends()
    session = disk_session(tmp_path)
    box = [10, 10, 38, 38]
    session.segment(boxes, [box])
    key = ((10, 10, 38, 38), ((24, 24, 1),))
    before = dict(session._objects)
    session.segment(boxes, [box], [[[24, 24, 1]]], corrector=lambda: clicks)
    assert clicks.calls["encode"] == 0 and boxes.calls["encode"] == 1  # one embedding
    assert clicks.calls["decode_prompts"] == 1 and boxes.calls["decode_prompts"] == 0
    # the same mask as the corrector's own predictor, which encodes the image itself
    from umedsam.ui.corrections import segment_corrected

    own = Predictor(clicks.inner)
    own.set_image(session.image.pixels)
    expected = segment_corrected(clicks.inner, session.image.pixels, [key], before, True, None, own)
    np.testing.assert_array_equal(session._objects[key].mask, expected[0].mask)


def test_3d_correction_reuses_the_cached_slices(tmp_path: Path) -> None:
    boxes, clicks = twin_backends()
    session = disk_session(tmp_path, depth=6)
    box = [10, 10, 1, 38, 38, 4]
    session.segment(boxes, [box])
    assert boxes.calls["encode"] == 4  # slices 1-4
    reply = session.segment(boxes, [box], [[[24, 24, 3, 1]]], corrector=lambda: clicks)
    assert reply["objects"][0]["clicks"] == 1
    assert clicks.calls["encode"] == 0 and clicks.calls["decode_prompts"] > 0


def test_app_with_the_default_model_offers_the_click_tools(serve) -> None:
    """No engine is opened for this: the page learns the prompts and who answers clicks."""
    pytest.importorskip("starlette")
    from umedsam.ui.app import UIConfig

    from .conftest import Client

    if not shipped(INTERACTIVE_MODEL):
        pytest.skip("the interactive model is not shipped")
    base, app = serve(UIConfig())
    config = Client(base).get("/api/config").json()
    assert config["model"] == DEFAULT_MODEL and "click" in config["prompts"]
    assert config["corrections_by"] == INTERACTIVE_MODEL
    assert not app.state.model.loaded
    switched = Client(base).post_json("/api/model", {"model": "litemedsam"}).json()
    assert switched["prompts"] == ["box"] and switched["corrections_by"] is None


@pytest.mark.parametrize("depth", [None, 5])
def test_encoding_ahead_opens_and_warms_both_decoders(tmp_path: Path, depth: int | None) -> None:
    """After the background encoding the box engine has decoded a box, the corrector a click."""
    import threading

    boxes, clicks = twin_backends()
    session = disk_session(tmp_path, depth)
    session.precompute(lambda: boxes, threading.Lock(), "m", corrector=lambda: clicks)
    assert session.status()["ready"] and not session.precompute_error
    assert boxes.calls["encode"] == (1 if depth is None else depth)
    assert clicks.calls["encode"] == 0
    assert boxes.calls["decode"] == 1 and boxes.calls["decode_prompts"] == 0
    assert clicks.calls["decode"] == 0 and clicks.calls["decode_prompts"] == 1


def test_a_corrector_that_fails_to_open_leaves_boxes_working(tmp_path: Path) -> None:
    """The image still becomes ready and takes boxes; the failure is not the image's error."""
    import threading

    boxes, _ = twin_backends()
    session = disk_session(tmp_path, 5)

    def broken() -> Counting:
        raise RuntimeError("corrections engine missing")

    session.precompute(lambda: boxes, threading.Lock(), "m", corrector=broken)
    assert session.status()["ready"] and session.status()["error"] is None
    result = session.segment(boxes, [[10, 10, 1, 38, 38, 3]])
    assert result["objects"] and boxes.calls["encode"] == 5  # no slice encoded twice


class BoxLog:
    """A backend proxy that keeps the boxes of every box-decoder call."""

    def __init__(self, inner: TorchBackend) -> None:
        self.inner = inner
        self.boxes: list[np.ndarray] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def decode(self, embedding, boxes):  # type: ignore[no-untyped-def]
        self.boxes.append(np.array(boxes))
        return self.inner.decode(embedding, boxes)


@pytest.mark.parametrize("stored", [True, False])
def test_bounded_propagation_in_the_app_only_for_the_cases_stored_boxes(
    tmp_path: Path, stored: bool
) -> None:
    torch.manual_seed(0)
    model = build_model("test_tiny").eval()
    box = [18, 18, 0, 30, 30, 5]

    def session(folder: str) -> Session:
        image = disk_session(tmp_path, depth=6).image
        saved = np.array([box]) if stored else None
        (tmp_path / folder).mkdir()
        image = LoadedImage(image.name, image.pixels, image.meta, saved)
        return Session(sid=folder, image=image, folder=tmp_path / folder)

    free, bounded = BoxLog(TorchBackend(model)), BoxLog(TorchBackend(model))
    session("a").segment(free, [box])
    session("b").segment(bounded, [box], bounded=(True, True))
    scale = bounded.image_size / 48
    lo, hi = int(18 * scale) - 3, int(30 * scale) + 3
    spilled = np.concatenate(free.boxes)
    assert (spilled[:, :2] < lo).any() or (spilled[:, 2:] > hi).any()  # the check can fail
    kept = np.concatenate(bounded.boxes)
    inside = bool((kept[:, :2] >= lo).all() and (kept[:, 2:] <= hi).all())
    assert inside == stored  # a drawn box is one slice's box: never a bound
