"""Measure 5: how many storage writes 1,000 ``save()`` calls in one burst cause.

Each of the 1,000 calls follows a change (one new entity and a new update state), all in
one go on the event loop, as when a flood of updates arrives. SQLiteSession commits on every
``save()`` (counted by a subclass). For StorageSession the storage is wrapped in a counting
proxy and the burst is over once the background writer is idle; every call that writes
(``store_session``, ``store_entities``, ``clear_entities``) counts as one write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from telethon.sessions import SQLiteSession

from tgsession.storage.base import EntityRecord

from .contenders import (
    OURS,
    available,
    change,
    close_storage,
    open_session,
    settle,
    stored_caches,
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

    async def get_entity(self, entity_id: int) -> bytes | None:
        row: bytes | None = await self.inner.get_entity(entity_id)
        return row

    async def find_entity(self, key: str) -> tuple[int, bytes] | None:
        found: tuple[int, bytes] | None = await self.inner.find_entity(key)
        return found

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        self.writes["store_entities"] += 1
        await self.inner.store_entities(records)

    async def clear_entities(self) -> None:
        self.writes["clear_entities"] += 1
        await self.inner.clear_entities()

    async def count_entities(self) -> int:
        count: int = await self.inner.count_entities()
        return count

    def iter_entities(self, batch: int = 1000) -> Any:
        return self.inner.iter_entities(batch)


class CountingSQLiteSession(SQLiteSession):  # type: ignore[misc]
    """SQLiteSession counting its commits (its ``save()`` is one commit)."""

    commits = 0

    def save(self) -> None:
        self.commits += 1
        super().save()


def burst(session: Any, first_round: int) -> None:
    for index in range(first_round, first_round + SAVES):
        change(session, index, new=1)
        session.save()


async def run(settings: Settings) -> list[Row]:
    repeats = settings.pick(full=3, quick=1)
    ours = available(settings, OURS)
    stored = await stored_caches(settings, CACHED)
    counts: dict[str, list[float]] = {}
    split: dict[str, dict[str, int]] = {}
    for repeat in range(repeats):
        first_round = 2_000_000 + repeat * SAVES
        sqlite = CountingSQLiteSession(stored.sqlite)
        burst(sqlite, first_round)
        counts.setdefault("sqlite", []).append(sqlite.commits)
        sqlite.close()
        for contender in ours:
            inner = stored.storage(settings, contender)
            storage = CountingStorage(inner)
            session = await open_session(storage, lock=False)
            burst(session, first_round)
            await settle(session)
            counts.setdefault(contender, []).append(storage.total)
            split[contender] = dict(storage.writes)
            await session.release()
            if contender != "ts-memory":
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
