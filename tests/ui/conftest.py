"""Fixtures for the web app: a real uvicorn server on a free loopback port, and HTTP helpers."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class Reply:
    """An HTTP answer: status, headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        """The body parsed as JSON."""
        return json.loads(self.body)


class Client:
    """Minimal HTTP client for a server on 127.0.0.1 (stdlib only)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send a request; HTTP errors are returned, not raised."""
        req = urllib.request.Request(self.base + path, data=body, method=method)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return Reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, dict(err.headers), err.read())

    def get(self, path: str, **kw) -> Reply:
        """GET ``path``."""
        return self.request("GET", path, **kw)

    def post(self, path: str, body: bytes | None = b"", **kw) -> Reply:
        """POST raw ``body`` to ``path``."""
        return self.request("POST", path, body=body, **kw)

    def post_json(self, path: str, payload: object) -> Reply:
        """POST ``payload`` as JSON."""
        return self.post(
            path, json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: the app's worker threads share a small, busy CPU with the browser."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[str, object]]]:
    """Factory: ``serve(config, model_loader)`` runs the app in a thread, returns (url, app)."""
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    from umedsam.ui.app import create_app

    servers = []

    def start(config=None, model_loader=None) -> tuple[str, object]:
        app = create_app(config, model_loader)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        servers.append((server, thread, sock))
        return f"http://127.0.0.1:{port}", app

    yield start
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class BoxBackend:
    """A stand-in engine that segments exactly its prompt box, so the expected mask is known.

    Implements the two calls of :class:`umedsam.inference.backends.base.Backend` that box
    segmentation uses: logits are +10 inside the box (model frame) and -10 outside.
    """

    name = "box"
    image_size = 64

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Constant embeddings, one per image."""
        return np.zeros((len(images), 8, self.image_size // 4, self.image_size // 4), np.float32)

    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(N, 1, S, S)``: positive on the pixels whose centres lie in each box."""
        size = self.image_size
        centres = np.arange(size) + 0.5
        logits = np.full((len(boxes), 1, size, size), -10.0, np.float32)
        for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.float64)):
            rows = (centres >= y0) & (centres <= y1)
            cols = (centres >= x0) & (centres <= x1)
            logits[i, 0][np.outer(rows, cols)] = 10.0
        return logits, np.ones((len(boxes), 1), np.float32)


class ClickBackend(BoxBackend):
    """A stand-in engine for corrections: its box, plus a disk of radius 3 (model frame) around
    each positive click, minus one around each negative click; clicks applied in order."""

    def decode_prompts(self, embedding: np.ndarray, prompts) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(N, 1, S, S)`` of the box and click rule above."""
        size = self.image_size
        yy, xx = np.mgrid[:size, :size] + 0.5
        logits = np.full((len(prompts), 1, size, size), -10.0, np.float32)
        for i in range(len(prompts)):
            coords, labels = prompts.coords[i], prompts.labels[i]
            corners = coords[labels >= 2]
            if len(corners) == 2:
                logits[i] = self.decode(embedding, corners.reshape(1, 4))[0][0]
            for (x, y), label in zip(coords, labels, strict=True):
                if label in (0, 1):
                    disk = (xx - x - 0.5) ** 2 + (yy - y - 0.5) ** 2 <= 9
                    logits[i, 0][disk] = 10.0 if label == 1 else -10.0
        return logits, np.ones((len(prompts), 1), np.float32)


class BrightBackend(BoxBackend):
    """A stand-in that segments the bright pixels inside its box prompt (its embedding is the
    slice's 16 x 16 brightness), so an object ends on the first dark slice."""

    def encode(self, images: np.ndarray) -> np.ndarray:
        """The slice's brightness, one value per 4 x 4 block of the model frame."""
        return np.ascontiguousarray(images[:, :1, ::4, ::4], np.float32)

    def decode(self, embedding: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The box's logits, kept only on bright pixels."""
        logits, iou = super().decode(embedding, boxes)
        bright = np.kron(embedding[0, 0] > 0.5, np.ones((4, 4), bool))
        logits[:, 0][:, ~bright] = -10.0
        return logits, iou


class SlowBackend(BoxBackend):
    """A stand-in whose encoder takes 0.3 s per image, as a slow CPU does."""

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Constant embeddings, after a pause per image."""
        import time

        time.sleep(0.3 * len(images))
        return super().encode(images)
