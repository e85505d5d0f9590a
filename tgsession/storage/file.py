"""A session in a private file, replaced atomically, with an entity database and a lock.

These files live side by side (all 0600, in a folder created 0700)::

    session.json                  the session bytes, replaced whole by temp file + rename
    .session.json.spare           the temp file kept for the next write while the lease is
                                  held, swapped in by RENAME_EXCHANGE; zeros once it is the
                                  old session (see ``_spare``; Linux only)
    session.json.entities.sqlite  the entity cache: SQLite in WAL mode (see ``_entitydb``),
                                  with its -wal and -shm files
    session.json.lock             flock'ed by the holder, names it; never deleted

Every file operation runs off the event loop. The session document's operations are ONE
plain blocking function each, run once in the event loop's default executor
(``aiofiles.os.wrap``): ``acquire`` (folders, lock, tidying), ``load_session`` (open,
fstat, permission check, read, close), ``store_session`` (folders, checks, temp file,
write, fsync, rename, folder fsync; then zeros over the old copy when the temp file was
the spare). Each thread hop costs tens to hundreds of microseconds, which dominated
these operations when every syscall was its own hop; doing the syscalls back to back in
one thread makes opening a session several times cheaper and never blocks the loop
either. The entity database has its own thread, which owns its
SQLite connection: one hop per lookup or write batch.

One exception, the restart: on Linux ``acquire_and_load`` first tries to take the lock
and read the session right on the event loop, with syscalls that fail rather than wait
for the disk (``_nowait``: ``openat2`` RESOLVE_CACHED, ``preadv2`` RWF_NOWAIT). When the
kernel's caches hold both files, as they do when a program restarts, that costs about
0.3 ms where the first hop of a new process costs 0.8 to 1.5 ms; otherwise it falls back
to the hop. The holder record and the tidying follow in one hop a moment later.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import shlex
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

from .._errors import LeaseLostError, SessionNotFoundError, SessionStorageError
from . import _spare
from ._entitydb import EntityDatabase
from ._filelock import (
    _O_CLOEXEC,
    _O_NOFOLLOW,
    FileLease,
    acquire_file_lock,
    acquire_file_lock_now,
    probe_lock_holder,
    run_blocking,
)
from ._nowait import open_cached, read_cached
from ._sys import pwrite_all
from .base import EntityRecord

if sys.platform == "darwin":
    import fcntl

__all__ = ["FileStorage", "write_private_file"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_TEMP_ATTEMPTS = 8
_READ_CHUNK = 1 << 16


class FileStorage:
    """Keeps the session in a file only this user can read; implements every protocol.

    - :class:`~tgsession.Storage`: ``store_session`` writes a temporary file (created
      0600 with ``O_EXCL|O_NOFOLLOW``) in the same folder, fsyncs it, renames it over the
      session file and fsyncs the folder: a crash leaves the old or the new session, and a
      symlink at either name is replaced, never written through. While this object holds
      its lease (Linux), the temporary file is one kept for reuse, ``.<name>.spare``: it
      is written in place, fdatasync'ed and exchanged with the session file
      (``renameat2(RENAME_EXCHANGE)``), then the old session, now at the spare's name, is
      overwritten with zeros; allocating no new file makes a write about half as costly.
      A spare that is not a private regular file with one link is never written: its
      name is removed and that write takes the new-file path. ``store_session(b"")``
      deletes the file (and the spare), so nothing is stored. ``load_session`` raises
      :class:`~tgsession.SessionNotFoundError` for a missing or empty file.
    - Permissions: folders it creates are 0700. A session or entity file that group or
      others may read or write, or that another user than this one or root owns, is refused with
      :class:`~tgsession.SessionStorageError` saying how to fix it (as ssh does with
      private keys) and left untouched, unless ``allow_insecure_permissions=True``.
    - I/O failures (disk full, read-only file system, ...) raise
      :class:`~tgsession.SessionStorageError` naming the file; the previous session stays.
    - :class:`~tgsession.storage.EntityStorage`: rows go to ``<path>.entities.sqlite``,
      an SQLite database in WAL mode with an index on the lookup keys (one transaction
      per ``store_entities`` call, so a crash keeps a batch whole or drops it whole), run
      by a thread of its own that owns the connection. Lookups never read more than the
      row they want; a read never creates the database. An entity log of an older
      version (``<path>.entities``) is imported on first use, then removed. The database
      and its ``-wal``/``-shm`` files are held to the same permission rules, and a symlink
      at any of those names is refused.
    - :class:`~tgsession.storage.Lockable`: ``acquire()`` flocks ``<path>.lock``; the OS
      releases it if the process dies. While this object's lease is held, an entity write
      after the lock file was deleted or replaced raises
      :class:`~tgsession.LeaseLostError` and stores nothing. Two objects, even in one
      process, exclude each other.

    Writes through one object are serialized and never reordered; a cancelled write may
    still complete. Example::

        storage = FileStorage("~/.config/mybot/session.json")
        async with await storage.acquire(wait=5):
            data = await storage.load_session()
    """

    def __init__(
        self, path: str | os.PathLike[str], *, allow_insecure_permissions: bool = False
    ) -> None:
        self._path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
        self._legacy_log_path = self._path.with_name(self._path.name + ".entities")
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._allow_insecure = allow_insecure_permissions
        self._session_writes = asyncio.Lock()
        self._entities_db_path = self._path.with_name(self._path.name + ".entities.sqlite")
        self._entities = EntityDatabase(
            self._entities_db_path,
            self._legacy_log_path,
            check_private=self._check_private,
            make_folders=lambda: _make_private_folders(self._path.parent),
            storage_error=_storage_error,
            fence=self._fence_entity_write,
        )
        self._lease: FileLease | None = None  # checked before each write
        self._spare_path = _spare.spare_path(self._path)
        self._use_spare = _spare.SPARE_SUPPORTED  # False once the exchange was refused

    def __repr__(self) -> str:
        return f"FileStorage({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The session file (absolute, ``~`` expanded, symlinks not resolved)."""
        return self._path

    @property
    def entities_path(self) -> Path:
        """The entity database beside the session file (SQLite; ``-wal`` and ``-shm``
        files beside it)."""
        return self._entities.path

    @property
    def legacy_entities_path(self) -> Path:
        """Where tgsession 0.x kept the entity log; imported and removed on first use."""
        return self._legacy_log_path

    @property
    def lock_path(self) -> Path:
        """The lock file beside the session file."""
        return self._lock_path

    @property
    def spare_path(self) -> Path:
        """The reused temporary file beside the session file (``.session.json.spare``):
        written while this object holds the lease, holding zeros between writes."""
        return self._spare_path

    # -- Storage ------------------------------------------------------------------------

    async def load_session(self) -> bytes:
        """Return the stored bytes; :class:`~tgsession.SessionNotFoundError` if none."""
        try:
            data, _ = await run_blocking(self._read_private, self._path)
        except FileNotFoundError:
            raise SessionNotFoundError(
                f"no session is stored in {self._path} (the file does not exist)"
            ) from None
        if not data:
            raise SessionNotFoundError(f"no session is stored in {self._path} (the file is empty)")
        return data

    async def store_session(self, data: bytes) -> None:
        """Replace the stored session atomically; ``b""`` deletes the file.

        Raises :class:`~tgsession.LeaseLostError`, writing nothing, when this storage's
        lease was lost (its lock file deleted or replaced).
        """
        data = bytes(data)
        if data:
            await self._serialized(self._session_writes, self._replace(self._path, data))
        else:
            await self._serialized(self._session_writes, self._remove(self._path))

    # -- EntityStorage ------------------------------------------------------------------

    async def get_entity(self, entity_id: int) -> bytes | None:
        """The row stored under ``entity_id``, or ``None`` (one indexed read)."""
        return await self._entities.get(entity_id)

    async def find_entity(self, key: str) -> tuple[int, bytes] | None:
        """``(id, row)`` most recently stored with lookup key ``key``, or ``None``."""
        return await self._entities.find(key)

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        """Upsert ``records`` with their lookup keys in one transaction (one fsync)."""
        await self._entities.store(records)

    async def clear_entities(self) -> None:
        """Remove every row and lookup key (and an old entity log not imported yet)."""
        await self._entities.clear()

    async def count_entities(self) -> int:
        """How many rows are stored (counted by SQLite; no row is read into Python)."""
        return await self._entities.count()

    def iter_entities(self, batch: int = 1000) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Every ``(id, row)`` in id order, ``batch`` rows per thread hop."""
        return self._entities.iterate(batch)

    async def aclose(self) -> None:
        """Close the entity database's connection and thread (reopened if used again).

        The lock is not released here: release the lease you acquired.
        """
        await self._entities.close()

    # -- Lockable -----------------------------------------------------------------------

    async def acquire(self, *, wait: float = 0.0) -> FileLease:
        """Lock the session for this holder; see :class:`~tgsession.storage.Lockable`.

        Raises :class:`~tgsession.SessionLockedError` naming the holder (``pid 1234 on
        host-a``) once ``wait`` seconds pass. Once locked, removes temporary files that a
        crashed writer left behind (they are never read, so this is only tidying), and the
        spare unless it holds only zeros (a writer killed before zeroing it).
        """
        self._lease = await acquire_file_lock(
            self._lock_path,
            target=self._path,
            wait=wait,
            prepare=self._make_folders_for_lock,
            on_locked=self._tidy_after_lock,
        )
        return self._lease

    async def acquire_and_load(self, *, wait: float = 0.0) -> tuple[FileLease, bytes | None]:
        """:meth:`acquire`, and the stored session's bytes (``None`` when the file is
        missing or empty) read in the same worker-thread hop, right after the lock is won.

        Errors are those of :meth:`acquire` and :meth:`load_session`; when the session
        file cannot be read (an insecure mode, an I/O error) the lock is given back.

        On Linux, when the kernel's caches hold the lock file (empty: its last holder
        released it) and the whole session file, both are taken right on the event loop
        with syscalls that cannot wait for the disk (``_nowait``): no worker-thread hop,
        which costs a new process more than the rest of the open. The holder record and
        the tidying follow in one hop, before this storage's next write.
        """
        now = acquire_file_lock_now(
            self._lock_path, on_locked=self._load_cached, settle=self._tidy_after_lock
        )
        if now is not None:
            self._lease, data = now
            return self._lease, data
        loaded: list[bytes | None] = []

        def on_locked() -> None:
            self._tidy_after_lock()
            loaded.append(self._load_now())

        self._lease = await acquire_file_lock(
            self._lock_path,
            target=self._path,
            wait=wait,
            prepare=self._make_folders_for_lock,
            on_locked=on_locked,
        )
        return self._lease, loaded[-1]

    async def delete_session(self) -> None:
        """Remove the session file, its spare and the entity rows and, while this object
        holds the lock (:meth:`acquire`), the entity database's files and the lock file too
        (``logout`` leaves nothing behind).

        A process that opened the lock file just before it went locks a deleted file, sees
        that and tries again, so the lock still excludes everyone. Without the lock the
        lock file and the (emptied) entity database are kept: they may be in another
        holder's use.
        """
        await self.clear_entities()
        await self.store_session(b"")
        if self._lease is not None:
            try:
                await self._lease.check()
            except LeaseLostError:
                return
            await self._entities.close()
            for path in self._entity_files():
                await run_blocking(_unlink_durably, path)
            await run_blocking(_unlink_durably, self._lock_path)

    def _entity_files(self) -> tuple[Path, ...]:
        database = self._entities_db_path
        return (database, *(database.with_name(database.name + end) for end in ("-wal", "-shm")))

    async def lock_holder(self) -> str | None:
        """Who holds the lock now (``pid 1234 on host-a since ...``), or ``None``."""
        try:
            return await run_blocking(probe_lock_holder, self._lock_path)
        except OSError as error:
            raise _storage_error("read", self._lock_path, error) from error

    # -- internals: the event-loop side (one worker-thread hop each) --------------------

    @staticmethod
    async def _serialized(lock: asyncio.Lock, operation: Awaitable[_T]) -> _T:
        """Run ``operation`` under ``lock``, shielded: if the caller is cancelled, the write
        finishes (or fails cleanly) before the next one starts, so none is reordered."""

        async def locked() -> _T:
            async with lock:
                return await operation

        task = asyncio.ensure_future(locked())
        task.add_done_callback(_consume_exception)
        return await asyncio.shield(task)

    async def _replace(self, target: Path, data: bytes) -> None:
        await self._settled()
        await run_blocking(self._replace_now, target, data)

    async def _remove(self, target: Path) -> None:
        await self._settled()
        try:
            await run_blocking(_unlink_durably, target, self._spare_path)
        except OSError as error:
            raise _storage_error("delete", target, error) from error

    async def _settled(self) -> None:
        """Let the tidying left from a lock taken on the event loop finish first: it
        removes temporary files, and must never meet one this storage is writing."""
        if self._lease is not None:
            await self._lease.settled()

    def _load_cached(self) -> bytes | None:
        """The session file's bytes (``None`` when empty) if the kernel's caches hold all
        of it, on the event loop; raises ``WouldBlock`` (or any error: the caller then
        reads it in a worker thread, which reports the error) otherwise."""
        data, _ = self._read_private(self._path, cached=True)
        return data or None

    # -- internals: blocking, run in a worker thread ------------------------------------

    def _read_private(self, path: Path, *, cached: bool = False) -> tuple[bytes, tuple[int, int]]:
        """Read a whole file after checking its permissions on the opened file; return it
        and its (st_dev, st_ino). FileNotFoundError passes; other OSErrors are reported.
        ``cached``: only from the kernel's caches, for the event loop (``_nowait``; raises
        ``WouldBlock`` where the disk would be needed)."""
        try:
            read = read_cached if cached else _read_all
            if cached:
                fd = open_cached(path, os.O_RDONLY)
            else:
                fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
                self._check_private(path, info)
                data = read(fd, info.st_size)
            finally:
                os.close(fd)
        except FileNotFoundError:
            raise
        except OSError as error:
            raise _storage_error("read", path, error) from error
        return data, (info.st_dev, info.st_ino)

    def _load_now(self) -> bytes | None:
        try:
            data, _ = self._read_private(self._path)
        except FileNotFoundError:
            return None
        return data or None

    def _fence_entity_write(self) -> None:
        """Refuse an entity write by a holder whose lock file was deleted or replaced
        (another process may hold the session now); run in the entity thread."""
        if self._lease is not None:
            self._lease.verify_now()

    def _check_private(self, path: Path, info: os.stat_result) -> None:
        if self._allow_insecure:
            return
        mode = stat.S_IMODE(info.st_mode)
        fix = "(or pass allow_insecure_permissions=True to FileStorage)"
        if mode & 0o077:
            raise SessionStorageError(
                f"refusing to use {path}: its mode is {mode:04o}, so other users can read "
                f"or change it; run `chmod 600 {_quote(path)}` {fix}"
            )
        owner, me = info.st_uid, _effective_uid()
        if me is not None and owner not in (me, 0):
            raise SessionStorageError(
                f"refusing to use {path}: it belongs to uid {owner}, not to this user "
                f"(uid {me}); run `chown {me} {_quote(path)}` {fix}"
            )

    def _check_existing(self, path: Path) -> os.stat_result | None:
        """Refuse to replace an insecure file; return its lstat (``None``: there is none).

        A symlink is not followed: the rename replaces the link, not what it points to.
        """
        try:
            info = os.stat(path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISREG(info.st_mode):
            self._check_private(path, info)
        return info

    def _replace_now(self, target: Path, data: bytes) -> None:
        """Atomically replace ``target`` with ``data``: through the spare while this object
        holds its lease (kept held until the write ends), else by a new temporary file."""
        lease = self._lease
        with lease.kept() if lease is not None else contextlib.nullcontext(False) as held:
            if lease is not None:
                lease.verify_now()  # a holder whose lock file went must not write
            try:
                existing = self._check_existing(target)
                if existing is None:
                    _make_private_folders(target.parent)  # (a stat saved when it exists)
                if held and self._use_spare and self._replace_via_spare(target, existing, data):
                    return
                write_private_file(target, data)
            except OSError as error:
                raise _storage_error("write", target, error) from error

    def _replace_via_spare(
        self, target: Path, existing: os.stat_result | None, data: bytes
    ) -> bool:
        """Write the spare, swap it in, sync the folder, zero the old copy; False (nothing
        replaced) when the spare cannot be used, so the caller writes a new file instead."""
        spare = self._spare_path
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            return False  # a symlink or the like: the new-file path replaces the name itself
        try:
            written = _spare.write_spare(spare, data)
        except OSError:
            written = False  # the new-file path tries again, and reports what fails
        if not written:
            _remove_quietly(spare)  # whatever it was: only its name goes
            return False
        if existing is None:
            os.rename(spare, target)
        else:
            try:
                _spare.exchange(spare, target)
            except OSError as error:  # nothing was swapped
                if isinstance(error, _spare.ExchangeUnsupportedError):
                    self._use_spare = False  # for good: this file system cannot
                    _remove_quietly(spare)
                return False
        _fsync_folder(target.parent)
        if existing is not None:
            _spare.zero_out(spare, existing)  # only after the folder sync made the swap durable
        return True

    def _make_folders_for_lock(self) -> None:
        try:
            _make_private_folders(self._path.parent)
        except OSError as error:
            raise _storage_error("create the folder of", self._path, error) from error

    def _tidy_after_lock(self) -> None:
        _remove_leftover_temps((self._path, self._legacy_log_path))
        if _spare.holds_only_zeros(self._spare_path) is False:
            # A writer killed before zeroing it: an older session is in there.
            with contextlib.suppress(OSError):
                _unlink_durably(self._spare_path)


def write_private_file(target: Path, data: bytes) -> None:
    """Atomically replace ``target`` with ``data``, 0600 from the first byte (blocking).

    A new temporary file beside it, fsynced, renamed over it, then the folder fsynced: a
    crash leaves the old file or the new one. Raises OSError; no temporary file is left.
    """
    temp = _write_temp(target, data)
    try:
        _commit(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise


def _write_temp(target: Path, data: bytes) -> Path:
    """Write ``data`` to a new 0600 file beside ``target`` and fsync it; return its path.

    Created with ``O_EXCL|O_NOFOLLOW``: a name that exists (a leftover, or a planted
    symlink) is never opened, another is tried.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
    for _ in range(_TEMP_ATTEMPTS):
        temp = target.with_name(f".{target.name}.{_random_suffix()}.tmp")
        try:
            fd = os.open(temp, flags, 0o600)
        except FileExistsError:
            continue  # a leftover, or something planted: never touch it
        try:
            try:
                os.fchmod(fd, 0o600)  # whatever the umask did
                pwrite_all(fd, data)
                _fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            _remove_quietly(temp)
            raise
        return temp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _random_suffix() -> str:
    return secrets.token_hex(8)


def _read_all(fd: int, size_hint: int) -> bytes:
    """Read from the current offset to the end (one read when ``size_hint`` is right)."""
    parts: list[bytes] = []
    want = max(size_hint, 0) + 1
    while chunk := os.read(fd, want):
        parts.append(chunk)
        want = _READ_CHUNK
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _commit(temp: Path, target: Path) -> None:
    os.replace(temp, target)  # replaces a symlink at target itself, never its target
    _fsync_folder(target.parent)


def _unlink_durably(*targets: Path) -> None:
    """Remove ``targets`` (all in one folder) and sync the folder if any was there."""
    removed = False
    for target in targets:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
            removed = True
    if removed:
        _fsync_folder(targets[0].parent)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _remove_leftover_temps(targets: tuple[Path, ...]) -> None:
    """Delete temporary files of ``targets`` left by a crashed writer (best effort)."""
    # Plain string tests, not a regular expression: compiling one costs more than the
    # whole scan in a process that just started, and this runs on every start.
    prefixes = tuple(f".{t.name}." for t in targets)
    with contextlib.suppress(OSError), os.scandir(targets[0].parent) as entries:
        for entry in entries:
            ours = any(_is_temp_name(entry.name, prefix) for prefix in prefixes)
            if ours and not entry.is_dir(follow_symlinks=False):
                _remove_quietly(Path(entry.path))


_HEX = frozenset("0123456789abcdef")


def _is_temp_name(name: str, prefix: str) -> bool:
    """Whether ``name`` is ``<prefix><16 hex digits>.tmp`` (a temp file of ``_write_temp``)."""
    middle = name[len(prefix):-4]
    return (name.startswith(prefix) and name.endswith(".tmp") and len(middle) == 16
            and _HEX.issuperset(middle))


def _make_private_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents as 0700 (existing ones are left alone)."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # created meanwhile by someone else: not ours to chmod
        os.chmod(path, 0o700)  # the umask may have removed bits, never added: be explicit
        _fsync_folder(path.parent)  # so the new folder survives a crash too


def _fsync(fd: int) -> None:
    if sys.platform == "darwin":
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)  # macOS fsync stops at the drive's cache
    else:
        os.fsync(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename or unlink in ``folder`` durable."""
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot
            raise
    finally:
        os.close(fd)


def _effective_uid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def _quote(path: Path) -> str:
    return shlex.quote(str(path))


def _storage_error(action: str, path: Path, error: OSError) -> SessionStorageError:
    code = errno.errorcode.get(error.errno or 0, "")
    reason = error.strerror or str(error)
    return SessionStorageError(f"cannot {action} {path}: {reason}" + (f" ({code})" if code else ""))


def _consume_exception(task: asyncio.Task[object]) -> None:
    # A write whose caller was cancelled still reports nothing to nobody: keep it quiet.
    if not task.cancelled():
        task.exception()
