"""Measure 4: open a stored session and look one cached entity up, with 100k and 1M cached.

Per repeat and per contender a new session object is opened on the stored cache and one
cached user is looked up, awaiting the answer as Telethon does: by what Telethon's
``connect()`` asks (id 0, then its own id), by user id, by username, by phone. Each repeat
looks a different random user up. SQLiteSession: ``SQLiteSession(path)`` then the same
lookup (a primary-key query by id; username and phone have no index in Telethon's table:
a full scan). StorageSession: ``await StorageSession.open(storage)`` (reads the session
document only) then ``get_input_entity`` (a miss: one point lookup in the storage).
The files are warm in the page cache: this measures the work, not the disk. Closing is
not timed. The stall ticker runs meanwhile; its worst lateness during each open and
lookup makes a row of its own (the median over all of them; the maximum in the notes).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from telethon.sessions import SQLiteSession

from .contenders import SELF_ID, close_storage, open_session, sample_keys, stored_caches
from .harness import Row, Settings, Ticker, median

CONNECT = "open until Telethon can connect"
BY_ID = "open + first lookup by id"
BY_USERNAME = "open + first lookup by username"
BY_PHONE = "open + first lookup by phone"
STALL = "event-loop stall while opening and looking up"

#: The issue's targets: by id <= 1x for file and memory, <= 3x over the network.
BY_ID_TARGETS = {"ts-memory": 1.0, "ts-file": 1.0, "ts-redis": 3.0, "ts-postgres": 3.0}


async def _open_sqlite(filename: str) -> SQLiteSession:
    return SQLiteSession(filename)  # synchronous, as in Telethon


async def _timed(ticker: Ticker, opening: Awaitable[Any], keys: Sequence[Any]
                 ) -> tuple[Any, float, float]:
    """Open a session and look ``keys`` up: the session, the seconds it took and the
    ticker's worst lateness meanwhile."""
    await asyncio.sleep(0.005)  # the ticker recovers from what ran before
    ticker.reset()
    start = time.perf_counter()
    session = await opening
    for key in keys:
        found = session.get_input_entity(key)
        if inspect.isawaitable(found):
            found = await found
        assert found is not None
    took = time.perf_counter() - start
    await asyncio.sleep(0.003)  # the tick due during the lookup reports its lateness
    return session, took, ticker.worst


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(100_000, 1_000_000), quick=(1_000,))
    repeats = settings.pick(full=7, quick=2)
    rows = []
    for size in sizes:
        stored = await stored_caches(settings, size)
        keys = {kind: sample_keys(size, repeats, kind) for kind in ("id", "username", "phone")}
        measures = {CONNECT: [[0, SELF_ID]] * repeats,
                    BY_ID: [[key] for key in keys["id"]],
                    BY_USERNAME: [[key] for key in keys["username"]],
                    BY_PHONE: [[key] for key in keys["phone"]]}
        seconds: dict[str, dict[str, list[float]]] = {name: {} for name in measures}
        stalls: dict[str, list[float]] = {}
        async with Ticker() as ticker:
            for repeat in range(repeats):  # interleaved: load on the machine hits all alike
                for measure, lookups in measures.items():
                    for contender in ["sqlite", *stored.ours]:
                        if contender == "sqlite":
                            opened, took, stall = await _timed(
                                ticker, _open_sqlite(stored.sqlite), lookups[repeat])
                            opened.close()
                        else:
                            storage = stored.storage(settings, contender)
                            opened, took, stall = await _timed(
                                ticker, open_session(storage), lookups[repeat])
                            await opened.release()
                            if contender != "ts-memory":
                                await close_storage(storage)
                        seconds[measure].setdefault(contender, []).append(took)
                        stalls.setdefault(contender, []).append(stall)
        common = "awaited; a new session object each time; files warm in the page cache"
        notes = {
            CONNECT: "id 0 and own id, as Telethon's connect() asks (from the session "
                     "document for ours)",
            BY_ID: f"a random cached user's id; {common}",
            BY_USERNAME: f"a random cached user's username (SQLite: a full table scan); {common}",
            BY_PHONE: f"a random cached user's phone (SQLite: a full table scan); {common}",
        }
        for measure in measures:
            rows.append(Row(
                measure=measure,
                size=size,
                unit="ms",
                contenders={name: median(values) * 1e3
                            for name, values in seconds[measure].items()},
                target=None if measure in (CONNECT, BY_ID) else 1.0,
                target_for=dict(BY_ID_TARGETS) if measure in (CONNECT, BY_ID) else {},
                repeats=repeats,
                notes=[notes[measure]],
            ))
        worst = ", ".join(f"{name} {max(values) * 1e3:.2f}" for name, values in stalls.items())
        rows.append(Row(
            measure=STALL,
            size=size,
            unit="ms",
            contenders={name: median(values) * 1e3 for name, values in stalls.items()},
            target=1.0,
            repeats=repeats,
            notes=["median over every open and lookup above of a 1 ms ticker's worst "
                   f"lateness during it; the worst of all (ms): {worst}"],
        ))
    return rows
