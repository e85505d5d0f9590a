"""A lease holder sends nothing on the key once its lease may have expired by its own
(monotonic) clock: the doubt callbacks run first (the Client closes its connection), and
sending resumes only after the server confirmed the lease."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from tests import services
from tests.services import forget_postgres_session, forget_redis_session, with_name
from tgsession import LeaseLostError
from tgsession.storage.url import storage_from_url

redis_url = services.redis_url  # a fixture
postgres_url = services.postgres_url  # a fixture

pytestmark = pytest.mark.services


@pytest.fixture(params=["redis", "postgres"])
async def server(request: pytest.FixtureRequest, name: str) -> AsyncIterator[str]:
    """The server URL; ``name`` is this test's session on it."""
    url = request.getfixturevalue(f"{request.param}_url")
    yield url
    forget = forget_redis_session if request.param == "redis" else forget_postgres_session
    await forget(url, name)


@pytest.fixture
def name() -> str:
    return f"test-{uuid.uuid4().hex}"


async def test_frozen_holder_doubts_then_sends_again_once_confirmed(
    server: str, name: str
) -> None:
    storage = storage_from_url(with_name(server, name, lease_ttl=0.6))
    lease = await storage.acquire()
    doubted: list[bool] = []
    lease.on_doubt(lambda: doubted.append(lease.may_send()))
    try:
        assert lease.may_send()
        time.sleep(1.0)  # the whole process frozen past its lease (the loop is blocked)
        assert not lease.may_send()
        await asyncio.wait_for(lease.wait_until_sendable(), 5)  # nobody took it: renewed
        assert doubted and doubted[0] is False  # hung up before anything was checked
        assert lease.may_send()
    finally:
        await storage.aclose()


async def test_taken_over_holder_never_sends_again(server: str, name: str) -> None:
    url = with_name(server, name, lease_ttl=0.6)
    old, new = storage_from_url(url), storage_from_url(url)
    lease = await old.acquire()
    try:
        time.sleep(1.0)  # frozen: the lease expires on the server
        taken = await new.acquire()
        assert taken.took_over_expired  # so the new holder waited a TTL before returning
        with pytest.raises(LeaseLostError):
            await asyncio.wait_for(lease.wait_until_sendable(), 5)
        assert not lease.may_send()
    finally:
        await old.aclose()
        await new.aclose()


async def test_released_lease_is_taken_without_grace(server: str, name: str) -> None:
    url = with_name(server, name)
    old, new = storage_from_url(url), storage_from_url(url)
    try:
        await (await old.acquire()).release()
        assert not (await new.acquire()).took_over_expired
    finally:
        await old.aclose()
        await new.aclose()
