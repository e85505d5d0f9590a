"""StorageSession: Telethon's session API over any :class:`~tgsession.Storage`.

Telethon calls session methods synchronously from the event loop, so the session keeps
its small state (data centre, auth key, update state, who is signed in) in memory and
persists it with a background writer:

* ``save()`` returns at once; a single writer task stores the latest state, in order,
  and a burst of saves coalesces into one or two writes.
* Entities live in :mod:`tgsession.entities`: a bounded hot cache in memory; a miss is an
  awaitable point lookup in an :class:`~tgsession.storage.EntityStorage`. Rows that
  changed are stored by the same writer within 50 ms of Telethon seeing them (or with the
  next save), in batches, so a save costs what changed. A failing entity store never
  holds back the session document.
* ``close()`` (Telethon calls it on disconnect) flushes and releases the storage's lease,
  so after ``await client.disconnect()`` the latest state is stored.
* A failed write is logged, kept in memory and retried with backoff; ``await
  session.flush()`` raises the session document's error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeGuard

from telethon import utils as tl_utils
from telethon.crypto import AuthKey
from telethon.sessions import MemorySession
from telethon.tl import types
from telethon.tl.tlobject import TLObject

from ._errors import LeaseLostError, SessionNotFoundError
from .codec import (
    DcAddress,
    EntityRow,
    SessionData,
    UpdateState,
    decode_session,
    encode_session,
)
from .entities import (
    DEFAULT_ENTITY_CACHE_SIZE,
    INLINE_ENTITY_LIMIT,
    EntityCache,
    Found,
    Step,
    entity_records,
)
from .storage.base import EntityStorage, Lease, Lockable, Storage

__all__ = ["DEFAULT_ENTITY_CACHE_SIZE", "StorageSession"]

log = logging.getLogger("tgsession")

# Telethon awaits whatever session methods return (utils.maybe_async) but warns that async
# sessions are experimental. close() and delete() return awaitables so that
# ``await client.disconnect()`` returns after the final write, and get_input_entity() does
# for a lookup that must ask the storage.
warnings.filterwarnings(
    "ignore",
    message="Using async sessions support is an experimental feature",
    module="telethon",
)

_MISSING = object()
_RETRY_FIRST = 0.05
_RETRY_MAX = 5.0
#: Entity rows encoded and stored per storage call: a few milliseconds of encoding per turn
#: of the event loop, whatever the number of changed rows.
_ROWS_PER_WRITE = 1000
#: Seconds changed entity rows wait to be stored when nothing else is to be written.
_ROWS_DELAY = 0.05


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


#: The methods of :class:`~tgsession.storage.EntityStorage`.
_ENTITY_METHODS = tuple(name for name in vars(EntityStorage) if not name.startswith("_"))


def _keeps_rows(storage: object) -> TypeGuard[EntityStorage]:
    """``isinstance(storage, EntityStorage)`` (every method present, none set to None),
    without the protocol machinery's cost: this runs on every start."""
    return storage is not None and all(
        getattr(storage, name, None) is not None for name in _ENTITY_METHODS
    )


def _check_cache_size(size: object) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"entity_cache_size must be a positive number of rows, not {size!r}")
    return size


def _lookup_steps(key: Any, exact: bool) -> list[Step]:
    """Telethon's lookup order (``MemorySession.get_input_entity``) as steps."""
    steps: list[Step] = []
    if isinstance(key, str):
        phone = tl_utils.parse_phone(key)
        if phone:
            steps.append(("phone", phone))
        else:
            username, invite = tl_utils.parse_username(key)
            if username and not invite:
                steps.append(("username", username))
            else:
                invite_id = tl_utils.resolve_invite_link(key)[1]
                if invite_id:
                    steps.append(("id", _ids(invite_id, exact=False)))
        steps.append(("name", key))
    elif isinstance(key, int):
        steps.append(("id", _ids(key, exact)))
    return steps


def _ids(entity_id: int, exact: bool) -> tuple[int, ...]:
    """The marked ids a bare id may stand for: itself, or a user's, chat's and channel's."""
    if exact:
        return (entity_id,)
    if 0 <= entity_id <= 9999999999:  # what get_peer_id computes, without its checks
        return (entity_id, -entity_id, -1000000000000 - entity_id)
    return tuple(tl_utils.get_peer_id(peer) for peer in (
        types.PeerUser(entity_id), types.PeerChat(entity_id), types.PeerChannel(entity_id)))


def _input_peer(key: Any, found: Found | None) -> Any:
    if found is None:
        raise ValueError("Could not find input entity with key ", key)
    entity_id, kind = tl_utils.resolve_id(found[0])
    if kind is types.PeerUser:
        return types.InputPeerUser(entity_id, found[1])
    if kind is types.PeerChat:
        return types.InputPeerChat(entity_id)
    return types.InputPeerChannel(entity_id, found[1])


class StorageSession(MemorySession):  # type: ignore[misc]
    """A Telethon session persisted to a :class:`~tgsession.Storage`.

    Open it before building the client (Telethon reads the auth key in its constructor)::

        session = await StorageSession.open(FileStorage("session.json"))
        client = TelegramClient(session, api_id, api_hash)

    ``open`` takes the storage's lease when it is :class:`~tgsession.storage.Lockable`
    (raising :class:`~tgsession.SessionLockedError` if another holder has it) and releases it
    when Telethon closes the session (or deletes it). ``StorageSession()`` with no storage
    is a memory-only session (Telethon clones sessions that way for other data centres).

    Entities: at most ``entity_cache_size`` rows are held in memory (least recently used
    go first). With an :class:`~tgsession.storage.EntityStorage` every row is stored there
    and a lookup that misses memory asks the storage (Telethon awaits it); with a
    two-method storage memory is the whole cache, and the session document keeps its
    :data:`~tgsession.entities.INLINE_ENTITY_LIMIT` (2,000) most recently used rows.
    ``session.save_entities = False`` (Telethon's switch) caches and stores no entities,
    as ``SQLiteSession`` does.
    """

    def __init__(
        self,
        storage: Storage | None = None,
        data: SessionData | None = None,
        *,
        lease: Lease | None = None,
        entity_cache_size: int = DEFAULT_ENTITY_CACHE_SIZE,
    ) -> None:
        super().__init__()
        self._storage = storage
        self._lease = lease
        #: Telethon's switch (``SQLiteSession`` defines it): False caches no entities.
        self.save_entities = True
        entity_storage = storage if _keeps_rows(storage) else None
        self._rows_in_storage = entity_storage is not None
        self._cache = EntityCache(
            entity_storage,
            _check_cache_size(entity_cache_size),
            describe=self._where,
            self_row=self._self_row,
        )
        self._user_id: int | None = None
        self._bot: bool | None = None
        self._self_hash: int | None = None
        self._dirty = False
        #: The document as last read or written, and the state it holds: a save of the same
        #: state is skipped (Telethon saves on every connect, and most of those change
        #: nothing), without encoding it when the state compares equal.
        self._stored_document: bytes | None = None
        self._stored_state: SessionData | None = None
        #: The update state as decoded, until Telethon first asks for it: its ``State``
        #: objects are built then (a start without catch-up never asks).
        self._loaded_updates: UpdateState | None = None
        self._writer: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._last_error: BaseException | None = None
        self._rows_error: BaseException | None = None
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
        entity_cache_size: int = DEFAULT_ENTITY_CACHE_SIZE,
        wait_for_entities: bool = False,
    ) -> StorageSession:
        """Load the session from ``storage`` (an empty one if nothing is stored).

        Reads the session document only: stored entity rows are looked up one at a time
        when Telethon asks for them, so opening takes as long with a million cached
        entities as with none. ``entity_cache_size`` (default
        :data:`~tgsession.entities.DEFAULT_ENTITY_CACHE_SIZE`, 10,000 rows, a few MB) bounds
        the rows held in memory.

        Raises :class:`~tgsession.SessionLockedError` when another holder has the storage's
        lease after ``lock_wait`` seconds (default: the storage's own ``lock_wait``, such as
        a URL's ``?lock_wait=30``, else fail fast), :class:`~tgsession.SessionCorruptError`
        for undecodable data (left untouched), ``ValueError`` for an
        ``entity_cache_size`` that is not a positive integer. With ``close_storage`` the
        storage's connections are closed (``aclose()``) when the session closes.
        ``wait_for_entities`` is accepted for compatibility and does nothing: there is no
        cache to load any more.
        """
        del wait_for_entities
        _check_cache_size(entity_cache_size)
        lease = None
        raw: bytes | None = None
        loaded = False
        if lock and isinstance(storage, Lockable):
            wait = _default_lock_wait(storage) if lock_wait is None else lock_wait
            # A storage that can take the lease and read the session in one step (one
            # round trip, one worker-thread hop) does so: opening is on every start's path.
            acquire_and_load = getattr(storage, "acquire_and_load", None)
            if callable(acquire_and_load):
                lease, raw = await acquire_and_load(wait=wait)
                loaded = True
            else:
                lease = await storage.acquire(wait=wait)
        try:
            source = describe_storage(storage)
            if not loaded:
                try:
                    raw = await storage.load_session()
                except SessionNotFoundError:
                    raw = None
            data = decode_session(raw, source=source) if raw else None
            session = cls(storage, data, lease=lease, entity_cache_size=entity_cache_size)
            session._stored_document, session._stored_state = raw or None, data
            session._close_storage = close_storage
            session._watch_lease()
            session._watch_storage_loss()
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
        self._loaded_updates = data.updates
        # Inline rows of an EntityStorage's document (written by an older tgsession, or
        # imported) move into the storage with the next write.
        self._cache.load_inline(data.entities or ())

    def _states(self) -> dict[int, Any]:
        """Telethon's update states (``MemorySession._update_states``), built from the
        decoded state on first use."""
        state, self._loaded_updates = self._loaded_updates, None
        if state is not None:
            self._update_states[0] = types.updates.State(
                pts=state.pts,
                qts=state.qts,
                date=datetime.datetime.fromtimestamp(state.date, tz=datetime.timezone.utc),
                seq=state.seq,
                unread_count=0,
            )
            now = datetime.datetime.now(tz=datetime.timezone.utc)
            for channel_id, pts in state.channels.items():
                self._update_states[channel_id] = types.updates.State(
                    pts=pts, qts=0, date=now, seq=0, unread_count=0,
                )
        states: dict[int, Any] = self._update_states
        return states

    def get_update_state(self, entity_id: int) -> Any:
        return self._states().get(entity_id)

    def set_update_state(self, entity_id: int, state: Any) -> None:
        self._states()[entity_id] = state

    def get_update_states(self) -> Any:
        return self._states().items()

    async def entities_loaded(self) -> None:
        """Kept for compatibility: returns at once (nothing loads the stored cache)."""

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

    def _watch_storage_loss(self) -> None:
        # A lease that reports it was taken back after it expired unclaimed (a Redis restarted
        # without persistence loses the lease and the data together) makes this holder
        # write back everything it holds in memory.
        on_taken_back = getattr(self._lease, "on_taken_back", None)
        if callable(on_taken_back):
            on_taken_back(self.write_back)

    def write_back(self) -> None:
        """Store again everything held in memory: the session document and the hot rows.

        Called when the storage may have lost what it held (the lease was found gone and
        taken back, as after a restart of a Redis without persistence). Rows that were not
        in memory are not restored: the storage lost them.
        """
        if self._storage is None or self._lease_lost is not None:
            return
        log.warning("the session in %s may have lost its data (the lease was taken back "
                    "after it expired); writing back the session and the %d cached "
                    "entities held in memory", self._where(), len(self._cache.hot))
        self._cache.hold_all_for_writing()
        # The storage may have lost it: write it whatever it is.
        self._stored_document = self._stored_state = None
        self.save()

    def set_user(self, user_id: int | None, bot: bool | None) -> None:
        """Record who is signed in (``auth_if_necessary`` calls this); then save."""
        self._user_id, self._bot = user_id, bot
        self.save()

    def snapshot(self) -> SessionData:
        """The current state as :class:`~tgsession.SessionData`, with the entities held in
        memory inline (the rows of an EntityStorage stream with
        :func:`tgsession.entities.iter_entity_rows`)."""
        data = self._snapshot_core()
        data.entities = self._cache.inline_rows()
        return data

    def _snapshot_core(self) -> SessionData:
        updates = self._loaded_updates
        if updates is not None:
            updates = dataclasses.replace(updates, channels=dict(updates.channels))
        elif (main := self._update_states.get(0)) is not None:
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
            entities=None if self._rows_in_storage
            else self._cache.inline_rows(INLINE_ENTITY_LIMIT),
        )

    def __repr__(self) -> str:
        return (
            f"<StorageSession storage={self._storage!r} dc={self._dc_id} "
            f"authorized_key={'yes' if self._auth_key and self._auth_key.key else 'no'} "
            f"entities_in_memory={len(self._cache.hot)}>"
        )

    # -- Telethon's session API (synchronous; persistence happens in the background) ------

    def clone(self, to_instance: Any = None) -> Any:
        """A memory-only copy (Telethon uses it for connections to other data centres)."""
        cloned = to_instance or StorageSession()
        cloned.save_entities = self.save_entities  # as SQLiteSession's clone does
        return cloned

    def save(self) -> None:
        """Schedule a write of the current state; returns at once (with nothing scheduled
        when that state is the one stored and no write is under way)."""
        if self._storage is None or self._lease_lost is not None or self._stored_already():
            return
        self._dirty = True
        self._start_writer()

    def _stored_already(self) -> bool:
        # Only when nothing is being written: a write in flight may store another state
        # than the one recorded as stored.
        writer = self._writer
        return (
            self._stored_state is not None
            and not self._dirty
            and (writer is None or writer.done())
            and not self._write_lock.locked()
            and not self._rows_waiting()
            and self._snapshot_core() == self._stored_state
        )

    def close(self) -> Awaitable[None]:
        """Flush and release the lease. Telethon calls this on disconnect and awaits it."""
        return self._close()

    def delete(self) -> Awaitable[None]:
        """Remove the session from storage and release the lease, as ``SQLiteSession``'s
        ``delete()`` closes (Telethon calls this from ``log_out()``)."""
        return self._delete()

    def process_entities(self, tlo: Any) -> None:
        """Cache the users and chats in ``tlo`` (Telethon calls this after every request
        and update); rows that changed are stored in the background. Does nothing when
        ``save_entities`` is false."""
        if not self.save_entities:
            return
        if self._cache.learn(self._entities_to_rows(tlo)) and self._rows_in_storage:
            self._start_writer()

    def _entities_to_rows(self, tlo: Any) -> list[EntityRow]:
        # MemorySession's, with one attribute lookup per field instead of two: this runs
        # after every request and update.
        if not isinstance(tlo, TLObject) and tl_utils.is_list_like(tlo):
            entities = tlo
        else:
            entities = []
            user = getattr(tlo, "user", _MISSING)
            if user is not _MISSING:
                entities.append(user)
            chat = getattr(tlo, "chat", _MISSING)
            if chat is not _MISSING:
                entities.append(chat)
            chats = getattr(tlo, "chats", None)
            if chats is not None and tl_utils.is_list_like(chats):
                entities.extend(chats)
            users = getattr(tlo, "users", None)
            if users is not None and tl_utils.is_list_like(users):
                entities.extend(users)
        to_row = self._entity_to_row
        return [row for row in map(to_row, entities) if row]

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

    # Telethon's row lookups answer from memory only (they are synchronous);
    # get_input_entity() also asks the storage.

    def get_entity_rows_by_phone(self, phone: str) -> Found | None:
        return self._cache.find_in_memory(("phone", phone))

    def get_entity_rows_by_username(self, username: str) -> Found | None:
        return self._cache.find_in_memory(("username", username))

    def get_entity_rows_by_name(self, name: str) -> Found | None:
        return self._cache.find_in_memory(("name", name))

    def get_entity_rows_by_id(self, id: int, exact: bool = True) -> Found | None:
        return self._cache.find_in_memory(("id", _ids(id, exact)))

    def _self_row(self, id: int) -> Found | None:
        # Telethon's connect asks for id 0 (hash = own id), then for its own id: both are in
        # the session document, so a restart answers them without the entity cache.
        if self._user_id is None:
            return None
        if id == 0:
            return 0, self._user_id
        if id == self._user_id and self._self_hash is not None:
            return id, self._self_hash
        return None

    def get_input_entity(self, key: Any) -> Any:
        """Telethon's lookup, in ``MemorySession``'s order (id, phone, username or invite
        link, then name). Answered synchronously from memory; when memory does not hold
        the answer and the storage keeps rows, returns an awaitable that asks the storage
        (Telethon awaits it). Raises ``ValueError`` (also from the awaitable) when no
        cached entity matches."""
        if isinstance(key, int):  # what the except below comes to for an id, unraised
            exact = key < 0
        else:
            try:
                if key.SUBCLASS_OF_ID in (0xC91C90B6, 0xE669BF46, 0x40F202FD):
                    return key  # already an InputPeer, InputUser or InputChannel
                return tl_utils.get_input_peer(key)
            except (AttributeError, TypeError):
                if isinstance(key, TLObject):
                    key = tl_utils.get_peer_id(key)
                    exact = True
                else:
                    exact = True  # a phone, username or name
        steps = _lookup_steps(key, exact)
        found = self._cache.resolve_now(steps)
        if isinstance(found, int):
            return self._resolve_in_storage(key, steps, found)
        return _input_peer(key, found)

    async def _resolve_in_storage(self, key: Any, steps: Sequence[Step], start: int) -> Any:
        try:
            found = await self._cache.resolve(steps, start)
        except Exception as exc:
            # An unreachable cache is a cache miss: Telethon then asks Telegram.
            log.warning("could not look up a cached entity in %s (%s: %s)",
                        self._where(), type(exc).__name__, exc)
            found = None
        return _input_peer(key, found)

    @property
    def entity_count(self) -> int:
        """How many entities are held in memory (at most ``entity_cache_size``); the
        storage's ``count_entities()`` counts the stored ones."""
        return len(self._cache.hot)

    @property
    def entity_cache_size(self) -> int:
        """How many entity rows this session holds in memory at most."""
        return self._cache.size

    # -- persistence ---------------------------------------------------------------------

    async def flush(self) -> None:
        """Store the latest state now; raise the storage's error if the session document
        cannot be written. Entity rows that cannot be stored are logged and retried in the
        background: they never fail a flush (the document holds what matters)."""
        if self._storage is None:
            return
        if self._lease_lost is not None:
            raise self._lease_lost
        self._dirty = True  # Telethon changes state without save() (update state, entities)
        async with self._write_lock:
            rows_stored = await self._write_pending()
        if not rows_stored and not self._closing:
            self._start_writer()

    def _start_writer(self) -> None:
        if self._lease_lost is not None:
            return
        if self._writer is None or self._writer.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: the next save() or flush() from a loop writes it
            self._writer = loop.create_task(self._write_in_background())

    def _rows_waiting(self) -> bool:
        return self._rows_in_storage and bool(self._cache.unwritten or self._cache.cleared)

    async def _write_in_background(self) -> None:
        delay = rows_delay = _RETRY_FIRST
        while self._dirty or self._rows_waiting():
            if not self._dirty and not self._closing:
                # Only rows changed: gather them a little (one write for a burst of updates,
                # and none in the middle of the request that brought them).
                await self._pause(_ROWS_DELAY)
            try:
                async with self._write_lock:
                    rows_stored = await self._write_pending()
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
                await self._pause(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            if rows_stored:
                rows_delay = _RETRY_FIRST
            else:
                if self._closing:
                    return
                await self._pause(rows_delay)
                rows_delay = min(rows_delay * 2, _RETRY_MAX)

    async def _pause(self, delay: float) -> None:
        self._retrying = True
        try:
            await asyncio.sleep(delay)
        finally:
            self._retrying = False

    async def _write_pending(self) -> bool:
        """Store changed entity rows, then the session document if it changed.

        Returns whether the rows were stored. A failure to store rows is logged and kept
        for a retry; it never stops the document (it holds the key and update state).
        Raises the document's error, and :class:`~tgsession.LeaseLostError` from either.
        """
        storage = self._storage
        assert storage is not None
        rows_stored = True
        if self._rows_waiting():
            assert isinstance(storage, EntityStorage)
            rows_stored = await self._write_rows(storage)
        if self._dirty:
            self._dirty = False
            state = self._snapshot_core()
            if state == self._stored_state:
                return rows_stored  # stored already: Telethon's save() on connect, say
            document = encode_session(state)
            if document == self._stored_document:
                self._stored_state = state
                return rows_stored
            try:
                await storage.store_session(document)
            except BaseException:
                self._dirty = True
                raise
            self._stored_document, self._stored_state = document, state
        return rows_stored

    async def _write_rows(self, storage: EntityStorage) -> bool:
        cache = self._cache
        cleared, rows = cache.take_unwritten()
        try:
            if cleared:
                await storage.clear_entities()
                cache.stored(True, {})
            items = list(rows.items())
            for start in range(0, len(items), _ROWS_PER_WRITE):
                batch = dict(items[start:start + _ROWS_PER_WRITE])
                await storage.store_entities(entity_records(batch.values()))
                cache.stored(False, batch)
        except (LeaseLostError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if self._rows_error is None:
                log.error(
                    "could not store cached entities in %s (%s: %s); the session itself is "
                    "still stored, the entities are kept in memory and retried",
                    self._where(), type(exc).__name__, exc,
                )
            self._rows_error = exc
            return False
        if self._rows_error is not None:
            log.warning("cached entities stored in %s again after earlier failures",
                        self._where())
            self._rows_error = None
        return True

    async def _stop_writer(self) -> None:
        """Let a running write finish (a writer waiting to retry is cancelled)."""
        writer = self._writer
        if writer is not None and not writer.done():
            if self._retrying:
                writer.cancel()  # only ever cancelled while sleeping, never mid-write
            try:
                await writer
            except asyncio.CancelledError:
                if not writer.cancelled():
                    raise

    async def _close(self) -> None:
        self._closing = True
        try:
            await self._stop_writer()
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
                if self._rows_waiting():
                    log.warning("%d cached entities could not be stored in %s and are lost "
                                "with this session (Telethon asks Telegram for them again)",
                                len(self._cache.unwritten), self._where())
        finally:
            self._closing = False
            await self._let_go()

    async def _let_go(self) -> None:
        """Release the lease and, if ours to close, the storage's connections."""
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
        self._closing = True
        try:
            await self._stop_writer()
            async with self._write_lock:
                if isinstance(storage, EntityStorage):
                    await storage.clear_entities()
                await storage.store_session(b"")
                self._stored_document = self._stored_state = None
        finally:
            self._closing = False
            await self._let_go()

    async def forget_account(self) -> None:
        """Drop the auth key, the signed-in user and the entity cache (a dead session)."""
        self._forget_state()
        self._cache.forget()
        await self.flush()

    def _forget_state(self) -> None:
        self._auth_key = None
        self._user_id = self._bot = self._self_hash = None
        self._update_states.clear()
        self._loaded_updates = None
        self._cache.forget()
        self._cache.cleared = False

    async def release(self) -> None:
        """Flush and release the lease without a Telethon client (idempotent)."""
        await self._close()

    async def __aenter__(self) -> StorageSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()
