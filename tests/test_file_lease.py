"""FileStorage's lock as a lease: what happens when the disk fills or the lock file goes.

The lock is an ``flock`` on ``<session>.lock``: a failure while taking it must not leave the
descriptor open (the session would stay locked until the process exits), and a holder whose
lock file was deleted or replaced must notice and stop, as a lost server lease does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tgsession import FileStorage, LeaseLostError, SessionLockedError, SessionStorageError
from tgsession.storage._filelock import CHECK_INTERVAL, _guard_name


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


async def test_deleted_lock_file_refuses_a_second_opener(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "session.json")
    lease = await storage.acquire()
    storage.lock_path.unlink()
    with pytest.raises(SessionLockedError, match=f"pid {os.getpid()} .*lock file was deleted"):
        await FileStorage(tmp_path / "session.json").acquire()
    await lease.release()
    other = await FileStorage(tmp_path / "session.json").acquire()  # released: free again
    await other.release()


async def test_holder_whose_lock_file_was_replaced_writes_nothing(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "session.json")
    await storage.store_session(b"before")
    lease = await storage.acquire()
    storage.lock_path.unlink()
    storage.lock_path.write_bytes(b"")
    with pytest.raises(LeaseLostError, match="was replaced while held"):
        await storage.store_session(b"after")
    assert (tmp_path / "session.json").read_bytes() == b"before"
    await asyncio.wait_for(lease.wait_lost(), 1)  # the watch hears of it too
    assert not lease.may_send()
    await lease.release()


async def test_holder_notices_a_deleted_lock_file_by_itself(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "session.json")
    lease = await storage.acquire()
    shutil.rmtree(tmp_path)
    await asyncio.wait_for(lease.wait_lost(), 10 * CHECK_INTERVAL)
    with pytest.raises(LeaseLostError, match="deleted"):
        await lease.check()
    await lease.release()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_lock_name_from_the_open_file_is_the_name_from_the_path(tmp_path: Path) -> None:
    """Every process must find the same socket name for one lock file, whether it asks
    the kernel where its descriptor was opened or walks the path with realpath; through a
    symlinked folder too, and a deleted lock file falls back to the path."""
    real = tmp_path / "real" / "deeper"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    for lock_path in (real / "session.json.lock", tmp_path / "link" / "session.json.lock"):
        lock_path.touch()
        fd = os.open(lock_path, os.O_RDWR)
        try:
            assert _guard_name(lock_path, fd) == _guard_name(lock_path)
            assert _guard_name(lock_path, fd) == _guard_name(real / "session.json.lock")
            lock_path.unlink()  # /proc now says "... (deleted)": the path is used instead
            assert _guard_name(lock_path, fd) == _guard_name(lock_path)
        finally:
            os.close(fd)


def test_lock_name_squatted_by_another_user_locks_nobody_out(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        pytest.skip("needs root (to run a process as another user) on Linux")
    storage = FileStorage(tmp_path / "session.json")
    name = _guard_name(storage.lock_path)
    squatter = subprocess.Popen(
        [sys.executable, "-c",
         "import os, socket, sys, time\n"
         "os.setgid(65534); os.setuid(65534)\n"
         "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
         f"s.bind({name!r}); s.listen(1)\n"
         "print('bound', flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE,
    )
    try:
        assert squatter.stdout is not None
        assert squatter.stdout.readline() == b"bound\n"

        async def take() -> None:
            lease = await storage.acquire()
            await lease.release()

        asyncio.run(take())
    finally:
        squatter.kill()
        squatter.wait()
