"""Measure 6: random lookups that miss the hot cache after a restart (median and p99).

A session is opened on the stored cache and looks up ``count`` distinct random cached
users by id, one at a time, each timed on its own (awaited for ours: every one is a miss,
one point lookup in the storage). SQLiteSession answers the same ids synchronously with a
primary-key query: its median is the baseline (the issue's "synchronous lookup by id").
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence

from telethon.sessions import SQLiteSession

from .contenders import close_storage, open_session, sample_keys, stored_caches
from .harness import Row, Settings, median, p99

MEASURE = "random hot-cache miss after a restart"
P99 = "random hot-cache miss after a restart, p99"


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(100_000, 1_000_000), quick=(1_000,))
    count = settings.pick(full=2_000, quick=50)
    rows = []
    for size in sizes:
        stored = await stored_caches(settings, size)
        keys = sample_keys(size, count, "id", seed=11)
        samples: dict[str, list[float]] = {}
        sqlite = SQLiteSession(stored.sqlite)
        clock = time.perf_counter
        for key in keys:
            start = clock()
            sqlite.get_input_entity(key)
            samples.setdefault("sqlite", []).append(clock() - start)
        sqlite.close()
        for contender in stored.ours:
            storage = stored.storage(settings, contender)
            session = await open_session(storage)
            times = samples.setdefault(contender, [])
            for key in keys:
                start = clock()
                found = session.get_input_entity(key)
                if inspect.isawaitable(found):
                    found = await found
                times.append(clock() - start)
            await session.release()
            if contender != "ts-memory":
                await close_storage(storage)
        medians = {name: median(values) * 1e3 for name, values in samples.items()}
        p99s = {name: p99(values) * 1e3 for name, values in samples.items()}
        note = (f"{len(keys):,} distinct random cached users by id, each a miss for ours; "
                "SQLite: its synchronous primary-key query")
        rows.append(Row(MEASURE, size, "ms", medians, target=3.0, repeats=len(keys), p99=p99s,
                        notes=[note]))
        rows.append(Row(P99, size, "ms", p99s,
                        target_for={"ts-file": 1.0} if size >= 1_000_000 else {},
                        absolute=True, repeats=len(keys),
                        notes=["the 99th percentile of the same lookups; target: at most "
                               "1 ms at 1M for the file storage"]))
    return rows
