"""The lease across holders and processes, on every server storage (Redis, PostgreSQL).

One holder per session: a second is refused or waits; a holder that lost its lease cannot
overwrite the newer holder's session (fencing); a crashed holder's lease expires after its
TTL; a rolling deploy hands over without overlap. The crash and deploy tests run real
processes and kill them with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests import services
from tests.services import with_name
from tgsession import LeaseLostError, SessionLockedError
from tgsession.storage._lease import ServerLease
from tgsession.storage.url import storage_from_url

pytestmark = pytest.mark.services
redis_url = services.redis_url  # a fixture
postgres_url = services.postgres_url  # a fixture


@dataclass
class Server:
    """One session on one server, with direct access to set the scene."""

    url: str
    name: str
    expire: Callable[[str, str], Awaitable[None]]

    def storage(self, **options: object) -> Any:
        return storage_from_url(with_name(self.url, self.name, **options))

    async def expire_lease(self) -> None:
        await self.expire(self.url, self.name)


_BACKENDS = {
    "redis": (services.expire_redis_lease, services.forget_redis_session),
    "postgres": (services.expire_postgres_lease, services.forget_postgres_session),
}


@pytest.fixture(params=sorted(_BACKENDS))
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    url = request.getfixturevalue(f"{request.param}_url")
    expire, forget = _BACKENDS[request.param]
    name = f"test-{uuid.uuid4().hex}"
    yield Server(url=url, name=name, expire=expire)
    await forget(url, name)


@pytest.fixture
async def storages(server: Server) -> AsyncIterator[Callable[..., Any]]:
    """Opens storages on ``server``'s session and closes them after the test."""
    opened: list[Any] = []

    def open_storage(**options: object) -> Any:
        opened.append(server.storage(**options))
        return opened[-1]

    yield open_storage
    for storage in opened:
        await storage.aclose()


# -- fencing ----------------------------------------------------------------------------


async def test_holder_that_lost_its_lease_cannot_overwrite_the_newer_session(
    server: Server, storages: Callable[..., Any]
) -> None:
    old, new = storages(), storages()
    old_lease = await old.acquire()
    await old.store_session(b"old holder")
    await server.expire_lease()  # the old holder was paused past its TTL
    new_lease = await new.acquire()
    await new.store_session(b"new holder")

    with pytest.raises(LeaseLostError):
        await old.store_session(b"stale")
    with pytest.raises(LeaseLostError):
        await old.store_entities([(1, b"stale", ("username:stale",))])
    await new.store_entities([(2, b"kept", ())])
    with pytest.raises(LeaseLostError):
        await old.clear_entities()
    with pytest.raises(LeaseLostError):
        await old_lease.check()
    assert await new.load_session() == b"new holder"
    assert await new.get_entity(1) is None
    assert await new.find_entity("username:stale") is None
    assert await new.get_entity(2) == b"kept"
    await new_lease.check()
    await new_lease.release()


async def test_lost_lease_stays_lost_after_the_new_holder_releases(
    server: Server, storages: Callable[..., Any]
) -> None:
    old, new = storages(), storages()
    await old.acquire()
    await server.expire_lease()
    await (await new.acquire()).release()
    with pytest.raises(LeaseLostError):
        await old.store_session(b"stale")


async def test_holder_whose_lease_expired_unclaimed_keeps_it(
    server: Server, storages: Callable[..., Any]
) -> None:
    holder, rival = storages(), storages()
    lease = await holder.acquire()
    await server.expire_lease()
    await holder.store_session(b"still mine")  # nobody took it: no harm in going on
    await lease.check()
    with pytest.raises(SessionLockedError):
        await rival.acquire()
    assert await rival.load_session() == b"still mine"
    await lease.release()


async def test_write_without_a_lease_is_refused_while_another_holds_it(
    server: Server, storages: Callable[..., Any]
) -> None:
    holder, outsider = storages(), storages()
    lease = await holder.acquire()
    with pytest.raises(SessionLockedError) as caught:
        await outsider.store_session(b"outsider")
    assert caught.value.holder is not None and caught.value.holder.startswith("pid ")
    with pytest.raises(SessionLockedError):
        await outsider.store_entities([(1, b"outsider", ())])
    assert await holder.get_entity(1) is None
    await lease.release()
    await outsider.store_session(b"outsider, after release")
    assert await holder.load_session() == b"outsider, after release"


# -- renewal, waiting, release ----------------------------------------------------------


async def test_renewal_keeps_the_lease_past_its_ttl(storages: Callable[..., Any]) -> None:
    holder, rival = storages(lease_ttl=0.3), storages()
    lease = await holder.acquire()
    await asyncio.sleep(0.7)
    with pytest.raises(SessionLockedError):
        await rival.acquire()
    await lease.release()


async def test_renewal_notices_when_the_lease_was_taken_over(
    server: Server, storages: Callable[..., Any]
) -> None:
    holder, rival = storages(lease_ttl=0.3), storages()
    lease = await holder.acquire()
    await server.expire_lease()
    rival_lease = await rival.acquire()
    await asyncio.wait_for(lease.wait_lost(), 2.0)
    assert isinstance(lease, ServerLease) and lease.lost
    await rival_lease.release()


async def test_lock_wait_in_the_url_is_the_default_wait(storages: Callable[..., Any]) -> None:
    holder, waiter = storages(), storages(lock_wait=0.3)
    lease = await holder.acquire()
    started = time.monotonic()
    with pytest.raises(SessionLockedError, match=r"after waiting 0\.3s"):
        await waiter.acquire()
    assert 0.25 < time.monotonic() - started < 2.0
    await lease.release()


async def test_locked_error_names_holder_and_since(storages: Callable[..., Any]) -> None:
    holder, rival = storages(), storages()
    lease = await holder.acquire()
    with pytest.raises(SessionLockedError) as caught:
        await rival.acquire()
    assert caught.value.holder == lease.holder
    assert lease.holder.endswith("Z)") and " (since " in lease.holder
    await lease.release()


# -- real processes ---------------------------------------------------------------------

# A holder process: acquires (waiting up to argv[2] s), writes, holds until told on stdin,
# then releases; reports each step as a JSON line with a wall-clock timestamp (all the
# processes run on this machine, so their clocks agree).
_HOLDER = r"""
import asyncio, json, os, sys, time
from tgsession.storage.url import storage_from_url

def report(event):
    print(json.dumps({"event": event, "t": time.time(), "pid": os.getpid()}), flush=True)

async def main(url, wait):
    storage = storage_from_url(url)
    report("waiting")
    lease = await storage.acquire(wait=wait)
    report("acquired")
    await storage.store_session(b"written by %d" % os.getpid())
    report("stored")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    report("releasing")
    await lease.release()
    report("released")
    await storage.aclose()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


class HolderProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: dict[str, float] = {}

    @classmethod
    async def start(cls, url: str, *, wait: float = 0.0) -> HolderProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HOLDER, url, str(wait),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    async def until(self, event: str, timeout: float = 10.0) -> float:
        """Wait for the process to report ``event``; return its timestamp."""
        assert self.process.stdout is not None
        while event not in self.events:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            assert line, f"the holder process exited before {event!r}"
            report = json.loads(line)
            self.events[report["event"]] = report["t"]
        return self.events[event]

    async def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"release\n")
        await self.process.stdin.drain()

    async def exit_code(self) -> int:
        """Wait (a while) for the process to exit by itself."""
        return await asyncio.wait_for(self.process.wait(), 10.0)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def test_crashed_holder_process_frees_the_session_within_its_ttl(
    server: Server, storages: Callable[..., Any]
) -> None:
    crashed = await HolderProcess.start(with_name(server.url, server.name, lease_ttl=1))
    try:
        await crashed.until("stored")  # (acquired, then stored: kill it after both)
        survivor = storages(lease_ttl=1)
        with pytest.raises(SessionLockedError, match=f"pid {crashed.process.pid} on "):
            await survivor.acquire()
        crashed.process.kill()  # SIGKILL: no release, no cleanup
        await crashed.process.wait()
        killed_at = time.monotonic()
        lease = await survivor.acquire(wait=5.0)
        assert lease.took_over_expired
        # The TTL, one more TTL of grace (the holder might be frozen, not dead), polling
        # and a loaded machine.
        assert time.monotonic() - killed_at < 3.5
        assert await survivor.load_session() == b"written by %d" % crashed.process.pid
        await lease.release()
    finally:
        await crashed.kill()


async def test_rolling_deploy_hands_over_without_overlap(server: Server) -> None:
    url = with_name(server.url, server.name)
    old = await HolderProcess.start(url)
    new: HolderProcess | None = None
    try:
        await old.until("acquired")
        new = await HolderProcess.start(url, wait=10.0)
        await new.until("waiting")
        await asyncio.sleep(0.3)
        assert "acquired" not in new.events  # still waiting for the old holder

        await old.release()
        new_acquired = await new.until("acquired")
        assert new_acquired >= await old.until("releasing")  # never two holders at once
        assert new_acquired - await old.until("released") < 1.0  # and taken over at once
        assert await old.exit_code() == 0

        await new.release()
        await new.until("released")
        assert await new.exit_code() == 0
        reader = server.storage()
        assert await reader.load_session() == b"written by %d" % new.process.pid
        await reader.aclose()
    finally:
        await old.kill()
        if new is not None:
            await new.kill()
