"""Measure 3: the longest event-loop stall while a session saves, with 1k-100k cached entities.

A ticker task sleeps 1 ms at a time and records how late it wakes. The window opens, the
session gets a realistic change (10 new users from an update, and a new update state:
a few microseconds of work for every contender) and saves, and the window closes once the
save is done: ``SQLiteSession.save()`` is a synchronous commit (so the stall is its
duration); StorageSession's ``save()`` returns at once and the window stays open until its
background writer (the 10 new rows, then the session document) has finished. The figure
is the ticker's worst lateness inside the window, not the save's duration. The cached
entities are stored before the measured save (SQLite: committed; ours: in the storage),
as after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from telethon.sessions import SQLiteSession

from .contenders import OURS, available, change, close_storage, open_session, settle, stored_caches
from .harness import Row, Settings, Ticker, idle_lateness, median

MEASURE = "event-loop stall during a save"
NEW_PER_SAVE = 10


async def _stalls(session: Any, repeats: int, background: bool, first_round: int) -> list[float]:
    stalls = []
    async with Ticker() as ticker:
        for round_ in range(first_round, first_round + repeats):
            await asyncio.sleep(0.005)  # the ticker recovers from the previous round
            ticker.reset()
            change(session, round_, NEW_PER_SAVE)
            session.save()
            if background:
                await settle(session)
            await asyncio.sleep(0.003)  # the tick due during the save reports its lateness
            stalls.append(ticker.worst)
    return stalls


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(1_000, 10_000, 100_000), quick=(1_000,))
    repeats = settings.pick(full=7, quick=2)
    ours = available(settings, OURS)
    floor = await idle_lateness()
    rows = []
    for size in sizes:
        stored = await stored_caches(settings, size)
        medians: dict[str, float] = {}
        sqlite = SQLiteSession(stored.sqlite)
        medians["sqlite"] = median(await _stalls(sqlite, repeats, False, 0)) * 1e3
        sqlite.close()
        for contender in ours:
            storage = stored.storage(settings, contender)
            session = await open_session(storage)
            medians[contender] = median(await _stalls(session, repeats, True, 1000)) * 1e3
            await session.release()
            if contender != "ts-memory":
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
