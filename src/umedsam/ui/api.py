"""The web app's JSON API: one handler per route, on the state the app shares (see ``app.py``).

Every handler answers a user's mistake with a JSON ``{"error": message}`` and a 4xx status, never
a traceback; blocking work runs in a thread (:func:`guarded`). No handler takes a path from the
client: uploads are stored under names the server picks, examples are looked up by name in a
list fixed at start-up, and sessions by random token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from umedsam.errors import InputError, UmedsamError
from umedsam.models.cards import available_models, card
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

if TYPE_CHECKING:
    from umedsam.ui.app import SessionStore, UIConfig

logger = logging.getLogger(__name__)

MAX_JSON_BYTES = 1 << 20
STATUS_WAIT_S = 2.0  # longest wait of a status request for encoding progress (?after=N)
STATUS_POLL_S = 0.02  # how often such a request looks at the session meanwhile
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
NO_SESSION = "unknown or closed session; open the image again"


def error(status: int, message: str) -> JSONResponse:
    """A JSON error the page shows as it is."""
    return JSONResponse({"error": message}, status_code=status)


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


class WebApi:
    """The handlers of the web app's routes and the state they share.

    Args:
        config: the app's settings.
        examples: bundled example cases by name (images file, reference masks or None).
        holder: the model, loaded once on first use, and its lock.
        work_root: where each image's work is autosaved.
        static_text: reads a file of the page (``index.html``, ``app.js``, ``style.css``).
    """

    def __init__(
        self,
        config: UIConfig,
        examples: dict[str, tuple[Path, Path | None]],
        holder: ModelHolder,
        work_root: Path,
        static_text: Callable[[str], str],
    ) -> None:
        self.config, self.examples, self.holder = config, examples, holder
        self.work_root, self.static_text = work_root, static_text
        self.sessions: SessionStore | None = None  # set when the app starts (its lifespan)

    def routes(self) -> list[Route]:
        """The app's routes."""
        return [
            Route("/", self.index),
            Route("/static/{name}", self.static),
            Route("/api/config", self.api_config),
            Route("/api/examples/{name}", self.open_example, methods=["POST"]),
            Route("/api/upload", self.upload, methods=["POST"]),
            Route("/api/sessions/{sid}/{kind}/{z:int}.png", self.slice_image),
            Route("/api/sessions/{sid}/segment", self.segment, methods=["POST"]),
            Route("/api/sessions/{sid}/status", self.status),
            Route("/api/sessions/{sid}/saved", self.saved),
            Route("/api/model", self.choose_model, methods=["POST"]),
            Route("/api/sessions/{sid}/import", self.import_mask, methods=["POST"]),
            Route("/api/sessions/{sid}/download/{fmt}", self.download),
        ]

    def store(self) -> SessionStore:
        """The open sessions (the app must have started)."""
        assert self.sessions is not None, "the app has not started"
        return self.sessions

    def session_or_none(self, request: Request) -> Session | None:
        """The session the request's ``sid`` names, or None."""
        return self.store().get(request.path_params["sid"])

    def open_session(self, loader: Callable[[Path], LoadedImage], sid: str, folder: Path) -> dict:
        """Load an image into a new session and start encoding it; the page's image info."""
        try:
            image = loader(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        from umedsam.ui.autosave import image_id

        session = Session(
            sid=sid,
            image=image,
            folder=folder,
            autosave_dir=self.work_root / image_id(image.pixels),
        )
        self.store().add(session)
        self.precompute(session)
        logger.info("opened %s %s", image.name, image.pixels.shape)
        return session.info()

    def precompute(self, session: Session) -> None:
        """Embeddings at open: one call for 2D, every slice of a volume, in the background."""
        holder = self.holder
        threading.Thread(
            target=session.precompute,
            args=(holder.backend, holder.lock, holder.model, holder.corrector_or_none()),
            daemon=True,
        ).start()

    # ----- pages ---------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        """GET /: the page."""
        return HTMLResponse(self.static_text("index.html"), headers={"Cache-Control": "no-store"})

    async def static(self, request: Request) -> Response:
        """GET /static/{name}: the page's script and style sheet (a fixed list)."""
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error(404, "no such file")
        return Response(
            self.static_text(name),
            media_type=STATIC_FILES[name],
            headers={"Cache-Control": "no-store"},
        )

    async def api_config(self, request: Request) -> Response:
        """GET /api/config: examples, upload limit, models and what the running one takes."""
        return JSONResponse(
            {
                "examples": list(self.examples),
                "max_upload_mb": self.config.max_upload_mb,
                "model": self.holder.model,
                "models": [
                    {"name": n, "description": card(n).description} for n in available_models()
                ],
                "engine": self.config.engine,
                "engine_running": self.holder.engine_name,
                "prompts": list(self.holder.prompt_kinds),
                "corrections_by": self.holder.corrector_model,
                "model_loaded": self.holder.loaded,
            }
        )

    # ----- opening images ------------------------------------------------------------------
    async def open_example(self, request: Request) -> Response:
        """POST /api/examples/{name}: open a bundled example case."""
        name = request.path_params["name"]
        if name not in self.examples:
            return error(404, f"no example named {name!r}; examples: {', '.join(self.examples)}")
        imgs, gts = self.examples[name]
        sid, folder = self.store().new_folder()
        result = await guarded(
            lambda: self.open_session(lambda _f: load_npz_case(imgs, name, gts), sid, folder)
        )
        return result if isinstance(result, Response) else JSONResponse(result)

    async def upload(self, request: Request) -> Response:
        """POST /api/upload?name=&window=: open the uploaded image (streamed, size-limited)."""
        filename = request.query_params.get("name", "")
        window = request.query_params.get("window") or None
        try:
            suffix = upload_suffix(filename)
            if window is not None:
                from umedsam.data.intensity import window_for

                window_for(window)
        except (InputError, ValueError) as err:
            return error(400, str(err))
        limit = self.config.max_upload_bytes
        too_big = (
            f"the file is larger than the {self.config.max_upload_mb:g} MiB upload limit; "
            "crop it, or restart the app with a larger --max-upload-mb"
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error(413, too_big)
        sid, folder = self.store().new_folder()
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
                source = extract_series_zip(target, folder / "series", self.config.max_image_bytes)
            return load_image_file(
                source, stem, max_bytes=self.config.max_image_bytes, window=window
            )

        shown = filename.replace("\\", "/").rsplit("/", 1)[-1]
        redact = {str(target): shown, str(folder / "series"): shown, str(folder): shown}
        result = await guarded(lambda: self.open_session(load, sid, folder), redact)
        return result if isinstance(result, Response) else JSONResponse(result)

    # ----- per-session endpoints -----------------------------------------------------------
    async def slice_image(self, request: Request) -> Response:
        """GET /api/sessions/{sid}/{image|mask|uncertainty}/{z}.png: one slice as PNG."""
        session = self.session_or_none(request)
        if session is None:
            return error(404, NO_SESSION)
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

    async def segment(self, request: Request) -> Response:
        """POST /api/sessions/{sid}/segment: segment the boxes, clicks and strokes sent."""
        session = self.session_or_none(request)
        if session is None:
            return error(404, NO_SESSION)
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
            with self.holder.lock, session.lock:
                return session.segment(
                    self.holder.backend(),
                    boxes,
                    clicks,
                    self.holder.prompt_kinds,
                    overwrite=overwrite,
                    names=names,
                    corrector=self.holder.corrector,
                    bounded=self.holder.bounded,
                )

        result = await guarded(run)
        return result if isinstance(result, Response) else JSONResponse(result)

    async def import_mask(self, request: Request) -> Response:
        """POST /api/sessions/{sid}/import?name=: import a mask file as objects."""
        session = self.session_or_none(request)
        if session is None:
            return error(404, NO_SESSION)
        filename = request.query_params.get("name", "")
        try:
            suffix = upload_suffix(filename)
        except InputError as err:
            return error(400, str(err))
        limit = self.config.max_upload_bytes
        target = session.folder / f"import{suffix}"
        size = await receive_file(request, target, limit)
        if size > limit:
            target.unlink(missing_ok=True)
            return error(
                413, f"the mask is larger than the {self.config.max_upload_mb:g} MiB limit"
            )
        shown = filename.replace("\\", "/").rsplit("/", 1)[-1]

        def run() -> dict:
            with session.lock:
                return session.import_mask(target, shown, self.config.max_image_bytes)

        result = await guarded(run, {str(target): shown, str(session.folder): shown})
        target.unlink(missing_ok=True)
        return result if isinstance(result, Response) else JSONResponse(result)

    async def choose_model(self, request: Request) -> Response:
        """POST /api/model: switch every session to another model."""
        try:
            name = json.loads(await request.body() or b"{}").get("model", "")
        except (ValueError, AttributeError):
            return error(400, 'expected JSON like {"model": "umedsam_interactive"}')
        if name not in available_models():
            return error(400, f"unknown model {name!r}; available: {', '.join(available_models())}")

        def run() -> None:
            with self.holder.lock:
                same_encoder = self.holder.switch(name)
            for session in self.store().sessions():  # another encoder: every image encodes again
                with session.lock:
                    session.forget_model(keep_embeddings=same_encoder)
                self.precompute(session)

        result = await guarded(run)
        if isinstance(result, Response):
            return result
        return JSONResponse(
            {
                "model": self.holder.model,
                "prompts": list(self.holder.prompt_kinds),
                "corrections_by": self.holder.corrector_model,
            }
        )

    async def saved(self, request: Request) -> Response:
        """GET /api/sessions/{sid}/saved: the autosaved work of this image, if any."""
        session = self.session_or_none(request)
        if session is None:
            return error(404, NO_SESSION)
        work = session.saved_work()
        if work is None:
            return error(404, "no saved work for this image")
        return JSONResponse(work)

    async def status(self, request: Request) -> Response:
        """GET /api/sessions/{sid}/status?after=N: encoding progress."""
        # ``?after=N`` waits (up to STATUS_WAIT_S) until more than N embeddings are ready, the
        # encoding ends or fails: the page learns of progress at once, without polling.
        session = self.session_or_none(request)
        if session is None:
            return error(404, NO_SESSION)
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

    async def download(self, request: Request) -> Response:
        """GET /api/sessions/{sid}/download/{fmt}?v=: the masks as a file (version v)."""
        session = self.session_or_none(request)
        if session is None:
            return error(404, NO_SESSION)
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
