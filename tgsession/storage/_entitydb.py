"""FileStorage's entity rows: an SQLite database in WAL mode, owned by one worker thread.

Why the stdlib ``sqlite3`` in a dedicated thread rather than aiosqlite: aiosqlite is the
same design (one thread per connection, a queue in between) plus a dependency and a
future per call; here each public operation is ONE plain function run in the thread, so
a lookup costs one thread hop and a write batch one hop and one commit.

Layout (``PRAGMA user_version`` = 1)::

    entities (id INTEGER PRIMARY KEY, row BLOB)         -- Telethon's marked peer id
    lookup   (key BLOB PRIMARY KEY, id INTEGER) WITHOUT ROWID

A lookup key maps to the id most recently stored with it; it is never removed when the
row is stored again without it (the protocol allows such a stale key: the session checks
the row). Both tables are written in one transaction per batch, so a kill -9 leaves the
batch entirely or not at all (SQLite's WAL), and the database always opens.

Security, as for the JSON file: the database is created 0600 with ``O_NOFOLLOW`` by us
before SQLite opens it (SQLite gives its ``-wal`` and ``-shm`` files the database's mode),
a database, ``-wal`` or ``-shm`` that others may read, or a symlink at any of those names,
is refused, and the file SQLite opened is checked to be the one we checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .._errors import SessionStorageError, SessionVersionError, TgSessionError
from ._entitylog import replay
from .base import EntityRecord, lookup_key_bytes

__all__ = ["EntityDatabase"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
SCHEMA_VERSION = 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: How long a write waits for another connection's transaction (another process) to end.
_BUSY_TIMEOUT_MS = 10_000
#: Rows imported per transaction when migrating an old ``.entities`` log.
_MIGRATE_BATCH = 10_000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entities (id INTEGER PRIMARY KEY, row BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS lookup (key BLOB PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_UPSERT_ROW = (
    "INSERT INTO entities (id, row) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET row = excluded.row"
)
_UPSERT_KEY = (
    "INSERT INTO lookup (key, id) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET id = excluded.id"
)
_FIND = "SELECT e.id, e.row FROM lookup AS l JOIN entities AS e ON e.id = l.id WHERE l.key = ?"


class EntityDatabase:
    """The entity rows of one FileStorage object; every call runs in its own thread.

    ``check_private(path, stat)`` raises :class:`~tgsession.SessionStorageError` for a file
    that must not be used (mode, owner); ``fence()`` raises to refuse a write (a lost
    lease) and runs just before each one; ``make_folders()`` creates the folder 0700;
    ``storage_error(action, path, oserror)`` words an I/O failure. The database is opened
    on first use and never created by a read: a missing database reads as empty.
    """

    def __init__(
        self,
        path: Path,
        legacy_log: Path,
        *,
        check_private: Callable[[Path, os.stat_result], None],
        make_folders: Callable[[], None],
        storage_error: Callable[[str, Path, OSError], SessionStorageError],
        fence: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self.legacy_log = legacy_log
        self._check_private = check_private
        self._make_folders = make_folders
        self._storage_error = storage_error
        self._fence = fence
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        # Touched only in the worker thread.
        self._conn: sqlite3.Connection | None = None

    # -- the event-loop side: one hop each ------------------------------------------------

    async def _call(self, func: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None or self._pid != os.getpid():
            if self._pid != os.getpid():
                # A forked child has no copy of the thread, and must not use the parent's
                # connection (SQLite forbids it): start afresh, leaving both to the parent.
                self._conn = None
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tgsession-entities")
            # A storage dropped without aclose() must not keep its thread or connection.
            weakref.finalize(self, executor.shutdown, wait=False)
            self._executor, self._pid = executor, os.getpid()
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def get(self, entity_id: int) -> bytes | None:
        if not _INT64_MIN <= entity_id <= _INT64_MAX:
            return None  # no row can have it (SQLite would raise OverflowError)
        return await self._call(self._get_now, entity_id)

    async def find(self, key: str) -> tuple[int, bytes] | None:
        return await self._call(self._find_now, lookup_key_bytes(key))

    async def store(self, records: Sequence[EntityRecord]) -> None:
        for entity_id, _, _ in records:
            if not _INT64_MIN <= entity_id <= _INT64_MAX:
                raise ValueError(f"entity id {entity_id} is outside the signed 64-bit range")
        if records:
            await self._call(self._store_now, list(records))

    async def clear(self) -> None:
        await self._call(self._clear_now)

    async def count(self) -> int:
        return await self._call(self._count_now)

    async def iterate(self, batch: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        after: int | None = None
        while True:
            rows = await self._call(self._page_now, after, batch)
            if not rows:
                return
            yield rows
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def close(self) -> None:
        """Close the connection and stop the thread; the next call opens them again."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_now)
            executor.shutdown(wait=False)

    # -- the worker-thread side ------------------------------------------------------------

    def _get_now(self, entity_id: int) -> bytes | None:
        conn = self._open(create=False)
        if conn is None:
            return None
        row = self._query(conn, "read", "SELECT row FROM entities WHERE id = ?", (entity_id,))
        return None if row is None else bytes(row[0])

    def _find_now(self, key: bytes) -> tuple[int, bytes] | None:
        conn = self._open(create=False)
        if conn is None:
            return None
        row = self._query(conn, "read", _FIND, (key,))
        return None if row is None else (int(row[0]), bytes(row[1]))

    def _count_now(self) -> int:
        conn = self._open(create=False)
        if conn is None:
            return 0
        row = self._query(conn, "read", "SELECT count(*) FROM entities", ())
        return int(row[0]) if row else 0

    def _page_now(self, after: int | None, batch: int) -> list[tuple[int, bytes]]:
        conn = self._open(create=False)
        if conn is None:
            return []
        # The first page starts at the smallest int64 (ids are Telethon's marked ids).
        op, start = (">=", _INT64_MIN) if after is None else (">", after)
        sql = f"SELECT id, row FROM entities WHERE id {op} ? ORDER BY id LIMIT ?"
        args = (start, batch)
        try:
            return [(int(i), bytes(r)) for i, r in conn.execute(sql, args)]
        except sqlite3.Error as error:
            raise self._database_error("read", error) from error

    def _store_now(self, records: list[EntityRecord]) -> None:
        self._fence()
        conn = self._open(create=True)
        assert conn is not None
        self._store_records(conn, records)

    def _clear_now(self) -> None:
        self._fence()
        conn = self._open(create=False)
        if conn is not None:
            self._write(conn, ("DELETE FROM entities", ()), ("DELETE FROM lookup", ()))
        self._remove_legacy_log()

    def _close_now(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _query(self, conn: sqlite3.Connection, action: str, sql: str, args: tuple[Any, ...]) -> Any:
        try:
            return conn.execute(sql, args).fetchone()
        except sqlite3.Error as error:
            raise self._database_error(action, error) from error

    def _write(self, conn: sqlite3.Connection, *steps: tuple[str, Any]) -> None:
        """Run ``steps`` (sql, parameter rows or one parameter tuple) in ONE immediate
        transaction: all of them are stored or none."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in steps:
                    if isinstance(params, list):
                        conn.executemany(sql, params)
                    else:
                        conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise self._database_error("write", error) from error

    # -- opening -------------------------------------------------------------------------

    def _open(self, *, create: bool) -> sqlite3.Connection | None:
        """The connection, opened (and the old log migrated) on first use; ``None`` when
        nothing is stored and ``create`` is false."""
        if self._conn is not None:
            return self._conn
        if not create and not self._exists(self.path) and not self._exists(self.legacy_log):
            return None
        if create:
            self._make_folders()
        conn = self._connect()
        try:
            self._prepare(conn)
            self._migrate_legacy_log(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    @staticmethod
    def _exists(path: Path) -> bool:
        return os.path.lexists(path)

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        for suffix in ("-wal", "-shm"):
            self._check_companion(path.with_name(path.name + suffix))
        try:
            # Created here, 0600 from the first byte and never through a symlink; SQLite
            # then opens the file we checked (compared by inode below).
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
        except OSError as error:
            raise self._storage_error("open", path, error) from error
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SessionStorageError(f"refusing to use {path}: it is not a regular file")
            self._check_private(path, info)
            if info.st_size == 0:
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o600)  # whatever the umask did
            uri = "file:" + urllib.parse.quote(str(path)) + "?mode=rw"
            try:
                conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000
                )
            except sqlite3.Error as error:
                raise self._database_error("open", error) from error
            try:
                now = os.stat(path, follow_symlinks=False)
            except OSError as error:
                conn.close()
                raise self._storage_error("open", path, error) from error
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                conn.close()
                raise SessionStorageError(
                    f"refusing to use {path}: it was replaced while being opened"
                )
        finally:
            os.close(fd)
        return conn

    def _check_companion(self, path: Path) -> None:
        """Refuse a ``-wal``/``-shm`` file that is a symlink or that others may read."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as error:
            raise self._storage_error("open", path, error) from error
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            raise SessionStorageError(
                f"refusing to use {path}: it is not a regular file (a symlink?); delete it "
                "(the entity cache beside the session is only a cache)"
            )
        self._check_private(path, info)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # A planted database's triggers and views run no function with side effects.
            conn.execute("PRAGMA trusted_schema = OFF")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("%s: SQLite refused WAL mode (%s)", self.path, mode)
            # NORMAL in WAL mode: a process crash loses nothing committed; a power cut may
            # lose the last batches, never corrupt the database (it is a cache).
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SessionVersionError(
                    f"{self.path} is an entity cache of format {version}; this tgsession "
                    f"reads format {SCHEMA_VERSION} (upgrade tgsession, or delete the file: "
                    "it is only a cache)"
                )
        except sqlite3.Error as error:
            raise self._database_error("open", error) from error
        if version < SCHEMA_VERSION:
            self._write(conn, *((sql, ()) for sql in _SCHEMA))
        for suffix in ("-wal", "-shm"):
            self._check_companion(self.path.with_name(self.path.name + suffix))

    def _migrate_legacy_log(self, conn: sqlite3.Connection) -> None:
        """Import an entity log of tgsession <= 0.x (read once, imported, removed).

        Rows are imported with the lookup keys the session would give them when they are
        plain rows; sealed rows (EncryptedStorage) keep their ids but no keys, so they are
        found by id only until stored again. Nothing is lost if this is interrupted: the
        log is removed only after the rows are committed, and importing twice is harmless.
        """
        log = self.legacy_log
        if not os.path.lexists(log):
            return  # the usual case: checked before importing the codec, which costs ms
        from .._errors import SessionCorruptError
        from ..codec import decode_entity_row, entity_lookup_keys

        try:
            fd = os.open(log, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as error:
            raise self._storage_error("read", log, error) from error
        try:
            info = os.fstat(fd)
            self._check_private(log, info)
            with os.fdopen(os.dup(fd), "rb") as file:
                data = file.read()
        finally:
            os.close(fd)
        try:
            rows = replay(data, str(log)).rows
        except TgSessionError as error:
            # Not ours to delete (bad input destroys nothing): left there, and read again
            # by the next open until someone removes it.
            logger.warning("not importing %s: %s", log, error)
            return
        del data
        items = list(rows.items())
        del rows
        for start in range(0, len(items), _MIGRATE_BATCH):
            records: list[EntityRecord] = []
            for entity_id, row in items[start : start + _MIGRATE_BATCH]:
                try:
                    keys = entity_lookup_keys(decode_entity_row(row))
                except SessionCorruptError:
                    keys = ()  # sealed, or not a row this version reads: found by id only
                records.append((entity_id, row, keys))
            self._store_records(conn, records)
        self._remove_legacy_log()
        logger.info("imported %d cached entities from %s into %s", len(items), log, self.path)

    def _store_records(self, conn: sqlite3.Connection, records: list[EntityRecord]) -> None:
        keys = [(lookup_key_bytes(k), entity_id) for entity_id, _, ks in records for k in ks]
        rows = [(entity_id, bytes(row)) for entity_id, row, _ in records]
        self._write(conn, (_UPSERT_ROW, rows), (_UPSERT_KEY, keys))

    def _remove_legacy_log(self) -> None:
        log = self.legacy_log
        try:
            os.unlink(log)
        except FileNotFoundError:
            return
        except OSError as error:
            raise self._storage_error("delete", log, error) from error
        with contextlib.suppress(OSError):
            fd = os.open(log.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _database_error(self, action: str, error: sqlite3.Error) -> SessionStorageError:
        detail = str(error)
        hint = ""
        if isinstance(error, sqlite3.DatabaseError) and (
            "not a database" in detail or "malformed" in detail
        ):
            hint = "; delete it (it is only a cache: entities are fetched again)"
        return SessionStorageError(f"cannot {action} the entity cache {self.path}: {detail}{hint}")
