"""Real Redis and PostgreSQL servers for the tests, or a clear skip when there are none.

The fixtures ``redis_url`` and ``postgres_url`` give a server URL (without a session name)
after a quick reachability check. A server that is down skips the test with a message
saying how to fix it, or fails it when ``TGSESSION_REQUIRE_SERVICES=1`` (CI sets it, so a
missing service cannot pass as green). Bring a fixture into a test module with::

    from tests import services

    redis_url = services.redis_url  # a fixture
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

import pytest

from tgsession.storage.url import redact_url

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_REDIS_URL",
    "expire_postgres_lease",
    "expire_redis_lease",
    "forget_postgres_session",
    "forget_redis_session",
    "postgres_url",
    "redis_url",
    "require_service",
    "set_postgres_lease_holder",
    "set_redis_lease_holder",
    "with_name",
]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@functools.cache
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(kind: str, env: str, default: str, default_port: int) -> str:
    """The service's URL from ``env`` (or ``default``); skip or fail if it is unreachable."""
    url = os.environ.get(env) or default
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    if not _reachable(host, port):
        message = f"{kind} not reachable at {redact_url(url)}: start it or set {env}"
        if os.environ.get("TGSESSION_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (TGSESSION_REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(message)
    return url


def with_name(url: str, name: str, **options: object) -> str:
    """``url`` with ``?name=...`` and further tgsession options appended."""
    query = "&".join([f"name={name}", *(f"{key}={value}" for key, value in options.items())])
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis (``TGSESSION_TEST_REDIS_URL``, default db 15 on localhost)."""
    return require_service("Redis", "TGSESSION_TEST_REDIS_URL", DEFAULT_REDIS_URL, 6379)


@pytest.fixture
def postgres_url() -> str:
    """A reachable PostgreSQL (``TGSESSION_TEST_POSTGRES_URL``)."""
    return require_service("PostgreSQL", "TGSESSION_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL, 5432)


# Direct server access for setting the scene and cleaning up; the storages' own layout
# (documented in tgsession.storage.redis and .postgres) is part of what is tested.


def _redis_keys(name: str) -> list[str]:
    parts = ("session", "entities", "lease", "owner", "entity_keys")
    return [f"tgsession:{{{name}}}:{part}" for part in parts]


async def forget_redis_session(url: str, name: str) -> None:
    """Delete every key of session ``name``."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.delete(*_redis_keys(name))
    finally:
        await client.aclose()


async def expire_redis_lease(url: str, name: str) -> None:
    """Make session ``name``'s lease expire now, as a paused holder would see it."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.delete(_redis_keys(name)[2])
    finally:
        await client.aclose()


async def forget_postgres_session(url: str, name: str) -> None:
    """Delete session ``name``'s rows (the tables stay: other sessions share them)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('tgsession_sessions') IS NOT NULL"):
            await conn.execute("DELETE FROM tgsession_sessions WHERE name = $1", name)
            await conn.execute("DELETE FROM tgsession_entities WHERE session = $1", name)
            if await conn.fetchval("SELECT to_regclass('tgsession_entity_keys') IS NOT NULL"):
                await conn.execute("DELETE FROM tgsession_entity_keys WHERE session = $1", name)
    finally:
        await conn.close()


async def expire_postgres_lease(url: str, name: str) -> None:
    """Make session ``name``'s lease expire now (by the server's clock)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE tgsession_sessions SET lease_expires = now() - interval '1 second' "
            "WHERE name = $1",
            name,
        )
    finally:
        await conn.close()


async def set_redis_lease_holder(url: str, name: str, holder: str) -> None:
    """Rewrite the holder text stored with session ``name``'s live lease."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        assert await client.exists(_redis_keys(name)[2]), "no lease to rewrite"
        await client.hset(_redis_keys(name)[2], "holder", holder)
    finally:
        await client.aclose()


async def set_postgres_lease_holder(url: str, name: str, holder: str) -> None:
    """Rewrite the holder text stored with session ``name``'s live lease."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        status = await conn.execute(
            "UPDATE tgsession_sessions SET lease_holder = $2 "
            "WHERE name = $1 AND lease_token IS NOT NULL",
            name,
            holder,
        )
        assert status.split()[-1] == "1", "no lease to rewrite"
    finally:
        await conn.close()
