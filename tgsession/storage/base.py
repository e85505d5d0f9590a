"""The storage contract: two async methods over opaque bytes, plus optional extensions.

A storage never imports Telethon and never interprets the bytes it keeps. Built-in
storages also implement :class:`EntityStorage` (so a save writes only the entity rows
that changed) and :class:`Lockable` (one holder at a time); a user's own storage needs
neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

__all__ = [
    "ENCRYPTED_MAGIC",
    "EntityRecord",
    "EntityStorage",
    "Lease",
    "Lockable",
    "Storage",
    "lookup_key_bytes",
]

#: How :class:`~tgsession.EncryptedStorage`'s output begins (never valid JSON), so readers
#: without the key can say "encrypted" rather than "corrupt".
ENCRYPTED_MAGIC = b"TGSE"


@runtime_checkable
class Storage(Protocol):
    """Where a session's bytes live.

    ``load_session`` raises :class:`~tgsession.SessionNotFoundError` when nothing (or an
    empty value) is stored. ``store_session`` replaces what is stored, atomically: a
    crash leaves either the previous value or the new one. tgsession never calls
    ``store_session`` concurrently on one storage object.
    """

    async def load_session(self) -> bytes: ...

    async def store_session(self, data: bytes) -> None: ...


#: One entity row as a storage keeps it: Telethon's marked peer id, the row's opaque bytes,
#: and the opaque lookup keys that find it (see :func:`tgsession.codec.entity_lookup_keys`).
EntityRecord = tuple[int, bytes, tuple[str, ...]]


def lookup_key_bytes(key: str) -> bytes:
    """A lookup key as the built-in storages keep it: UTF-8, lone surrogates kept
    (``surrogatepass``), since a display name may carry one and a key must never fail."""
    return key.encode("utf-8", "surrogatepass")


@runtime_checkable
class EntityStorage(Protocol):
    """Optional: entity rows kept beside the session, with point lookups.

    A storage that implements this keeps any number of rows and answers one lookup at a
    time, so a session never loads the whole cache: memory and restart time do not grow
    with the number of cached entities. Rows are opaque bytes; lookup keys are opaque
    strings (a username, a phone or a name as the session spells them; an encrypting
    wrapper passes keyed hashes instead).

    - ``get_entity(id)``: the row stored under ``id``, or ``None``.
    - ``find_entity(key)``: ``(id, row)`` of the row most recently stored with ``key``
      among its lookup keys, or ``None``. The row may have been stored again since without
      that key (a username that moved): callers check the row itself.
    - ``store_entities(records)``: upsert the given rows together with their lookup keys;
      its cost grows with ``len(records)``, never with the size of the cache. Not atomic
      as a whole: a row torn or missing after a crash costs one lookup (it is a cache).
    - ``clear_entities()``: remove every row and lookup key.
    - ``count_entities()``: how many rows are stored, without reading them.
    - ``iter_entities(batch)``: every ``(id, row)``, in batches of at most ``batch``, in
      bounded memory (for export and copy); the order is unspecified.

    Within one ``store_entities`` call a later record wins over an earlier one with the
    same id or the same key. A storage that cannot read one row (torn by a crash,
    undecodable, sealed under another key) returns ``None`` for it rather than raising.
    Failures to reach or to open the storage (a server down, a file that is not a
    database or that others may read) raise :class:`~tgsession.SessionStorageError`.
    """

    async def get_entity(self, entity_id: int) -> bytes | None: ...

    async def find_entity(self, key: str) -> tuple[int, bytes] | None: ...

    async def store_entities(self, records: Sequence[EntityRecord]) -> None: ...

    async def clear_entities(self) -> None: ...

    async def count_entities(self) -> int: ...

    def iter_entities(self, batch: int = 1000) -> AsyncIterator[list[tuple[int, bytes]]]: ...


@runtime_checkable
class Lease(Protocol):
    """A held claim on a session: while it is held no other holder can take it.

    ``holder`` describes this holder (for example ``pid 42 on host-a``). ``check()``
    raises :class:`~tgsession.LeaseLostError` when the claim was lost (expired or taken
    over). Storages shared between hosts fence their writes on the server in the same step
    as the write, so a stale holder cannot overwrite a newer session. ``release()`` is
    idempotent.
    """

    @property
    def holder(self) -> str: ...

    async def check(self) -> None: ...

    async def release(self) -> None: ...


@runtime_checkable
class Lockable(Protocol):
    """Optional: a storage that can grant one holder at a time.

    ``acquire(wait=...)`` returns a :class:`Lease` or raises
    :class:`~tgsession.SessionLockedError` naming the holder after ``wait`` seconds
    (``0`` fails fast).

    Optionally, ``acquire_and_load(wait=...) -> (lease, bytes | None)`` takes the lease
    and reads the session (``None`` when nothing is stored) in one step, with the errors of
    both; :meth:`~tgsession.StorageSession.open` uses it when present (every storage of
    tgsession has it: one round trip, or one worker-thread hop, to open a session).
    """

    async def acquire(self, *, wait: float = 0.0) -> Lease: ...
