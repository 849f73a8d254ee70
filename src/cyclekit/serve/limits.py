"""What the web server accepts, checked as early and as cheaply as possible.

Three gates stand between an upload and the model, each cheaper than the next:

1. **Bytes.** :class:`BodyLimitMiddleware` refuses a request whose ``Content-Length`` is over the
   limit before reading any of it, and counts the bytes of every body as they stream in, so a
   client that lies about (or omits) the length is cut off at the limit too: ``413``.
2. **Header.** :func:`inspect_image` opens the upload lazily with Pillow (only the header is
   parsed; nothing is decoded), restricted to the formats a camera or an editor writes (no EPS,
   which would run Ghostscript). Not an image: ``415``. More pixels than ``max_pixels``:
   ``413``, before a single pixel is decompressed, so a 50 kB PNG claiming 50000x50000 (a
   "decompression bomb") costs nothing. Pillow's own ``DecompressionBombError`` is caught too.
3. **Pixels.** :func:`decode_image` decodes the whole image (a truncated or corrupt file fails
   here: ``400``), applies the EXIF orientation and returns ``HxWxC`` float32 in ``[0, 1]`` with
   the channel conventions of :mod:`cyclekit.data.images` (alpha composited on white).

Every refusal is an :class:`UploadError` carrying an HTTP status and a sentence a person can act
on; the app turns it into ``{"error": "..."}``.
"""
from __future__ import annotations

import io
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cyclekit.errors import UserError

# Formats Pillow may try. Everything else (EPS, PSD, ICO, ...) is refused unopened.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
MULTIPART_SLACK = 64 * 1024  # multipart boundaries and headers around the file itself


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

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_side"):
            if getattr(self, name) < 1:
                raise UserError(f"serve: {name} must be at least 1, got {getattr(self, name)}")

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
class BodyLimitMiddleware:
    """Pure ASGI middleware: ``413`` for request bodies over ``max_body`` bytes, without buffering.

    The declared ``Content-Length`` is checked first; the body is then counted chunk by chunk as
    the application reads it, and the application is interrupted at the first byte over the limit
    (a chunked upload or a lying header cannot get past it).
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
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise UploadError(413, too_large_message(self.limits))
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except UploadError as exc:
            if started:
                raise
            await send_json_error(send, exc.status, exc.message)


async def send_json_error(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
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
    """Decode a checked upload to float32 ``HxWxchannels`` in ``[0, 1]``; ``400`` if it is corrupt."""
    from PIL import Image, ImageOps

    from cyclekit.data.images import convert_channels

    inspect_image(data, limits)  # cheap, and keeps this function safe on its own
    try:
        with _open(data) as im:
            im.seek(0)  # first frame of an animation
            im.load()  # decodes everything: a truncated file fails here
            im = ImageOps.exif_transpose(im)
            arr, kind = _to_array(im)
    except UploadError:
        raise
    except Image.DecompressionBombError as exc:  # pragma: no cover - inspect_image runs first
        raise UploadError(413, f"the image is far too large to open safely ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            reason = "the file is truncated (an interrupted download or copy?)"
        raise UploadError(400, f"the image cannot be decoded: {reason}; re-export it as PNG or JPEG") from None
    try:
        return convert_channels(arr, kind, channels, "the upload")
    except UserError as exc:
        raise UploadError(422, str(exc)) from None


def _to_array(im) -> tuple[np.ndarray, str]:
    """A decoded Pillow image -> (float32 HxWxK array in [0, 1], what its channels mean)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im).astype(np.float32)[:, :, None] / 65535.0, "L"
    if im.mode in ("I", "F"):
        a = np.asarray(im).astype(np.float32)
        scale = 65535.0 if im.mode == "I" else 1.0
        return np.clip(a / scale, 0.0, 1.0)[:, :, None], "L"
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if im.mode in ("1", "L", "LA", "La"):
        target = "LA" if has_alpha else "L"
    else:
        target = "RGBA" if has_alpha else "RGB"
    if im.mode != target:
        im = im.convert(target)
    a = np.asarray(im, dtype=np.uint8).astype(np.float32) / 255.0
    return (a[:, :, None] if a.ndim == 2 else a), target


def encode_png(image: np.ndarray, compress_level: int = 3) -> bytes:
    """HxWxC float [0, 1] (C = 1, 3 or 4) -> 8-bit PNG bytes, rounded as ``save_image`` rounds."""
    from PIL import Image

    a8 = np.round(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0).astype(np.uint8)
    im = Image.fromarray(a8[:, :, 0] if a8.shape[2] == 1 else a8)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
