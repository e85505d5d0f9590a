"""A restart with a big stored entity cache, in a new process, against the offline Telegram.

The stored cache holds 100,000 entities; the restarted program resolves cached usernames
with ``client.get_input_entity`` and Telegram is never asked (contacts.resolveUsername
stays at 0): lookups are point lookups in the storage, nothing loads the whole cache.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import services
from tgsession import FileStorage
from tgsession.codec import DcAddress, EntityRow, SessionData, encode_session
from tgsession.entities import entity_records
from tgsession.storage.base import EntityStorage, Storage
from tgsession.testing import Account, FakeTelegram

from .conftest import start_program

CACHED = 100_000
redis_url = services.redis_url  # a fixture


def cached_rows(friend: Account) -> list[EntityRow]:
    rows: list[EntityRow] = [
        (10_000_000 + i, i * 7919 + 1, f"cached{i}", f"1666{i:07d}" if i % 4 == 0 else None,
         f"Cached {i}")
        for i in range(CACHED - 1)
    ]
    rows.insert(CACHED // 2, (friend.id, friend.access_hash, friend.username, None, "Friend"))
    return rows


async def store_big_session(tg: FakeTelegram, me: Account, friend: Account,
                            storage: Storage) -> None:
    key = tg.preauthorize(me)
    assert isinstance(storage, EntityStorage)
    rows = cached_rows(friend)
    for start in range(0, len(rows), 10_000):
        await storage.store_entities(entity_records(rows[start:start + 10_000]))
    await storage.store_session(encode_session(SessionData(
        dc=DcAddress(key.dc_id, key.host, key.port), auth_key=key.auth_key,
        user_id=me.id, bot=False, entities=None)))
    assert await storage.count_entities() == CACHED


async def restart_and_resolve(tg: FakeTelegram, env: dict[str, str], name: str) -> object:
    program = await start_program({**tg.env(), **env}, "resolve", name)
    result = await program.result()
    resolved = (await program.result())["resolved"]
    code, stderr = await program.finish()
    assert code == 0, stderr
    assert result["id"] is not None and program.asked == [], stderr
    return resolved


async def test_restart_with_100k_cached_entities_resolves_usernames_offline(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    me, friend = tg.add_user(first_name="Me"), tg.add_user(first_name="Fr", username="friend")
    session_file = tmp_path / "session.json"
    storage = FileStorage(session_file)
    await store_big_session(tg, me, friend, storage)
    tg.reset_counts()
    env = {"SESSION_FILE": str(session_file)}
    assert await restart_and_resolve(tg, env, "@friend") == friend.id
    assert await restart_and_resolve(tg, env, "cached77777") == 10_077_777
    assert await restart_and_resolve(tg, env, "+16660012344") == 10_012_344
    assert tg.call_count("contacts.resolveUsername") == 0
    assert tg.call_count("auth.signIn") == 0


@pytest.fixture
async def session_url(redis_url: str) -> AsyncIterator[str]:
    name = f"e2e-cache-{uuid.uuid4().hex}"
    yield services.with_name(redis_url, name)
    await services.forget_redis_session(redis_url, name)


@pytest.mark.services
async def test_restart_on_redis_with_100k_cached_entities_resolves_offline(
    tg: FakeTelegram, session_url: str
) -> None:
    from tgsession.storage.redis import RedisStorage

    me, friend = tg.add_user(first_name="Me"), tg.add_user(first_name="Fr", username="friend")
    storage = RedisStorage.from_url(session_url)
    try:
        await store_big_session(tg, me, friend, storage)
    finally:
        await storage.aclose()
    tg.reset_counts()
    assert await restart_and_resolve(tg, {"SESSION_URL": session_url}, "@friend") == friend.id
    assert tg.call_count("contacts.resolveUsername") == 0
