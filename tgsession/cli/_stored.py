"""The stored session as a whole: read it without locking, replace it, remove it.

Writes hold the storage's lease (when it has one), so they never race a running program.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from .._errors import SessionCorruptError, SessionDecryptError, SessionNotFoundError
from ..codec import SessionData, encode_entity_row, encode_session
from ..session import StorageSession
from ..storage.base import EntityStorage, Lockable, Storage
from ._context import CliError

__all__ = [
    "has_session", "leased", "raw_session", "read_stored", "remove_session",
    "replace_session", "restore_raw",
]


async def has_session(storage: Storage) -> bool:
    """Whether anything is stored (even undecodable data counts)."""
    try:
        await storage.load_session()
    except SessionNotFoundError:
        return False
    except (SessionCorruptError, SessionDecryptError):
        pass  # stored, only not readable
    return True


async def read_stored(storage: Storage) -> SessionData | None:
    """The stored session with its entities inline, or ``None``; takes no lock."""
    if not await has_session(storage):
        return None
    # Read only: no lease, and no release() either, which would write the session back.
    session = await StorageSession.open(storage, lock=False, wait_for_entities=True)
    return session.snapshot()


@contextlib.asynccontextmanager
async def leased(storage: Storage) -> AsyncIterator[None]:
    """Hold the storage's lease (when it has one) for the block; fail fast if taken."""
    lease = await storage.acquire(wait=0) if isinstance(storage, Lockable) else None
    try:
        yield
    finally:
        if lease is not None:
            await lease.release()


async def replace_session(storage: Storage, data: SessionData, *, force: bool, where: str) -> None:
    """Store ``data`` (and its entity rows) in ``storage``.

    Raises :class:`CliError` when a session is stored there already and ``force`` is false,
    and :class:`~tgsession.SessionLockedError` while another holder uses it.
    """
    async with leased(storage):
        if not force and await has_session(storage):
            raise CliError(f"{where} already holds a session; add --force to replace it")
        rows = list(data.entities or [])
        if isinstance(storage, EntityStorage):
            # Rows first: a crash in between leaves the old session with a bigger cache.
            await storage.clear_entities()
            if rows:
                await storage.store_entities({row[0]: encode_entity_row(row) for row in rows})
            await storage.store_session(encode_session(dataclasses.replace(data, entities=None)))
        else:
            await storage.store_session(encode_session(dataclasses.replace(data, entities=rows)))


async def remove_session(storage: Storage) -> bool:
    """Delete the stored session, its entities and the storage's own traces of it (a lock
    file, an owner key, a table row), when the storage can; return whether there was one."""
    async with leased(storage):
        existed = await has_session(storage)
        delete = getattr(storage, "delete_session", None)
        if delete is not None:
            await delete()
            return existed
        if isinstance(storage, EntityStorage):
            await storage.clear_entities()
        await storage.store_session(b"")
        return existed


async def raw_session(storage: Storage) -> bytes | None:
    """The stored bytes as they are, or ``None``; takes no lock."""
    try:
        return await storage.load_session()
    except SessionNotFoundError:
        return None


async def restore_raw(storage: Storage, raw: bytes | None) -> None:
    """Put back what :func:`raw_session` returned (``None``: remove the session)."""
    if raw is None:
        await remove_session(storage)
        return
    async with leased(storage):
        await storage.store_session(raw)
