"""PostgresStorage against a real PostgreSQL: the storage contract, then what only it has."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests import services
from tests.contract import Reopen, StorageContract
from tests.services import forget_postgres_session, with_name
from tgsession import ConfigError, SessionStorageError
from tgsession.storage.postgres import PostgresStorage

pytestmark = pytest.mark.services
postgres_url = services.postgres_url  # a fixture


@pytest.fixture
async def session_name(postgres_url: str) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex}"
    yield name
    await forget_postgres_session(postgres_url, name)


class TestPostgresStorage(StorageContract):
    @pytest.fixture
    async def reopen(self, postgres_url: str, session_name: str) -> AsyncIterator[Reopen]:
        opened: list[PostgresStorage] = []

        def reopen() -> PostgresStorage:
            opened.append(PostgresStorage.from_url(with_name(postgres_url, session_name)))
            return opened[-1]

        yield reopen
        for storage in opened:
            await storage.aclose()


async def test_next_store_works_after_the_connection_is_terminated(
    postgres_url: str, session_name: str
) -> None:
    async with PostgresStorage.from_url(with_name(postgres_url, session_name)) as storage:
        lease = await storage.acquire()
        await storage.store_session(b"before")
        admin = await asyncpg.connect(postgres_url)
        try:
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                f"tgsession:{session_name}",
            )
        finally:
            await admin.close()
        assert terminated >= 1
        await storage.store_session(b"after")
        await storage.store_entities([(1, b"one", ("username:one",))])
        assert await storage.load_session() == b"after"
        assert await storage.find_entity("username:one") == (1, b"one")
        await lease.check()
        await lease.release()


async def test_tables_are_created_once_by_concurrent_first_users(postgres_url: str) -> None:
    prefix = f"t_{uuid.uuid4().hex[:12]}"
    storages = [PostgresStorage(postgres_url, name=f"s{i}", table_prefix=prefix) for i in range(6)]
    try:
        await asyncio.gather(*(s.store_session(b"data") for s in storages))
        assert [await s.load_session() for s in storages] == [b"data"] * 6
    finally:
        for storage in storages:
            await storage.aclose()
        admin = await asyncpg.connect(postgres_url)
        await admin.execute(
            f"DROP TABLE IF EXISTS {prefix}_sessions, {prefix}_entities, {prefix}_entity_keys"
        )
        await admin.close()


async def test_accepts_a_pool_it_does_not_close(postgres_url: str, session_name: str) -> None:
    pool = await asyncpg.create_pool(postgres_url, min_size=0, max_size=2)
    try:
        async with PostgresStorage(pool, name=session_name) as storage:
            await storage.store_session(b"data")
        assert (
            await pool.fetchval("SELECT data FROM tgsession_sessions WHERE name = $1", session_name)
            == b"data"
        )
    finally:
        await pool.close()


def test_refuses_a_table_prefix_that_is_not_an_identifier() -> None:
    with pytest.raises(ConfigError, match="table_prefix"):
        PostgresStorage("postgresql://u@h/db", table_prefix="x; DROP TABLE y")


def test_repr_masks_the_password() -> None:
    storage = PostgresStorage.from_url("postgresql://bot:hunter2@db:5432/bots?name=b1")
    assert repr(storage) == "PostgresStorage('postgresql://bot:***@db:5432/bots', name='b1')"


async def test_unreachable_server_raises_session_storage_error_without_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://bot:hunter2@127.0.0.1:{port}/test?name=x"
    async with PostgresStorage.from_url(url) as storage:
        with pytest.raises(SessionStorageError) as caught:
            await storage.load_session()
    assert "hunter2" not in str(caught.value)
    assert "postgresql://bot:***@127.0.0.1" in str(caught.value)
