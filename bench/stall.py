"""Measure 3: the longest event-loop stall while a session saves, with 1k-100k cached entities.

A ticker task sleeps 1 ms at a time and records how late it wakes. Before each save the
session gets a realistic change (10 new users from an update, and a new update state) and
the ticker recovers; then the window opens, the session saves, and it closes once the save
is done: ``SQLiteSession.save()`` is a synchronous commit (so the stall is its duration);
StorageSession's ``save()`` returns at once and the window stays open until its background
write has finished. The figure is the ticker's worst lateness inside the window, not the
save's duration. The cached entities are stored before the measured save (SQLite:
committed; ours: in the storage), as after a restart.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Sequence
from types import TracebackType
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

MEASURE = "event-loop stall during a save"
TICK = 0.001
NEW_PER_SAVE = 10


class Ticker:
    """A task that sleeps ``TICK`` at a time and keeps the worst lateness since ``reset()``."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    async def _run(self) -> None:
        clock = time.perf_counter
        while not self._stop:
            before = clock()
            await asyncio.sleep(TICK)
            self.worst = max(self.worst, clock() - before - TICK)

    def reset(self) -> None:
        self.worst = 0.0

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0.02)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop = True
        if self._task is not None:
            await self._task


def change(session: Any, round_: int) -> None:
    """What an incoming update does to a session: new entities and a new update state."""
    base = 50_000_000 + round_ * NEW_PER_SAVE
    users = [
        types.User(id=base + i, access_hash=base * 31 + i, first_name=f"New{i}",
                   username=f"new{base + i}")
        for i in range(NEW_PER_SAVE)
    ]
    session.process_entities(
        types.Updates(updates=[], users=users, chats=[], date=None, seq=0)
    )
    session.set_update_state(0, types.updates.State(
        pts=10_000 + round_, qts=0, seq=100 + round_, unread_count=0,
        date=datetime.datetime.now(tz=datetime.timezone.utc),
    ))


async def _stalls(session: Any, repeats: int, background: bool) -> list[float]:
    stalls = []
    async with Ticker() as ticker:
        for round_ in range(repeats):
            change(session, round_)
            await asyncio.sleep(0.005)  # the ticker recovers from the change itself
            ticker.reset()
            session.save()
            if background:
                await settle(session)
            await asyncio.sleep(0.003)  # the tick due during the save reports its lateness
            stalls.append(ticker.worst)
    return stalls


async def idle_lateness(seconds: float = 0.1) -> float:
    """The ticker's worst lateness with nothing else running: the noise floor."""
    async with Ticker() as ticker:
        ticker.reset()
        await asyncio.sleep(seconds)
        return ticker.worst


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(1_000, 10_000, 100_000), quick=(1_000,))
    repeats = settings.pick(full=7, quick=2)
    ours = available(settings, OURS)
    floor = await idle_lateness()
    rows = []
    for size in sizes:
        cached = entity_rows(size)
        medians: dict[str, float] = {}
        path = settings.workdir / unique_name("stall")
        filename = write_sqlite(path, FAKE_DC, fake_key(), cached)
        sqlite = SQLiteSession(filename)
        medians["sqlite"] = median(await _stalls(sqlite, repeats, background=False)) * 1e3
        sqlite.close()
        for contender in ours:
            storage = make_storage(settings, contender, unique_name("stall"))
            await store_state(storage, session_data(FAKE_DC, fake_key()), cached)
            session = await open_session(storage)
            medians[contender] = median(await _stalls(session, repeats, background=True)) * 1e3
            await session.release()
            await close_storage(storage)
        rows.append(Row(
            measure=MEASURE,
            size=size,
            unit="ms",
            contenders=medians,
            target=1.0 if size == 100_000 else None,
            repeats=repeats,
            notes=[
                f"save after {NEW_PER_SAVE} new entities + a new update state; "
                f"idle ticker lateness (noise floor) {floor * 1e3:.2f} ms",
                "string/memory persist no entities: not measured",
            ],
        ))
    return rows
