"""RedisStorage against a real Redis: the storage contract, then what only Redis has."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests import services
from tests.contract import Reopen, StorageContract
from tests.services import forget_redis_session, with_name
from tgsession import ConfigError, SessionLockedError, SessionStorageError
from tgsession.storage.redis import RedisStorage

pytestmark = pytest.mark.services
redis_url = services.redis_url  # a fixture


@pytest.fixture
async def session_name(redis_url: str) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex}"
    yield name
    await forget_redis_session(redis_url, name)


class TestRedisStorage(StorageContract):
    @pytest.fixture
    async def reopen(self, redis_url: str, session_name: str) -> AsyncIterator[Reopen]:
        opened: list[RedisStorage] = []

        def reopen() -> RedisStorage:
            opened.append(RedisStorage.from_url(with_name(redis_url, session_name)))
            return opened[-1]

        yield reopen
        for storage in opened:
            await storage.aclose()


async def test_sessions_with_different_names_do_not_share_anything(
    redis_url: str,
    session_name: str,
) -> None:
    other_name = session_name + "-other"
    async with (
        RedisStorage.from_url(with_name(redis_url, session_name)) as first,
        RedisStorage.from_url(with_name(redis_url, other_name)) as second,
    ):
        try:
            await first.store_session(b"first")
            await first.store_entities([(1, b"one", ("username:one",))])
            lease = await first.acquire()
            await second.store_session(b"second")
            assert await first.load_session() == b"first"
            assert await second.count_entities() == 0
            assert await second.find_entity("username:one") is None
            await (await second.acquire()).release()
            await lease.release()
        finally:
            await forget_redis_session(redis_url, other_name)


async def test_accepts_a_client_it_does_not_close(redis_url: str, session_name: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    async with RedisStorage(client, name=session_name) as storage:
        await storage.store_session(b"data")
    assert await client.get(f"tgsession:{{{session_name}}}:session") == b"data"
    await client.aclose()


def test_refuses_a_client_that_decodes_responses() -> None:
    client = aioredis.Redis(decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses=False"):
        RedisStorage(client)


def test_repr_masks_the_password() -> None:
    storage = RedisStorage.from_url("redis://:hunter2@127.0.0.1:6379/15?name=bot")
    assert "hunter2" not in repr(storage)
    assert repr(storage) == "RedisStorage('redis://:***@127.0.0.1:6379/15', name='bot')"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_unreachable_server_raises_session_storage_error_without_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0?name=x"
    async with RedisStorage.from_url(url) as storage:
        with pytest.raises(SessionStorageError) as caught:
            await storage.store_session(b"data")
    assert "hunter2" not in str(caught.value)
    assert "redis://:***@127.0.0.1" in str(caught.value)


class PrivateRedis:
    """A redis-server of this test's own, so restarting it disturbs nobody else."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self._folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if ping.stdout.strip() == b"PONG":
                return
            subprocess.run(["sleep", "0.05"], check=True)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        subprocess.run(
            ["redis-cli", "-p", str(self.port), "shutdown", "nosave"],
            capture_output=True,
            check=False,
        )
        if self._process is not None:
            self._process.wait(timeout=5)
            self._process = None

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are needed to test a Redis restart")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


async def test_storage_fails_while_redis_is_down_and_recovers_after_restart(
    private_redis: PrivateRedis,
) -> None:
    url = with_name(private_redis.url, "restart", lease_ttl=0.6)
    async with RedisStorage.from_url(url) as storage, RedisStorage.from_url(url) as rival:
        lease = await storage.acquire()
        await storage.store_session(b"before")

        private_redis.stop()
        with pytest.raises(SessionStorageError, match=r"Redis at redis://127\.0\.0\.1"):
            await storage.store_session(b"while down")
        with pytest.raises(SessionStorageError):
            await storage.load_session()

        private_redis.start()  # empty: this Redis keeps nothing on disk
        await asyncio.sleep(0.5)  # the renew task takes the lease back
        with pytest.raises(SessionLockedError):
            await rival.acquire()
        await storage.store_session(b"after")
        assert await rival.load_session() == b"after"
        await lease.check()
        await lease.release()
