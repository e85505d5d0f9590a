"""A holder frozen (SIGSTOP) past its lease while a standby waits on Redis never burns the
key: the standby waits one more TTL before connecting, and the old holder, once resumed,
closes its connection before sending anything, finds the lease lost, and stops.

Real clients in new processes against the offline Telegram, which answers 406
AUTH_KEY_DUPLICATED once two live connections use one key.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import pytest

from tests import services
from tests.services import forget_redis_session, with_name
from tgsession.testing import FakeTelegram

from .conftest import start_program
from .test_replicas import store_signed_in

redis_url = services.redis_url  # a fixture

pytestmark = pytest.mark.services

TTL = 3.0


@pytest.fixture
async def session_url(redis_url: str) -> AsyncIterator[str]:
    name = f"e2e-{uuid.uuid4().hex}"
    yield with_name(redis_url, name, lock_wait=30, lease_ttl=TTL)
    await forget_redis_session(redis_url, name)


async def test_holder_frozen_past_its_lease_never_burns_the_key(
    tg: FakeTelegram, session_url: str
) -> None:
    user = tg.add_user()
    key = await store_signed_in(tg, user, session_url)
    env = {**tg.env(), "SESSION_URL": session_url}
    old = await start_program(env, "hold-until-lost")
    await old.expect("HOLDING")
    standby = await start_program(env, "hold")
    try:
        old.process.send_signal(signal.SIGSTOP)
        # Its lease expires within TTL; the standby takes it, then waits one more TTL.
        await asyncio.sleep(TTL + 1.0)
        old.process.send_signal(signal.SIGCONT)

        assert await old.expect("STOPPED", timeout=20) == "STOPPED lease_lost=True"
        assert (await standby.result(timeout=20))["id"] == user.id
        await standby.expect("HOLDING")
        await standby.answer("")
        code, stderr = await standby.finish()
        assert code == 0, stderr
        code, stderr = await old.finish()
        assert code == 0, stderr
        assert "lease may have expired" in stderr
        assert not tg.is_burned(key)
        assert tg.call_count("auth.sendCode") == 0
    finally:
        for program in (old, standby):
            if program.process.returncode is None:
                program.process.send_signal(signal.SIGCONT)
                program.process.kill()
                await program.process.wait()
