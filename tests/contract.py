"""The storage contract: every storage passes these tests.

A test module subclasses :class:`StorageContract` and provides the ``reopen`` fixture: a
callable returning a storage object for ONE fixed place (a file, a Redis key, a row). Calling
it twice gives two objects over the same place, as two processes would have; storages with
no shared place (memory) return the same object.
"""

from __future__ import annotations

import asyncio
import tracemalloc
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

    # -- EntityStorage: point lookups --------------------------------------------------

    @staticmethod
    def entities(storage: Storage) -> EntityStorage:
        if not isinstance(storage, EntityStorage):
            pytest.skip("this storage keeps entities inline in the session")
        return storage

    async def test_get_entity_returns_the_stored_row(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        await storage.store_entities([(1, b"one", ()), (-100, b"\x00channel\xff", ())])
        again = self.entities(reopen())
        assert await again.get_entity(1) == b"one"
        assert await again.get_entity(-100) == b"\x00channel\xff"
        assert await again.get_entity(2) is None

    async def test_nothing_stored_reads_as_empty(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        assert await storage.get_entity(1) is None
        assert await storage.find_entity("username:alice") is None
        assert await storage.count_entities() == 0
        assert [batch async for batch in storage.iter_entities()] == []

    async def test_find_entity_by_each_lookup_key(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        keys = ("username:alice", "phone:15550001", "name:Alice Liddell")
        await storage.store_entities([(7, b"alice", keys), (8, b"bob", ("username:bob",))])
        again = self.entities(reopen())
        for key in keys:
            assert await again.find_entity(key) == (7, b"alice")
        assert await again.find_entity("username:bob") == (8, b"bob")
        assert await again.find_entity("username:carol") is None

    async def test_upsert_replaces_a_row_and_keeps_its_keys(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        await storage.store_entities([(1, b"one", ("username:one",)), (2, b"two", ())])
        await storage.store_entities([(1, b"one, updated", ("username:one",))])
        again = self.entities(reopen())
        assert await again.get_entity(1) == b"one, updated"
        assert await again.find_entity("username:one") == (1, b"one, updated")
        assert await again.count_entities() == 2

    async def test_a_username_that_moved_finds_its_new_holder(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        await storage.store_entities([(1, b"old holder", ("username:popular",))])
        await storage.store_entities([(2, b"new holder", ("username:popular",))])
        assert await self.entities(reopen()).find_entity("username:popular") == (2, b"new holder")

    async def test_a_stale_key_returns_the_current_row_for_the_caller_to_check(
        self, reopen: Reopen
    ) -> None:
        storage = self.entities(reopen())
        await storage.store_entities([(1, b"alice as @alice", ("username:alice",))])
        await storage.store_entities([(1, b"alice without a username", ())])
        found = await self.entities(reopen()).find_entity("username:alice")
        # Stale: the row no longer has the key; the caller decodes it and sees that.
        assert found in (None, (1, b"alice without a username"))

    async def test_later_records_in_one_batch_win(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        await storage.store_entities(
            [(1, b"first", ("name:Ann",)), (2, b"second", ("name:Ann",)), (1, b"third", ())]
        )
        again = self.entities(reopen())
        assert await again.get_entity(1) == b"third"
        assert await again.find_entity("name:Ann") == (2, b"second")
        assert await again.count_entities() == 2

    async def test_empty_batch_stores_nothing(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        await storage.store_entities([])
        assert await self.entities(reopen()).count_entities() == 0

    async def test_ids_at_the_int64_edges_and_unusual_keys(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        low, high = -(1 << 63), (1 << 63) - 1
        odd = ("name:\ud800 lone surrogate", "name:nul\x00inside", "username:\u00e9l\u00e8ve")
        await storage.store_entities([(low, b"low", odd[:2]), (high, b"high", odd[2:])])
        again = self.entities(reopen())
        assert await again.get_entity(low) == b"low"
        assert await again.get_entity(high) == b"high"
        assert await again.find_entity(odd[0]) == (low, b"low")
        assert await again.find_entity(odd[1]) == (low, b"low")
        assert await again.find_entity(odd[2]) == (high, b"high")
        assert await again.find_entity("name:nul") is None
        assert await again.get_entity(high + 1) is None
        assert await again.get_entity(low - 1) is None

    async def test_clear_entities_removes_every_row_and_key(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        await storage.store_entities([(1, b"one", ("username:one",)), (2, b"two", ())])
        await storage.clear_entities()
        again = self.entities(reopen())
        assert await again.get_entity(1) is None
        assert await again.find_entity("username:one") is None
        assert await again.count_entities() == 0
        await again.store_entities([(3, b"three", ())])
        assert await self.entities(reopen()).count_entities() == 1

    async def test_count_entities_counts_distinct_ids(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        await storage.store_entities([(i, b"row", ()) for i in range(50)])
        await storage.store_entities([(i, b"row again", ()) for i in range(25, 75)])
        assert await self.entities(reopen()).count_entities() == 75

    async def test_iter_entities_streams_every_row_in_bounded_batches(
        self, reopen: Reopen
    ) -> None:
        storage = self.entities(reopen())
        rows = {i * 7 - 5000: b"row %d" % i for i in range(2500)}
        await storage.store_entities([(i, row, ()) for i, row in rows.items()])
        seen: dict[int, bytes] = {}
        async for batch in self.entities(reopen()).iter_entities(batch=300):
            assert 0 < len(batch) <= 300
            seen.update(batch)
        assert seen == rows

    async def test_iter_entities_holds_no_more_than_a_batch(self, reopen: Reopen) -> None:
        storage = self.entities(reopen())
        row = b"r" * 2000
        count = 2000  # 4 MB of rows
        await storage.store_entities([(i, row, ()) for i in range(count)])
        reader = self.entities(reopen())
        tracemalloc.start()
        try:
            total = 0
            async for batch in reader.iter_entities(batch=50):
                total += len(batch)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert total == count
        assert peak < count * len(row) // 4, f"iterating peaked at {peak} bytes"

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
