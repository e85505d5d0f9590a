"""StorageSession: Telethon's session API over any :class:`~tgsession.Storage`.

Telethon calls session methods synchronously from the event loop, so the session keeps
its whole state in memory and persists it with a background writer:

* ``save()`` returns at once; a single writer task stores the latest state, in order,
  and a burst of saves coalesces into one or two writes.
* Entity rows that changed since the last write are written row by row when the
  storage is an :class:`~tgsession.storage.EntityStorage`, so a save costs what changed.
* ``close()`` (Telethon calls it on disconnect) flushes and releases the storage's lease,
  so after ``await client.disconnect()`` the latest state is stored.
* A failed write is logged, kept in memory and retried with backoff; ``await
  session.flush()`` raises it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from telethon import utils as tl_utils
from telethon.crypto import AuthKey
from telethon.sessions import MemorySession
from telethon.tl import types

from ._errors import (
    LeaseLostError,
    SessionCorruptError,
    SessionNotFoundError,
    SessionVersionError,
)
from .codec import (
    DcAddress,
    EntityRow,
    SessionData,
    UpdateState,
    decode_entity_row,
    decode_session,
    encode_entity_row,
    encode_session,
)
from .storage.base import EntityStorage, Lease, Lockable, Storage

__all__ = ["StorageSession"]

log = logging.getLogger("tgsession")

# Telethon awaits whatever session methods return (utils.maybe_async) but warns that async
# sessions are experimental. close() and delete() return awaitables so that
# ``await client.disconnect()`` returns after the final write, and get_input_entity() does
# for a miss while the stored entity cache is still loading.
warnings.filterwarnings(
    "ignore",
    message="Using async sessions support is an experimental feature",
    module="telethon",
)

_RETRY_FIRST = 0.05
_RETRY_MAX = 5.0


def describe_storage(storage: Storage) -> str:
    """How messages name a storage: its repr (storages keep secrets out of it)."""
    return repr(storage)


def _default_lock_wait(storage: object) -> float:
    """The storage's own ``lock_wait`` (a wrapper's inner storage counts), else 0."""
    while storage is not None:
        wait = getattr(storage, "lock_wait", None)
        if isinstance(wait, (int, float)) and not isinstance(wait, bool):
            return float(wait)
        storage = getattr(storage, "inner", None)
    return 0.0


async def _read_entity_cache(storage: EntityStorage, source: str) -> dict[int, bytes]:
    """The stored entity rows; an unreadable cache is a cache miss, not a lost session."""
    try:
        return await storage.load_entities()
    except SessionVersionError:
        raise
    except SessionCorruptError as exc:
        log.warning("the entity cache beside %s cannot be read (%s); starting with an empty "
                    "cache", source, exc)
        await storage.clear_entities()
        return {}


class _EntityCache:
    """Cached entity rows, with the indexes Telethon's lookups use."""

    __slots__ = ("by_name", "by_phone", "by_username", "rows")

    def __init__(self) -> None:
        self.rows: dict[int, EntityRow] = {}
        self.by_username: dict[str, int] = {}
        self.by_phone: dict[str, int] = {}
        self.by_name: dict[str, int] = {}

    def put(self, row: EntityRow) -> None:
        entity_id, _, username, phone, name = row
        old = self.rows.get(entity_id)
        if old is not None:
            for index, key in ((self.by_username, old[2]), (self.by_phone, old[3]),
                               (self.by_name, old[4])):
                if key is not None and index.get(key) == entity_id:
                    del index[key]
        self.rows[entity_id] = row
        if username is not None:
            self.by_username[username] = entity_id
        if phone is not None:
            self.by_phone[phone] = entity_id
        if name is not None:
            self.by_name[name] = entity_id

    def find(self, index: dict[str, int], key: str) -> tuple[int, int] | None:
        entity_id = index.get(key)
        return None if entity_id is None else (entity_id, self.rows[entity_id][1])


#: Rows decoded per turn of the event loop (about a tenth of a millisecond of work).
_DECODE_CHUNK = 100
#: Seconds the entity cache waits before loading, unless a lookup needs it sooner.
_LOAD_DELAY = 0.1


def _is_row(value: Any) -> bool:
    return (
        type(value) is list
        and len(value) == 5
        and type(value[0]) is int
        and type(value[1]) is int
        and all(item is None or type(item) is str for item in value[2:])
    )


async def _decode_entity_cache(raw: dict[int, bytes], source: str) -> _EntityCache:
    """Decode stored rows and index them, a chunk per turn of the event loop.

    On the loop rather than in a thread: a decoding thread would hold the GIL in 5 ms
    slices and slow every step of the client's connect, while a small chunk per turn
    lets connecting go first. One ``json.loads`` per chunk; a chunk with a bad row is
    decoded row by row and the bad rows are skipped: a torn cache row costs one lookup,
    not the session.
    """
    cache = _EntityCache()
    skipped = 0
    items = list(raw.items())
    for start in range(0, len(items), _DECODE_CHUNK):
        await asyncio.sleep(0)
        chunk = items[start:start + _DECODE_CHUNK]
        try:
            decoded = json.loads(b"[" + b",".join(value for _, value in chunk) + b"]")
            if len(decoded) != len(chunk) or not all(map(_is_row, decoded)):
                raise ValueError("not rows")
            parsed: list[EntityRow] = [tuple(row) for row in decoded]
        except (ValueError, UnicodeDecodeError, RecursionError):
            parsed = []
            for entity_id, value in chunk:
                try:
                    parsed.append(decode_entity_row(value, source=f"{source} entity {entity_id}"))
                except SessionCorruptError:
                    skipped += 1
        for row in parsed:
            cache.put(row)
    if skipped:
        log.warning("skipped %d undecodable cached entities in %s", skipped, source)
    return cache


class StorageSession(MemorySession):  # type: ignore[misc]
    """A Telethon session persisted to a :class:`~tgsession.Storage`.

    Open it before building the client (Telethon reads the auth key in its constructor)::

        session = await StorageSession.open(FileStorage("session.json"))
        client = TelegramClient(session, api_id, api_hash)

    ``open`` takes the storage's lease when it is :class:`~tgsession.storage.Lockable`
    (raising :class:`~tgsession.SessionLockedError` if another holder has it) and releases it
    when Telethon closes the session. ``StorageSession()`` with no storage is a memory-only
    session (Telethon clones sessions that way for other data centres).
    """

    def __init__(
        self,
        storage: Storage | None = None,
        data: SessionData | None = None,
        *,
        lease: Lease | None = None,
    ) -> None:
        super().__init__()
        self._storage = storage
        self._lease = lease
        self._rows_in_storage = isinstance(storage, EntityStorage)
        self._cache = _EntityCache()
        self._pending_rows: dict[int, EntityRow] = {}
        self._entities_cleared = False
        self._user_id: int | None = None
        self._bot: bool | None = None
        self._self_hash: int | None = None
        self._entity_load: asyncio.Task[None] | None = None
        self._entities_wanted = asyncio.Event()
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._last_error: BaseException | None = None
        self._closing = False
        self._retrying = False
        self._lease_lost: LeaseLostError | None = None
        self._lease_lost_callbacks: list[Callable[[], object]] = []
        self._lease_watch: asyncio.Task[None] | None = None
        self._close_storage = False
        if data is not None:
            self._load(data)

    # -- opening -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        storage: Storage,
        *,
        lock: bool = True,
        lock_wait: float | None = None,
        close_storage: bool = False,
        wait_for_entities: bool = False,
    ) -> StorageSession:
        """Load the session from ``storage`` (an empty one if nothing is stored).

        Raises :class:`~tgsession.SessionLockedError` when another holder has the storage's
        lease after ``lock_wait`` seconds (default: the storage's own ``lock_wait``, such as
        a URL's ``?lock_wait=30``, else fail fast), :class:`~tgsession.SessionCorruptError`
        for undecodable data (left untouched). With ``close_storage`` the storage's
        connections are closed (``aclose()``) when the session closes.

        The entity cache of an :class:`~tgsession.storage.EntityStorage` loads in the
        background, a tenth of a second later (once the client has connected), so a restart
        does not wait for it: a lookup that misses before it is loaded starts the load at
        once and waits for it (Telethon awaits the session's answer).
        ``wait_for_entities=True``, or ``await session.entities_loaded()``, waits for the
        whole cache.
        """
        lease = None
        if lock and isinstance(storage, Lockable):
            wait = _default_lock_wait(storage) if lock_wait is None else lock_wait
            lease = await storage.acquire(wait=wait)
        try:
            source = describe_storage(storage)
            try:
                data = decode_session(await storage.load_session(), source=source)
            except SessionNotFoundError:
                data = None
            session = cls(storage, data, lease=lease)
            session._close_storage = close_storage
            if isinstance(storage, EntityStorage) and data is not None:
                # (Rows without a session are left over from a deleted one: not loaded.)
                session._entity_load = asyncio.get_running_loop().create_task(
                    session._load_entity_cache(storage, source)
                )
                if wait_for_entities:
                    await session.entities_loaded()
            session._watch_lease()
            return session
        except BaseException:
            if lease is not None:
                await lease.release()
            raise

    def _load(self, data: SessionData) -> None:
        if data.dc is not None:
            self.set_dc(data.dc.id, data.dc.address, data.dc.port)
        self._auth_key = AuthKey(data.auth_key) if data.auth_key else None
        self._takeout_id = data.takeout_id
        self._user_id, self._bot = data.user_id, data.bot
        self._self_hash = data.self_access_hash
        if data.updates is not None:
            state = data.updates
            self._update_states[0] = types.updates.State(
                pts=state.pts,
                qts=state.qts,
                date=datetime.datetime.fromtimestamp(state.date, tz=datetime.timezone.utc),
                seq=state.seq,
                unread_count=0,
            )
            for channel_id, pts in state.channels.items():
                self._update_states[channel_id] = types.updates.State(
                    pts=pts, qts=0, date=datetime.datetime.now(tz=datetime.timezone.utc),
                    seq=0, unread_count=0,
                )
        for row in data.entities or ():
            self._cache.put(row)

    async def _load_entity_cache(self, storage: EntityStorage, source: str) -> None:
        # Let the client connect first (on loopback connecting is CPU-bound and would share
        # the loop with decoding); a lookup that needs the cache starts the load at once.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._entities_wanted.wait(), _LOAD_DELAY)
        try:
            raw = await _read_entity_cache(storage, source)
            cache = await _decode_entity_cache(raw, source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("the entity cache in %s could not be loaded (%s: %s); continuing "
                        "without it", source, type(exc).__name__, exc)
            return
        # Rows learned while the cache was loading are newer: they win.
        for row in self._cache.rows.values():
            cache.put(row)
        self._cache = cache

    async def entities_loaded(self) -> None:
        """Wait until the stored entity cache is loaded (at once if it already is)."""
        task = self._entity_load
        if task is not None and not task.done():
            self._entities_wanted.set()
            await asyncio.shield(task)

    def _stop_entity_load(self) -> None:
        if self._entity_load is not None and not self._entity_load.done():
            self._entity_load.cancel()

    # -- what the session knows ----------------------------------------------------------

    @property
    def storage(self) -> Storage | None:
        """The storage this session persists to (``None`` for a memory-only clone)."""
        return self._storage

    @property
    def user_id(self) -> int | None:
        """The signed-in account's id, once known."""
        return self._user_id

    @property
    def bot(self) -> bool | None:
        """Whether the signed-in account is a bot, once known."""
        return self._bot

    @property
    def lease_lost(self) -> bool:
        """Whether another holder took the session over; this one then stops writing."""
        return self._lease_lost is not None

    @property
    def lease(self) -> Lease | None:
        """The lease this session holds (``None`` without one, or once closed)."""
        return self._lease

    def on_lease_lost(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` when the lease is lost (:class:`~tgsession.Client` disconnects)."""
        self._lease_lost_callbacks.append(callback)

    def _watch_lease(self) -> None:
        wait_lost = getattr(self._lease, "wait_lost", None)
        if wait_lost is None:
            return

        async def watch() -> None:
            await wait_lost()
            lost_error = getattr(self._lease, "lost_error", None)
            self._lost_lease(
                lost_error() if lost_error is not None
                else LeaseLostError(f"another holder took over {self._where()}")
            )

        self._lease_watch = asyncio.get_running_loop().create_task(watch())

    def _lost_lease(self, error: LeaseLostError) -> None:
        if self._lease_lost is not None:
            return
        self._lease_lost = error
        log.error("this process lost the session in %s to another holder: it stops writing "
                  "the session and disconnects, so the two never use one key at once",
                  self._where())
        for callback in self._lease_lost_callbacks:
            callback()

    def _where(self) -> str:
        return describe_storage(self._storage) if self._storage is not None else "memory"

    def set_user(self, user_id: int | None, bot: bool | None) -> None:
        """Record who is signed in (``auth_if_necessary`` calls this); then save."""
        self._user_id, self._bot = user_id, bot
        self.save()

    def snapshot(self) -> SessionData:
        """The current state as :class:`~tgsession.SessionData` (entities inline; await
        :meth:`entities_loaded` first to include the whole stored cache)."""
        data = self._snapshot_core()
        data.entities = list(self._cache.rows.values())
        return data

    def _snapshot_core(self) -> SessionData:
        main = self._update_states.get(0)
        updates = None
        if main is not None:
            updates = UpdateState(
                pts=main.pts,
                qts=main.qts,
                date=int(main.date.timestamp()) if main.date else 0,
                seq=main.seq,
                channels={k: v.pts for k, v in self._update_states.items() if k != 0},
            )
        return SessionData(
            dc=DcAddress(self._dc_id, self._server_address, self._port)
            if self._dc_id and self._server_address and self._port
            else None,
            auth_key=self._auth_key.key if self._auth_key and self._auth_key.key else None,
            takeout_id=self._takeout_id,
            user_id=self._user_id,
            bot=self._bot,
            self_access_hash=self._self_hash,
            updates=updates,
            entities=None if self._rows_in_storage else list(self._cache.rows.values()),
        )

    def __repr__(self) -> str:
        return (
            f"<StorageSession storage={self._storage!r} dc={self._dc_id} "
            f"authorized_key={'yes' if self._auth_key and self._auth_key.key else 'no'} "
            f"entities={len(self._cache.rows)}>"
        )

    # -- Telethon's session API (synchronous; persistence happens in the background) ------

    def clone(self, to_instance: Any = None) -> Any:
        """A memory-only copy (Telethon uses it for connections to other data centres)."""
        return to_instance or StorageSession()

    def save(self) -> None:
        """Schedule a write of the current state; returns at once."""
        if self._storage is None or self._lease_lost is not None:
            return
        self._dirty = True
        if self._writer is None or self._writer.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: the next save() or flush() from a loop writes it
            self._writer = loop.create_task(self._write_in_background())

    def close(self) -> Awaitable[None]:
        """Flush and release the lease. Telethon calls this on disconnect and awaits it."""
        return self._close()

    def delete(self) -> Awaitable[None]:
        """Remove the session from storage (Telethon calls this from ``log_out()``)."""
        return self._delete()

    def process_entities(self, tlo: Any) -> None:
        rows = self._cache.rows
        for row in self._entities_to_rows(tlo):
            if rows.get(row[0]) != row:
                self._cache.put(row)
                self._pending_rows[row[0]] = row

    def _entity_to_row(self, e: Any) -> EntityRow | None:
        # Fast paths for the three types that fill every update; the rest go through Telethon.
        cls = type(e)
        if cls is types.User:
            if e.is_self:
                self._user_id, self._bot = e.id, bool(e.bot)
                if e.access_hash is not None:
                    self._self_hash = e.access_hash
            if e.access_hash is None or e.min:
                return None
            username = e.username.lower() if e.username else None
            first, last = e.first_name, e.last_name
            name = f"{first} {last}" if first and last else (first or last or None)
            return (e.id, e.access_hash, username, e.phone, name)
        if cls is types.Channel:
            if e.access_hash is None or e.min:
                return None
            username = e.username.lower() if e.username else None
            return (-1000000000000 - e.id, e.access_hash, username, None, e.title or None)
        if cls is types.Chat:
            return (-e.id, 0, None, None, e.title or None)
        row: EntityRow | None = super()._entity_to_row(e)
        return row

    def get_entity_rows_by_phone(self, phone: str) -> tuple[int, int] | None:
        return self._cache.find(self._cache.by_phone, phone)

    def get_entity_rows_by_username(self, username: str) -> tuple[int, int] | None:
        return self._cache.find(self._cache.by_username, username)

    def get_entity_rows_by_name(self, name: str) -> tuple[int, int] | None:
        return self._cache.find(self._cache.by_name, name)

    def get_entity_rows_by_id(self, id: int, exact: bool = True) -> tuple[int, int] | None:
        rows = self._cache.rows
        if exact:
            row = rows.get(id)
            return self._self_row(id) if row is None else (row[0], row[1])
        for peer in (types.PeerUser(id), types.PeerChat(id), types.PeerChannel(id)):
            row = rows.get(tl_utils.get_peer_id(peer))
            if row is not None:
                return row[0], row[1]
        return self._self_row(id)

    def _self_row(self, id: int) -> tuple[int, int] | None:
        # Telethon's connect asks for id 0 (hash = own id), then for its own id: both are in
        # the session document, so a restart never waits for the entity cache.
        if self._user_id is None:
            return None
        if id == 0:
            return 0, self._user_id
        if id == self._user_id and self._self_hash is not None:
            return id, self._self_hash
        return None

    def get_input_entity(self, key: Any) -> Any:
        """Telethon's lookup; while the stored cache loads, a miss waits for it."""
        if self._entity_load is None or self._entity_load.done():
            return super().get_input_entity(key)
        try:
            return super().get_input_entity(key)
        except ValueError:
            return self._get_input_entity_when_loaded(key)

    async def _get_input_entity_when_loaded(self, key: Any) -> Any:
        await self.entities_loaded()
        return super().get_input_entity(key)

    @property
    def entity_count(self) -> int:
        """How many entities are cached."""
        return len(self._cache.rows)

    # -- persistence ---------------------------------------------------------------------

    async def flush(self) -> None:
        """Store the latest state now; raise the storage's error if the write fails."""
        if self._storage is None:
            return
        if self._lease_lost is not None:
            raise self._lease_lost
        self._dirty = True  # Telethon changes state without save() (update state, entities)
        async with self._write_lock:
            await self._write_pending()

    async def _write_in_background(self) -> None:
        delay = _RETRY_FIRST
        while self._dirty:
            try:
                async with self._write_lock:
                    await self._write_pending()
                if self._last_error is not None:
                    log.warning("session stored in %s again after earlier failures",
                                self._where())
                    self._last_error = None
                delay = _RETRY_FIRST
            except asyncio.CancelledError:
                raise
            except LeaseLostError as exc:
                self._lost_lease(exc)
                return
            except Exception as exc:
                self._last_error = exc
                if self._closing:
                    return  # close() makes the last attempt and raises
                log.error(
                    "could not store the session in %s (%s: %s); it is kept in memory and "
                    "the write is retried in %.2g s",
                    self._where(), type(exc).__name__, exc, delay,
                )
                self._retrying = True
                try:
                    await asyncio.sleep(delay)
                finally:
                    self._retrying = False
                delay = min(delay * 2, _RETRY_MAX)

    async def _write_pending(self) -> None:
        if not self._dirty:
            return
        storage = self._storage
        assert storage is not None
        self._dirty = False
        rows, self._pending_rows = self._pending_rows, {}
        cleared, self._entities_cleared = self._entities_cleared, False
        try:
            if isinstance(storage, EntityStorage):
                if cleared:
                    await storage.clear_entities()
                if rows:
                    await storage.store_entities(
                        {key: encode_entity_row(row) for key, row in rows.items()}
                    )
            await storage.store_session(encode_session(self._snapshot_core()))
        except BaseException:
            # Keep what was not written; newer rows taken since then win.
            for key, row in rows.items():
                self._pending_rows.setdefault(key, row)
            self._entities_cleared = self._entities_cleared or cleared
            self._dirty = True
            raise

    async def _close(self) -> None:
        self._closing = True
        self._stop_entity_load()
        try:
            writer = self._writer
            if writer is not None and not writer.done():
                if self._retrying:
                    writer.cancel()  # only ever cancelled while sleeping, never mid-write
                try:
                    await writer
                except asyncio.CancelledError:
                    if not writer.cancelled():
                        raise
            if self._storage is not None and self._lease_lost is None:
                try:
                    await self.flush()
                except Exception as exc:
                    log.error(
                        "the session could not be stored in %s when closing (%s: %s); "
                        "the latest changes are lost unless the storage comes back",
                        self._where(), type(exc).__name__, exc,
                    )
                    raise
        finally:
            self._closing = False
            if self._lease_watch is not None:
                self._lease_watch.cancel()
                self._lease_watch = None
            if self._lease is not None:
                lease, self._lease = self._lease, None
                await lease.release()
            aclose = getattr(self._storage, "aclose", None)
            if self._close_storage and aclose is not None:
                self._close_storage = False
                await aclose()

    async def _delete(self) -> None:
        storage = self._storage
        if storage is None:
            return
        self._forget_state()
        self._dirty = False
        async with self._write_lock:
            if isinstance(storage, EntityStorage):
                await storage.clear_entities()
            await storage.store_session(b"")

    async def forget_account(self) -> None:
        """Drop the auth key, the signed-in user and the entity cache (a dead session)."""
        self._forget_state()
        self._entities_cleared = True
        await self.flush()

    def _forget_state(self) -> None:
        self._stop_entity_load()
        self._auth_key = None
        self._user_id = self._bot = self._self_hash = None
        self._update_states.clear()
        self._cache = _EntityCache()
        self._pending_rows.clear()

    async def release(self) -> None:
        """Flush and release the lease without a Telethon client (idempotent)."""
        await self._close()

    async def __aenter__(self) -> StorageSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()


