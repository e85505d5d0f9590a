"""The lease across holders and processes, on every server storage (Redis, PostgreSQL).

One holder per session: a second is refused or waits; a holder that lost its lease cannot
overwrite the newer holder's session (fencing); a holder killed on this machine is taken
over at once, any other only once its lease expired; a rolling deploy hands over without
overlap. The crash and deploy tests run real processes and kill them with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
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
    rewrite_holder: Callable[[str, str, str], Awaitable[None]]

    def storage(self, **options: object) -> Any:
        return storage_from_url(with_name(self.url, self.name, **options))

    async def expire_lease(self) -> None:
        await self.expire(self.url, self.name)

    async def set_holder(self, holder: str) -> None:
        """Rewrite the holder text stored with the live lease."""
        await self.rewrite_holder(self.url, self.name, holder)


_BACKENDS = {
    "redis": (
        services.expire_redis_lease,
        services.forget_redis_session,
        services.set_redis_lease_holder,
    ),
    "postgres": (
        services.expire_postgres_lease,
        services.forget_postgres_session,
        services.set_postgres_lease_holder,
    ),
}


@pytest.fixture(params=sorted(_BACKENDS))
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    url = request.getfixturevalue(f"{request.param}_url")
    expire, forget, rewrite_holder = _BACKENDS[request.param]
    name = f"test-{uuid.uuid4().hex}"
    yield Server(url=url, name=name, expire=expire, rewrite_holder=rewrite_holder)
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

# A holder process: acquires (waiting up to argv[2] s) and reads the session, writes, holds
# until told on stdin, then releases; reports each step as a JSON line with a wall-clock
# timestamp (all the processes run on this machine, so their clocks agree). Refused, it
# reports the message and exits with 3.
_HOLDER = r"""
import asyncio, json, os, sys, time
from tgsession import SessionLockedError
from tgsession.storage.url import storage_from_url

def report(event, **fields):
    print(json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields}),
          flush=True)

async def main(url, wait):
    storage = storage_from_url(url)
    report("waiting")
    try:
        lease, data = await storage.acquire_and_load(wait=wait)
    except SessionLockedError as exc:
        report("refused", message=str(exc), holder=exc.holder)
        return 3
    report("acquired", took_over_expired=lease.took_over_expired,
           loaded=None if data is None else data.decode())
    await storage.store_session(b"written by %d" % os.getpid())
    report("stored")
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    report("releasing")
    await lease.release()
    report("released")
    await storage.aclose()
    return 0

sys.exit(asyncio.run(main(sys.argv[1], float(sys.argv[2]))))
"""


class HolderProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: dict[str, float] = {}
        self.reports: dict[str, dict[str, Any]] = {}

    @classmethod
    async def start(cls, url: str, *, wait: float = 0.0) -> HolderProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HOLDER, url, str(wait),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(process)

    async def until(self, event: str, timeout: float = 10.0) -> float:
        """Wait for the process to report ``event``; return its timestamp."""
        return (await self.report(event, timeout))["t"]  # type: ignore[no-any-return]

    async def report(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        """Wait for the process to report ``event``; return the whole report."""
        assert self.process.stdout is not None
        while event not in self.reports:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            assert line, f"the holder process exited before {event!r}: {self.reports}"
            report = json.loads(line)
            self.events[report["event"]] = report["t"]
            self.reports[report["event"]] = report
        return self.reports[event]

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


# -- a holder that died on this machine ---------------------------------------------------


async def test_holder_killed_on_this_machine_is_taken_over_at_once_by_a_new_process(
    server: Server,
) -> None:
    url = with_name(server.url, server.name)  # the default lease_ttl: 15 s
    crashed = await HolderProcess.start(url)
    successor: HolderProcess | None = None
    try:
        await crashed.until("stored")
        crashed.process.kill()  # SIGKILL: no release, no cleanup
        await crashed.process.wait()  # reaped: a zombie still counts as alive
        killed_at = time.time()
        successor = await HolderProcess.start(url)  # lock_wait=0
        acquired = await successor.report("acquired")
        assert acquired["t"] - killed_at < 5.0  # well under lease_ttl: not an expiry
        assert acquired["took_over_expired"] is False  # so no grace wait either
        assert acquired["loaded"] == f"written by {crashed.process.pid}"  # intact
        await successor.until("stored")
        await successor.release()
        assert await successor.exit_code() == 0
    finally:
        await crashed.kill()
        if successor is not None:
            await successor.kill()


async def test_waiting_replica_takes_a_killed_holders_lease_without_grace(
    server: Server, storages: Callable[..., Any]
) -> None:
    crashed = await HolderProcess.start(with_name(server.url, server.name, lease_ttl=30))
    try:
        await crashed.until("stored")  # (acquired, then stored: kill it after both)
        survivor = storages(lease_ttl=30)
        with pytest.raises(SessionLockedError, match=f"pid {crashed.process.pid} on "):
            await survivor.acquire()  # alive: refused
        crashed.process.kill()
        await crashed.process.wait()
        killed_at = time.monotonic()
        lease = await survivor.acquire(wait=60.0)
        assert not lease.took_over_expired
        assert time.monotonic() - killed_at < 5.0  # neither the TTL nor a grace
        assert await survivor.load_session() == b"written by %d" % crashed.process.pid
        await lease.release()
    finally:
        await crashed.kill()


async def test_stopped_holder_is_alive_and_keeps_its_lease(
    server: Server, storages: Callable[..., Any]
) -> None:
    stopped = await HolderProcess.start(with_name(server.url, server.name, lease_ttl=30))
    try:
        await stopped.until("stored")
        stopped.process.send_signal(signal.SIGSTOP)
        with pytest.raises(SessionLockedError, match=f"pid {stopped.process.pid} on "):
            await storages().acquire(wait=0.5)
    finally:
        stopped.process.send_signal(signal.SIGCONT)
        await stopped.kill()


async def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(process.pid, 0)
    return process.pid


def _tag_fields(holder: str) -> dict[str, str]:
    _, separator, tag = holder.rpartition(" | ")
    assert separator, f"no machine tag in {holder!r}"
    return dict(field.split("=", 1) for field in tag.split())


def _tag(boot: str, pidns: str, start: str) -> str:
    return f"boot={boot} pidns={pidns} start={start}"


@pytest.mark.parametrize("tag", ["another boot", "another pid namespace", "no tag"])
async def test_dead_pid_is_not_proof_of_death_elsewhere(
    server: Server, storages: Callable[..., Any], tag: str
) -> None:
    holder, rival = storages(lease_ttl=30), storages()
    lease = await holder.acquire()
    ours = _tag_fields(lease.holder_id)
    pid = await _dead_pid()
    texts = {
        "another boot": _tag(str(uuid.uuid4()), ours["pidns"], ours["start"]),
        "another pid namespace": _tag(ours["boot"], "pid:[1]", ours["start"]),
        "no tag": "",
    }
    await server.set_holder(f"pid {pid} on elsewhere" + (f" | {texts[tag]}" if texts[tag] else ""))
    with pytest.raises(SessionLockedError, match=f"held by pid {pid} on elsewhere "):
        await rival.acquire()
    await lease.check()  # untouched
    await lease.release()


async def test_reused_pid_is_proof_of_death(
    server: Server, storages: Callable[..., Any]
) -> None:
    """The tag names a running process, but one that started later than the holder."""
    holder, rival = storages(lease_ttl=30), storages()
    lease = await holder.acquire()
    ours = _tag_fields(lease.holder_id)
    reused = _tag(ours["boot"], ours["pidns"], str(int(ours["start"]) - 1))
    await server.set_holder(f"pid {os.getpid()} on here | {reused}")
    taken = await rival.acquire()
    assert not taken.took_over_expired
    with pytest.raises(LeaseLostError):  # the taken-over lease is fenced off
        await holder.store_session(b"stale")
    await taken.release()


async def test_takeover_needs_the_dead_holders_token_to_be_still_there(
    storages: Callable[..., Any],
) -> None:
    holder, rival = storages(lease_ttl=30), storages()
    lease = await holder.acquire()
    refused = await rival._try_acquire("rival-token", "rival", dead_token="a-former-token")
    assert not isinstance(refused, ServerLease)
    assert refused.token == lease.token
    await lease.check()
    await lease.release()


async def test_refusals_never_show_the_machine_tag(
    server: Server, storages: Callable[..., Any]
) -> None:
    holder, rival = storages(lease_ttl=30), storages()
    lease = await holder.acquire()
    assert " | boot=" in lease.holder_id  # stored with the lease
    with pytest.raises(SessionLockedError) as acquiring:
        await rival.acquire()
    with pytest.raises(SessionLockedError) as writing:
        await rival.store_session(b"outsider")
    with pytest.raises(SessionLockedError) as again:
        await holder.acquire()
    for caught in (acquiring, writing, again):
        assert "boot=" not in str(caught.value) and " | " not in str(caught.value)
        assert caught.value.holder is not None and "boot=" not in caught.value.holder
    assert "boot=" not in lease.holder and "boot=" not in repr(lease)
    await lease.release()


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
