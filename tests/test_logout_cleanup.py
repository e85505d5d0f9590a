"""``tgsession logout --local-only`` leaves nothing of tgsession's behind (lock file, Redis
owner key, PostgreSQL row), and the PostgreSQL URL and table-name checks beside it."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests import services
from tests.services import forget_postgres_session, forget_redis_session, with_name
from tests.test_file_spare import exchange_works
from tgsession import ConfigError, FileStorage, storage_from_url
from tgsession.storage.postgres import PostgresStorage
from tgsession.storage.redis import RedisStorage

redis_url = services.redis_url  # a fixture
postgres_url = services.postgres_url  # a fixture
SETTINGS = ("APP_ID", "APP_HASH", "BOT_TOKEN", "SESSION_FILE", "SESSION_DIR", "SESSION_URL",
            "SESSION_KEY", "TG_PHONE", "TG_PASSWORD", "TG_DC", "TG_PUBLIC_KEYS")


async def logout_local_only(cwd: Path, *where: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tgsession.cli", "logout", "--local-only", *where, cwd=cwd,
        env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    assert "Removed the session" in output.decode()
    return output.decode()


async def use(storage: FileStorage | RedisStorage | PostgresStorage) -> None:
    """What a program leaves: a session (stored twice), entity rows, a lease taken and
    released."""
    lease = await storage.acquire()
    await storage.store_session(b'{"not": "decoded by logout"}')
    await storage.store_session(b'{"not": "decoded by logout", "again": true}')
    await storage.store_entities([(1, b"row", ("username:row",))])
    await lease.release()


async def test_file_session_leaves_no_lock_file_and_no_spare(tmp_path: Path) -> None:
    session_file = tmp_path / ".tgsession" / "session.json"
    storage = FileStorage(session_file)
    await use(storage)
    assert storage.lock_path.exists()
    assert storage.spare_path.exists() or not exchange_works(tmp_path)

    await logout_local_only(tmp_path, "--session-file", str(session_file))

    assert sorted(os.listdir(session_file.parent)) == []


async def test_a_held_lock_file_is_kept(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "session.json")
    await storage.store_session(b"x")
    lease = await storage.acquire()
    try:
        await FileStorage(tmp_path / "session.json").delete_session()  # not the holder
        assert storage.lock_path.exists()
        await lease.check()  # still excludes everyone
    finally:
        await lease.release()


@pytest.mark.services
async def test_redis_session_leaves_no_key(tmp_path: Path, redis_url: str) -> None:
    name = f"test-{uuid.uuid4().hex}"
    url = with_name(redis_url, name)
    storage = RedisStorage.from_url(url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await use(storage)
        assert await client.keys(f"tgsession:{{{name}}}:*")

        await logout_local_only(tmp_path, "--session-url", url)

        assert await client.keys(f"tgsession:{{{name}}}:*") == []
    finally:
        await storage.aclose()
        await client.aclose()
        await forget_redis_session(redis_url, name)


@pytest.mark.services
async def test_postgres_session_leaves_no_row(tmp_path: Path, postgres_url: str) -> None:
    name = f"test-{uuid.uuid4().hex}"
    url = with_name(postgres_url, name)
    storage = PostgresStorage.from_url(url)
    try:
        await use(storage)

        await logout_local_only(tmp_path, "--session-url", url)

        conn = await asyncpg.connect(postgres_url)
        try:
            assert await conn.fetchval(
                "SELECT count(*) FROM tgsession_sessions WHERE name = $1", name) == 0
            assert await conn.fetchval(
                "SELECT count(*) FROM tgsession_entities WHERE session = $1", name) == 0
        finally:
            await conn.close()
    finally:
        await storage.aclose()
        await forget_postgres_session(postgres_url, name)


@pytest.mark.services
async def test_a_table_prefix_ending_in_an_underscore_is_not_doubled(postgres_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    storage = PostgresStorage.from_url(with_name(postgres_url, "x", table_prefix=prefix))
    conn = await asyncpg.connect(postgres_url)
    try:
        await storage.store_session(b"data")
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE $1 ORDER BY 1", prefix + "%")
        assert [row["tablename"] for row in tables] == [
            f"{prefix}entities", f"{prefix}entity_keys", f"{prefix}sessions"
        ]
    finally:
        await storage.aclose()
        for table in ("entities", "entity_keys", "sessions"):
            await conn.execute(f'DROP TABLE IF EXISTS "{prefix}{table}"')
        await conn.close()


@pytest.mark.parametrize(
    "url", ["postgresql://", "postgresql://bot@db.internal", "postgres://bot:pw@db:5432/?name=x"]
)
def test_a_postgres_url_without_a_database_is_refused(url: str) -> None:
    # (A URL with nothing after the slashes is already refused for naming no host.)
    with pytest.raises(ConfigError, match=r"names no database|followed by the host") as caught:
        storage_from_url(url)
    assert "pw" not in str(caught.value)


def test_a_postgres_url_with_a_database_is_accepted() -> None:
    assert isinstance(storage_from_url("postgresql://bot@db.internal/bots?name=x"),
                      PostgresStorage)
