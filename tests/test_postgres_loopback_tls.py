"""PostgresStorage and TLS negotiation: a loopback server is reached without it unless the
URL or the environment asks for TLS, or the server refuses a connection without it.

The server is reached through a proxy on 127.0.0.1 that records how each connection
begins (an SSLRequest or the startup packet) and can refuse connections that do not ask
for TLS first, as a server whose pg_hba.conf has only ``hostssl`` lines does.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests import services
from tests.services import forget_postgres_session, with_name
from tgsession.storage.postgres import _CONNECT_HOOK, PostgresStorage, _plain_first

pytestmark = pytest.mark.services
postgres_url = services.postgres_url  # a fixture

needs_connect_hook = pytest.mark.skipif(
    not _CONNECT_HOOK, reason="asyncpg < 0.30 has no pool connect hook: asyncpg's default stands"
)
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_HBA_REFUSAL = b"SFATAL\0C28000\0Mno pg_hba.conf entry (no encryption)\0\0"


@dataclass
class Proxy:
    """Forwards 127.0.0.1:``port`` to the server; ``openings`` is how each connection began."""

    port: int = 0
    refuse_without_tls: bool = False
    openings: list[str] = field(default_factory=list)

    def url(self, server_url: str) -> str:
        parts = urlsplit(server_url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))


@contextlib.asynccontextmanager
async def proxy_to(server_url: str, *, refuse_without_tls: bool = False) -> AsyncIterator[Proxy]:
    parts = urlsplit(server_url)
    target = (parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy = Proxy(refuse_without_tls=refuse_without_tls)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(8)
        proxy.openings.append("tls request" if first == _SSL_REQUEST else "startup")
        if first != _SSL_REQUEST and proxy.refuse_without_tls:
            writer.write(b"E" + struct.pack("!i", 4 + len(_HBA_REFUSAL)) + _HBA_REFUSAL)
            await writer.drain()
            writer.close()
            return
        server_reader, server_writer = await asyncio.open_connection(*target)
        server_writer.write(first)
        both = [asyncio.create_task(pipe(reader, server_writer)),
                asyncio.create_task(pipe(server_reader, writer))]
        tasks.update(both)
        await asyncio.gather(*both)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def session_name(postgres_url: str) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex}"
    yield name
    await forget_postgres_session(postgres_url, name)


async def _store_and_load(url: str) -> bytes:
    async with PostgresStorage.from_url(url) as storage:
        await storage.store_session(b"data")
        return await storage.load_session()


@needs_connect_hook
async def test_a_loopback_server_is_reached_without_tls_negotiation(
    postgres_url: str, session_name: str
) -> None:
    async with proxy_to(postgres_url) as proxy:
        assert await _store_and_load(with_name(proxy.url(postgres_url), session_name)) == b"data"
    assert proxy.openings and set(proxy.openings) == {"startup"}


@pytest.mark.parametrize("asked", ["url", "environment"])
async def test_tls_asked_for_in_the_url_or_the_environment_is_negotiated(
    postgres_url: str, session_name: str, asked: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxy_to(postgres_url) as proxy:
        url = with_name(proxy.url(postgres_url), session_name)
        if asked == "url":
            url += "&sslmode=prefer"
        else:
            monkeypatch.setenv("PGSSLMODE", "prefer")
        assert await _store_and_load(url) == b"data"
    assert proxy.openings and set(proxy.openings) == {"tls request"}


@needs_connect_hook
async def test_a_loopback_server_refusing_connections_without_tls_is_reached_with_it(
    postgres_url: str, session_name: str
) -> None:
    async with proxy_to(postgres_url, refuse_without_tls=True) as proxy:
        assert await _store_and_load(with_name(proxy.url(postgres_url), session_name)) == b"data"
    assert proxy.openings[:2] == ["startup", "tls request"]


@pytest.mark.parametrize(("url", "plain"), [
    ("postgresql://bot@127.0.0.1/bots", True),
    ("postgresql://bot@127.8.0.1:6432/bots", True),
    ("postgresql://bot@[::1]:5432/bots", True),
    ("postgresql://bot@localhost/bots", True),
    ("postgresql://bot@db.internal/bots", False),
    ("postgresql://bot@10.0.0.5/bots", False),
    ("postgresql://bot@127.0.0.1,db.internal/bots", False),
    ("postgresql://bot@127.0.0.1/bots?sslmode=require", False),
    ("postgresql://bot@127.0.0.1/bots?sslrootcert=/ca.pem", False),
    ("postgresql://bot@127.0.0.1/bots?host=db.internal", False),
    ("postgresql://bot@/bots?host=/run/postgresql", False),
    ("postgresql:///bots", False),
])
def test_only_a_loopback_address_with_no_tls_option_skips_tls_negotiation(
    url: str, plain: bool
) -> None:
    assert _plain_first(url, environ={}) is plain


def test_a_pgssl_environment_variable_keeps_the_drivers_tls_negotiation() -> None:
    assert _plain_first("postgresql://bot@127.0.0.1/bots", environ={"PGSSLROOTCERT": "x"}) is False
