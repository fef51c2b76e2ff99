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
