"""FileStorage's lock as a lease: what happens when the disk fills or the lock file goes.

The lock is an ``flock`` on ``<session>.lock``: a failure while taking it must not leave the
descriptor open (the session would stay locked until the process exits), and a holder whose
lock file was deleted or replaced must notice and stop, as a lost server lease does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tgsession import FileStorage, SessionStorageError


@contextlib.contextmanager
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / f"tiny-{uuid.uuid4().hex[:8]}"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; return it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def test_full_disk_while_locking_leaves_the_session_unlocked(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path) as disk:
        storage = FileStorage(disk / "session.json")
        filler = fill(disk)
        with pytest.raises(SessionStorageError, match="lock file"):
            await storage.acquire()
        filler.unlink()
        # Another storage object is another open file description: a leaked descriptor
        # from the failed attempt would still hold the flock and refuse this one.
        lease = await FileStorage(disk / "session.json").acquire()
        await lease.release()
