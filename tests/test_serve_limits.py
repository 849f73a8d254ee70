"""Upload checks, the work queue, and the HTTP guards of the web server (stalled and slow clients,
Host and Origin checks, disconnects) against a real uvicorn on loopback with short timeouts."""
from __future__ import annotations

import asyncio
import io
import logging
import socket
import time

import numpy as np
import pytest

from cyclekit.errors import UserError
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


def test_retry_after_is_jobs_ahead_times_recent_service_time():
    q = WorkQueue(max_pending=8, workers=1)
    try:
        assert q.retry_after(0) == 1  # never 0: "retry at once" would be a busy loop
        for _ in range(6):
            q.estimate.job(2.0)  # the worker took 2 s per image
        assert q.retry_after(5) == 10  # 5 jobs ahead x 2 s
        q.workers = 2
        assert q.retry_after(5) == 5  # two workers drain twice as fast
        # The worker is quick but jobs leave the queue slowly (event loop, uploads, responses):
        # the interval between completions under backlog wins over the worker's own time.
        q.workers = 1
        for i in range(10):
            q.estimate.job(0.01)
        for i in range(6):
            q.estimate.released(100.0 + 0.25 * i, backlog=True)
        assert q.retry_after(40) == 10  # 40 x 0.25 s, not 40 x 0.01 s
        # A completion after an idle gap (no backlog) says nothing about the drain rate.
        q.estimate.released(500.0, backlog=False)
        assert q.retry_after(40) == 10
    finally:
        q.close()


def test_queue_full_carries_the_estimate():
    async def scenario():
        q = WorkQueue(max_pending=3, workers=1)
        for _ in range(4):
            q.estimate.job(1.5)
        async with q.slot(), q.slot(), q.slot():
            with pytest.raises(QueueFull) as full:
                async with q.slot():
                    pass
        q.close()
        return full.value

    full = asyncio.run(scenario())
    assert full.retry_after == 5  # ceil(3 jobs ahead x 1.5 s)
    assert "5 s" in str(full)


def test_limits_validate_timeouts():
    limits = Limits(body_idle_timeout=2.5, body_timeout=30, header_timeout=4, max_connections=10)
    assert limits.as_dict()["body_idle_timeout"] == 2.5
    for bad in ({"body_idle_timeout": 0}, {"body_timeout": -1}, {"header_timeout": 0}, {"max_connections": 0},
                {"body_idle_timeout": 20, "body_timeout": 10}):
        with pytest.raises(UserError):
            Limits(**bad)


@pytest.mark.parametrize("host, ok", [
    ("localhost", True), ("localhost:8000", True), ("LOCALHOST.:8000", True), ("127.0.0.1", True),
    ("127.0.0.1:1", True), ("[::1]", True), ("[::1]:8000", True), ("photos.lan:8000", True),
    ("evil.example", False), ("evil.example:8000", False), ("127.0.0.1.evil.example", False),
    ("localhost@evil.example", False), ("", False), ("[::2]:80", False), ("::1", False),
])
def test_host_names_accepted(host, ok):
    from cyclekit.serve.guard import HostPolicy

    assert HostPolicy(["photos.lan"]).allows(host) is ok
    assert HostPolicy(["*"]).allows(host) is True


@pytest.mark.parametrize("origin, referer, own", [
    (None, None, True), ("http://127.0.0.1:8000", None, True), ("http://127.0.0.1:8000/", None, True),
    ("http://evil.example", None, False), ("null", None, False), ("https://127.0.0.1:8000", None, False),
    ("http://127.0.0.1:8001", None, False), (None, "http://127.0.0.1:8000/index.html", True),
    (None, "http://evil.example/page", False), ("http://127.0.0.1:8000", "http://evil.example/", True),
])
def test_same_origin_check(origin, referer, own):
    from cyclekit.serve.guard import same_origin

    assert same_origin(origin, referer, "http", "127.0.0.1:8000") is own


# ---------------------------------------------------------------------- against a server
GUARDED = Limits(max_upload_bytes=300_000, max_pixels=256 * 256, body_idle_timeout=1.5, body_timeout=2.5,
                 header_timeout=1.0, max_connections=24)


@pytest.fixture(scope="module")
def photo(tiny_world) -> bytes:
    return sorted((tiny_world / "testA").glob("*.png"))[0].read_bytes()


@pytest.fixture(scope="module")
def guarded(tiny_release):
    pytest.importorskip("fastapi")
    from cyclekit.serve import BackgroundServer, create_app

    app = create_app(tiny_release, GUARDED, device="cpu", max_pending=2, allowed_hosts=["photos.lan"])
    with BackgroundServer(app) as url:
        yield url, int(url.rsplit(":", 1)[1]), app


def post_head(port: int, length: int, host: str = "") -> bytes:
    return (f"POST /api/translate HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {length}\r\n\r\n").encode()


def raw(port: int, data: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=6)
    s.sendall(data)
    return s


def until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it never does)."""
    out = []
    with s:
        while chunk := s.recv(65536):
            out.append(chunk)
    return b"".join(out)


def test_stalled_uploads_hold_no_queue_slot_and_are_dropped(guarded, photo):
    httpx = pytest.importorskip("httpx")
    url, port, _ = guarded
    stalled = [raw(port, post_head(port, len(photo)) + photo[:100]) for _ in range(8)]  # 4 x max_pending
    time.sleep(0.3)
    t0 = time.monotonic()
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/api/translate", content=photo)
    assert r.status_code == 200, r.text  # was 503: the stalled uploads held every slot
    assert time.monotonic() - t0 < GUARDED.body_idle_timeout  # served before any stalled one was dropped
    for s in stalled:  # each is answered 408 after the idle timeout and closed
        answer = until_closed(s)
        assert answer.startswith(b"HTTP/1.1 408") and b"stalled" in answer
    assert time.monotonic() - t0 < GUARDED.body_idle_timeout + 3


def test_a_dripping_upload_meets_the_total_deadline(guarded, photo):
    url, port, _ = guarded
    s = raw(port, post_head(port, len(photo)))
    t0 = time.monotonic()
    answer = b""
    for i in range(40):  # one byte every 0.3 s: never idle for long, but far too slow
        try:
            s.sendall(photo[i:i + 1])
        except OSError:  # the server closed it
            break
        time.sleep(0.3)
        if time.monotonic() - t0 > GUARDED.body_timeout + 0.5:
            break
    answer = until_closed(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"seconds" in answer
    assert time.monotonic() - t0 < GUARDED.body_timeout + 2


def test_connections_without_a_complete_request_are_closed(guarded):
    _, port, _ = guarded
    t0 = time.monotonic()
    silent = socket.create_connection(("127.0.0.1", port), timeout=6)
    partial = raw(port, b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    for s in (silent, partial):
        until_closed(s)  # socket.timeout (test failure) if the server keeps it open
    assert time.monotonic() - t0 < GUARDED.header_timeout + 2


def test_connection_cap_answers_503_then_recovers(tiny_release):
    httpx = pytest.importorskip("httpx")
    from cyclekit.serve import BackgroundServer, create_app

    limits = Limits(max_connections=3, header_timeout=1.0)
    with BackgroundServer(create_app(tiny_release, limits, device="cpu")) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=6) for _ in range(3)]
        time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=10) as c:
            assert c.get("/api/health").status_code == 503  # uvicorn's limit_concurrency
        for s in idle:
            until_closed(s)
        with httpx.Client(base_url=url, timeout=10) as c:
            assert c.get("/api/health").status_code == 200


@pytest.mark.parametrize("host, status", [
    ("evil.example", 400), ("evil.example:{port}", 400), ("localhost:{port}", 200), ("[::1]:{port}", 200),
    ("photos.lan", 200), ("127.0.0.1:{port}", 200),
])
def test_host_header_is_checked(guarded, host, status):
    httpx = pytest.importorskip("httpx")
    url, port, _ = guarded
    with httpx.Client(base_url=url, timeout=10) as c:
        r = c.get("/api/info", headers={"Host": host.format(port=port)})
        assert r.status_code == status
        if status == 400:
            assert "host" in r.json()["error"] and "--allowed-host" in r.json()["error"]
        r = c.post("/api/translate", content=b"x", headers={"Host": host.format(port=port)})
        assert (r.status_code == 400 and "host" in r.json()["error"]) if status == 400 else r.status_code == 415


def test_cross_origin_posts_are_refused(guarded, photo):
    httpx = pytest.importorskip("httpx")
    url, port, _ = guarded
    with httpx.Client(base_url=url, timeout=30) as c:
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                        {"Referer": "http://evil.example/attack.html"}, {"Origin": f"http://localhost:{port + 1}"}):
            r = c.post("/api/translate", content=photo, headers=headers)
            assert r.status_code == 403, headers
            assert "origin" in r.json()["error"]
        for headers in ({}, {"Origin": url}, {"Referer": url + "/"},
                        {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}):
            assert c.post("/api/translate", content=photo, headers=headers).status_code == 200, headers
        assert c.get("/api/info", headers={"Origin": "http://evil.example"}).status_code == 200  # reads: CORS


def test_a_client_leaving_mid_upload_is_one_log_line(guarded, photo, caplog, monkeypatch):
    _, port, _ = guarded
    monkeypatch.setattr(logging.getLogger("uvicorn"), "propagate", True)  # see uvicorn's own records too
    with caplog.at_level(logging.INFO):
        s = raw(port, post_head(port, len(photo)) + photo[:100])
        time.sleep(0.2)
        s.close()
        deadline = time.monotonic() + 5
        while not any("disconnect" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # anything logged after the line
    lines = [r for r in caplog.records if r.name.startswith(("cyclekit", "uvicorn"))]
    assert [r.levelno for r in lines if "disconnect" in r.getMessage()] == [logging.INFO]
    assert not [r for r in lines if r.exc_info or r.levelno >= logging.ERROR], [r.getMessage() for r in lines]


def test_a_broken_model_in_a_folder_is_skipped_with_one_warning(tiny_release, tmp_path, photo, caplog):
    import shutil

    httpx = pytest.importorskip("httpx")
    from cyclekit.serve import BackgroundServer, create_app

    folder = tmp_path / "models"
    for name in ("bad_config", "bad_weights", "good"):
        shutil.copytree(tiny_release / "model", folder / name)
    (folder / "bad_config" / "config.json").write_text("{ this is not json")
    (folder / "bad_weights" / "model.safetensors").write_bytes(b"\0" * 64)
    with caplog.at_level(logging.WARNING, logger="cyclekit"):
        app = create_app(folder, GUARDED, device="cpu")
    assert list(app.state.service.store.entries) == ["good"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(r.getMessage().split(":")[0] for r in warnings) == ["skipping model bad_config",
                                                                      "skipping model bad_weights"]
    assert not any(r.exc_info for r in caplog.records)
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/api/translate", content=photo).status_code == 200
    shutil.rmtree(folder / "good")
    with pytest.raises(UserError, match="no usable model in") as err:
        create_app(folder, GUARDED, device="cpu")
    assert "\n" not in str(err.value)


def test_errors_in_the_model_are_4xx_for_the_client_and_one_log_line(guarded, photo, caplog, monkeypatch):
    httpx = pytest.importorskip("httpx")
    from cyclekit.errors import CheckpointError

    url, _, app = guarded
    client = httpx.Client(base_url=url, timeout=30)
    service, data = app.state.service, photo
    for exc, status, words in ((UserError("the image is too small for this model (3x2): at least 4x4"), 422,
                                "too small"),
                               (CheckpointError("model.safetensors is unreadable"), 500, "could not run the model"),
                               (RuntimeError("CUDA out of memory, internals..."), 500, "failed on the server")):
        def broken(*_args, exc=exc):
            raise exc

        monkeypatch.setattr(service, "translate", broken)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cyclekit"):
            r = client.post("/api/translate", content=data)
        assert r.status_code == status and words in r.json()["error"], r.text
        assert "internals" not in r.json()["error"]  # an unexpected error's text stays in the log
        assert [bool(rec.exc_info) for rec in caplog.records] == [False], caplog.text
    monkeypatch.undo()
    assert client.post("/api/translate", content=data).status_code == 200
    client.close()


def test_a_tiny_image_is_translated_or_refused_readably(guarded):
    httpx = pytest.importorskip("httpx")
    tiny = encode(np.full((2, 3, 3), 90, dtype=np.uint8), "PNG")
    with httpx.Client(base_url=guarded[0], timeout=30) as c:
        r = c.post("/api/translate", content=tiny)
    assert r.status_code == 200 or (400 <= r.status_code < 500 and r.json()["error"]), r.text
    if r.status_code == 200:
        from PIL import Image

        assert Image.open(io.BytesIO(r.content)).size == (3, 2)
