"""FileStorage's spare file: while its lease is held, a write reuses ``.<name>.spare`` and
swaps it in with ``renameat2(RENAME_EXCHANGE)`` instead of creating a new file.

Real files and real renames; only the C library call is replaced, to play a file system
that cannot exchange. The crash campaign in ``test_crash_safety`` kills writers that hold
their lease, so it covers this path too.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tgsession import FileStorage, SessionStorageError
from tgsession.storage import _spare
from tgsession.storage._filelock import probe_lock_holder


def exchange_works(folder: Path) -> bool:
    """Whether this platform and the file system under ``folder`` can exchange names."""
    a, b = folder / "probe-a", folder / "probe-b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    try:
        _spare.exchange(a, b)
    except _spare.ExchangeUnsupportedError:
        return False
    finally:
        a.unlink()
        b.unlink()
    return True


@pytest.fixture
def session_path(tmp_path: Path) -> Path:
    if not exchange_works(tmp_path):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here: FileStorage never uses a spare")
    return tmp_path / "state" / "session.json"


@pytest.fixture
async def held(session_path: Path) -> AsyncIterator[FileStorage]:
    """A FileStorage holding its lease, with a session stored."""
    storage = FileStorage(session_path)
    lease = await storage.acquire()
    await storage.store_session(b"first session")
    try:
        yield storage
    finally:
        await lease.release()


async def release_lease(storage: FileStorage) -> None:
    """Release the lease the ``held`` fixture took."""
    assert storage._lease is not None
    await storage._lease.release()


def inode(path: Path) -> int:
    return os.lstat(path).st_ino


def fail_exchange(code: int) -> Callable[[], Callable[..., int]]:
    """A stand-in for the C library's renameat2 that fails with ``code``."""

    def renameat2(*args: object) -> int:
        ctypes.set_errno(code)
        return -1

    return lambda: renameat2


# -- the spare under the lease -----------------------------------------------------------


async def test_writes_under_the_lease_alternate_between_two_files(held: FileStorage) -> None:
    seen = []
    for n in range(6):
        await held.store_session(b"session %d" % n)
        seen.append(inode(held.path))
    assert len(set(seen)) == 2
    assert seen[0::2] == [seen[0]] * 3 and seen[1::2] == [seen[1]] * 3
    assert inode(held.spare_path) in seen
    assert await FileStorage(held.path).load_session() == b"session 5"


async def test_the_spare_holds_zeros_where_the_old_session_was(held: FileStorage) -> None:
    await held.store_session(b"the second session, longer than the first")
    assert held.spare_path.read_bytes() == bytes(len(b"first session"))
    await held.store_session(b"third")
    assert held.spare_path.read_bytes() == bytes(len(b"the second session, longer than the first"))
    assert held.path.read_bytes() == b"third"


@pytest.mark.parametrize("mask", [0o022, 0o277], ids=["umask 022", "umask 277"])
async def test_the_spare_is_private_whatever_the_umask(held: FileStorage, mask: int) -> None:
    previous = os.umask(mask)
    try:
        await held.store_session(b"second")
        await held.store_session(b"third")
    finally:
        os.umask(previous)
    for path in (held.path, held.spare_path):
        info = os.lstat(path)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_ISREG(info.st_mode) and info.st_nlink == 1


async def test_no_spare_without_the_lease(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_session(b"first")
    before = inode(session_path)
    await storage.store_session(b"second")
    assert not storage.spare_path.exists()
    assert inode(session_path) != before
    assert await storage.load_session() == b"second"


async def test_no_spare_used_once_the_lease_is_released(held: FileStorage) -> None:
    await held.store_session(b"second")
    spare = inode(held.spare_path)
    await release_lease(held)
    await held.store_session(b"third")
    assert inode(held.spare_path) == spare
    assert held.spare_path.read_bytes() == bytes(len(b"first session"))
    assert inode(held.path) != spare
    assert held.path.read_bytes() == b"third"


# -- whatever is at the spare's name is never written through ------------------------------


def plant_symlink(spare: Path, victim: Path) -> None:
    spare.symlink_to(victim)


def plant_hard_link(spare: Path, victim: Path) -> None:
    os.link(victim, spare)


def plant_fifo(spare: Path, victim: Path) -> None:
    os.mkfifo(spare, 0o600)


@pytest.mark.parametrize(
    "plant", [plant_symlink, plant_hard_link, plant_fifo], ids=["symlink", "hard link", "fifo"]
)
async def test_a_planted_spare_is_never_written_through(
    held: FileStorage, tmp_path: Path, plant: Callable[[Path, Path], None]
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    victim.chmod(0o600)
    plant(held.spare_path, victim)
    await held.store_session(b"second")
    assert victim.read_bytes() == b"not yours"
    assert await FileStorage(held.path).load_session() == b"second"
    assert not held.spare_path.exists()  # only the name went; the next write makes its own
    await held.store_session(b"third")
    assert victim.read_bytes() == b"not yours"
    assert held.spare_path.read_bytes() == bytes(len(b"second"))


def open_to_others(spare: Path) -> None:
    spare.chmod(0o644)


def given_away(spare: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    os.chown(spare, 65534, 65534)


@pytest.mark.parametrize("spoil", [open_to_others, given_away], ids=["mode 0644", "uid 65534"])
async def test_a_spare_that_is_not_private_is_never_written(
    held: FileStorage, spoil: Callable[[Path], None]
) -> None:
    held.spare_path.write_bytes(b"not yours")
    held.spare_path.chmod(0o600)
    spoil(held.spare_path)
    fd = os.open(held.spare_path, os.O_RDONLY)
    try:
        await held.store_session(b"second")
        assert os.pread(fd, 100, 0) == b"not yours"
    finally:
        os.close(fd)
    assert await FileStorage(held.path).load_session() == b"second"
    assert not held.spare_path.exists()


async def test_a_folder_at_the_spare_name_is_left_and_writes_still_succeed(
    held: FileStorage,
) -> None:
    held.spare_path.mkdir()
    (held.spare_path / "keep").write_bytes(b"kept")
    for n in range(2):
        await held.store_session(b"session %d" % n)
    assert await FileStorage(held.path).load_session() == b"session 1"
    assert (held.spare_path / "keep").read_bytes() == b"kept"


async def test_a_session_file_with_a_second_link_is_not_zeroed(
    held: FileStorage, tmp_path: Path
) -> None:
    backup = tmp_path / "backup.json"
    os.link(held.path, backup)  # a hard-link backup (rsnapshot, cp -al)
    await held.store_session(b"second")
    assert backup.read_bytes() == b"first session"
    assert not held.spare_path.exists()
    assert held.path.read_bytes() == b"second"


async def test_a_symlink_at_the_session_name_is_replaced_not_exchanged(
    held: FileStorage, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    held.path.unlink()
    held.path.symlink_to(victim)
    await held.store_session(b"second")
    assert victim.read_bytes() == b"not yours"
    assert not held.path.is_symlink()
    assert held.path.read_bytes() == b"second"


async def test_an_insecure_session_file_is_still_refused_under_the_lease(
    held: FileStorage,
) -> None:
    held.path.chmod(0o644)
    with pytest.raises(SessionStorageError, match="chmod 600"):
        await held.store_session(b"second")
    assert held.path.read_bytes() == b"first session"
    assert not held.spare_path.exists()


# -- file systems that cannot exchange ------------------------------------------------------


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV])
async def test_an_unsupported_exchange_falls_back_to_a_new_file_for_good(
    held: FileStorage, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setattr(_spare, "_renameat2", fail_exchange(code))
    spare_writes = []
    write_spare = _spare.write_spare

    def counted(spare: Path, data: bytes) -> bool:
        spare_writes.append(data)
        return write_spare(spare, data)

    monkeypatch.setattr(_spare, "write_spare", counted)
    for n in range(3):
        await held.store_session(b"session %d" % n)
        assert not held.spare_path.exists()
        assert await FileStorage(held.path).load_session() == b"session %d" % n
    assert spare_writes == [b"session 0"]  # this storage tries the exchange once


async def test_a_c_library_without_renameat2_falls_back(
    held: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_spare, "_renameat2", lambda: None)
    await held.store_session(b"second")
    assert not held.spare_path.exists()
    assert await FileStorage(held.path).load_session() == b"second"


async def test_another_exchange_failure_falls_back_for_that_write_only(
    held: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_spare, "_renameat2", fail_exchange(errno.EIO))
    await held.store_session(b"second")
    assert await FileStorage(held.path).load_session() == b"second"
    monkeypatch.undo()
    await held.store_session(b"third")
    await held.store_session(b"fourth")
    assert held.spare_path.read_bytes() == bytes(len(b"third"))


# -- removal and tidying ----------------------------------------------------------------


async def test_storing_nothing_removes_the_spare(held: FileStorage) -> None:
    await held.store_session(b"second")
    await held.store_session(b"")
    assert not held.path.exists() and not held.spare_path.exists()


async def test_delete_session_leaves_no_file(held: FileStorage) -> None:
    await held.store_session(b"second")
    await held.store_entities([(1, b"row", ("username:row",))])
    await held.delete_session()
    await held.aclose()
    assert os.listdir(held.path.parent) == []


async def test_a_spare_holding_a_session_is_removed_when_locked(session_path: Path) -> None:
    storage = FileStorage(session_path)
    await storage.store_session(b"session")
    # What a writer killed between the exchange and the zeros leaves.
    storage.spare_path.write_bytes(b"an older session")
    lease = await FileStorage(session_path).acquire()
    await lease.release()
    assert not storage.spare_path.exists()
    assert await storage.load_session() == b"session"


async def test_a_zeroed_spare_is_kept_when_locked(held: FileStorage) -> None:
    await held.store_session(b"second")
    spare = inode(held.spare_path)
    await release_lease(held)
    lease = await FileStorage(held.path).acquire()
    await lease.release()
    assert inode(held.spare_path) == spare


# -- the lease lasts as long as the write that relies on it ------------------------------


async def test_release_waits_for_a_write_through_the_spare(
    held: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    writing, go = threading.Event(), threading.Event()
    holder_when_written: list[str | None] = []
    write_spare = _spare.write_spare

    def slow_write_spare(spare: Path, data: bytes) -> bool:
        writing.set()
        go.wait(30)
        holder_when_written.append(probe_lock_holder(held.lock_path))
        return write_spare(spare, data)

    monkeypatch.setattr(_spare, "write_spare", slow_write_spare)
    store = asyncio.ensure_future(held.store_session(b"second"))
    await asyncio.to_thread(writing.wait, 30)
    release = asyncio.ensure_future(release_lease(held))
    await asyncio.sleep(0.05)  # time for a release that did not wait to unlock
    go.set()
    await store
    await release
    assert holder_when_written[0] is not None  # still locked while the spare was written
    assert await held.lock_holder() is None
    assert held.path.read_bytes() == b"second"
