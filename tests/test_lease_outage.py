"""A replica waiting for the lease outlives an outage of the lease server.

Runs its own redis-server (never the shared one) and kills it under the waiting replica.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from tests.own_redis import own_redis
from tgsession import RedisStorage, SessionLockedError, SessionStorageError

pytest.importorskip("redis")


async def test_waiting_replica_keeps_waiting_through_a_redis_outage(tmp_path: Path) -> None:
    async with own_redis(tmp_path) as redis:
        name = f"test-{uuid.uuid4().hex}"
        holder = RedisStorage.from_url(f"{redis.url}?name={name}&lease_ttl=1")
        standby = RedisStorage.from_url(f"{redis.url}?name={name}&lease_ttl=1&lock_wait=30")
        try:
            held = await holder.acquire()
            waiting = asyncio.ensure_future(standby.acquire())
            await asyncio.sleep(0.3)
            assert not waiting.done()  # the holder has it

            await redis.stop()
            await held.release()  # cannot reach the server: the record would just expire
            await asyncio.sleep(3.0)  # well past the client's own retries (about 1.5 s)
            assert not waiting.done(), waiting.exception()

            await redis.start()  # empty: the holder's record is gone with the data
            lease = await asyncio.wait_for(waiting, 20)
            await lease.check()
            await lease.release()
        finally:
            await holder.aclose()
            await standby.aclose()


async def test_outage_longer_than_lock_wait_reports_the_storage_error(tmp_path: Path) -> None:
    async with own_redis(tmp_path) as redis:
        standby = RedisStorage.from_url(f"{redis.url}?name=test-{uuid.uuid4().hex}")
        await redis.stop()
        try:
            with pytest.raises(SessionStorageError) as caught:
                await standby.acquire(wait=0.5)
            assert not isinstance(caught.value, SessionLockedError)
        finally:
            await standby.aclose()


async def test_holder_cut_off_from_redis_stops_sending_until_it_renews(tmp_path: Path) -> None:
    async with own_redis(tmp_path) as redis:
        holder = RedisStorage.from_url(f"{redis.url}?name=test-{uuid.uuid4().hex}&lease_ttl=0.6")
        try:
            lease = await holder.acquire()
            doubts: list[bool] = []
            lease.on_doubt(lambda: doubts.append(lease.may_send()))
            await redis.stop()
            # Its lease runs out by its own clock while the loop runs on: hang up (once),
            # then every send waits.
            await asyncio.sleep(1.5)
            assert doubts == [False] and not lease.may_send()
            waiting = asyncio.ensure_future(lease.wait_until_sendable())
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await redis.start()  # empty, so the holder takes its lease back
            await asyncio.wait_for(waiting, 10)
            assert lease.may_send() and not lease.lost
        finally:
            await holder.aclose()
