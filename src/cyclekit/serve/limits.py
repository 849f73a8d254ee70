"""What the web server accepts, checked as early and as cheaply as possible.

Three gates stand between an upload and the model, each cheaper than the next:

1. **Bytes.** :class:`BodyLimitMiddleware` refuses a request whose ``Content-Length`` is over the
   limit before reading any of it, and counts the bytes of every body as they stream in, so a
   client that lies about (or omits) the length is cut off at the limit too: ``413``. It also
   times the body: an upload that sends nothing for ``body_idle_timeout`` seconds, or is not
   complete after ``body_timeout`` seconds, is answered ``408`` and its connection closed, so a
   stalled or trickling client cannot hold the server's memory or connections for long.
2. **Header.** :func:`inspect_image` opens the upload lazily with Pillow (only the header is
   parsed; nothing is decoded), restricted to the formats a camera or an editor writes (no EPS,
   which would run Ghostscript). Not an image: ``415``. More pixels than ``max_pixels``:
   ``413``, before a single pixel is decompressed, so a 50 kB PNG claiming 50000x50000 (a
   "decompression bomb") costs nothing. Pillow's own ``DecompressionBombError`` is caught too.
3. **Pixels.** :func:`decode_image` decodes the whole image (a truncated or corrupt file fails
   here: ``400``), applies the EXIF orientation and returns ``HxWxC`` float32 in ``[0, 1]`` with
   the channel conventions of :mod:`cyclekit.io.images` (alpha composited on white).

Every refusal is an :class:`UploadError` carrying an HTTP status and a sentence a person can act
on; the app turns it into ``{"error": "..."}``.
"""
from __future__ import annotations

import asyncio
import io
import logging
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cyclekit.errors import UserError

log = logging.getLogger(__name__)
# Formats Pillow may try. Everything else (EPS, PSD, ICO, ...) is refused unopened.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
MULTIPART_SLACK = 64 * 1024  # multipart boundaries and headers around the file itself
CUT_OFF = (408, 413)  # answers after which the rest of the request body is not read


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def human_pixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels" if n >= 100_000 else f"{n} pixels"


@dataclass(frozen=True)
class Limits:
    """Upload limits. ``max_pixels`` also bounds the memory one inference can take."""

    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 2048 * 2048
    max_side: int = 16384  # a 1 x 4,000,000 strip is within the pixel count but not a photo
    body_idle_timeout: float = 10.0  # seconds an upload may send nothing before it is dropped (408)
    body_timeout: float = 120.0  # seconds a whole upload may take, however it trickles in (408)
    header_timeout: float = 10.0  # seconds a connection has to send a complete request head
    max_connections: int = 128  # open connections at once; uvicorn answers 503 beyond

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_side", "max_connections"):
            if getattr(self, name) < 1:
                raise UserError(f"serve: {name} must be at least 1, got {getattr(self, name)}")
        for name in ("body_idle_timeout", "body_timeout", "header_timeout"):
            if not getattr(self, name) > 0:
                raise UserError(f"serve: {name} must be a positive number of seconds, got {getattr(self, name)}")
        if self.body_idle_timeout > self.body_timeout:
            raise UserError(f"serve: body_idle_timeout ({self.body_idle_timeout} s) cannot exceed "
                            f"body_timeout ({self.body_timeout} s)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UploadError(UserError):
    """An upload the server refuses: ``status`` is the HTTP code, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def too_large_message(limits: Limits, size: int | None = None) -> str:
    got = f" ({human_bytes(size)})" if size is not None else ""
    return (f"the upload is too large{got}: the limit is {human_bytes(limits.max_upload_bytes)}; "
            "send a smaller file (a PNG or JPEG photo of a few megapixels is plenty)")


# ---------------------------------------------------------------------- bytes
class ClientGone(Exception):
    """The client closed its connection before its upload was complete (nobody to answer)."""


class BodyLimitMiddleware:
    """Pure ASGI middleware: ``413`` for request bodies over ``max_body`` bytes, without buffering.

    The declared ``Content-Length`` is checked first; the body is then counted chunk by chunk as
    the application reads it, and the application is interrupted at the first byte over the limit
    (a chunked upload or a lying header cannot get past it). Each wait for the next chunk is
    bounded by ``body_idle_timeout`` and the whole body by ``body_timeout`` (``408``). Those two
    answers carry ``Connection: close``: the server reads no more of that body. (Other early
    answers, e.g. a bad parameter, let uvicorn discard the rest, so the client reads the answer
    rather than a reset.) A client that leaves mid-upload is one log line, not a traceback.
    """

    def __init__(self, app, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.max_body = limits.max_upload_bytes + MULTIPART_SLACK

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await send_json_error(send, 400, "the Content-Length header is not a number")
                return
            if n > self.max_body:
                await send_json_error(send, 413, too_large_message(self.limits, n))
                return
        received = 0
        started = body_done = False
        clock = asyncio.get_running_loop().time
        deadline = clock() + self.limits.body_timeout
        who = "%s:%s" % tuple(scope.get("client") or ("?", "?"))

        async def counted_receive():
            nonlocal received, body_done
            if body_done:  # after the body only http.disconnect can come: no deadline
                return await receive()
            idle = self.limits.body_idle_timeout
            wait = min(idle, deadline - clock())
            try:
                message = await asyncio.wait_for(receive(), max(wait, 0.0))
            except asyncio.TimeoutError:
                if wait >= idle:
                    reason = (f"the upload stalled: nothing arrived for {idle:g} seconds, so the server "
                              "dropped it; check the connection and try again")
                else:
                    reason = (f"the upload took longer than {self.limits.body_timeout:g} seconds, so the "
                              "server dropped it; send a smaller file or use a faster connection")
                log.info("dropped the upload from %s after %d bytes: %s", who, received, reason.split(":")[0])
                raise UploadError(408, reason) from None
            if message["type"] == "http.disconnect":
                raise ClientGone()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_body:
                    raise UploadError(413, too_large_message(self.limits))
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done and message["status"] in CUT_OFF:  # read no more of it
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except ClientGone:
            log.info("client %s disconnected mid-upload (after %d bytes); request dropped", who, received)
        except UploadError as exc:
            if started:
                raise
            await send_json_error(send, exc.status, exc.message, close=exc.status in CUT_OFF)


async def send_json_error(send, status: int, message: str, close: bool = True) -> None:
    import json

    body = json.dumps({"error": message, "status": status}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + [(b"connection", b"close")] if close else headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------- header
@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    mode: str


def _open(data: bytes):
    """Open lazily (header only) with the allowed formats; Pillow's bomb warning is ours to judge."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)


def inspect_image(data: bytes, limits: Limits) -> ImageInfo:
    """Check size, type and dimensions from the header alone; raise :class:`UploadError`."""
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise UploadError(400, "the upload is empty: choose an image file (PNG, JPEG, WebP, BMP or TIFF)")
    if len(data) > limits.max_upload_bytes:
        raise UploadError(413, too_large_message(limits, len(data)))
    try:
        with _open(data) as im:
            info = ImageInfo(im.format or "?", im.size[0], im.size[1], im.mode)
    except UnidentifiedImageError:
        raise UploadError(415, "this file is not an image the server can read: send a PNG, JPEG, "
                               "WebP, BMP or TIFF file") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard fired first (> 2x its limit)
        m = re.search(r"\((\d+) pixels\)", str(exc))
        claimed = human_pixels(int(m.group(1))) if m else "far too many pixels"
        raise UploadError(413, f"the image header claims {claimed}; this server accepts at most "
                               f"{human_pixels(limits.max_pixels)}: resize it and try again") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        raise UploadError(400, f"the image header is broken ({exc or type(exc).__name__}); "
                               "re-export the image as PNG or JPEG") from None
    pixels = info.width * info.height
    if info.width < 1 or info.height < 1:
        raise UploadError(400, f"the image has no pixels ({info.width}x{info.height})")
    if pixels > limits.max_pixels or max(info.width, info.height) > limits.max_side:
        raise UploadError(413, (
            f"the image is {info.width}x{info.height} ({human_pixels(pixels)}); this server accepts "
            f"at most {human_pixels(limits.max_pixels)} and {limits.max_side} pixels per side: "
            "resize it and try again"))
    return info


# ---------------------------------------------------------------------- pixels
def decode_image(data: bytes, channels: int, limits: Limits) -> np.ndarray:
    """Decode a checked upload to float32 ``HxWxchannels`` in ``[0, 1]`` with the one image decoder
    (:func:`cyclekit.io.images.decode_image_bytes`, so 16-bit, alpha and EXIF are handled as for
    files); ``400`` if it is corrupt, ``422`` if its channels do not suit the model."""
    from PIL import Image

    from cyclekit.errors import DataError
    from cyclekit.io.images import decode_image_bytes

    inspect_image(data, limits)  # cheap, and keeps this function safe on its own
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # inspect_image judged the size
            return decode_image_bytes(data, channels, "the upload", formats=ALLOWED_FORMATS)
    except DataError as exc:
        text = str(exc)
        status = 422 if "channel" in text else 400
        raise UploadError(status, f"{text}; re-export it as PNG or JPEG" if status == 400 else text) from None


def encode_png(image: np.ndarray, compress_level: int = 3) -> bytes:
    """HxWxC float [0, 1] (C = 1, 2, 3 or 4) -> 8-bit PNG bytes, rounded as ``save_image`` rounds."""
    from PIL import Image

    a8 = np.round(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0).astype(np.uint8)
    im = Image.fromarray(a8[:, :, 0] if a8.shape[2] == 1 else a8)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
