"""A cross-process exclusive lock on a sidecar file (``flock``), and the lease it grants.

``flock`` belongs to an open file description, so two processes, and two opens in one
process, exclude each other; the kernel drops the lock when its holder dies, however it
dies. The lock file is never deleted (its inode must stay the one everyone locks); while
the lock is held it records the holder, so a refused process can say who holds it.

A lock file can still be deleted by hand (``rm session.json.lock``, ``rm -rf`` of the
folder): a newcomer then creates and locks a new file. Two defences:

* On Linux the holder also binds an abstract Unix socket named after the lock file's
  path (a name in the kernel, not a file: nothing on disk can remove it, and the kernel
  frees it when the holder dies). A newcomer that wins the flock but finds the name bound
  gives the flock back and is refused, naming the holder's pid. (Other users cannot read
  a 0600 session, so a name bound by another, non-root user is ignored: it cannot lock
  anyone out.) The name is per network namespace, so this covers one host or container.
* The holder compares the inode of its locked descriptor with the file at the path every
  ``CHECK_INTERVAL`` seconds and before each session write (FileStorage); once they
  differ the lease is lost for good, as a server lease taken over is: the session stops
  writing and :class:`~tgsession.Client` disconnects, and the socket name is freed only
  when the holder releases (so a newcomer waiting with ``wait=`` gets in after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import socket
import stat
import struct
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiofiles.os

from .._errors import LeaseLostError, SessionLockedError, SessionStorageError
from ._holder import holder_of, local_holder
from ._lease import SendGate
from ._nowait import WouldBlock, open_cached

if sys.platform != "win32":
    import fcntl

__all__ = [
    "CHECK_INTERVAL",
    "FileLease",
    "acquire_file_lock",
    "acquire_file_lock_now",
    "probe_lock_holder",
    "run_blocking",
]

#: Seconds between two checks, by a holder, that its lock file is still the one at the path.
CHECK_INTERVAL = 1.0

#: Seconds after a lock taken on the event loop until its holder record is written.
SETTLE_DELAY = 0.25

_log = logging.getLogger("tgsession.lease")

_T = TypeVar("_T")


def run_blocking(func: Callable[..., _T], *args: Any) -> Awaitable[_T]:
    """Run ``func(*args)`` in the event loop's default executor (aiofiles' wrapper): one
    hop off the event loop."""
    return aiofiles.os.wrap(func)(*args)

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_MAX_HOLDER_TEXT = 200


class FileLease(SendGate):
    """An exclusive ``flock`` held on a lock file; see :class:`~tgsession.storage.Lease`.

    A flock cannot expire or be taken over, so the lease is lost only when its lock file
    was deleted or replaced (a newcomer could then lock the new file): a background check
    every :data:`CHECK_INTERVAL` seconds, :meth:`check` and :meth:`verify_now` (run by
    FileStorage before each session write) notice it. Once lost it stays lost:
    :meth:`wait_lost` returns and the checks raise :class:`~tgsession.LeaseLostError`.
    """

    def __init__(
        self,
        fd: int,
        lock_path: Path,
        holder: str,
        guard: socket.socket | None = None,
        *,
        record: bytes | None = None,
        settle: Callable[[], None] | None = None,
    ) -> None:
        self._init_gate(None)
        self._fd: int | None = fd
        self._guard = guard
        self._lock_path = lock_path
        self._holder = holder
        self._lost_reason: str | None = None
        self._lost_event = asyncio.Event()
        self._in_use = threading.Lock()  # held by a write that relies on this lease
        self._loop = asyncio.get_running_loop()
        self._watch: asyncio.Task[None] | None = self._loop.create_task(
            self._watch_forever(), name=f"tgsession lock watch on {lock_path}"
        )
        # A lock taken on the event loop (acquire_file_lock_now) records its holder, and
        # runs ``settle``, in one worker-thread hop SETTLE_DELAY later (not while the
        # program connects: starting a thread costs the loop up to a millisecond), or
        # at once when settled() is awaited first.
        self._settling: asyncio.Future[None] | None = None
        self._to_settle = (record, settle) if record is not None or settle is not None else None
        self._settle_timer = (
            self._loop.call_later(SETTLE_DELAY, self._start_settling)
            if self._to_settle is not None else None
        )

    def __repr__(self) -> str:
        state = "lost" if self.lost else "held" if self._fd is not None else "released"
        return f"FileLease({str(self._lock_path)!r}, holder={self._holder!r}, {state})"

    @property
    def holder(self) -> str:
        """This holder, as ``pid 42 on host-a``."""
        return self._holder

    @property
    def lost(self) -> bool:
        """True once the lock file was found deleted or replaced (sticky)."""
        return self._lost_reason is not None

    @property
    def released(self) -> bool:
        return self._fd is None and not self.lost

    def lost_error(self) -> LeaseLostError:
        """The error that reports this lease as lost."""
        return LeaseLostError(
            f"the lock file {self._lock_path} was {self._lost_reason} while held; "
            "another process may be using the session (never delete the .lock file)"
        )

    async def check(self) -> None:
        """Raise :class:`~tgsession.LeaseLostError` if this lease no longer excludes others."""
        fd = self._fd
        if fd is None and not self.lost:
            raise LeaseLostError(f"the lock {self._lock_path} was released by this holder")
        if self.lost:
            raise self.lost_error()
        assert fd is not None
        reason = await run_blocking(_lock_file_change, fd, self._lock_path)
        if reason is not None:
            self._mark_lost(reason)
            raise self.lost_error()

    def verify_now(self) -> None:
        """Blocking :meth:`check` for a worker thread, before a write; released: no-op."""
        fd = self._fd
        if self.lost:
            raise self.lost_error()
        if fd is None:
            return
        reason = _lock_file_change(fd, self._lock_path)
        if reason is not None:
            self._loop.call_soon_threadsafe(self._mark_lost, reason)
            self._lost_reason = self._lost_reason or reason
            raise self.lost_error()

    @contextlib.contextmanager
    def kept(self) -> Iterator[bool]:
        """For a worker thread: whether the lock is held (not lost, not released). While the
        block runs, :meth:`release` waits for it in its own thread, so the lock, and with it
        the right to be the only writer, lasts until the block ends."""
        with self._in_use:
            yield self._fd is not None and not self.lost

    async def wait_lost(self) -> None:
        """Return once the lease is lost, for example to stop the client at once."""
        await self._lost_event.wait()

    async def settled(self) -> None:
        """Return once the work left from taking the lock (the holder record, the
        ``settle`` step) is done, starting it now if it has not started; at once for a
        lock taken in a worker thread. It never raises: a failure there is logged (the
        lock itself is held)."""
        self._start_settling()
        if self._settling is not None and not self._settling.done():
            await asyncio.shield(self._settling)

    def _start_settling(self) -> None:
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        work, self._to_settle = self._to_settle, None
        if work is not None and self._fd is not None:
            self._settling = asyncio.ensure_future(
                run_blocking(self._settle_now, self._fd, *work))

    async def release(self) -> None:
        """Release the lock; calling it again does nothing."""
        await self.settled()
        self._stop_watch()
        fd, self._fd = self._fd, None
        guard, self._guard = self._guard, None
        if fd is not None:
            # A lost lock file is someone else's now: leave its holder record alone.
            await run_blocking(self._let_go, fd, guard, _close if self.lost else _unlock)
        elif guard is not None:
            guard.close()
        self._gate_closed_for_good()

    async def __aenter__(self) -> FileLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    def _let_go(self, fd: int, guard: socket.socket | None, close: Callable[[int], None]) -> None:
        with self._in_use:  # after the write that relies on the lock, if one runs
            if guard is not None:
                guard.close()
            close(fd)

    def _mark_lost(self, reason: str) -> None:
        first = not self._lost_event.is_set()
        self._lost_reason = self._lost_reason or reason
        if first:
            self._lost_event.set()
            _log.error("lost the session lock: %s", self.lost_error())
            self._gate_closed_for_good()
            self._stop_watch()

    def _settle_now(self, fd: int, record: bytes | None, settle: Callable[[], None] | None) -> None:
        try:
            if record is not None:
                _write_record(fd, record)
            if settle is not None:
                settle()
        except Exception as error:  # the lock is held either way; say why the rest failed
            _log.warning("after locking %s: %s", self._lock_path, _describe_any(error))

    def _stop_watch(self) -> None:
        task, self._watch = self._watch, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _watch_forever(self) -> None:
        while self._fd is not None and not self.lost:
            await asyncio.sleep(CHECK_INTERVAL)
            fd = self._fd
            if fd is None:
                return
            try:
                reason = await run_blocking(_lock_file_change, fd, self._lock_path)
            except OSError as error:  # pragma: no cover - stat of a path we just had
                _log.warning("could not check the lock file %s: %s", self._lock_path, error)
                continue
            if reason is not None and self._fd is not None:
                self._mark_lost(reason)
                return


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
    record = _holder_record(holder)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(wait, 0.0)
    delay = 0.01
    while True:
        attempt = asyncio.ensure_future(
            run_blocking(_attempt, lock_path, record, prepare, on_locked)
        )
        prepare = None  # once is enough
        try:
            fd, guard, other = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The attempt may still succeed in its thread: release what it gets.
            attempt.add_done_callback(_close_won_lock)
            raise
        except OSError as error:
            raise SessionStorageError(
                f"cannot open the lock file {lock_path}: {_describe(error)}"
            ) from error
        if fd is not None:
            return FileLease(fd, lock_path, holder, guard)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise SessionLockedError(_locked_message(target, lock_path, other, wait), holder=other)
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)


def acquire_file_lock_now(
    lock_path: Path,
    *,
    on_locked: Callable[[], _T],
    settle: Callable[[], None] | None = None,
) -> tuple[FileLease, _T] | None:
    """:func:`acquire_file_lock`'s fast path, on the event loop itself, for the common
    start: the lock file exists, 0600 and empty (its last holder released it), nobody
    holds it, and the kernel's caches hold every part of its path (see ``_nowait``).

    Then the lock is taken with no syscall that can wait for the disk, and ``on_locked``
    runs on the loop; it must not wait for the disk either. Returns ``(lease, what
    on_locked returned)``; the holder record and ``settle`` (blocking) follow in one
    worker-thread hop, which :meth:`FileLease.settled` waits for. Returns ``None``,
    holding nothing, in every other case, or when ``on_locked`` raises anything: the
    caller then takes :func:`acquire_file_lock`, which handles (and reports) them all.
    """
    if sys.platform == "win32":
        return None
    try:
        fd, guard = _lock_now(lock_path)
    except (WouldBlock, OSError):
        return None
    try:
        result = on_locked()
    except Exception:
        if guard is not None:
            guard.close()
        os.close(fd)  # releases the flock; the lock file is empty, as it was
        return None
    holder = local_holder()
    lease = FileLease(fd, lock_path, holder, guard, record=_holder_record(holder),
                      settle=settle)
    return lease, result


def _lock_now(lock_path: Path) -> tuple[int, socket.socket | None]:
    """Lock ``lock_path`` without waiting for the disk or a holder, or raise WouldBlock
    (or OSError) holding nothing."""
    fd = open_cached(lock_path, os.O_RDWR | _O_NOFOLLOW)
    won = False
    guard: socket.socket | None = None
    try:
        info = os.fstat(fd)
        if (info.st_size or not stat.S_ISREG(info.st_mode)
                or stat.S_IMODE(info.st_mode) != 0o600):
            raise WouldBlock  # a stale record, a holder's record, a mode to fix
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WouldBlock from None
        if _lock_file_change(fd, lock_path) is not None:
            raise WouldBlock
        guard, other = _claim_guard(lock_path, fd)
        if other is not None:
            raise WouldBlock
        won = True
        return fd, guard
    finally:
        if not won:
            if guard is not None:
                guard.close()
            os.close(fd)


def probe_lock_holder(lock_path: Path) -> str | None:
    """Who holds the lock now, or ``None`` when it is free (blocking; run it in a thread).

    Probes with a shared lock held for an instant, so an ``acquire(wait=0)`` racing with
    the probe may be refused; retrying, or any ``wait`` > 0, gets the lock.
    """
    _require_flock()
    try:
        fd = os.open(lock_path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        return _guard_holder(lock_path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or _guard_pid(lock_path, fd) or "an unknown process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return _guard_holder(lock_path)
    finally:
        os.close(fd)


_Attempt = tuple[int | None, socket.socket | None, str | None]


def _attempt(
    lock_path: Path,
    record: bytes,
    prepare: Callable[[], None] | None,
    on_locked: Callable[[], None] | None,
) -> _Attempt:
    """``prepare``, one attempt, then ``on_locked`` if it won: one worker-thread hop."""
    if prepare is not None:
        prepare()
    fd, guard, holder = _try_lock(lock_path, record)
    if fd is not None and on_locked is not None:
        try:
            on_locked()
        except BaseException:
            _give_back(fd, guard)
            raise
    return fd, guard, holder


def _try_lock(lock_path: Path, record: bytes) -> _Attempt:
    """One non-blocking attempt: ``(fd, guard, None)`` when locked, ``(None, None, holder)``
    if not."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    won = False
    guard: socket.socket | None = None
    try:
        with contextlib.suppress(OSError):  # someone else's lock file: still lockable
            os.fchmod(fd, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A holder that took the lock on its event loop writes its record a moment
            # later (SETTLE_DELAY); until then its lock name says who it is.
            return None, None, _read_holder(fd) or _guard_pid(lock_path, fd)
        # The file we locked may have been unlinked since we opened it (a holder that
        # released a lock file someone deleted): a lock on it would exclude nobody.
        if _lock_file_change(fd, lock_path) is not None:
            return None, None, "another process (its lock file was just replaced)"
        guard, other = _claim_guard(lock_path, fd)
        if other is not None:
            return None, None, other
        # Any failure from here on (ENOSPC writing the record, EIO) must close the fd:
        # a leaked descriptor would keep the flock until this process exits.
        _write_record(fd, record)
        won = True
        return fd, guard, None
    finally:
        if not won:
            if guard is not None:
                guard.close()
            os.close(fd)


def _guard_name(lock_path: Path, fd: int | None = None) -> bytes:
    """The abstract socket name for ``lock_path`` (folder symlinks resolved).

    ``fd``, the lock file opened by that path, gives the same name for less: the kernel
    says where it opened the file (one readlink of ``/proc/self/fd``) instead of a walk
    of the folders with ``realpath`` (an lstat each, on the path of every start).
    """
    real = _opened_at(fd, lock_path.name) if fd is not None else None
    if real is None:
        real = os.path.join(os.path.realpath(lock_path.parent), lock_path.name)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:40]
    return b"\0tgsession-lock-" + digest.encode()


def _opened_at(fd: int, name: str) -> str | None:
    """The absolute path, symlinks resolved, by which ``fd`` was opened, if its last part
    is still ``name``; ``None`` when that cannot be told (no ``/proc``, a file deleted
    since, a path outside this process's root)."""
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    if not path.startswith("/") or path.rpartition("/")[2] != name:
        return None  # "/x/name (deleted)", "(unreachable)/x/name", a pipe, ...
    return path


_HAS_GUARD = sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED")


def _claim_guard(lock_path: Path, fd: int) -> tuple[socket.socket | None, str | None]:
    """Bind the path's abstract socket (``fd``: the lock file, opened by ``lock_path``):
    ``(socket, None)``, or ``(None, holder)`` when a process of this user (or root) holds
    it. ``(None, None)`` where there is no such thing."""
    if not _HAS_GUARD:
        return None, None
    name = _guard_name(lock_path, fd)
    guard = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        guard.bind(name)
        guard.listen(64)  # only so that a refused process can ask who holds it
        return guard, None
    except OSError as error:
        guard.close()
        if error.errno != errno.EADDRINUSE:
            return None, None  # no abstract sockets here (a sandbox): the flock alone
    peer = _guard_peer(name)
    if peer is not None and not _may_use(peer):
        _log.warning("the lock name of %s is bound by user %d, who cannot use this session; "
                     "ignoring it", lock_path, peer[1])
        return None, None
    return None, _describe_guard_holder(peer)


def _guard_peer(name: bytes) -> tuple[int, int] | None:
    """``(pid, uid)`` of the process bound to the socket ``name``, if it can be told."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.setblocking(False)
    try:
        probe.connect(name)
        pid, uid, _ = struct.unpack("3i", probe.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        return pid, uid
    except OSError:
        return None
    finally:
        probe.close()


def _guard_pid(lock_path: Path, fd: int) -> str | None:
    """``pid 42 on host-a``: the process of this user (or root) bound to the lock's
    socket name, or None."""
    if not _HAS_GUARD:
        return None
    peer = _guard_peer(_guard_name(lock_path, fd))
    return holder_of(peer[0]) if peer is not None and _may_use(peer) else None


def _may_use(peer: tuple[int, int]) -> bool:
    """Whether the ``(pid, uid)`` bound to a lock name may use the session: this user, or
    root (a name bound by anyone else is ignored: it cannot lock this user out)."""
    return peer[1] in (os.geteuid(), 0)


def _describe_guard_holder(peer: tuple[int, int] | None) -> str:
    who = holder_of(peer[0]) if peer else "a process on this host"
    return f"{who} (its lock file was deleted or replaced; it stops when it notices)"


def _guard_holder(lock_path: Path) -> str | None:
    """Who holds the path's socket name while the lock file itself is free, or None."""
    if not _HAS_GUARD:
        return None
    name = _guard_name(lock_path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.bind(name)
        return None
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            return None
    finally:
        probe.close()
    peer = _guard_peer(name)
    if peer is not None and not _may_use(peer):
        return None
    return _describe_guard_holder(peer)


def _give_back(fd: int, guard: socket.socket | None) -> None:
    if guard is not None:
        guard.close()
    _unlock(fd)


def _holder_record(holder: str) -> bytes:
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return f"{holder} since {since}\n".encode()


def _write_record(fd: int, record: bytes) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)


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


def _close(fd: int) -> None:
    os.close(fd)


def _close_won_lock(attempt: asyncio.Future[_Attempt]) -> None:
    if attempt.cancelled() or attempt.exception() is not None:
        return
    fd, guard, _ = attempt.result()
    if fd is not None:
        _give_back(fd, guard)


def _lock_file_change(fd: int, lock_path: Path) -> str | None:
    """``None`` while ``fd`` is the file at ``lock_path``; else what happened to it."""
    try:
        on_disk = os.stat(lock_path, follow_symlinks=False)
    except FileNotFoundError:
        return "deleted"
    except NotADirectoryError:
        return "deleted (its folder is gone)"
    held = os.fstat(fd)
    if (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino):
        return "replaced"
    return None


def _locked_message(target: Path, lock_path: Path, holder: str | None, wait: float) -> str:
    who = holder or "another process (it has not recorded itself yet)"
    if holder is not None and (holder + " ").startswith(local_holder() + " "):
        who = f"this very process ({holder}: another FileStorage, or a lease not released)"
    waited = f" after waiting {wait:g} s" if wait > 0 else ""
    return (
        f"the session file {target} is in use by {who} (lock file {lock_path}){waited}; "
        "stop that process, or wait for it with acquire(wait=...), or give this process "
        "its own session file"
    )


def _describe(error: OSError) -> str:
    return error.strerror or str(error)


def _describe_any(error: Exception) -> str:
    return _describe(error) if isinstance(error, OSError) else str(error)


def _require_flock() -> None:
    if sys.platform == "win32":
        raise SessionStorageError(
            "FileStorage locking needs fcntl.flock (Linux, macOS, BSD); it is not available "
            "on Windows: use RedisStorage or PostgresStorage to share a session safely"
        )
