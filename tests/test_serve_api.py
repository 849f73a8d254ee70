"""The web server's HTTP API on a real uvicorn on loopback: good images, bad files, load, overflow."""
from __future__ import annotations

import io
import re
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from cyclekit.serve import BackgroundServer, Limits, create_app  # noqa: E402

LIMITS = Limits(max_upload_bytes=300_000, max_pixels=256 * 256)


def png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    """A small, well-formed PNG whose header claims ``width x height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = idat or zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def images(tiny_world) -> list[Path]:
    return sorted((tiny_world / "testA").glob("*.png")) + sorted((tiny_world / "testB").glob("*.png"))


@pytest.fixture(scope="module")
def expected(tiny_release, images):
    """What translating each test image directly in Python gives, as 8-bit pixels."""
    from cyclekit.io.images import load_image
    from cyclekit.infer.translator import load_translator, translate_array

    out = {}
    for direction in ("AtoB", "BtoA"):
        tr = load_translator(tiny_release, direction, device="cpu")
        for p in images:
            out[p.name, p.parent.name, direction] = np.round(translate_array(tr, load_image(p, 3)) * 255)
    return out


@pytest.fixture(scope="module")
def server(tiny_release):
    app = create_app(tiny_release, LIMITS, device="cpu", max_pending=64)
    with BackgroundServer(app) as url:
        yield url, app


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as c:
        yield c


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.abs(got.astype(np.float64) - want).max() <= 1  # within 1/255


def assert_serves(client, image: Path, expected) -> None:
    r = client.post("/api/translate", content=image.read_bytes(), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert_close(decode_png(r.content), expected[image.name, image.parent.name, "AtoB"])


def test_info_lists_model_modes_and_limits(client, tiny_release):
    info = client.get("/api/info").json()
    assert [m["name"] for m in info["models"]] == [tiny_release.name]
    assert [d["id"] for d in info["models"][0]["directions"]] == ["AtoB", "BtoA"]
    assert info["limits"]["max_pixels"] == LIMITS.max_pixels
    assert {m["id"] for m in info["modes"]} == {"image", "face"}
    assert client.get("/api/health").json()["ok"] is True


def test_raw_and_multipart_uploads_match_direct_translation(client, images, expected):
    for image in images[:2]:
        for direction in ("AtoB", "BtoA"):
            r = client.post(f"/api/translate?direction={direction}", content=image.read_bytes())
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "image/png"
            assert r.headers["x-cyclekit-direction"] == direction
            assert_close(decode_png(r.content), expected[image.name, image.parent.name, direction])
    image = images[-1]
    r = client.post("/api/translate", files={"image": (image.name, image.read_bytes(), "image/png")},
                    data={"direction": "BtoA"})
    assert r.status_code == 200, r.text
    assert image.stem in r.headers["content-disposition"]
    assert_close(decode_png(r.content), expected[image.name, image.parent.name, "BtoA"])


def test_oversized_upload_is_413_by_header_and_by_counting(client, images, expected):
    big = np.random.default_rng(0).integers(0, 255, size=600_000, dtype=np.uint8).tobytes()
    r = client.post("/api/translate", content=big)
    assert r.status_code == 413
    assert "too large" in r.json()["error"] and "limit" in r.json()["error"]

    def chunks():  # no Content-Length: the server must count the streamed bytes
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    r = client.post("/api/translate", content=chunks())
    assert r.status_code == 413
    assert "too large" in r.json()["error"]
    assert_serves(client, images[0], expected)


@pytest.mark.parametrize("payload, status, words", [
    (b"hello, this is not an image\n" * 10, 415, "not an image"),
    (b"%PDF-1.4\n" + b"0" * 500, 415, "not an image"),
    (b"", 400, "empty"),
])
def test_non_images_are_rejected_readably(client, images, expected, payload, status, words):
    r = client.post("/api/translate", files={"image": ("notes.png", payload, "image/png")})
    assert r.status_code == status
    assert words in r.json()["error"]
    assert_serves(client, images[0], expected)


def test_truncated_png_is_400(client, images, expected):
    rng = np.random.default_rng(1)
    data = png_bytes(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8))
    r = client.post("/api/translate", content=data[: len(data) // 2])
    assert r.status_code == 400
    assert "truncated" in r.json()["error"]
    assert_serves(client, images[0], expected)


def test_huge_dimensions_are_refused_from_the_header(client, server, images, expected):
    queue = server[1].state.service.queue
    done_before = queue.completed
    t0 = time.perf_counter()
    r = client.post("/api/translate", content=png_claiming(50000, 50000))
    assert r.status_code == 413
    assert "2500.0 megapixels" in r.json()["error"] and "resize" in r.json()["error"]
    # A real bomb: a valid 3000x3000 PNG of zeros is 9 kB on the wire and 27 MB decoded.
    raw = b"".join(b"\0" + b"\0" * 3000 * 3 for _ in range(3000))
    bomb = png_claiming(3000, 3000, zlib.compress(raw, 9))
    assert len(bomb) < 100_000
    r = client.post("/api/translate", content=bomb)
    assert r.status_code == 413 and "3000x3000" in r.json()["error"]
    assert time.perf_counter() - t0 < 5
    assert queue.completed == done_before  # refused before any decoding job ran
    assert_serves(client, images[0], expected)


def test_bad_parameters_and_unknown_paths(client, images):
    data = images[0].read_bytes()
    assert client.post("/api/translate?direction=sideways", content=data).status_code == 400
    r = client.post("/api/translate?model=nope", content=data)
    assert r.status_code == 400 and "offers" in r.json()["error"]
    assert client.post("/api/translate?mode=cartoon", content=data).status_code == 400
    r = client.get("/docs")
    assert r.status_code == 404 and "error" in r.json()


def test_page_loads_nothing_from_outside(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "default-src 'none'" in r.headers["content-security-policy"]
    texts = [r.text] + [client.get(f"/static/{n}").text for n in ("app.js", "style.css", "favicon.svg")]
    for text in texts:
        # src=/href=/url()/import/fetch never point off the machine
        assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", text)
        assert not re.search(r"""url\(\s*["']?(https?:)?//|@import|fetch\(\s*["'`]https?:""", text)


def test_face_swap_unavailable_is_reported_with_a_reason(tiny_release, monkeypatch, images):
    from cyclekit.serve import app as app_module

    monkeypatch.setattr(app_module, "face_swap_support", lambda: (None, "no face detector installed"))
    app = create_app(tiny_release, LIMITS, device="cpu")
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        face = next(m for m in c.get("/api/info").json()["modes"] if m["id"] == "face")
        assert face == {"id": "face", "label": "Face swap", "available": False, "reason": "no face detector installed"}
        r = c.post("/api/translate?mode=face", content=images[0].read_bytes())
        assert r.status_code == 501 and "no face detector installed" in r.json()["error"]
        assert c.post("/api/translate?mode=image", content=images[0].read_bytes()).status_code == 200


def test_face_swap_mode_calls_the_pipeline(tiny_release, monkeypatch, images):
    from cyclekit.serve import app as app_module

    calls = []

    def fake_swap(image, translator, all_faces, back, strength=None):
        calls.append((image.shape, translator.cfg.in_channels, all_faces, back, strength))
        out = image.copy()
        out[..., :3] = 1.0 - out[..., :3]  # the colours change, an alpha channel stays (as the pipeline does)
        return out, 1, "swapped 1 face"

    from PIL import Image

    original = np.asarray(Image.open(images[0]).convert("RGB"))
    # what cyclekit swap writes, the page returns: a photo's alpha and a grey photo's single channel
    uploads = {"rgba": np.concatenate([original, np.full(original.shape[:2] + (1,), 128, np.uint8)], axis=2),
               "grey": original[..., 1], "grey_alpha": np.stack([original[..., 1], original[..., 0]], axis=2)}
    monkeypatch.setattr(app_module, "face_swap_support", lambda: (fake_swap, ""))
    app = create_app(tiny_release, LIMITS, device="cpu")
    answers = {}
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert all(m["available"] for m in c.get("/api/info").json()["modes"])
        r = c.post("/api/translate?mode=face&all_faces=1", content=images[0].read_bytes())
        assert r.status_code == 200, r.text
        assert r.headers["x-cyclekit-faces"] == "1" and r.headers["x-cyclekit-message"] == "swapped 1 face"
        bad = c.post("/api/translate?mode=face&all_faces=maybe", content=images[0].read_bytes())
        assert bad.status_code == 400 and "all_faces must be 1 or 0" in bad.json()["error"]
        assert r.headers["x-cyclekit-strength"] == "1"  # the model's recommendation (none recorded: 1)
        r2 = c.post("/api/translate?mode=face&strength=1.25", content=images[0].read_bytes())
        assert r2.status_code == 200 and r2.headers["x-cyclekit-strength"] == "1.25"
        for value, why in (("strong", "must be a number"), ("0", "must be in"), ("2.5", "must be in"),
                           ("nan", "must be in")):
            bad = c.post(f"/api/translate?mode=face&strength={value}", content=images[0].read_bytes())
            assert bad.status_code == 400 and why in bad.json()["error"], bad.text
        bad = c.post("/api/translate?mode=image&strength=1.2", content=images[0].read_bytes())
        assert bad.status_code == 400 and "face mode only" in bad.json()["error"]
        for name, arr in uploads.items():
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            answer = c.post("/api/translate?mode=face", content=buf.getvalue())
            assert answer.status_code == 200, answer.text
            answers[name] = Image.open(io.BytesIO(answer.content))
    assert_close(decode_png(r.content), 255.0 - original)
    assert calls[0] == ((32, 32, 3), 3, True, None, None)  # no generator back: the release records no cycle_limit
    assert calls[1][4] == 1.25 and len(calls) == 2 + len(uploads)  # the strength reaches the pipeline; bad ones never
    assert answers["rgba"].mode == "RGBA" and answers["grey"].mode == "L" and answers["grey_alpha"].mode == "LA"
    back = np.asarray(answers["rgba"])
    assert (back[..., 3] == 128).all() and (back[..., :3] == 255 - original).all()
    assert (np.asarray(answers["grey"]) == 255 - uploads["grey"]).all()
    back = np.asarray(answers["grey_alpha"])
    assert (back[..., 0] == 255 - original[..., 1]).all() and (back[..., 1] == original[..., 0]).all()


def test_full_queue_answers_503_and_recovers(tiny_release, images):
    app = create_app(tiny_release, LIMITS, device="cpu", max_pending=2)
    queue = app.state.service.queue
    gate = threading.Event()
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        queue.executor.submit(gate.wait, 30)  # the one worker is busy until we open the gate
        data = images[0].read_bytes()
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(c.post, "/api/translate", content=data) for _ in range(2)]
            deadline = time.monotonic() + 10
            while queue.pending < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert queue.pending == 2
            r = c.post("/api/translate", content=data)
            assert r.status_code == 503
            assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"]
            gate.set()
            assert [f.result().status_code for f in held] == [200, 200]
        assert c.post("/api/translate", content=data).status_code == 200
        assert queue.rejected == 1 and queue.peak_pending == 2


def test_fifty_concurrent_requests_all_answered_correctly(server, images, expected):
    url, app = server
    queue = app.state.service.queue
    jobs = [(images[i % len(images)], ("AtoB", "BtoA")[i % 2]) for i in range(50)]
    start = threading.Barrier(len(jobs))

    def one(job):
        image, direction = job
        with httpx.Client(base_url=url, timeout=120) as c:
            start.wait()
            t0 = time.perf_counter()
            r = c.post(f"/api/translate?direction={direction}", content=image.read_bytes())
            return r, time.perf_counter() - t0

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(one, jobs))
    for (image, direction), (r, _) in zip(jobs, results):
        assert r.status_code == 200, r.text
        assert_close(decode_png(r.content), expected[image.name, image.parent.name, direction])
    assert queue.peak_pending <= queue.max_pending
    assert queue.pending == 0


def test_queued_requests_hold_their_compressed_upload_not_pixels(tiny_release):
    """Memory while 12 requests wait: their PNG bytes (~1 kB each), not decoded float pixels (768 kB each).

    Measured with tracemalloc (Python and NumPy allocations in this process, which hosts the server);
    the old check compared the process-lifetime peak RSS with itself and could not fail.
    """
    import tracemalloc

    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], (256, 1, 3))
    data = png_bytes(ramp)  # 256x256: 768 kB as float32 RGB, about 1 kB as PNG
    decoded = 256 * 256 * 3 * 4
    app = create_app(tiny_release, LIMITS, device="cpu", max_pending=16)
    queue = app.state.service.queue
    gate = threading.Event()
    n = 12
    with BackgroundServer(app) as url:
        queue.executor.submit(gate.wait, 60)  # the worker is busy: every request waits in the queue
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            with ThreadPoolExecutor(n) as pool:
                def post(_):
                    with httpx.Client(base_url=url, timeout=60) as c:
                        return c.post("/api/translate", content=data).status_code

                held = [pool.submit(post, i) for i in range(n)]
                deadline = time.monotonic() + 30
                while queue.pending < n and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert queue.pending == n
                waiting = tracemalloc.get_traced_memory()[0] - base
                gate.set()
                assert [f.result() for f in held] == [200] * n
        finally:
            tracemalloc.stop()
    assert waiting < n * decoded / 4, f"{waiting / 1e6:.1f} MB held by {n} queued requests"


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory) -> Path:
    """A real photo (London Set, CC BY 4.0: tests/fixtures/london/README.md)."""
    return Path(__file__).parent / "fixtures" / "london" / "004_03.jpg"


def test_real_face_swap_matches_the_pipeline(client, tiny_release, face_photo):
    from cyclekit.serve.models import face_swap_support

    swapper, reason = face_swap_support()
    if swapper is None:
        pytest.skip(f"face pipeline unavailable: {reason}")
    from PIL import Image

    from cyclekit.infer.translator import load_translator

    info = client.get("/api/info").json()
    assert next(m for m in info["modes"] if m["id"] == "face")["available"] is True
    data = face_photo.read_bytes()
    r = client.post("/api/translate?mode=face&direction=AtoB", content=data)
    assert r.status_code == 200, r.text
    assert r.headers["x-cyclekit-faces"] == "1" and "swapped 1 face" in r.headers["x-cyclekit-message"]
    src = np.asarray(Image.open(face_photo).convert("RGB"), dtype=np.float32) / 255.0
    want, n, _ = swapper(src, load_translator(tiny_release, "AtoB", device="cpu"))
    got = decode_png(r.content)
    assert n == 1
    assert_close(got, np.round(want * 255))
    changed = np.any(got != np.round(src * 255), axis=2)
    assert 0 < changed.mean() < 0.6  # the face changed, the rest of the photo did not
    # A photo without a face comes back unchanged, with a message saying so.
    plain = png_bytes(np.full((64, 64, 3), 200, dtype=np.uint8))
    r = client.post("/api/translate?mode=face", content=plain)
    assert r.status_code == 200 and r.headers["x-cyclekit-faces"] == "0"
    assert "no face" in r.headers["x-cyclekit-message"]
    assert (decode_png(r.content) == 200).all()


def test_a_folder_of_models_is_offered_by_name(tiny_release, tmp_path, images):
    import shutil

    from cyclekit.config import Config
    from cyclekit.data.domains import domain_names

    for name in ("horse2zebra", "second"):
        shutil.copytree(tiny_release / "model", tmp_path / "models" / name)
    (tmp_path / "models" / "notes").mkdir()  # not a model: ignored
    app = create_app(tmp_path / "models", LIMITS, device="cpu")
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        info = c.get("/api/info").json()
        assert [m["name"] for m in info["models"]] == ["horse2zebra", "second"]
        r = c.post("/api/translate?model=second&direction=BtoA", content=images[0].read_bytes())
        assert r.status_code == 200 and r.headers["x-cyclekit-model"] == "second"
    cfg = Config()
    cfg.data.dataroot = "/data/horse2zebra"
    assert domain_names(cfg.data) == ("horse", "zebra")
    with pytest.raises(Exception, match="no model in"):
        create_app(tmp_path / "models" / "notes", LIMITS)


def test_cli_serve_binds_loopback_and_answers(tiny_release, images, capsys):
    import subprocess
    import sys

    from cyclekit.cli import main

    assert main(["serve", "--model", str(tiny_release / "missing")]) == 2
    assert main(["serve", "--model", str(tiny_release), "--host", "0.0.0.0"]) == 2  # names needed
    assert "--allowed-host NAME" in capsys.readouterr().err
    proc = subprocess.Popen([sys.executable, "-m", "cyclekit", "-q", "serve", "--model", str(tiny_release),
                             "--port", "0", "--device", "cpu", "--max-upload-mb", "1",
                             "--upload-idle-timeout", "3", "--allowed-host", "photos.lan"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://\S+", line).group(0)
        assert url.startswith("http://127.0.0.1:"), line  # loopback unless told otherwise
        with httpx.Client(base_url=url, timeout=30) as c:
            limits = c.get("/api/info").json()["limits"]
            assert limits["max_upload_bytes"] == 1024 * 1024 and limits["body_idle_timeout"] == 3
            assert c.get("/api/health", headers={"Host": "photos.lan:80"}).status_code == 200
            assert c.get("/api/health", headers={"Host": "evil.example"}).status_code == 400
            assert c.post("/api/translate", content=images[0].read_bytes()).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_onnx_backend_and_exported_files(tiny_release, tmp_path, images, expected):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from cyclekit.export.onnx_export import export_release

    folder = tmp_path / "models"
    export_release(tiny_release, folder / "fruit_BtoA.onnx", direction="BtoA")
    image = images[0]
    app = create_app(folder, LIMITS, device="cpu")  # a folder holding one exported file
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        (entry,) = c.get("/api/info").json()["models"]
        assert entry["name"] == "fruit_BtoA" and [d["id"] for d in entry["directions"]] == ["BtoA"]
        r = c.post("/api/translate", content=image.read_bytes())  # its one direction is the default
        assert r.status_code == 200, r.text
        assert_close(decode_png(r.content), expected[image.name, image.parent.name, "BtoA"])
        r = c.post("/api/translate?direction=AtoB", content=image.read_bytes())
        assert r.status_code == 400 and "only translates BtoA" in r.json()["error"]


def test_backend_is_passed_to_the_loader(tiny_release, monkeypatch, images):
    """--backend onnxruntime reaches load_translator (the ORT export itself is tested with export)."""
    import cyclekit.infer.translator as translate_module

    real, seen = translate_module.load_translator, []

    def spy(model, direction="AtoB", **kwargs):
        seen.append(kwargs.pop("backend", "torch"))
        return real(model, direction, **kwargs)

    monkeypatch.setattr(translate_module, "load_translator", spy)
    app = create_app(tiny_release, LIMITS, device="cpu", backend="onnxruntime")
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/api/info").json()["backend"] == "onnxruntime"
        assert c.post("/api/translate?direction=BtoA", content=images[0].read_bytes()).status_code == 200
    assert seen == ["onnxruntime", "onnxruntime"]  # preload (AtoB), then BtoA


def test_face_swap_warns_about_a_face_past_the_releases_cycle_limit(tiny_release, face_photo, tmp_path):
    """The page says what ``cyclekit swap`` says of a face unlike the model's training faces."""
    import shutil

    from cyclekit.faces.cycle import MEASURE
    from cyclekit.release import update_release_info
    from cyclekit.serve.models import face_swap_support

    if face_swap_support()[0] is None:
        pytest.skip(f"face pipeline unavailable: {face_swap_support()[1]}")
    run = tmp_path / "run"
    shutil.copytree(tiny_release, run)
    app = create_app(run, LIMITS, device="cpu")  # a release without a cycle_limit: no generator back is loaded
    with BackgroundServer(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/api/translate?mode=face&direction=AtoB", content=face_photo.read_bytes())
    assert r.status_code == 200 and r.headers["x-cyclekit-message"] == "swapped 1 face"
    assert app.state.service.store.loaded() == ["run:AtoB"]
    update_release_info(run, cycle_limit={"AtoB": 10.0, "BtoA": "far"}, cycle_measure=MEASURE)  # a bad limit either way: one line
    with BackgroundServer(create_app(run, LIMITS, device="cpu")) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/api/translate?mode=face&direction=AtoB", content=face_photo.read_bytes())
    assert r.status_code == 500 and "cycle_limit" in r.json()["error"] and "\n" not in r.json()["error"]
    said = {}
    for limit in (0.5, 255.0):  # a 4-step model misses every face by more than 0.5 grey levels
        update_release_info(run, cycle_limit={"AtoB": limit, "BtoA": limit})
        with BackgroundServer(create_app(run, LIMITS, device="cpu")) as url, \
                httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/api/translate?mode=face&direction=AtoB", content=face_photo.read_bytes())
        assert r.status_code == 200, r.text
        said[limit] = r.headers["x-cyclekit-message"]
    assert said[0.5].startswith("swapped 1 face; the face is unlike the model's training faces (cycle error")
    assert "0.5 at most on faces like them" in said[0.5]
    assert said[255.0] == "swapped 1 face"


def test_a_face_model_defaults_to_face_swap(tiny_release, face_photo, tmp_path):
    """A model trained on face crops (a face_margin) is offered in face mode by default, on the
    page (``face`` in /api/info) and in the API (no ``mode``); an image model stays in image mode."""
    import json
    import shutil

    from cyclekit.release import resolve_release
    from cyclekit.serve.models import face_swap_support

    if face_swap_support()[0] is None:
        pytest.skip(f"face pipeline unavailable: {face_swap_support()[1]}")
    run = tmp_path / "run"
    shutil.copytree(tiny_release, run)
    config = resolve_release(run) / "config.json"
    doc = json.loads(config.read_text())
    doc["model"]["face_margin"] = 0.4
    config.write_text(json.dumps(doc))
    for path, face in ((run, True), (tiny_release, False)):
        with BackgroundServer(create_app(path, LIMITS, device="cpu")) as url, \
                httpx.Client(base_url=url, timeout=60) as c:
            assert c.get("/api/info").json()["models"][0]["face"] is face
            r = c.post("/api/translate", content=face_photo.read_bytes())
        assert r.status_code == 200, r.text
        assert r.headers["x-cyclekit-mode"] == ("face" if face else "image")
