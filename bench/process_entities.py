"""Measure 2: ``process_entities`` throughput on realistic update batches (entities/s).

Each batch is what Telethon hands the session after a request or an update: a
``types.Updates`` (4 in 5) or a ``contacts.ResolvedPeer`` (1 in 5), each with 5 users and
2 channels. 60 % of the entities are repeats drawn from a hot set (the same people and
channels keep appearing), 40 % are new. Only ``process_entities`` is timed (SQLite's
inserts run in its open transaction; the commit belongs to ``save()``, measured elsewhere).
Every repeat starts from an empty session.
"""

from __future__ import annotations

import datetime
import itertools
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from telethon.sessions import MemorySession, SQLiteSession, StringSession
from telethon.tl import types

from .contenders import available, close_storage, make_storage, open_session, unique_name
from .harness import Row, Settings, median

MEASURE = "process_entities throughput"
USERS_PER_BATCH = 5
CHANNELS_PER_BATCH = 2
REPEATED_SHARE = 0.6
_DATE = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def _user(number: int, rng: random.Random) -> types.User:
    return types.User(
        id=5_000_000 + number,
        access_hash=rng.getrandbits(63),
        first_name=f"First{number}",
        last_name=f"Last{number}" if number % 2 else None,
        username=f"someone{number}" if number % 3 else None,
        phone=f"1555{number:07d}" if number % 7 == 0 else None,
        bot=number % 11 == 0,
    )


def _channel(number: int, rng: random.Random) -> types.Channel:
    return types.Channel(
        id=1_500_000_000 + number,
        title=f"Channel {number}",
        photo=types.ChatPhotoEmpty(),
        date=_DATE,
        access_hash=rng.getrandbits(63),
        username=f"channel{number}" if number % 2 else None,
        megagroup=number % 3 == 0,
    )


def make_batches(count: int, seed: int = 1) -> list[Any]:
    """``count`` batches of 5 users + 2 channels (60 % repeats from a hot set)."""
    rng = random.Random(seed)
    hot_users = [_user(n, rng) for n in range(500)]
    hot_channels = [_channel(n, rng) for n in range(50)]
    fresh_users, fresh_channels = itertools.count(1_000_001), itertools.count(1_000_001)

    def pick(hot: list[Any], make: Callable[[int, random.Random], Any],
             fresh: Iterator[int]) -> Any:
        if rng.random() < REPEATED_SHARE:
            return rng.choice(hot)
        return make(next(fresh), rng)

    def pick_user() -> types.User:
        return pick(hot_users, _user, fresh_users)

    def pick_channel() -> types.Channel:
        return pick(hot_channels, _channel, fresh_channels)

    batches: list[Any] = []
    for index in range(count):
        users = [pick_user() for _ in range(USERS_PER_BATCH)]
        chats = [pick_channel() for _ in range(CHANNELS_PER_BATCH)]
        if index % 5 == 4:
            peer = types.PeerUser(users[0].id)
            batches.append(types.contacts.ResolvedPeer(peer=peer, chats=chats, users=users))
        else:
            batches.append(types.Updates(updates=[], users=users, chats=chats, date=_DATE, seq=0))
    return batches


def _time(session: Any, batches: list[Any]) -> float:
    process = session.process_entities
    start = time.perf_counter()
    for batch in batches:
        process(batch)
    return time.perf_counter() - start


async def run(settings: Settings) -> list[Row]:
    count = settings.pick(full=10_000, quick=300)
    repeats = settings.pick(full=5, quick=1)
    batches = make_batches(count)
    entities = count * (USERS_PER_BATCH + CHANNELS_PER_BATCH)
    ours = available(settings, ("ts-memory", "ts-file"))
    seconds: dict[str, list[float]] = {}
    for _ in range(repeats):
        sqlite = SQLiteSession(str(settings.workdir / unique_name("entities")))
        seconds.setdefault("sqlite", []).append(_time(sqlite, batches))
        sqlite.close()
        seconds.setdefault("string", []).append(_time(StringSession(), batches))
        seconds.setdefault("memory", []).append(_time(MemorySession(), batches))
        for contender in ours:
            storage = make_storage(settings, contender, unique_name("entities"))
            session = await open_session(storage)
            seconds.setdefault(contender, []).append(_time(session, batches))
            await session.release()  # flushes the new rows (untimed)
            await close_storage(storage)
    return [
        Row(
            measure=MEASURE,
            size=entities,
            unit="entities/s",
            contenders={name: entities / median(values) for name, values in seconds.items()},
            higher_is_better=True,
            target=2.0,
            repeats=repeats,
            notes=[
                f"{count} batches of 5 users + 2 channels, 60 % repeats; higher is better",
                "StorageSession's process_entities only updates its hot cache (10,000 rows) "
                "and leaves changed rows to the background writer (not timed): "
                "ts-redis/ts-postgres would measure the same code as ts-memory",
            ],
        )
    ]
