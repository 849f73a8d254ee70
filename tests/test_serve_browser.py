"""The web page in a real headless Chromium (Debian's, driven by Playwright; nothing downloaded).

Opens the page, uploads a photo, clicks Translate, downloads the PNG and compares its pixels with
translating the same file directly in Python; also a webcam snapshot (Chromium's fake camera),
a non-image file (a readable error) and that every request the page makes stays on the server.
Set ``CYCLEKIT_SCREENSHOTS=<folder>`` to keep the screenshots. Without chromium the tests skip,
unless ``CYCLEKIT_REQUIRE_BROWSER=1`` (as in ``.ci/run``) makes that a failure.
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

_CANDIDATES = (os.environ.get("CYCLEKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
               shutil.which("chromium-browser"))
CHROMIUM = next((p for p in _CANDIDATES if p and Path(p).exists()), None)
MISSING = "Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def server(tiny_release):
    from cyclekit.serve import BackgroundServer, create_app

    app = create_app(tiny_release, device="cpu")
    with BackgroundServer(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CYCLEKIT_REQUIRE_BROWSER"):  # set by .ci/run: CI must really run this
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 760}, accept_downloads=True)
    pg = context.new_page()
    pg.requests = []
    pg.on("request", lambda req: pg.requests.append(req.url))
    pg.errors = []  # console errors (a CSP violation shows up here) and uncaught exceptions
    pg.on("console", lambda msg: pg.errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    pg.goto(server[0] + "/")
    pg.wait_for_selector("#model option", state="attached")
    yield pg
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("CYCLEKIT_SCREENSHOTS")
    out = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory, tiny_world) -> Path:
    """A 96x64 photo-like image (a test image tiled), a size the model was not trained at."""
    from PIL import Image

    src = sorted((tiny_world / "testA").glob("*.png"))[0]
    tile = np.asarray(Image.open(src).convert("RGB"))
    arr = np.concatenate([np.concatenate([tile, tile[:, ::-1], tile], axis=1)] * 2, axis=0)
    path = tmp_path_factory.mktemp("upload") / "holiday photo.png"
    Image.fromarray(arr).save(path)
    return path


def translate_directly(tiny_release, data: bytes, direction: str) -> np.ndarray:
    from PIL import Image

    from cyclekit.infer.translator import load_translator, translate_array

    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
    tr = load_translator(tiny_release, direction, device="cpu")
    return np.round(translate_array(tr, rgb) * 255.0)


def pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).astype(np.float64)


def img_bytes(page, selector: str) -> bytes:
    b64 = page.evaluate("""async (sel) => {
        const r = await fetch(document.querySelector(sel).src);
        const u8 = new Uint8Array(await r.arrayBuffer());
        let s = ""; for (const b of u8) s += String.fromCharCode(b);
        return btoa(s);
    }""", selector)
    return base64.b64decode(b64)


def wait_until(page, expression: str, timeout: float = 15.0) -> None:
    """Poll with evaluate: wait_for_function compiles strings, which the page's CSP forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def assert_local_only(page, url: str) -> None:
    outside = [u for u in page.requests if not (u.startswith(url) or u.startswith(("blob:", "data:")))]
    assert outside == [], f"the page loaded resources from outside the server: {outside}"


def test_upload_translate_and_download(page, server, photo, tiny_release, shots):
    from cyclekit.serve.models import face_swap_support

    url = server[0]
    page.screenshot(path=str(shots / "1_empty.png"), full_page=True)
    face_fn, reason = face_swap_support()
    face = page.locator("#mode-face")
    assert face.is_disabled() == (face_fn is None)
    if face_fn is None:
        assert reason in page.inner_text("#mode-note")

    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#before-img", state="visible")
    assert "96×64" in page.inner_text("#before-meta")
    for direction in ("BtoA", "AtoB"):
        page.check(f"#direction-{direction}")
        page.click("#translate")
        page.wait_for_selector(f"#after-img[data-direction={direction}]", state="visible", timeout=30_000)
        assert page.locator("#error").is_hidden() and page.locator("#download").is_visible()
        want = translate_directly(tiny_release, photo.read_bytes(), direction)
        got = pixels(img_bytes(page, "#after-img"))
        assert got.shape == want.shape == (64, 96, 3)
        assert np.abs(got - want).max() <= 1, f"{direction}: page result differs from direct translation"
    with page.expect_download() as dl:
        page.click("#download")
    download = dl.value
    assert download.suggested_filename.endswith("_AtoB.png") and "holiday" in download.suggested_filename
    saved = Path(download.path()).read_bytes()
    assert np.abs(pixels(saved) - want).max() <= 1
    assert "Done in" in page.inner_text("#status")
    page.screenshot(path=str(shots / "2_result.png"), full_page=True)
    assert_local_only(page, url)
    assert page.errors == []


def test_non_image_shows_a_readable_error(page, server, tmp_path, shots):
    bad = tmp_path / "notes.png"
    bad.write_text("these are my notes, not a picture\n")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#before-placeholder:has-text('No preview')")
    page.click("#translate")
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    assert "not an image" in page.inner_text("#error")
    assert page.locator("#after-img").is_hidden()
    page.screenshot(path=str(shots / "3_error.png"), full_page=True)
    assert_local_only(page, server[0])
    assert [e for e in page.errors if "status of 415" not in e] == []  # only the refused upload


def test_webcam_snapshot_is_translated(page, server, tiny_release, shots):
    page.click("#webcam-btn")
    wait_until(page, "document.getElementById('video').videoWidth > 0")
    page.click("#snap")
    page.wait_for_selector("#before-img", state="visible")
    page.click("#translate")
    page.wait_for_selector("#after-img[data-direction=AtoB]", state="visible", timeout=60_000)
    before = img_bytes(page, "#before-img")
    want = translate_directly(tiny_release, before, "AtoB")
    got = pixels(img_bytes(page, "#after-img"))
    assert got.shape == want.shape and np.abs(got - want).max() <= 1
    page.screenshot(path=str(shots / "4_webcam.png"), full_page=True)
    assert_local_only(page, server[0])
    assert page.errors == []


def test_face_swap_in_the_page(page, server, tiny_release, tmp_path_factory, shots):
    from cyclekit.serve.models import face_swap_support

    swapper, reason = face_swap_support()
    if swapper is None:
        pytest.skip(f"face pipeline unavailable: {reason}")
    from cyclekit.infer.translator import load_translator

    from cyclekit.io.images import load_image, save_image

    # a real photo (London Set, CC BY 4.0: tests/fixtures/london/README.md), as a PNG upload
    photo = save_image(tmp_path_factory.mktemp("faces") / "face.png",
                       load_image(Path(__file__).parent / "fixtures" / "london" / "004_03.jpg", 3))
    page.check("#mode-face")
    assert page.locator("#all-faces-wrap").is_visible()
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#before-img", state="visible")
    page.click("#translate")
    page.wait_for_selector("#after-img[data-mode=face]", state="visible", timeout=30_000)
    assert "swapped 1 face" in page.inner_text("#status")
    assert "1 face(s) · strength 1" in page.inner_text("#after-meta")
    src = pixels(photo.read_bytes()) / 255.0
    want, _, _ = swapper(src.astype(np.float32), load_translator(tiny_release, "AtoB", device="cpu"))
    assert np.abs(pixels(img_bytes(page, "#after-img")) - np.round(want * 255)).max() <= 1
    page.screenshot(path=str(shots / "5_face.png"), full_page=True)
    assert page.locator("#strength-wrap").is_visible()  # the strength box: as cyclekit swap --strength
    page.fill("#strength", "1.5")
    page.click("#translate")
    page.wait_for_function("() => !document.querySelector('#after-img').classList.contains('stale')")
    stronger, _, _ = swapper(src.astype(np.float32), load_translator(tiny_release, "AtoB", device="cpu"),
                             strength=1.5)
    assert np.abs(stronger - want).max() > 0.01
    assert np.abs(pixels(img_bytes(page, "#after-img")) - np.round(stronger * 255)).max() <= 1
    assert "strength 1.5" in page.inner_text("#after-meta")
    page.check("#mode-image")
    assert not page.locator("#strength-wrap").is_visible()  # whole-image mode has no strength
    assert_local_only(page, server[0])
