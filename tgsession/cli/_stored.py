"""The stored session as a whole: read it without locking, replace it, remove it.

Writes hold the storage's lease (when it has one), so they never race a running program.
Entity rows are never loaded whole: they are counted by the storage and streamed batch by
batch, so a cache of a million entities costs a batch of memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from .._errors import SessionCorruptError, SessionDecryptError, SessionNotFoundError
from ..codec import (
    EntityRow,
    SessionData,
    decode_entity_row,
    decode_session,
    encode_entity_row,
    encode_session,
    entity_lookup_keys,
)
from ..storage.base import EntityStorage, Lockable, Storage
from ._context import CliError

__all__ = [
    "BATCH", "batches", "count_stored_rows", "has_session", "leased", "raw_session",
    "read_stored", "remove_session", "replace_session", "restore_raw", "stored_rows",
]

#: Entity rows per batch when streaming them between storages and files.
BATCH = 5000


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
    """The stored session document, or ``None``; takes no lock and reads no entity row.

    ``entities`` is ``None`` when the rows live in the storage: stream them with
    :func:`stored_rows`, count them with :func:`count_stored_rows`. Raises
    :class:`~tgsession.SessionCorruptError` (or a subclass) for a document that does not
    decode.
    """
    raw = await raw_session(storage)
    if raw is None:
        return None
    return decode_session(raw, source=repr(storage))


async def stored_rows(
    storage: Storage, data: SessionData, batch: int = BATCH
) -> AsyncIterator[list[EntityRow]]:
    """The session's entity rows, ``batch`` at a time: inline ones, or the storage's.

    A stored row that does not decode (torn, or not for this id) is skipped: it is a
    cache, and one missing row costs one lookup later.
    """
    if data.entities is not None:
        async for chunk in batches(data.entities, batch):
            yield chunk
        return
    if not isinstance(storage, EntityStorage):
        return
    async for blobs in storage.iter_entities(batch):
        rows: list[EntityRow] = []
        for entity_id, blob in blobs:
            try:
                row = decode_entity_row(blob)
            except SessionCorruptError:
                continue
            if row[0] == entity_id:
                rows.append(row)
        if rows:
            yield rows


async def count_stored_rows(storage: Storage, data: SessionData) -> int:
    """How many entity rows the session has, counted without reading them."""
    if data.entities is not None:
        return len(data.entities)
    if isinstance(storage, EntityStorage):
        return await storage.count_entities()
    return 0


async def batches(rows: Iterable[EntityRow], size: int = BATCH) -> AsyncIterator[list[EntityRow]]:
    """``rows`` in lists of ``size`` (an async iterable, as :func:`replace_session` takes)."""
    chunk: list[EntityRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextlib.asynccontextmanager
async def leased(storage: Storage) -> AsyncIterator[None]:
    """Hold the storage's lease (when it has one) for the block; fail fast if taken."""
    lease = await storage.acquire(wait=0) if isinstance(storage, Lockable) else None
    try:
        yield
    finally:
        if lease is not None:
            await lease.release()


async def replace_session(
    storage: Storage,
    data: SessionData,
    *,
    force: bool,
    where: str,
    rows: AsyncIterable[list[EntityRow]] | None = None,
) -> int:
    """Store ``data`` and its entity rows in ``storage``; return how many rows.

    The rows are ``rows`` when given (streamed: a batch in memory at a time when the
    storage keeps rows itself), else ``data.entities``. Raises :class:`CliError` when a
    session is stored there already and ``force`` is false, and
    :class:`~tgsession.SessionLockedError` while another holder uses it.
    """
    if rows is None:
        rows = batches(data.entities or [])
    async with leased(storage):
        if not force and await has_session(storage):
            raise CliError(f"{where} already holds a session; add --force to replace it")
        if isinstance(storage, EntityStorage):
            # Rows first: a crash in between leaves the old session with a bigger cache.
            await storage.clear_entities()
            count = 0
            async for chunk in rows:
                await storage.store_entities(
                    [(row[0], encode_entity_row(row), entity_lookup_keys(row)) for row in chunk]
                )
                count += len(chunk)
            await storage.store_session(encode_session(dataclasses.replace(data, entities=None)))
            return count
        # A storage with only the two methods keeps its rows inline, all in one document.
        inline = [row async for chunk in rows for row in chunk]
        await storage.store_session(encode_session(dataclasses.replace(data, entities=inline)))
        return len(inline)


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
