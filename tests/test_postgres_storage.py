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


@pytest.mark.parametrize("client_noticed", [True, False], ids=["noticed", "not-yet-noticed"])
async def test_next_store_works_after_its_connection_is_terminated(
    postgres_url: str, session_name: str, client_noticed: bool
) -> None:
    # One pooled connection, so the storage's next statement meets the terminated one.
    # Either the client has already seen the connection end (asyncpg then has detached it
    # and handed its holder back to the pool) or it has not: both must work.
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=1)
    try:
        storage = PostgresStorage(pool, name=session_name)
        lease = await storage.acquire()
        await storage.store_session(b"before")
        noticed = asyncio.Event()
        async with pool.acquire() as conn:
            backend = conn.get_server_pid()
            conn.add_termination_listener(lambda _conn: noticed.set())
        admin = await asyncpg.connect(postgres_url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
        finally:
            await admin.close()
        if client_noticed:
            await asyncio.wait_for(noticed.wait(), 10)
        await storage.store_session(b"after")
        await storage.store_session(b"after, again")
        await storage.store_entities([(1, b"one", ("username:one",))])
        assert await storage.load_session() == b"after, again"
        assert await storage.find_entity("username:one") == (1, b"one")
        await lease.check()
        await lease.release()
    finally:
        await pool.close()


async def test_writes_survive_backends_terminated_again_and_again(
    postgres_url: str, session_name: str
) -> None:
    """200 terminations of the storage's backends while it writes: every write succeeds or
    raises one SessionStorageError, and no acknowledged write is lost."""
    # Each statement is retried once on a fresh connection (see _with_connection).
    terminations = 200
    storage = PostgresStorage.from_url(with_name(postgres_url, session_name, lease_ttl=3))
    admin = await asyncpg.connect(postgres_url)
    done = asyncio.Event()
    killed = 0

    async def terminate_again_and_again() -> None:
        nonlocal killed
        try:
            for i in range(terminations):
                killed += await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    f"tgsession:{session_name}",
                )
                # Every 20 to 56 ms: kills land at every point of a write (connecting,
                # mid-statement, between statements), and sometimes on its retry too.
                await asyncio.sleep(0.020 + 0.006 * (i % 7))
        finally:
            done.set()

    acknowledged: bytes | None = None
    attempted: list[bytes] = []
    failures: list[BaseException] = []
    try:
        lease = await storage.acquire()
        terminator = asyncio.ensure_future(terminate_again_and_again())
        write = 0
        while not done.is_set():
            value = f"write {write}".encode()
            write += 1
            attempted.append(value)
            try:
                await storage.store_session(value)
            except SessionStorageError as exc:
                failures.append(exc)
            else:
                acknowledged = value
        await terminator
        stored = await storage.load_session()
        await lease.check()
        await lease.release()
    finally:
        await admin.close()
        await storage.aclose()
    print(f"{write} writes, {len(failures)} errors, {killed} backends terminated")
    assert killed >= terminations // 2  # the campaign really hit the storage's connections
    assert acknowledged is not None
    # What is stored is the last acknowledged write, or a later one whose reply was lost.
    assert stored in attempted[attempted.index(acknowledged):]
    assert all(type(exc) is SessionStorageError for exc in failures)
    # A write fails only when its retry, on a new connection, is terminated too: about 1
    # write in 8,000 with a kill every 10 to 40 ms on an idle machine, more on a loaded one.
    assert len(failures) <= write // 20, f"{len(failures)} of {write} writes failed"


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


async def test_a_claim_that_meets_a_release_in_progress_is_no_takeover(
    postgres_url: str, session_name: str
) -> None:
    """A newcomer whose claim runs while the holder's release commits takes a released
    lease, not an expired one: no takeover grace (a rolling deploy would wait a TTL)."""
    url = with_name(postgres_url, session_name, lease_ttl=30)
    first, second = PostgresStorage.from_url(url), PostgresStorage.from_url(url)
    lease = await first.acquire()
    conn = await asyncpg.connect(postgres_url)
    try:
        releasing = conn.transaction()
        await releasing.start()
        await conn.execute(  # the holder's release, not committed yet: it holds the row
            "UPDATE tgsession_sessions SET lease_token = NULL, lease_holder = NULL, "
            "lease_since = NULL, lease_expires = NULL WHERE name = $1", session_name)
        claim = asyncio.ensure_future(second._try_acquire("newcomer-token", "newcomer"))
        await asyncio.sleep(0.5)  # the claim starts, and waits for the row
        assert not claim.done()
        await releasing.commit()
        taken = await asyncio.wait_for(claim, 10)
        assert not isinstance(taken, str), taken
        assert taken.took_over_expired is False
        await taken.release()
    finally:
        await conn.close()
        await lease.release()  # its token is gone: releases nothing of the newcomer's
        await first.aclose()
        await second.aclose()
