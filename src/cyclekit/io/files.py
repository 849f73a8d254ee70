"""Atomic file writes: the one way cyclekit puts a file on disk.

Every output (checkpoints, releases, configs, images, ONNX files, videos) is written to a hidden
temporary name in the destination folder, flushed to disk and renamed over the target, so a
reader, a crash or a full disk never leaves a half-written or truncated file under the real name:
the previous file stays intact until the new one is complete.

Temporary names carry :data:`TMP_MARK` and the writer's process id, so a later run can find and
remove the ones a killed process left behind (:func:`remove_stale_temps`). A failed write raises
:class:`~cyclekit.errors.OutputError`, one line that names the file and, for a full disk, says so.
"""
from __future__ import annotations

import errno
import logging
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

from cyclekit.errors import OutputError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
TMP_MARK = ".cyclekit-tmp-"


def temp_path_for(path: Path) -> Path:
    """A hidden sibling of ``path`` (same extension, so format-by-suffix writers still work)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_os_error(exc: OSError, path: PathLike) -> str:
    """One line for a failed write: what happened to which file, and what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {path}: no space left on the device; free some space and run again"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: permission denied (read-only folder?); choose a writable location"
    if exc.errno == errno.EISDIR:
        return f"cannot write {path}: it is a folder"
    if exc.errno == errno.ENOTDIR:
        return f"cannot write {path}: a parent of it is a file, not a folder"
    return f"cannot write {path}: {exc.strerror or exc}"


@contextmanager
def atomic_path(path: PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it is fsynced and
    renamed over ``path`` (with the permissions the umask gives a new file), on any error it is
    removed and ``path`` is left as it was. OS errors become one-line :class:`OutputError`\\ s.

    ``durable=False`` skips the fsync (readers still never see a half-written file): for many
    small files whose writer syncs once at the end and only then writes the file that marks the
    set complete (``cyclekit data faces`` and its ``faces.json``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path.parent)) from None
    tmp = temp_path_for(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # some writers (safetensors) create files 0600
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise OutputError(describe_os_error(exc, path)) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:  # pragma: no cover - the folder vanished or became read-only
        pass


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(folder: PathLike, recursive: bool = True) -> int:
    """Delete temporary files that killed cyclekit processes left in ``folder``; returns how many.

    A temp file belongs to a dead process when the process id in its name no longer runs (or is
    this very process, which has no write in progress when this is called at start-up).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    pattern = f"*{TMP_MARK}*"
    for tmp in folder.rglob(pattern) if recursive else folder.glob(pattern):
        pid_text = tmp.name.split(TMP_MARK, 1)[1].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and _alive(int(pid_text)):
            continue
        try:
            size = tmp.stat().st_size
            tmp.unlink()
        except OSError:
            continue
        removed += 1
        log.info("removed %s (%.1f MB) left by an interrupted write", tmp, size / 1e6)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
