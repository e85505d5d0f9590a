"""Measure 4: cold load with a big entity cache.

Two rows per size. "until Telethon can connect": open the stored session and answer the
lookups Telethon's ``connect()`` makes (id 0, then its own id). "+ lookup of a cached
entity": open and look an arbitrary cached user up (awaiting the answer, as Telethon does:
StorageSession loads its cache in the background, in chunks on the event loop, and a
miss waits for it).
SQLiteSession: ``SQLiteSession(path)`` then the same lookups (primary-key queries).
The files are in the page cache (warm): this measures the work of loading, not the disk.
Closing is not timed. A third row gives the worst event-loop stall while opening and
looking up (the ticker of the stall measure runs meanwhile).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from telethon.sessions import SQLiteSession

from .contenders import (
    FAKE_DC,
    OURS,
    SELF_ID,
    SELF_ROWS,
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

MEASURE_CONNECT = "cold load until Telethon can connect"
MEASURE = "cold load + lookup of a cached entity"
STALL = "event-loop stall during cold load"


async def _open_sqlite(filename: str) -> SQLiteSession:
    return SQLiteSession(filename)  # synchronous, as in Telethon


async def _timed(opening: Awaitable[Any], keys: Sequence[int]) -> tuple[Any, float, float]:
    """Open a session and look ``keys`` up, with the stall ticker running: returns the
    session, the seconds it took and the ticker's worst lateness."""
    async with Ticker() as ticker:
        ticker.reset()
        start = time.perf_counter()
        session = await opening
        for key in keys:
            found = session.get_input_entity(key)
            if inspect.isawaitable(found):
                await found
        took = time.perf_counter() - start
        await asyncio.sleep(0.003)  # the tick due during the load reports its lateness
        return session, took, ticker.worst


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(10_000, 100_000), quick=(1_000,))
    repeats = settings.pick(full=5, quick=2)
    ours = available(settings, OURS)
    rows = []
    for size in sizes:
        cached = [*SELF_ROWS, *entity_rows(size)]
        target_user = next(row[0] for row in cached[size // 2 :] if row[0] > 0)
        lookups = {MEASURE_CONNECT: [0, SELF_ID], MEASURE: [target_user]}
        seconds: dict[str, dict[str, list[float]]] = {name: {} for name in lookups}
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
            for measure, keys in lookups.items():
                for contender in ["sqlite", *names]:
                    if contender == "sqlite":
                        opened, took, stall = await _timed(_open_sqlite(filename), keys)
                        opened.close()
                    else:
                        storage = memory if contender == "ts-memory" else None
                        if storage is None:
                            storage = make_storage(settings, contender, names[contender])
                        opened, took, stall = await _timed(
                            open_session(storage, wait_for_entities=False), keys
                        )
                        # Untimed: let the background load finish, so that it does not
                        # slow the next contender down.
                        await opened.entities_loaded()
                        await opened.release()
                        if contender != "ts-memory":
                            await close_storage(storage)
                    seconds[measure].setdefault(contender, []).append(took)
                    stalls.setdefault(contender, []).append(stall)
        notes = {
            MEASURE_CONNECT: "id 0 and own id, as Telethon's connect() asks; the rest of "
                             "our cache keeps loading in the background",
            MEASURE: "lookup by user id, awaited; files warm in the page cache; "
                     "string/memory keep no entities: not measured",
        }
        for measure in lookups:
            rows.append(Row(
                measure=measure,
                size=size,
                unit="ms",
                contenders={name: median(values) * 1e3
                            for name, values in seconds[measure].items()},
                target=1.0 if size == 100_000 else None,
                repeats=repeats,
                notes=[notes[measure]],
            ))
        rows.append(Row(
            measure=STALL,
            size=size,
            unit="ms",
            contenders={name: max(values) * 1e3 for name, values in stalls.items()},
            repeats=repeats,
            notes=["worst lateness of the ticker of the stall measure, while opening and "
                   "looking up"],
        ))
    return rows
