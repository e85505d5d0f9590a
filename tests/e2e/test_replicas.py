"""Several replicas on one session in Redis, against the offline Telegram: one at a time."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator

import pytest

from tests import services
from tests.services import forget_redis_session, with_name
from tgsession.codec import DcAddress, SessionData, encode_session
from tgsession.storage.redis import RedisStorage
from tgsession.testing import Account, FakeTelegram

from .conftest import Program, start_program

redis_url = services.redis_url  # a fixture

pytestmark = pytest.mark.services


@pytest.fixture
async def session_url(redis_url: str) -> AsyncIterator[str]:
    name = f"e2e-{uuid.uuid4().hex}"
    yield with_name(redis_url, name, lock_wait=20, lease_ttl=1.5)
    await forget_redis_session(redis_url, name)


async def store_signed_in(tg: FakeTelegram, account: Account, url: str) -> bytes:
    key = tg.preauthorize(account)
    storage = RedisStorage.from_url(url)
    try:
        await storage.store_session(encode_session(SessionData(
            dc=DcAddress(key.dc_id, key.host, key.port), auth_key=key.auth_key,
            user_id=account.id, bot=False)))
    finally:
        await storage.aclose()
    return key.auth_key


async def no_result_within(program: Program, seconds: float) -> bool:
    try:
        await program.expect("RESULT", timeout=seconds)
    except asyncio.TimeoutError:
        return True
    return False


async def test_rolling_deploy_hands_over_without_overlap(
    tg: FakeTelegram, session_url: str
) -> None:
    user, friend = tg.add_user(), tg.add_user(username="friend")
    key = await store_signed_in(tg, user, session_url)
    env = {**tg.env(), "SESSION_URL": session_url}
    old = await start_program(env, "resolve-hold", "friend")
    await old.expect("HOLDING")
    new = await start_program(env, "resolve-hold", "friend")
    assert await no_result_within(new, 2.0)  # waits for the lease, not connected
    await old.answer("")  # stop the old instance
    assert (await old.finish())[0] == 0
    assert (await new.result(timeout=10))["id"] == user.id
    await new.expect("HOLDING")
    await new.answer("")
    code, stderr = await new.finish()
    assert code == 0, stderr
    assert not tg.is_burned(key)  # never two connected with one key: no AUTH_KEY_DUPLICATED
    assert tg.call_count("auth.sendCode") == 0
    # The old instance's last write (the resolved username) reached the new one.
    assert tg.call_count("contacts.resolveUsername") == 1
    assert friend.id


async def test_standby_takes_over_after_the_holder_is_killed(
    tg: FakeTelegram, session_url: str
) -> None:
    user = tg.add_user()
    key = await store_signed_in(tg, user, session_url)
    env = {**tg.env(), "SESSION_URL": session_url}
    holder = await start_program(env, "hold")
    await holder.expect("HOLDING")
    standby = await start_program(env, "hold")
    assert await no_result_within(standby, 1.0)
    holder.process.send_signal(signal.SIGKILL)
    await holder.process.wait()
    # Dead on this machine: taken at once (elsewhere, the lease would expire after 1.5 s).
    assert (await standby.result(timeout=10))["id"] == user.id
    await standby.expect("HOLDING")
    await standby.answer("")
    code, stderr = await standby.finish()
    assert code == 0, stderr
    assert not tg.is_burned(key)
    assert tg.call_count("auth.sendCode") == 0


async def test_restart_after_kill_9_on_this_machine_is_not_refused(
    tg: FakeTelegram, redis_url: str
) -> None:
    """A supervisor's restart (lock_wait=0, the default lease_ttl of 15 s) after the bot was
    killed with SIGKILL: the dead process's lease is taken at once, no second sign-in, and
    the key is never used by two connections."""
    name = f"e2e-{uuid.uuid4().hex}"
    url = with_name(redis_url, name)
    try:
        user = tg.add_user()
        key = await store_signed_in(tg, user, url)
        env = {**tg.env(), "SESSION_URL": url}
        crashed = await start_program(env, "hold")
        await crashed.expect("HOLDING")
        crashed.process.send_signal(signal.SIGKILL)
        await crashed.process.wait()
        restarted = await start_program(env, "hold")
        assert (await restarted.result(timeout=10))["id"] == user.id  # not {"locked": ...}
        await restarted.expect("HOLDING")
        await restarted.answer("")
        code, stderr = await restarted.finish()
        assert code == 0, stderr
        assert "that process is no longer running on this machine" in stderr
        assert not tg.is_burned(key)
        assert tg.call_count("auth.sendCode") == 0
    finally:
        await forget_redis_session(redis_url, name)
