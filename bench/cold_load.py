"""Measure 4: cold load with a big entity cache: open the stored session, look one entity up.

SQLiteSession: ``SQLiteSession(path)`` then ``get_input_entity(user_id)`` (a primary-key
query). StorageSession: ``await StorageSession.open(storage)`` on a new storage object, then
the same ``get_input_entity``. The files are in the page cache (warm): this measures the
work of loading, not the disk. Closing is not timed. A second row gives the worst
event-loop stall while opening (the ticker of the stall measure runs meanwhile).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from telethon.sessions import SQLiteSession

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
    store_state,
    unique_name,
    write_sqlite,
)
from .harness import Row, Settings, median
from .stall import Ticker

MEASURE = "cold load + first lookup"
STALL = "event-loop stall during cold load"


async def _open_sqlite(filename: str) -> SQLiteSession:
    return SQLiteSession(filename)  # synchronous, as in Telethon


async def _timed(opening: Awaitable[Any], user_id: int) -> tuple[Any, float, float]:
    """Open a session and look ``user_id`` up, with the stall ticker running: returns the
    session, the seconds it took and the ticker's worst lateness."""
    async with Ticker() as ticker:
        ticker.reset()
        start = time.perf_counter()
        session = await opening
        session.get_input_entity(user_id)
        took = time.perf_counter() - start
        await asyncio.sleep(0.003)  # the tick due during the load reports its lateness
        return session, took, ticker.worst


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(10_000, 100_000), quick=(1_000,))
    repeats = settings.pick(full=5, quick=2)
    ours = available(settings, OURS)
    rows = []
    for size in sizes:
        cached = entity_rows(size)
        target_user = next(row[0] for row in cached[size // 2 :] if row[0] > 0)
        seconds: dict[str, list[float]] = {}
        stalls: dict[str, list[float]] = {}

        filename = write_sqlite(settings.workdir / unique_name("cold"), FAKE_DC, fake_key(),
                                cached)
        names = {contender: unique_name("cold") for contender in ours}
        memory = None
        for contender, name in names.items():
            setup = make_storage(settings, contender, name)
            await store_state(setup, session_data(FAKE_DC, fake_key()), cached)
            if contender == "ts-memory":
                memory = setup  # one object holds it: "reopening" is opening it again
            else:
                await close_storage(setup)

        for _ in range(repeats):  # interleaved: load on the machine hits everyone alike
            for contender in ["sqlite", *names]:
                if contender == "sqlite":
                    opened, took, stall = await _timed(_open_sqlite(filename), target_user)
                    opened.close()
                else:
                    storage = memory if contender == "ts-memory" else None
                    if storage is None:
                        storage = make_storage(settings, contender, names[contender])
                    opened, took, stall = await _timed(open_session(storage), target_user)
                    await opened.release()
                    if contender != "ts-memory":
                        await close_storage(storage)
                seconds.setdefault(contender, []).append(took)
                stalls.setdefault(contender, []).append(stall)
        target = 1.0 if size == 100_000 else None
        rows.append(Row(
            measure=MEASURE,
            size=size,
            unit="ms",
            contenders={name: median(values) * 1e3 for name, values in seconds.items()},
            target=target,
            repeats=repeats,
            notes=["lookup by user id; files warm in the page cache; "
                   "string/memory keep no entities: not measured"],
        ))
        rows.append(Row(
            measure=STALL,
            size=size,
            unit="ms",
            contenders={name: median(values) * 1e3 for name, values in stalls.items()},
            repeats=repeats,
            notes=["the ticker of the stall measure, running while the session opens"],
        ))
    return rows
