"""The storage contract: every storage passes these tests.

A test module subclasses :class:`StorageContract` and provides the ``reopen`` fixture: a
callable returning a storage object for ONE fixed place (a file, a Redis key, a row). Calling
it twice gives two objects over the same place, as two processes would have; storages with
no shared place (memory) return the same object.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tgsession import SessionNotFoundError, Storage
from tgsession.storage import EntityStorage, Lockable

Reopen = Callable[[], Storage]


class StorageContract:
    @pytest.fixture
    def reopen(self) -> Reopen:
        raise NotImplementedError

    async def test_is_a_storage(self, reopen: Reopen) -> None:
        assert isinstance(reopen(), Storage)

    async def test_empty_storage_raises_session_not_found(self, reopen: Reopen) -> None:
        with pytest.raises(SessionNotFoundError):
            await reopen().load_session()

    async def test_session_not_found_is_a_lookup_error(self, reopen: Reopen) -> None:
        with pytest.raises(LookupError):
            await reopen().load_session()

    async def test_stored_bytes_load_back_exactly(self, reopen: Reopen) -> None:
        data = bytes(range(256)) * 3
        await reopen().store_session(data)
        assert await reopen().load_session() == data

    async def test_store_replaces_previous_value(self, reopen: Reopen) -> None:
        storage = reopen()
        await storage.store_session(b"first value, longer than the second")
        await storage.store_session(b"second")
        assert await reopen().load_session() == b"second"

    async def test_empty_value_counts_as_nothing_stored(self, reopen: Reopen) -> None:
        storage = reopen()
        await storage.store_session(b"something")
        await storage.store_session(b"")
        with pytest.raises(SessionNotFoundError):
            await reopen().load_session()

    async def test_caller_mutating_its_buffer_changes_nothing(self, reopen: Reopen) -> None:
        storage = reopen()
        buffer = bytearray(b"original")
        await storage.store_session(bytes(buffer))
        buffer[:] = b"mutated!"
        loaded = await storage.load_session()
        assert loaded == b"original"

    async def test_sequential_stores_keep_the_last(self, reopen: Reopen) -> None:
        storage = reopen()
        for i in range(20):
            await storage.store_session(f"value {i}".encode())
        assert await reopen().load_session() == b"value 19"

    async def test_large_value_round_trips(self, reopen: Reopen) -> None:
        data = b"x" * (2 * 1024 * 1024)
        await reopen().store_session(data)
        assert await reopen().load_session() == data

    async def test_entity_rows_upsert_and_load(self, reopen: Reopen) -> None:
        storage = reopen()
        if not isinstance(storage, EntityStorage):
            pytest.skip("this storage keeps entities inline in the session")
        await storage.store_entities({1: b"one", -100: b"channel"})
        await storage.store_entities({1: b"one, updated", 2: b"two"})
        assert await reopen().load_entities() == {  # type: ignore[attr-defined]
            1: b"one, updated",
            2: b"two",
            -100: b"channel",
        }

    async def test_clear_entities_removes_every_row(self, reopen: Reopen) -> None:
        storage = reopen()
        if not isinstance(storage, EntityStorage):
            pytest.skip("this storage keeps entities inline in the session")
        await storage.store_entities({1: b"one"})
        await storage.clear_entities()
        assert await reopen().load_entities() == {}  # type: ignore[attr-defined]

    async def test_second_holder_is_refused_until_release(self, reopen: Reopen) -> None:
        first, second = reopen(), reopen()
        if not isinstance(first, Lockable) or first is second:
            pytest.skip("this storage has no cross-holder lock")
        from tgsession import SessionLockedError

        lease = await first.acquire()
        try:
            with pytest.raises(SessionLockedError):
                await second.acquire()  # type: ignore[attr-defined]
        finally:
            await lease.release()
        lease2 = await second.acquire()  # type: ignore[attr-defined]
        await lease2.release()

    async def test_waiting_holder_gets_the_lease_when_released(self, reopen: Reopen) -> None:
        first, second = reopen(), reopen()
        if not isinstance(first, Lockable) or first is second:
            pytest.skip("this storage has no cross-holder lock")
        lease = await first.acquire()
        waiter = asyncio.ensure_future(second.acquire(wait=5.0))  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await lease.release()
        lease2 = await asyncio.wait_for(waiter, 5.0)
        await lease2.release()
