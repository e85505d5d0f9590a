"""A cross-process exclusive lock on a sidecar file (``flock``), and the lease it grants.

``flock`` belongs to an open file description, so two processes, and two opens in one
process, exclude each other; the kernel drops the lock when its holder dies, however it
dies. The lock file is never deleted (its inode must stay the one everyone locks); while
the lock is held it records the holder, so a refused process can say who holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiofiles.os

from .._errors import LeaseLostError, SessionLockedError, SessionStorageError
from ._lease import local_holder

if sys.platform != "win32":
    import fcntl

__all__ = ["FileLease", "acquire_file_lock", "probe_lock_holder", "run_blocking"]

_T = TypeVar("_T")


def run_blocking(func: Callable[..., _T], *args: Any) -> Awaitable[_T]:
    """Run ``func(*args)`` in the event loop's default executor (aiofiles' wrapper): one
    hop off the event loop."""
    return aiofiles.os.wrap(func)(*args)

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_MAX_HOLDER_TEXT = 200


class FileLease:
    """An exclusive ``flock`` held on a lock file; see :class:`~tgsession.storage.Lease`.

    A flock cannot expire or be taken over, so :meth:`check` only fails after
    :meth:`release`, or when the lock file was deleted or replaced (then a newcomer could
    lock the new file, so this lease no longer excludes anyone).
    """

    def __init__(self, fd: int, lock_path: Path, holder: str) -> None:
        self._fd: int | None = fd
        self._lock_path = lock_path
        self._holder = holder

    def __repr__(self) -> str:
        state = "held" if self._fd is not None else "released"
        return f"FileLease({str(self._lock_path)!r}, holder={self._holder!r}, {state})"

    @property
    def holder(self) -> str:
        """This holder, as ``pid 42 on host-a``."""
        return self._holder

    async def check(self) -> None:
        """Raise :class:`~tgsession.LeaseLostError` if this lease no longer excludes others."""
        fd = self._fd
        if fd is None:
            raise LeaseLostError(f"the lock {self._lock_path} was released by this holder")
        if not await run_blocking(_still_locks, fd, self._lock_path):
            raise LeaseLostError(
                f"the lock file {self._lock_path} was deleted or replaced while held; "
                "another process may be using the session (never delete the .lock file)"
            )

    def raise_if_lost(self) -> None:
        """Blocking form of :meth:`check` for a held lease (run it in a worker thread);
        a released lease passes (its storage writes unleased, as before acquiring)."""
        fd = self._fd
        if fd is not None and not _still_locks(fd, self._lock_path):
            raise LeaseLostError(
                f"the lock file {self._lock_path} was deleted or replaced while held; "
                "another process may be using the session (never delete the .lock file)"
            )

    async def release(self) -> None:
        """Release the lock; calling it again does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            await run_blocking(_unlock, fd)

    async def __aenter__(self) -> FileLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


async def acquire_file_lock(
    lock_path: Path,
    *,
    target: Path,
    wait: float,
    prepare: Callable[[], None] | None = None,
    on_locked: Callable[[], None] | None = None,
) -> FileLease:
    """Lock ``lock_path``, polling without blocking the loop until ``wait`` seconds pass.

    The lock file's folder must exist, or be made by ``prepare``: a blocking function run
    in the worker thread just before the first attempt (it should raise a
    :class:`~tgsession.TgSessionError`, not an ``OSError``). ``on_locked``, also blocking,
    runs in that thread once the lock is won (if it raises, the lock is released). So a
    free lock costs one thread hop in all.
    Raises :class:`~tgsession.SessionLockedError` naming ``target`` and the holder, or
    :class:`~tgsession.SessionStorageError` when the lock file cannot be opened.
    """
    _require_flock()
    holder = local_holder()
    record = f"{holder} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(wait, 0.0)
    delay = 0.01
    while True:
        attempt = asyncio.ensure_future(
            run_blocking(_attempt, lock_path, record.encode(), prepare, on_locked)
        )
        prepare = None  # once is enough
        try:
            fd, other = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The attempt may still succeed in its thread: release what it gets.
            attempt.add_done_callback(_close_won_lock)
            raise
        except OSError as error:
            raise SessionStorageError(
                f"cannot open the lock file {lock_path}: {_describe(error)}"
            ) from error
        if fd is not None:
            return FileLease(fd, lock_path, holder)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise SessionLockedError(_locked_message(target, lock_path, other, wait), holder=other)
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)


def probe_lock_holder(lock_path: Path) -> str | None:
    """Who holds the lock now, or ``None`` when it is free (blocking; run it in a thread).

    Probes with a shared lock held for an instant, so an ``acquire(wait=0)`` racing with
    the probe may be refused; retrying, or any ``wait`` > 0, gets the lock.
    """
    _require_flock()
    try:
        fd = os.open(lock_path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or "an unknown process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _attempt(
    lock_path: Path,
    record: bytes,
    prepare: Callable[[], None] | None,
    on_locked: Callable[[], None] | None,
) -> tuple[int | None, str | None]:
    """``prepare``, one attempt, then ``on_locked`` if it won: one worker-thread hop."""
    if prepare is not None:
        prepare()
    fd, holder = _try_lock(lock_path, record)
    if fd is not None and on_locked is not None:
        try:
            on_locked()
        except BaseException:
            _unlock(fd)
            raise
    return fd, holder


def _try_lock(lock_path: Path, record: bytes) -> tuple[int | None, str | None]:
    """One non-blocking attempt: ``(fd, None)`` when locked, ``(None, holder)`` if not."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    locked = False
    try:
        with contextlib.suppress(OSError):  # someone else's lock file: still lockable
            os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None, _read_holder(fd)
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        return fd, None
    finally:
        if not locked:
            os.close(fd)


def _read_holder(fd: int) -> str | None:
    text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    first_line = text.splitlines()[0] if text else ""
    return first_line[:_MAX_HOLDER_TEXT] or None


def _unlock(fd: int) -> None:
    try:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a free lock names no holder
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def _close_won_lock(attempt: asyncio.Future[tuple[int | None, str | None]]) -> None:
    if attempt.cancelled() or attempt.exception() is not None:
        return
    fd, _ = attempt.result()
    if fd is not None:
        _unlock(fd)


def _still_locks(fd: int, lock_path: Path) -> bool:
    try:
        on_disk = os.stat(lock_path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _locked_message(target: Path, lock_path: Path, holder: str | None, wait: float) -> str:
    who = holder or "another process (it has not recorded itself yet)"
    if holder is not None and holder.startswith(local_holder() + " "):
        who = f"this very process ({holder}: another FileStorage, or a lease not released)"
    waited = f" after waiting {wait:g} s" if wait > 0 else ""
    return (
        f"the session file {target} is in use by {who} (lock file {lock_path}){waited}; "
        "stop that process, or wait for it with acquire(wait=...), or give this process "
        "its own session file"
    )


def _describe(error: OSError) -> str:
    return error.strerror or str(error)


def _require_flock() -> None:
    if sys.platform == "win32":
        raise SessionStorageError(
            "FileStorage locking needs fcntl.flock (Linux, macOS, BSD); it is not available "
            "on Windows: use RedisStorage or PostgresStorage to share a session safely"
        )
