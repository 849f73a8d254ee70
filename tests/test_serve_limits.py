"""Upload checks and the work queue of the web server, without a server."""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest

from cyclekit.serve.limits import Limits, UploadError, decode_image, encode_png, inspect_image
from cyclekit.serve.queue import QueueFull, WorkQueue

LIMITS = Limits(max_upload_bytes=1_000_000, max_pixels=100 * 100)


def encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_formats_and_modes_decode_like_the_library():
    rgb = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    for fmt in ("PNG", "BMP", "TIFF", "WEBP"):
        kw = {"lossless": True} if fmt == "WEBP" else {}
        out = decode_image(encode(rgb, fmt, **kw), 3, LIMITS)
        assert out.dtype == np.float32 and np.array_equal(np.round(out * 255), rgb), fmt
    jpeg = decode_image(encode(rgb, "JPEG", quality=95), 3, LIMITS)
    assert jpeg.shape == (20, 30, 3)
    # RGBA: transparent pixels become white (as a viewer shows them); gray -> 3 equal channels
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    assert np.allclose(decode_image(encode(rgba, "PNG"), 3, LIMITS), 1.0)
    gray = np.full((5, 6), 51, dtype=np.uint8)
    assert np.allclose(decode_image(encode(gray, "PNG"), 3, LIMITS), 0.2)
    assert decode_image(encode(rgb, "PNG"), 1, LIMITS).shape == (20, 30, 1)  # gray models
    deep = np.full((3, 3), 65535 // 4, dtype=np.uint16)  # 16-bit gray keeps its precision
    assert np.allclose(decode_image(encode(deep, "PNG"), 1, LIMITS), (65535 // 4) / 65535, atol=1e-6)


def test_exif_orientation_is_applied():
    from PIL import Image

    im = Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: a portrait phone photo stored as landscape
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    assert decode_image(buf.getvalue(), 3, LIMITS).shape == (20, 10, 3)


@pytest.mark.parametrize("data, status", [
    (b"", 400), (b"GIF89a-not-really", 415), (b"%!PS-Adobe-3.0 EPSF-3.0\n", 415), (b"\x00" * 100, 415),
])
def test_refusals_carry_a_status(data, status):
    with pytest.raises(UploadError) as err:
        inspect_image(data, LIMITS)
    assert err.value.status == status and err.value.message


def test_pixel_and_side_limits_from_the_header():
    ok = encode(np.zeros((100, 100, 3), dtype=np.uint8), "PNG")
    assert inspect_image(ok, LIMITS).width == 100
    for shape, limits in (((101, 100, 3), Limits(max_pixels=10_000)),
                          ((1, 2000, 3), Limits(max_pixels=10**6, max_side=1000))):
        with pytest.raises(UploadError) as err:
            inspect_image(encode(np.zeros(shape, dtype=np.uint8), "PNG"), limits)
        assert err.value.status == 413 and "resize" in err.value.message


def test_encode_png_is_lossless():
    from PIL import Image

    a8 = np.random.default_rng(1).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(encode_png(a8.astype(np.float32) / 255))))
    assert np.array_equal(back, a8)


def test_queue_bounds_pending_and_runs_in_order():
    async def scenario():
        q = WorkQueue(max_pending=2, workers=1)
        order = []

        async def job(i):
            async with q.slot():
                return await q.run(lambda: order.append(i) or i)

        results = await asyncio.gather(job(0), job(1))
        async with q.slot(), q.slot():
            with pytest.raises(QueueFull) as full:
                async with q.slot():
                    pass
        q.close()
        return results, order, full.value, q.stats()

    results, order, full, stats = asyncio.run(scenario())
    assert results == [0, 1] and sorted(order) == [0, 1]
    assert full.retry_after >= 1 and stats["rejected"] == 1 and stats["pending"] == 0 and stats["peak_pending"] == 2
