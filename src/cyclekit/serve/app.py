"""The web page and HTTP API for a trained model: ``create_app(model)`` -> an ASGI app.

Why FastAPI and one hand-written page, not Gradio
-------------------------------------------------
Gradio is what ML demos usually use, and it would give a page in ten lines. It was weighed and
set aside for four reasons. (1) *Nothing may leave the machine*: Gradio sends usage analytics
unless told not to and its front end loads fonts and assets from CDNs by default; a page we
write ourselves loads nothing but its own three files, and a Content-Security-Policy header
(``default-src 'self'``) makes the browser enforce it. (2) *Bounded load*: the limits the
issue asks for (bytes counted while the body streams, pixel count checked from the header
before decoding, a queue of fixed length that answers 503 when full) are a few dozen explicit
lines here, not settings to find and trust in a large framework. (3) *Weight*: FastAPI,
uvicorn and python-multipart are three small packages; Gradio pulls in well over a hundred
megabytes of dependencies. (4) *An API for free*: the page is a client of the same documented
``POST /api/translate`` that scripts use, so testing one tests the other.

Routes
------
``GET /`` the page; ``GET /static/*`` its script and style; ``GET /api/info`` the models,
modes, directions and limits (JSON); ``GET /api/health``; ``POST /api/translate`` an image in
(the raw body, or a multipart field named ``image``; ``model``, ``mode`` = ``image`` | ``face``
(default: ``face`` for a model trained on face crops when the server can swap faces, else
``image``), ``direction`` = ``AtoB`` | ``BtoA`` as query or form fields), a PNG out. Every error is JSON
``{"error": "<what went wrong and what to do>", "status": <code>}``.

Order of a translation request
------------------------------
Host and Origin are checked first (:mod:`~cyclekit.serve.guard`: ``400`` / ``403``), then the
body is read under the byte limit and the body timeouts (``413`` / ``408``), the parameters and
the image header are checked (``400`` / ``413`` / ``415``), and only then does the request take
a place in the work queue (``503`` with ``Retry-After`` when full): a slow upload never holds a
place that a complete one could use. A :class:`~cyclekit.errors.UserError` raised by the model
code is about the image (e.g. too small for the network) and answers ``422`` with its sentence; a
broken model file is ``500`` with its sentence; anything else is ``500`` with a generic message,
and each is one line in the log.
"""

import logging
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import numpy as np

from cyclekit.errors import CheckpointError, ConfigError, UserError
from cyclekit.io.channels import grey_as_source, without_opaque_alpha
from cyclekit.serve.guard import GuardMiddleware, HostPolicy
from cyclekit.serve.limits import BodyLimitMiddleware, Limits, UploadError, decode_image, encode_png, inspect_image
from cyclekit.serve.models import DIRECTIONS, ModelStore, face_swap_support
from cyclekit.serve.queue import QueueFull, WorkQueue
from cyclekit.serve.server import BackgroundServer, bind_socket, url_of

__all__ = ["BackgroundServer", "Service", "bind_socket", "create_app", "url_of"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MODES = {"image": "Whole image", "face": "Face swap"}
FIELDS = ("model", "mode", "direction", "all_faces", "strength")
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
     b"img-src 'self' blob: data:; media-src 'self' blob: mediastream:; connect-src 'self' blob:; "
     b"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(self), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Pure ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Service:
    """The state one app holds: its models, limits, work queue and face-swap support."""

    def __init__(self, store: ModelStore, limits: Limits, queue: WorkQueue) -> None:
        self.store, self.limits, self.queue = store, limits, queue
        self.swap_image, self.face_reason = face_swap_support()
        self.no_way_back: set[str] = set()  # models whose generator back did not load (way_back)

    def info(self) -> dict[str, Any]:
        modes = [{"id": "image", "label": MODES["image"], "available": True, "reason": ""},
                 {"id": "face", "label": MODES["face"], "available": self.swap_image is not None,
                  "reason": self.face_reason}]
        return {"models": [e.info() for e in self.store.entries.values()],
                "default_model": self.store.default, "modes": modes,
                "limits": self.limits.as_dict(), "formats": ["PNG", "JPEG", "WebP", "BMP", "TIFF", "GIF"],
                "backend": self.store.backend, "queue": self.queue.stats()}

    def check_params(self, model: Optional[str], mode: Optional[str], direction: Optional[str]):
        model = model or self.store.default
        if model not in self.store.entries:
            raise UploadError(400, f"unknown model {model!r}; this server offers: "
                                   f"{', '.join(self.store.entries)}")
        mode = mode or ("face" if self.store.entries[model].face and self.swap_image is not None else "image")
        if mode not in MODES:
            raise UploadError(400, f"unknown mode {mode!r}; use 'image' (whole image) or 'face' (face swap)")
        if mode == "face" and self.swap_image is None:
            raise UploadError(501, f"face swap is not available on this server: {self.face_reason}")
        offered = self.store.entries[model].directions
        direction = direction or offered[0]
        if direction not in DIRECTIONS:
            raise UploadError(400, f"unknown direction {direction!r}; use AtoB or BtoA")
        if direction not in offered:
            raise UploadError(400, f"model {model!r} only translates {', '.join(offered)} (it is an exported "
                                   "ONNX file holding one generator)")
        return model, mode, direction

    def way_back(self, model: str, direction: str, translator):
        """The model's generator the other way, for the face swap's cycle check
        (:mod:`cyclekit.faces.cycle`), or None: when the release records no ``cycle_limit`` that
        :func:`~cyclekit.faces.cycle.recorded_limit` takes, for an ONNX file (one generator), with
        another backend than torch (as in ``cyclekit swap``), or when it does not load (the swap
        goes on without the check)."""
        from cyclekit.faces.cycle import recorded_limit

        entry = self.store.entries[model]
        other = "BtoA" if direction == "AtoB" else "AtoB"
        if (entry.onnx or self.store.backend != "torch" or other not in entry.directions
                or model in self.no_way_back or recorded_limit(translator) is None):
            return None
        try:
            return self.store.get(model, other)
        except UserError as exc:
            self.no_way_back.add(model)
            log.warning("model %s: no cycle check in face mode (%s does not load: %s)", model, other, exc)
            return None

    def translate(self, data: bytes, model: str, mode: str, direction: str,
                  all_faces: bool = False, strength: Optional[float] = None) -> tuple[bytes, dict]:
        """Worker-thread job: decode, translate (whole image or faces), encode PNG."""
        from cyclekit.infer.translator import translate_array

        t0 = time.perf_counter()
        translator = self.store.get(model, direction)
        meta: dict[str, Any] = {}
        if mode == "face":  # read as cyclekit swap reads a file: alpha and grey come back as sent
            image = without_opaque_alpha(decode_image(data, 4, self.limits))
            out, meta["faces"], meta["message"] = self.swap_image(image, translator, all_faces,
                                                                  self.way_back(model, direction, translator),
                                                                  strength=strength)
            out = grey_as_source(image, np.asarray(out, dtype=np.float32))
            if strength is None:  # what the swap used: the model's recommendation for the direction
                from cyclekit.faces.pipeline import recommended_strength

                strength = recommended_strength(translator)
            meta["strength"] = strength
        else:
            image = decode_image(data, self.store.entries[model].in_channels, self.limits)
            out = translate_array(translator, image)
        png = encode_png(np.asarray(out, dtype=np.float32))
        meta.update(width=int(image.shape[1]), height=int(image.shape[0]),
                    ms=round((time.perf_counter() - t0) * 1000, 1))
        return png, meta


def face_strength(text: str, mode: str) -> Optional[float]:
    """The ``strength`` parameter: None (the model's recommendation) when empty, else a number in
    face mode's range (:func:`cyclekit.faces.pipeline.check_strength`); a 400 otherwise."""
    if not text:
        return None
    if mode != "face":
        raise UploadError(400, "strength applies to face mode only (mode=face)")
    from cyclekit.faces.pipeline import check_strength

    try:
        value = float(text)
    except ValueError:
        raise UploadError(400, f"strength must be a number such as 1.2, not {text[:20]!r}") from None
    try:
        return check_strength(value)
    except ConfigError as exc:
        raise UploadError(400, str(exc).replace("--strength", "strength")) from None


def create_app(model: Union[str, Path], limits: Optional[Limits] = None, *, backend: str = "torch",
               device: str = "cpu", precision: str = "fp32", max_pending: int = 64, workers: int = 1,
               threads: Optional[int] = None, max_loaded: int = 4, preload: bool = True,
               allowed_hosts: Iterable[str] = ()):
    """Build the FastAPI app for one model or a folder of models (see the module notes).

    ``model``: a run directory, a release folder, an exported ``.onnx`` file (always run with
    onnxruntime; one direction), or a folder of those. ``backend`` runs releases with ``torch`` or
    ``onnxruntime`` (exported in memory). ``preload`` loads every model once now, so a broken
    one is skipped at start-up (a warning) rather than failing on a visitor's request.
    ``allowed_hosts``: host names accepted besides localhost, 127.0.0.1 and [::1] (``"*"``: any).
    """
    import importlib.util

    from cyclekit.errors import require

    require("fastapi", "serve", "the web server")
    if importlib.util.find_spec("python_multipart") is None:  # older releases: only "multipart"
        require("multipart", "serve", "image uploads (python-multipart)")
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    limits = limits or Limits()
    store = ModelStore(model, backend=backend, device=device, precision=precision, max_loaded=max_loaded)
    if preload:
        store.preload()
    queue = WorkQueue(max_pending=max_pending, workers=workers, threads=threads)
    service = Service(store, limits, queue)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        queue.close()

    # Docs pages are off: Swagger UI and ReDoc load their scripts from a CDN.
    app = FastAPI(title="cyclekit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.service = service
    app.state.hosts = HostPolicy(allowed_hosts)
    app.add_middleware(BodyLimitMiddleware, limits=limits)  # innermost of the three
    app.add_middleware(GuardMiddleware, policy=app.state.hosts)
    app.add_middleware(SecurityHeaders)  # outermost: refusals carry the headers too
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)

    @app.exception_handler(UploadError)
    async def _upload_error(_req, exc: UploadError):
        return error(exc.status, exc.message)

    @app.exception_handler(QueueFull)
    async def _busy(_req, exc: QueueFull):
        return error(503, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(HTTPException)
    async def _http(_req, exc: HTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            msg = "not found: the page is at / and the API at /api/translate (see the README)"
        elif exc.status_code == 405:
            msg = "method not allowed: POST an image to /api/translate; GET / is the page (see the README)"
        return error(exc.status_code, msg, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req, exc: RequestValidationError):
        return error(422, f"invalid request: {exc.errors()}")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/info")
    async def info():
        return service.info()

    @app.get("/api/health")
    async def health():
        return {"ok": True, "models": list(store.entries), "loaded": store.loaded(), "queue": queue.stats()}

    @app.post("/api/translate")
    async def translate(request: Request):
        q = request.query_params
        if any(k in q for k in ("model", "mode", "direction")):  # fail before reading the body
            service.check_params(q.get("model"), q.get("mode"), q.get("direction"))
        data, fields, filename = await read_upload(request)  # 408/413 while it streams in
        model, mode, direction = service.check_params(fields.get("model"), fields.get("mode"), fields.get("direction"))
        inspect_image(data, limits)  # 413/415/400 from the header, nothing decoded yet
        all_faces = fields.get("all_faces", "").lower()
        if all_faces not in ("", "0", "1", "false", "true", "no", "yes", "off", "on"):
            raise UploadError(400, f"all_faces must be 1 or 0 (true/false), not {fields['all_faces'][:20]!r}")
        all_faces = all_faces in ("1", "true", "yes", "on")
        strength = face_strength(fields.get("strength", ""), mode)
        job = f"model {model}, {mode}, {direction}"
        async with queue.slot():  # only complete, checked uploads wait here; 503 when full
            try:
                png, meta = await queue.run(service.translate, data, model, mode, direction, all_faces, strength)
            except UploadError:
                raise
            except CheckpointError as exc:  # a model file that cannot be read: the server's problem
                log.error("translation failed (%s): %s", job, exc)
                return error(500, f"the server could not run the model: {exc}")
            except UserError as exc:  # about this image (e.g. too small for the network)
                log.info("refused an image (%s): %s", job, exc)
                return error(422, str(exc))
            except Exception as exc:  # a bug or the machine (out of memory): one line, no traceback
                log.error("translation failed (%s): %s: %s", job, type(exc).__name__, exc)
                return error(500, "the translation failed on the server; its log has the details")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(filename).stem)[:80] or "image"
        headers = {"Content-Disposition": f'inline; filename="{stem}_{model}_{direction}.png"',
                   "X-Cyclekit-Model": model, "X-Cyclekit-Direction": direction, "X-Cyclekit-Mode": mode,
                   "X-Cyclekit-Ms": str(meta["ms"]), "Cache-Control": "no-store"}
        if "faces" in meta:
            headers["X-Cyclekit-Faces"] = str(meta["faces"])
            headers["X-Cyclekit-Message"] = meta["message"].encode("ascii", "replace").decode()
            headers["X-Cyclekit-Strength"] = f"{meta['strength']:g}"
        return Response(png, media_type="image/png", headers=headers)

    async def read_upload(request: Request) -> tuple[bytes, dict[str, str], str]:
        """The image bytes, the parameters (query, overridden by form fields) and a file name."""
        fields = {k: request.query_params[k] for k in FIELDS if k in request.query_params}
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=8) as form:
                upload = form.get("image") or form.get("file")
                for k in FIELDS:
                    if isinstance(form.get(k), str) and form.get(k):
                        fields[k] = form.get(k)
                if upload is None or isinstance(upload, str):
                    raise UploadError(400, "the multipart upload has no file: send it in a field named 'image'")
                return await upload.read(), fields, upload.filename or "image"
        # Anything else (image/*, application/octet-stream, or curl --data-binary's default
        # x-www-form-urlencoded) is taken as the image bytes themselves.
        return await request.body(), fields, request.query_params.get("filename", "image")

    return app
