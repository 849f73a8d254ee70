"""Download and unpack the standard CycleGAN datasets (resumable, size-checked, safe unzip).

The zips are the ones the official ``datasets/download_cyclegan_dataset.sh`` fetches; each holds
one top folder ``<name>/`` with ``trainA/ trainB/ testA/ testB/``. Only the standard library is
used for HTTP (``urllib``), so no new dependency.
"""
from __future__ import annotations

import logging
import re
import shutil
import socket
import zipfile
import zlib
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Optional, Union
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from cyclekit.errors import DataError

log = logging.getLogger(__name__)

BASE_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
_NAMES = (
    "apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
    "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower",
    "ae_photos", "grumpifycat", "mini", "mini_pix2pix", "mini_colorization",
)
# name -> official zip URL
DATASETS: dict[str, str] = {name: f"{BASE_URL}/{name}.zip" for name in _NAMES}
_NOT_DOWNLOADABLE = {
    "cityscapes": (
        "the Cityscapes license does not allow redistribution, so it cannot be downloaded from "
        "the CycleGAN server; register at https://www.cityscapes-dataset.com, download "
        "gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip, arrange them as "
        "trainA/ (photos) and trainB/ (label maps) (the official repo's "
        "datasets/prepare_cityscapes_dataset.py does this), then pass --dataroot"
    ),
}
_LAYOUT = ("trainA", "trainB", "testA", "testB")
_CHUNK = 1 << 16


def download_dataset(
    name: str,
    out_dir: Union[str, Path],
    url: Optional[str] = None,
    expected_size: Optional[int] = None,
    progress: bool = True,
    base_url: Optional[str] = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``name`` into ``out_dir/name`` and return that folder.

    The zip is written to ``out_dir/<name>.zip.part``; running again after an interruption resumes
    with an HTTP Range request (a server that ignores it is handled by starting over). The size is
    checked against Content-Length (and ``expected_size``), the zip is unpacked into a temporary
    folder that is renamed into place only when complete (entries with absolute paths or ``..`` are
    rejected), and the zip is deleted after that. An existing dataset folder is left alone.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or "") or name in (".", ".."):
        raise DataError(f"invalid dataset name {name!r}")
    if url is None:
        if name in _NOT_DOWNLOADABLE:
            raise DataError(f"{name}: {_NOT_DOWNLOADABLE[name]}")
        if name not in DATASETS:
            raise DataError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
        url = f"{(base_url or BASE_URL).rstrip('/')}/{name}.zip"
    out_dir = Path(out_dir)
    target = out_dir / name
    if target.is_dir() and any((target / d).is_dir() for d in _LAYOUT):
        log.info("%s already exists; not downloading again (delete it to re-download)", target)
        return target
    if target.exists():
        raise DataError(f"{target} exists but is not an unpacked dataset; move or delete it")
    out_dir.mkdir(parents=True, exist_ok=True)
    part = out_dir / f"{name}.zip.part"
    _fetch(url, part, expected_size, progress, timeout)
    _unpack(part, target, url)
    part.unlink()
    log.info("dataset %s ready in %s", name, target)
    return target


def _fail(url: str, part: Path, why: str) -> DataError:
    return DataError(
        f"download of {url} failed: {why}; check your internet connection (and proxy settings), "
        f"then run the same command again to resume from {part.name}, or download the zip by hand "
        f"and unzip it into {part.parent}"
    )


def _fetch(url: str, part: Path, expected_size: Optional[int], progress: bool, timeout: float) -> None:
    from tqdm import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "cyclekit", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part may already be complete
            if expected_size is None or have == expected_size:
                log.info("%s: server has nothing beyond %d bytes; using the partial file", url, have)
                return
            part.unlink()
            raise _fail(url, part, "the partial download is larger than the file (removed it)")
        raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}; check the "
                        f"dataset name or URL") from None
    except (URLError, socket.timeout, OSError, HTTPException) as exc:
        raise _fail(url, part, str(getattr(exc, "reason", exc))) from None

    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and resp.status == 206:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise _fail(url, part, "the server answered the resume request with a wrong range")
            total = int(m.group(2)) if m.group(2) != "*" else (have + length if length else None)
            mode = "ab"
            log.info("resuming %s at %d bytes", url, have)
        else:
            if have:
                log.info("%s: server ignored the resume request; downloading from the start", url)
            have, total, mode = 0, length, "wb"
        if expected_size is not None and total is not None and total != expected_size:
            raise DataError(f"{url}: the server reports {total} bytes but {expected_size} were "
                            f"expected; the URL is wrong or the file changed on the server")
        try:
            with open(part, mode) as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                              desc=part.name[: -len(".zip.part")],
                                              disable=not progress) as bar:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
        except (OSError, HTTPException, socket.timeout) as exc:  # keep the .part for a resume
            raise _fail(url, part, f"interrupted ({exc})") from None
    size = part.stat().st_size
    want = expected_size if expected_size is not None else total
    if want is not None and size < want:
        raise _fail(url, part, f"incomplete: got {size} of {want} bytes")
    if want is not None and size > want:
        part.unlink()
        raise DataError(f"{url}: got {size} bytes, more than the expected {want}; removed the "
                        f"download, run the command again")


def _safe_member(name: str) -> Optional[PurePosixPath]:
    """The relative path of a zip entry, or None for a directory; DataError if it escapes."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in p.parts:
        raise DataError(f"unsafe path in zip: {name!r} (absolute or contains '..'); refusing it")
    parts = [x for x in p.parts if x not in ("", ".")]
    if not parts or norm.endswith("/"):
        return None
    return PurePosixPath(*parts)


def _unpack(zip_path: Path, target: Path, url: str) -> None:
    """Unzip into a temporary folder next to ``target`` and rename it into place when complete."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{url} did not give a valid zip file (removed it); run the command "
                        f"again, or check the URL") from None
    tmp = target.with_name(f".{target.name}.unpacking")
    with zf:
        try:  # every name is checked before anything is written
            members = [(info, _safe_member(info.filename)) for info in zf.infolist()]
        except DataError:
            zip_path.unlink()
            raise
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            tmp.mkdir(parents=True)
            for info, rel in members:
                if rel is None or rel.parts[0] == "__MACOSX" or info.is_dir():
                    continue
                dest = tmp.joinpath(*rel.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            entries = list(tmp.iterdir())
            root = tmp
            if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in _LAYOUT:
                root = entries[0]  # the official zips hold one top folder, e.g. horse2zebra/
            if not any((root / d).is_dir() for d in _LAYOUT):
                log.warning("%s has none of %s; unpacked it as is", url, ", ".join(_LAYOUT))
            root.rename(target)
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            zip_path.unlink(missing_ok=True)
            raise DataError(f"{url}: the zip is corrupt ({exc}); removed it, run the command "
                            f"again to download it afresh") from None
        except OSError as exc:  # e.g. disk full: keep the zip, the next run unpacks it again
            raise DataError(f"could not unpack {zip_path} into {target.parent}: {exc}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
