"""Dataset download against a loopback HTTP server (never the internet): unpack layout, resume,
servers that ignore Range, truncated transfers, size checks and unsafe zips."""
from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from cyclekit.data.download import DATASETS, download_dataset
from cyclekit.io.images import list_images
from cyclekit.errors import DataError


def _png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # stored: the size is predictable
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _dataset_zip(name="horse2zebra") -> bytes:
    entries = {f"{name}/": b""}
    for k, d in enumerate(("trainA", "trainB", "testA", "testB")):
        for i in range(2):
            entries[f"{name}/{d}/{i}.png"] = _png_bytes(10 * k + i)
    entries["__MACOSX/._junk"] = b"x"
    return _zip(entries)


class Server:
    """Serves ``self.files[path]``; honours Range unless ``ignore_range``; can cut transfers."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.served = 0
        self.ignore_range = False
        self.cut_after: int | None = None  # stop sending after this many body bytes
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and not outer.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    body = body[: outer.cut_after]
                self.wfile.write(body)
                outer.served += len(body)
                if outer.cut_after is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/cyclegan/datasets"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def _layout(root):
    return sorted(p.relative_to(root).as_posix() for p in list_images(root))


def test_dataset_table():
    assert DATASETS["horse2zebra"] == "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip"
    for name in ("apple2orange", "summer2winter_yosemite", "monet2photo", "cezanne2photo",
                 "ukiyoe2photo", "vangogh2photo", "maps", "facades", "iphone2dslr_flower",
                 "ae_photos", "grumpifycat", "mini", "mini_pix2pix"):
        assert name in DATASETS
    with pytest.raises(DataError, match="(?i)cityscapes.*licen"):
        download_dataset("cityscapes", "/nonexistent")
    with pytest.raises(DataError, match="unknown dataset.*horse2zebra"):
        download_dataset("horse2zebro", "/nonexistent")


def test_full_download_and_unpack(server, tmp_path):
    server.files["/cyclegan/datasets/horse2zebra.zip"] = _dataset_zip()
    out = download_dataset("horse2zebra", tmp_path, base_url=server.base, progress=False)
    assert out == tmp_path / "horse2zebra"
    assert _layout(out) == [f"{d}/{i}.png" for d in ("testA", "testB", "trainA", "trainB")
                            for i in range(2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["horse2zebra"]  # zip and temp gone
    served = server.served
    assert download_dataset("horse2zebra", tmp_path, base_url=server.base) == out  # no re-download
    assert server.served == served


def test_resume_from_partial_file(server, tmp_path):
    data = _dataset_zip("mini")
    server.files["/cyclegan/datasets/mini.zip"] = data
    (tmp_path / "mini.zip.part").write_bytes(data[: len(data) // 2])
    out = download_dataset("mini", tmp_path, base_url=server.base, progress=False)
    assert server.served == len(data) - len(data) // 2  # only the rest was sent
    assert len(_layout(out)) == 8 and not (tmp_path / "mini.zip.part").exists()


def test_complete_partial_file_is_used(server, tmp_path):
    data = _dataset_zip("mini")
    server.files["/cyclegan/datasets/mini.zip"] = data
    (tmp_path / "mini.zip.part").write_bytes(data)  # e.g. interrupted while unpacking
    out = download_dataset("mini", tmp_path, base_url=server.base, progress=False)
    assert server.served == 0 and len(_layout(out)) == 8


def test_server_ignoring_range_restarts(server, tmp_path):
    data = _dataset_zip("mini")
    server.files["/cyclegan/datasets/mini.zip"] = data
    server.ignore_range = True
    (tmp_path / "mini.zip.part").write_bytes(b"garbage that must not stay in front")
    out = download_dataset("mini", tmp_path, base_url=server.base, progress=False)
    assert server.served == len(data) and len(_layout(out)) == 8


def test_truncated_transfer_then_resume(server, tmp_path):
    data = _dataset_zip("mini")
    server.files["/cyclegan/datasets/mini.zip"] = data
    server.cut_after = 1000
    with pytest.raises(DataError, match="incomplete: got 1000 of"):
        download_dataset("mini", tmp_path, base_url=server.base, progress=False)
    assert not (tmp_path / "mini").exists()  # nothing half-unpacked
    assert (tmp_path / "mini.zip.part").stat().st_size == 1000  # kept for the resume
    server.cut_after = None
    out = download_dataset("mini", tmp_path, base_url=server.base, progress=False)
    assert len(_layout(out)) == 8


def test_size_mismatch(server, tmp_path):
    data = _dataset_zip("mini")
    server.files["/cyclegan/datasets/mini.zip"] = data
    with pytest.raises(DataError, match="123 were expected"):
        download_dataset("mini", tmp_path, base_url=server.base, expected_size=123, progress=False)
    assert not (tmp_path / "mini").exists()


def test_corrupt_zip_is_removed(server, tmp_path):
    server.files["/cyclegan/datasets/mini.zip"] = b"this is not a zip file at all"
    with pytest.raises(DataError, match="not give a valid zip"):
        download_dataset("mini", tmp_path, base_url=server.base, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unsafe_zip_is_rejected(server, tmp_path):
    out_dir = tmp_path / "data"
    server.files["/cyclegan/datasets/mini.zip"] = _zip(
        {"mini/trainA/0.png": _png_bytes(0), "../evil.txt": b"pwned"})
    with pytest.raises(DataError, match=r"unsafe path.*\.\./evil"):
        download_dataset("mini", out_dir, base_url=server.base, progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (out_dir / "mini").exists()
    server.files["/cyclegan/datasets/mini.zip"] = _zip({"/abs/x.png": b"x"})
    with pytest.raises(DataError, match="unsafe path"):
        download_dataset("mini", out_dir, base_url=server.base, progress=False)


def test_network_errors_name_the_url(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download_dataset("mini", tmp_path, base_url=server.base, progress=False)
    port = server.httpd.server_address[1]
    server.close()
    url = f"http://127.0.0.1:{port}/x/mini.zip"
    with pytest.raises(DataError, match=f"{url}.*run the same command again"):
        download_dataset("mini", tmp_path, url=url, progress=False, timeout=5)
