"""The one atomic write: permissions from the umask, nothing half-written, one line for a full
disk, and stale temporaries of killed processes cleaned up."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from cyclekit.errors import OutputError
from cyclekit.io.files import TMP_MARK, atomic_path, atomic_write_text, remove_stale_temps


def test_new_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # a writer that creates 0600 files
            os.close(fd)
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert ((tmp_path / "b.bin").stat().st_mode & 0o777) == 0o644


def test_a_failed_write_keeps_the_old_file_and_says_why(tmp_path):
    target = tmp_path / "state.bin"
    target.write_bytes(b"good")
    with pytest.raises(OutputError, match=r"cannot write .*state\.bin: no space left on the device"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_read_only_folder_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    with pytest.raises(OutputError, match="permission denied"):
        atomic_write_text(folder / "x.txt", "x")


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / "checkpoints" / f".last.pt{TMP_MARK}{dead}-abcd1234.pt"
    stale.parent.mkdir()
    stale.write_bytes(b"x" * 1000)
    alive = tmp_path / f".model.safetensors{TMP_MARK}1-abcd1234.safetensors"  # pid 1 runs
    alive.write_bytes(b"y")
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    assert remove_stale_temps(tmp_path) == 1
    assert not stale.exists() and alive.exists() and keep.exists()
