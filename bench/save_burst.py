"""Measure 5: how many storage writes 1,000 ``save()`` calls in one burst cause.

Each of the 1,000 calls follows a change (one new entity and a new update state), all in
one go on the event loop, as when a flood of updates arrives. SQLiteSession commits on every
``save()`` (counted by a subclass). For StorageSession the storage is wrapped in a counting
proxy and the burst is over once the background writer is idle; every call that writes
(``store_session``, ``store_entities``, ``clear_entities``) counts as one write.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from telethon.sessions import SQLiteSession
from telethon.tl import types

from .contenders import (
    FAKE_DC,
    OURS,
    available,
    close_storage,
    entity_rows,
    fake_key,
    make_storage,
    open_session,
    session_data,
    settle,
    store_state,
    unique_name,
    write_sqlite,
)
from .harness import Row, Settings, median

MEASURE = "storage writes for 1,000 save() calls"
SAVES = 1_000
CACHED = 1_000


class CountingStorage:
    """Forwards to a storage (entity rows included) and counts the calls that write."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: dict[str, int] = {"store_session": 0, "store_entities": 0,
                                       "clear_entities": 0}

    @property
    def total(self) -> int:
        return sum(self.writes.values())

    def __repr__(self) -> str:
        return f"CountingStorage({self.inner!r})"

    async def load_session(self) -> bytes:
        data: bytes = await self.inner.load_session()
        return data

    async def store_session(self, data: bytes) -> None:
        self.writes["store_session"] += 1
        await self.inner.store_session(data)

    async def load_entities(self) -> dict[int, bytes]:
        rows: dict[int, bytes] = await self.inner.load_entities()
        return rows

    async def store_entities(self, rows: Mapping[int, bytes]) -> None:
        self.writes["store_entities"] += 1
        await self.inner.store_entities(rows)

    async def clear_entities(self) -> None:
        self.writes["clear_entities"] += 1
        await self.inner.clear_entities()


class CountingSQLiteSession(SQLiteSession):  # type: ignore[misc]
    """SQLiteSession counting its commits (its ``save()`` is one commit)."""

    commits = 0

    def save(self) -> None:
        self.commits += 1
        super().save()


def burst(session: Any) -> None:
    for index in range(SAVES):
        user = types.User(id=60_000_000 + index, access_hash=index * 7 + 1, first_name="U")
        session.process_entities(types.Updates(updates=[], users=[user], chats=[], date=None,
                                               seq=0))
        session.set_update_state(0, types.updates.State(
            pts=index, qts=0, seq=index, unread_count=0,
            date=datetime.datetime.now(tz=datetime.timezone.utc)))
        session.save()


async def run(settings: Settings) -> list[Row]:
    repeats = settings.pick(full=3, quick=1)
    ours = available(settings, OURS)
    cached = entity_rows(CACHED)
    counts: dict[str, list[float]] = {}
    split: dict[str, dict[str, int]] = {}
    for _ in range(repeats):
        filename = write_sqlite(settings.workdir / unique_name("burst"), FAKE_DC, fake_key(),
                                cached)
        sqlite = CountingSQLiteSession(filename)
        burst(sqlite)
        counts.setdefault("sqlite", []).append(sqlite.commits)
        sqlite.close()
        for contender in ours:
            inner = make_storage(settings, contender, unique_name("burst"))
            await store_state(inner, session_data(FAKE_DC, fake_key()), cached)
            storage = CountingStorage(inner)
            session = await open_session(storage, lock=False)
            burst(session)
            await settle(session)
            counts.setdefault(contender, []).append(storage.total)
            split[contender] = dict(storage.writes)
            await session.release()
            await close_storage(inner)
    details = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in writes.items() if v)
        for name, writes in split.items()
    )
    return [Row(
        measure=MEASURE,
        size=SAVES,
        unit="writes",
        contenders={name: median(values) for name, values in counts.items()},
        target=2 / SAVES,
        repeats=repeats,
        notes=[
            "each save() follows one new entity and a new update state; "
            f"{CACHED:,} entities cached; target: at most 2 writes",
            f"writes by kind: {details}" if details else "no StorageSession contender ran",
            "string/memory write nothing themselves: not measured",
        ],
    )]
