"""The ``umedsam ui`` web app: a Starlette server behind one plain HTML canvas page.

The page (``static/``) draws boxes on a canvas and calls a small JSON API; the server keeps one
:class:`~umedsam.ui.session.Session` per opened image and runs the model, loaded once on first use.

Safety rules: the server binds 127.0.0.1 unless told otherwise and then accepts only local
``Host`` headers (here); uploads larger than ``max_upload_mb`` are refused with a message; no
request carries a path: uploads are stored under names the server picks, examples are looked up
by name in a list fixed at start-up, and sessions by random token (the handlers,
:mod:`umedsam.ui.api`).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from umedsam.extras import import_optional
from umedsam.inference.backends.base import Backend
from umedsam.inference.engines import EngineSpec
from umedsam.models.cards import DEFAULT_MODEL
from umedsam.ui.model_holder import ModelHolder
from umedsam.ui.session import Session

logger = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class UIConfig:
    """Settings of the web app.

    Attributes:
        host: interface to bind; 127.0.0.1 keeps the app on this computer.
        port: TCP port (0 picks a free one).
        max_upload_mb: largest upload accepted, in MiB.
        max_image_mb: largest decoded image accepted (header-declared size), in MiB.
        max_sessions: open images kept at once; the least recently used is closed first.
        model: registered model name.
        checkpoint: weights file; None uses the model's bundled weights.
        engine: inference engine, as ``umedsam predict --engine`` (default auto: OpenVINO, then
            ONNX Runtime, when installed: its encoder is the faster one).
        threads: engine threads (None: the engine's default).
        examples: offer the bundled example cases.
        workdir: where every image's work is saved after each change (None: the cache folder's
            ``ui-work``); reopening the same image offers to restore it.
    """

    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 256.0
    max_image_mb: float = 1024.0
    max_sessions: int = 8
    model: str = DEFAULT_MODEL
    checkpoint: str | None = None
    engine: str = "auto"
    threads: int | None = None
    examples: bool = True
    workdir: str | None = None

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0 or self.max_image_mb <= 0:
            raise ValueError(
                f"upload and image limits must be > 0 MiB; got {self.max_upload_mb}, "
                f"{self.max_image_mb}"
            )
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1; got {self.max_sessions}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535; got {self.port}")
        spec = self.engine_spec()  # validates the engine name and thread count
        if spec.model != self.model:  # a SAM-family checkpoint runs as its own card
            object.__setattr__(self, "model", spec.model)

    def engine_spec(self) -> EngineSpec:
        """The engine the app opens: the entry point of ``umedsam predict``, interactive order."""
        return EngineSpec(
            model=self.model,
            checkpoint=None if self.checkpoint is None else Path(self.checkpoint),
            engine=self.engine,
            threads=self.threads,
            interactive=True,
        )

    @property
    def max_upload_bytes(self) -> int:
        """Upload limit in bytes."""
        return int(self.max_upload_mb * 2**20)

    @property
    def max_image_bytes(self) -> int:
        """Decoded-image limit in bytes."""
        return int(self.max_image_mb * 2**20)


def example_cases() -> dict[str, tuple[Path, Path | None]]:
    """Bundled example cases: name -> (image npz, ground-truth npz or None). Empty if missing."""
    from umedsam.examples import examples_dir

    try:
        root = examples_dir()
    except FileNotFoundError:
        return {}
    cases = {}
    for path in sorted((root / "imgs").glob("*.npz")):
        gts = root / "gts" / path.name
        cases[path.stem] = (path, gts if gts.is_file() else None)
    return cases


class SessionStore:
    """Open sessions by token, least recently used first out; each owns a folder under ``root``."""

    def __init__(self, root: Path, capacity: int) -> None:
        self.root = root
        self.capacity = capacity
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def new_folder(self) -> tuple[str, Path]:
        """A fresh token and its (created) private folder."""
        sid = secrets.token_urlsafe(16)
        folder = self.root / sid
        folder.mkdir(parents=True)
        return sid, folder

    def add(self, session: Session) -> None:
        """Keep ``session``, closing the least recently used one beyond capacity."""
        with self._lock:
            self._sessions[session.sid] = session
            while len(self._sessions) > self.capacity:
                _, old = self._sessions.popitem(last=False)
                old.closed = True
                shutil.rmtree(old.folder, ignore_errors=True)
                logger.info("closed session %s (limit %d)", old.sid[:6], self.capacity)

    def get(self, sid: str) -> Session | None:
        """The session named ``sid`` (marked as recently used), or None."""
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None:
                self._sessions.move_to_end(sid)
            return session

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[Session]:
        """The open sessions."""
        with self._lock:
            return list(self._sessions.values())


def _default_loader(config: UIConfig) -> Callable[[], Backend]:
    def load() -> Backend:
        from umedsam.inference.engines import open_engine

        return open_engine(config.engine_spec()).backend

    return load


def _static_text(name: str) -> str:
    return resources.files("umedsam.ui").joinpath("static", name).read_text(encoding="utf-8")


def create_app(config: UIConfig | None = None, model_loader: Callable[[], Backend] | None = None):
    """Build the Starlette application.

    Args:
        config: settings (defaults: :class:`UIConfig`).
        model_loader: returns the engine's Backend on first segmentation; default
            ``open_engine(config.engine_spec())``, as ``umedsam predict`` opens it.

    Returns:
        A Starlette ASGI app; ``app.state.store`` and ``app.state.model`` expose its state.

    Raises:
        MissingExtraError: starlette is not installed (``pip install 'umedsam[ui]'``).
    """
    import_optional("starlette", package="starlette", extra="ui", purpose="The web app")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from umedsam.ui.api import WebApi

    config = config or UIConfig()
    examples = example_cases() if config.examples else {}
    if config.workdir is not None:
        work_root = Path(config.workdir).expanduser()
    else:
        from umedsam.inference.export_cache import cache_root

        work_root = cache_root() / "ui-work"
    if model_loader is not None:
        holder = ModelHolder(lambda _name: model_loader, config.model, route_corrections=False)
    else:
        holder = ModelHolder(
            lambda name: _default_loader(dataclasses.replace(config, model=name)),
            config.model,
            route_corrections=config.checkpoint is None,
            checkpoint=config.checkpoint,
        )
    api = WebApi(config, examples, holder, work_root, _static_text)

    @asynccontextmanager
    async def lifespan(app):  # type: ignore[no-untyped-def]
        root = Path(tempfile.mkdtemp(prefix="umedsam-ui-"))
        api.sessions = app.state.store = SessionStore(root, config.max_sessions)
        # the uncertainty overlay imports PyTorch (about 2 s on 2 cores): do it now, in the
        # background, so that the first box after opening an image does not wait for it
        from umedsam.ui.heat import uncertainty_tools

        threading.Thread(target=uncertainty_tools, daemon=True, name="preload").start()
        try:
            yield
        finally:
            shutil.rmtree(root, ignore_errors=True)

    local = config.host in LOCAL_HOSTS
    middleware = []
    if local:
        # refuse other Host headers, so a web page elsewhere cannot reach the app by DNS rebinding
        middleware.append(
            Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
        )
    app = Starlette(routes=api.routes(), middleware=middleware, lifespan=lifespan)
    app.state.model = holder
    app.state.config = config
    return app


def serve(config: UIConfig, model_loader: Callable[[], Backend] | None = None) -> None:
    """Run the app with uvicorn until interrupted.

    Raises:
        MissingExtraError: uvicorn or starlette is missing (``pip install 'umedsam[ui]'``).
    """
    uvicorn = import_optional("uvicorn", package="uvicorn", extra="ui", purpose="The web app")
    app = create_app(config, model_loader)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
