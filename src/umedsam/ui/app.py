"""The ``umedsam ui`` web app: a Starlette server behind one plain HTML canvas page.

The page (``static/``) draws boxes on a canvas and calls a small JSON API; the server keeps one
:class:`~umedsam.ui.session.Session` per opened image and runs the model, loaded once on first use.

Safety rules, enforced here: the server binds 127.0.0.1 unless told otherwise and then accepts
only local ``Host`` headers; uploads larger than ``max_upload_mb`` are refused with a message; no
request carries a path: uploads are stored under names the server picks, examples are looked up
by name in a list fixed at start-up, and sessions by random token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import cast

from umedsam.errors import InputError, UmedsamError
from umedsam.extras import import_optional
from umedsam.inference.backends.base import Backend
from umedsam.inference.engines import EngineSpec
from umedsam.models.cards import DEFAULT_MODEL, available_models, card
from umedsam.ui.images import (
    LoadedImage,
    display_stem,
    extract_series_zip,
    load_image_file,
    load_npz_case,
    upload_suffix,
)
from umedsam.ui.model_holder import ModelHolder
from umedsam.ui.session import Session

logger = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
MAX_JSON_BYTES = 1 << 20
STATUS_WAIT_S = 2.0  # longest wait of a status request for encoding progress (?after=N)
STATUS_POLL_S = 0.02  # how often such a request looks at the session meanwhile


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
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

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
    state: dict[str, SessionStore] = {}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def store() -> SessionStore:
        return state["store"]

    def session_or_none(request: Request) -> Session | None:
        return store().get(request.path_params["sid"])

    def open_session(loader: Callable[[Path], LoadedImage], sid: str, folder: Path) -> dict:
        try:
            image = loader(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        from umedsam.ui.autosave import image_id

        session = Session(
            sid=sid, image=image, folder=folder, autosave_dir=work_root / image_id(image.pixels)
        )
        store().add(session)
        # embeddings at open: one call for 2D, every slice of a volume in the background
        threading.Thread(
            target=session.precompute,
            args=(holder.backend, holder.lock, holder.model, holder.corrector_or_none()),
            daemon=True,
        ).start()
        logger.info("opened %s %s", image.name, image.pixels.shape)
        return session.info()

    async def receive_file(request: Request, target: Path, limit: int) -> int:
        """Stream the request body into ``target``; stop past ``limit`` bytes. Bytes received."""
        size = 0
        with target.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    break
                handle.write(chunk)
        return size

    async def guarded(call: Callable[[], object], redact: dict[str, str] | None = None) -> object:
        """Run blocking work in a thread, mapping user errors to 400 responses.

        ``redact`` maps server paths to what the user knows them as, so that messages never
        reveal the server's folders.
        """
        try:
            return await run_in_threadpool(call)
        except (UmedsamError, ValueError, FileNotFoundError, ImportError) as err:
            message = str(err)
            for secret, shown in (redact or {}).items():
                message = message.replace(secret, shown)
            return error(400, message)

    # ----- pages ---------------------------------------------------------------------------
    async def index(request: Request) -> Response:
        return HTMLResponse(_static_text("index.html"), headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error(404, "no such file")
        return Response(
            _static_text(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-store"}
        )

    async def api_config(request: Request) -> Response:
        return JSONResponse(
            {
                "examples": list(examples),
                "max_upload_mb": config.max_upload_mb,
                "model": holder.model,
                "models": [
                    {"name": n, "description": card(n).description} for n in available_models()
                ],
                "engine": config.engine,
                "engine_running": holder.engine_name,
                "prompts": list(holder.prompt_kinds),
                "corrections_by": holder.corrector_model,
                "model_loaded": holder.loaded,
            }
        )

    # ----- opening images ------------------------------------------------------------------
    async def open_example(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in examples:
            return error(404, f"no example named {name!r}; examples: {', '.join(examples)}")
        imgs, gts = examples[name]
        sid, folder = store().new_folder()
        result = await guarded(
            lambda: open_session(lambda _f: load_npz_case(imgs, name, gts), sid, folder)
        )
        return result if isinstance(result, Response) else JSONResponse(result)

    async def upload(request: Request) -> Response:
        filename = request.query_params.get("name", "")
        window = request.query_params.get("window") or None
        try:
            suffix = upload_suffix(filename)
            if window is not None:
                from umedsam.data.intensity import window_for

                window_for(window)
        except (InputError, ValueError) as err:
            return error(400, str(err))
        limit = config.max_upload_bytes
        too_big = (
            f"the file is larger than the {config.max_upload_mb:g} MiB upload limit; "
            "crop it, or restart the app with a larger --max-upload-mb"
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error(413, too_big)
        sid, folder = store().new_folder()
        target = folder / f"upload{suffix}"
        size = await receive_file(request, target, limit)
        if size > limit:
            shutil.rmtree(folder, ignore_errors=True)
            return error(413, too_big)
        if size == 0:
            shutil.rmtree(folder, ignore_errors=True)
            return error(400, f"{filename!r} is empty (0 bytes)")
        stem = display_stem(filename)

        def load(folder: Path) -> LoadedImage:
            if suffix == ".npz":
                return load_npz_case(target, stem)
            source = target
            if suffix == ".zip":
                source = extract_series_zip(target, folder / "series", config.max_image_bytes)
            return load_image_file(source, stem, max_bytes=config.max_image_bytes, window=window)

        shown = filename.replace("\\", "/").rsplit("/", 1)[-1]
        redact = {str(target): shown, str(folder / "series"): shown, str(folder): shown}
        result = await guarded(lambda: open_session(load, sid, folder), redact)
        return result if isinstance(result, Response) else JSONResponse(result)

    # ----- per-session endpoints -----------------------------------------------------------
    async def slice_image(request: Request) -> Response:
        session = session_or_none(request)
        if session is None:
            return error(404, "unknown or closed session; open the image again")
        kind, z = request.path_params["kind"], request.path_params["z"]
        renderers = {
            "image": session.slice_png,
            "mask": session.mask_png,
            "uncertainty": session.uncertainty_png,
        }
        if kind not in renderers:
            return error(404, "no such picture")
        render = renderers[kind]
        result = await guarded(lambda: render(z))
        if isinstance(result, Response):
            return result
        return Response(result, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def segment(request: Request) -> Response:
        session = session_or_none(request)
        if session is None:
            return error(404, "unknown or closed session; open the image again")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_JSON_BYTES:
                return error(413, f"request larger than {MAX_JSON_BYTES} bytes")
        try:
            request_body = json.loads(body or b"{}")
            boxes = request_body.get("boxes", [])
            clicks = request_body.get("clicks")
            overwrite = bool(request_body.get("overwrite", False))
            names = request_body.get("names")
        except (ValueError, AttributeError):
            return error(
                400,
                'expected JSON like {"boxes": [[x0, y0, x1, y1], ...], '
                '"clicks": [[[x, y, 1], ...], ...]}',
            )

        def run() -> dict:
            with holder.lock, session.lock:
                return session.segment(
                    holder.backend(),
                    boxes,
                    clicks,
                    holder.prompt_kinds,
                    overwrite=overwrite,
                    names=names,
                    corrector=holder.corrector,
                    bounded=holder.bounded,
                )

        result = await guarded(run)
        return result if isinstance(result, Response) else JSONResponse(result)

    async def import_mask(request: Request) -> Response:
        session = session_or_none(request)
        if session is None:
            return error(404, "unknown or closed session; open the image again")
        filename = request.query_params.get("name", "")
        try:
            suffix = upload_suffix(filename)
        except InputError as err:
            return error(400, str(err))
        limit = config.max_upload_bytes
        target = session.folder / f"import{suffix}"
        size = await receive_file(request, target, limit)
        if size > limit:
            target.unlink(missing_ok=True)
            return error(413, f"the mask is larger than the {config.max_upload_mb:g} MiB limit")
        shown = filename.replace("\\", "/").rsplit("/", 1)[-1]

        def run() -> dict:
            with session.lock:
                return session.import_mask(target, shown, config.max_image_bytes)

        result = await guarded(run, {str(target): shown, str(session.folder): shown})
        target.unlink(missing_ok=True)
        return result if isinstance(result, Response) else JSONResponse(result)

    async def choose_model(request: Request) -> Response:
        try:
            name = json.loads(await request.body() or b"{}").get("model", "")
        except (ValueError, AttributeError):
            return error(400, 'expected JSON like {"model": "umedsam_interactive"}')
        if name not in available_models():
            return error(400, f"unknown model {name!r}; available: {', '.join(available_models())}")

        def run() -> None:
            with holder.lock:
                same_encoder = holder.switch(name)
            for session in store().sessions():  # another encoder: every image encodes again
                with session.lock:
                    session.forget_model(keep_embeddings=same_encoder)
                threading.Thread(
                    target=session.precompute,
                    args=(holder.backend, holder.lock, holder.model, holder.corrector_or_none()),
                    daemon=True,
                ).start()

        result = await guarded(run)
        if isinstance(result, Response):
            return result
        return JSONResponse(
            {
                "model": holder.model,
                "prompts": list(holder.prompt_kinds),
                "corrections_by": holder.corrector_model,
            }
        )

    async def saved(request: Request) -> Response:
        session = session_or_none(request)
        if session is None:
            return error(404, "unknown or closed session; open the image again")
        work = session.saved_work()
        if work is None:
            return error(404, "no saved work for this image")
        return JSONResponse(work)

    async def status(request: Request) -> Response:
        # ``?after=N`` waits (up to STATUS_WAIT_S) until more than N embeddings are ready, the
        # encoding ends or fails: the page learns of progress at once, without polling.
        session = session_or_none(request)
        if session is None:
            return error(404, "unknown or closed session; open the image again")
        after = request.query_params.get("after", "")
        status = session.status()
        if after.isdigit():
            deadline = time.monotonic() + STATUS_WAIT_S
            while (
                status["embedded"] <= int(after)
                and not status["ready"]
                and status["error"] is None
                and not session.closed
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(STATUS_POLL_S)
                status = session.status()
        return JSONResponse(status)

    async def download(request: Request) -> Response:
        session = session_or_none(request)
        if session is None:
            return error(404, "unknown or closed session; open the image again")
        fmt = request.path_params["fmt"]
        wanted = request.query_params.get("v", "")

        def write() -> Path:
            with session.lock:
                return session.write_download(fmt, int(wanted) if wanted.isdigit() else None)

        result = await guarded(write)
        if isinstance(result, Response):
            return result
        path = cast(Path, result)
        return FileResponse(path, filename=path.name, media_type="application/octet-stream")

    @asynccontextmanager
    async def lifespan(app):  # type: ignore[no-untyped-def]
        root = Path(tempfile.mkdtemp(prefix="umedsam-ui-"))
        state["store"] = SessionStore(root, config.max_sessions)
        app.state.store = state["store"]
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
    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/config", api_config),
        Route("/api/examples/{name}", open_example, methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/sessions/{sid}/{kind}/{z:int}.png", slice_image),
        Route("/api/sessions/{sid}/segment", segment, methods=["POST"]),
        Route("/api/sessions/{sid}/status", status),
        Route("/api/sessions/{sid}/saved", saved),
        Route("/api/model", choose_model, methods=["POST"]),
        Route("/api/sessions/{sid}/import", import_mask, methods=["POST"]),
        Route("/api/sessions/{sid}/download/{fmt}", download),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
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
