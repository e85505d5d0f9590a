"""A Redis without persistence restarts under a running holder: it writes back what it holds.

Runs its own ``redis-server`` on a free port (never the shared one), with no RDB and no AOF,
and restarts it: every key is gone. The holder's lease renewal finds the lease missing and
takes it back; the session then stores again its document (auth key, update state) and the
entity rows it holds in memory. Rows that were only in Redis are gone for good.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from telethon.crypto import AuthKey
from telethon.tl import types

from tgsession import SessionNotFoundError, StorageSession
from tgsession.codec import decode_session

pytestmark = pytest.mark.services


class OwnRedis:
    """A throwaway redis-server without persistence, restartable on the same port."""

    def __init__(self, folder: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed: this test runs its own"
        if os.environ.get("TGSESSION_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("redis")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def session_url(own_redis: OwnRedis) -> AsyncIterator[str]:
    yield f"{own_redis.url}?name=restart&lease_ttl=0.6"


async def stored_document(url: str) -> bytes | None:
    from tgsession.storage.redis import RedisStorage

    reader = RedisStorage.from_url(url)
    try:
        return await reader.load_session()
    except SessionNotFoundError:
        return None
    finally:
        await reader.aclose()


async def test_the_holder_writes_back_its_session_and_hot_rows_after_a_redis_restart(
    own_redis: OwnRedis, session_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from tgsession.storage.redis import RedisStorage

    storage = RedisStorage.from_url(session_url)
    session = await StorageSession.open(storage, entity_cache_size=3, close_storage=True)
    session.set_dc(2, "127.0.0.1", 443)
    session.auth_key = AuthKey(b"\x01" + os.urandom(255))
    session.process_entities([types.User(id=i, access_hash=i, username=f"user{i}")
                              for i in range(1, 11)])
    await session.flush()
    assert await storage.count_entities() == 10

    own_redis.stop()
    own_redis.start()  # every key is gone: the session, its rows, the lease
    assert await stored_document(session_url) is None

    for _ in range(100):  # the lease renews every ttl/3 = 0.2 s
        await asyncio.sleep(0.1)
        if await stored_document(session_url) is not None and (
            await storage.count_entities() == 3
        ):
            break
    document = await stored_document(session_url)
    assert document is not None
    assert decode_session(document).auth_key == session.auth_key.key
    assert await storage.count_entities() == 3  # the rows held in memory, no more
    for i in (8, 9, 10):
        assert await storage.find_entity(f"username:user{i}") is not None
    assert await storage.get_entity(1) is None  # only Redis had it: gone
    assert "writing back" in caplog.text
    assert not session.lease_lost
    await session.release()
