"""A warm restart opens a FileStorage session on the event loop, with no thread hop.

Where the kernel's caches hold the lock file (empty: its last holder released it) and the
session file, ``acquire_and_load`` takes the lock and reads the session with syscalls that
cannot wait for the disk (``openat2`` RESOLVE_CACHED, ``preadv2`` RWF_NOWAIT); the holder
record and the tidying follow in one worker-thread hop. Every other case takes the thread
path, which gives the same result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tgsession import SessionLockedError
from tgsession.codec import DcAddress, SessionData, encode_session
from tgsession.storage import _nowait
from tgsession.storage._filelock import local_holder
from tgsession.storage.file import FileStorage

KEY = b"\x07" * 256
DOCUMENT = encode_session(SessionData(dc=DcAddress(2, "127.0.0.1", 443), auth_key=KEY))

needs_nowait = pytest.mark.skipif(
    not _nowait._usable,
    reason="openat2 RESOLVE_CACHED / RWF_NOWAIT: Linux on x86_64 or aarch64 only",
)


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, counting the work handed to its threads."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted.append(getattr(fn, "__qualname__", repr(fn)))
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
async def executor() -> AsyncIterator[CountingExecutor]:
    counting = CountingExecutor()
    asyncio.get_running_loop().set_default_executor(counting)
    yield counting
    counting.shutdown(wait=True)


@pytest.fixture
async def stored(tmp_path: Path) -> Path:
    """A session stored by a holder that released its lock (the lock file is empty)."""
    path = tmp_path / "sessions" / "session.json"
    storage = FileStorage(path)
    async with await storage.acquire():
        await storage.store_session(DOCUMENT)
    assert storage.lock_path.read_bytes() == b""
    return path


@needs_nowait
async def test_a_warm_restart_takes_the_lock_and_reads_without_a_thread(
    stored: Path, executor: CountingExecutor
) -> None:
    storage = FileStorage(stored)
    lease, data = await storage.acquire_and_load()
    try:
        assert data == DOCUMENT
        assert executor.submitted == []  # nothing ran in a thread before the lease came back
        assert storage.lock_path.read_bytes() == b""
        for _ in range(500):  # the holder record follows on its own, SETTLE_DELAY later
            if storage.lock_path.read_bytes():
                break
            await asyncio.sleep(0.01)
        record = storage.lock_path.read_text()
        assert record.startswith(f"{local_holder()} since ")
        assert len(executor.submitted) == 1  # the record and the tidying: one hop
        with pytest.raises(SessionLockedError, match=f"pid {os.getpid()}"):
            await FileStorage(stored).acquire_and_load()
    finally:
        await lease.release()
    assert storage.lock_path.read_bytes() == b""


@needs_nowait
async def test_a_crashed_writers_temp_file_is_gone_before_the_first_write(
    stored: Path, executor: CountingExecutor
) -> None:
    leftover = stored.with_name(f".{stored.name}.0123456789abcdef.tmp")
    leftover.write_bytes(b"half a session")
    storage = FileStorage(stored)
    lease, _ = await storage.acquire_and_load()
    try:
        assert executor.submitted == []
        await storage.store_session(DOCUMENT + b" ")
        assert not leftover.exists()
        assert stored.read_bytes() == DOCUMENT + b" "
    finally:
        await lease.release()


def _stale_record(storage: FileStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    storage.lock_path.write_text("pid 999999 on gone-host since 2020-01-01T00:00:00+00:00\n")


def _no_openat2(storage: FileStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_nowait, "_usable", False)


def _mode_to_fix(storage: FileStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    storage.lock_path.chmod(0o644)


@pytest.mark.parametrize("prepare", [_stale_record, _no_openat2, _mode_to_fix],
                         ids=["stale-holder-record", "no-openat2", "lock-mode-to-fix"])
async def test_the_careful_cases_take_the_thread_path_and_open_the_same(
    stored: Path,
    executor: CountingExecutor,
    monkeypatch: pytest.MonkeyPatch,
    prepare: Callable[[FileStorage, pytest.MonkeyPatch], None],
) -> None:
    """A killed holder's record, no openat2, a lock file mode to fix: the thread path."""
    storage = FileStorage(stored)
    prepare(storage, monkeypatch)
    lease, data = await storage.acquire_and_load()
    try:
        assert data == DOCUMENT
        assert executor.submitted
        assert storage.lock_path.read_text().startswith(f"{local_holder()} since ")
        assert storage.lock_path.stat().st_mode & 0o777 == 0o600
    finally:
        await lease.release()


@needs_nowait
def test_open_cached_opens_only_what_the_caches_resolve(tmp_path: Path) -> None:
    present = tmp_path / "present"
    present.write_bytes(b"12345")
    fd = _nowait.open_cached(present, os.O_RDONLY)
    try:
        assert _nowait.read_cached(fd, 5) == b"12345"
        with pytest.raises(_nowait.WouldBlock):
            _nowait.read_cached(fd, 4)  # the length changed since it was asked: not trusted
    finally:
        os.close(fd)
    with pytest.raises(_nowait.WouldBlock):
        _nowait.open_cached(tmp_path / "missing", os.O_RDONLY)  # a negative lookup: unsure
    with pytest.raises(_nowait.WouldBlock):
        _nowait.open_cached(tmp_path / "new", os.O_RDWR | os.O_CREAT)  # may need the disk
    assert not (tmp_path / "new").exists()
    link = tmp_path / "link"
    link.symlink_to(present)
    with pytest.raises(OSError) as refused:
        _nowait.open_cached(link, os.O_RDONLY | os.O_NOFOLLOW)
    assert refused.value.errno == errno.ELOOP  # errors other than "would wait" are os.open's


@pytest.mark.skipif(sys.platform.startswith("linux"), reason="the fallback of other platforms")
def test_elsewhere_open_cached_always_defers_to_a_thread(tmp_path: Path) -> None:
    (tmp_path / "present").write_bytes(b"x")
    with pytest.raises(_nowait.WouldBlock):
        _nowait.open_cached(tmp_path / "present", os.O_RDONLY)
