"""The storage contract: two async methods over opaque bytes, plus optional extensions.

A storage never imports Telethon and never interprets the bytes it keeps. Built-in
storages also implement :class:`EntityStorage` (so a save writes only the entity rows
that changed) and :class:`Lockable` (one holder at a time); a user's own storage needs
neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

__all__ = ["ENCRYPTED_MAGIC", "EntityStorage", "Lease", "Lockable", "Storage"]

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


@runtime_checkable
class EntityStorage(Protocol):
    """Optional: an entity cache kept beside the session, written row by row.

    Rows are opaque bytes keyed by Telethon's marked peer id. ``store_entities`` upserts
    only the given rows, so the cost of a save grows with what changed, not with the
    size of the cache. A torn or missing row after a crash is acceptable: it is a cache.
    """

    async def load_entities(self) -> dict[int, bytes]: ...

    async def store_entities(self, rows: Mapping[int, bytes]) -> None: ...

    async def clear_entities(self) -> None: ...


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
    """

    async def acquire(self, *, wait: float = 0.0) -> Lease: ...
