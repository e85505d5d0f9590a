"""Measure 6: store and load latency of a realistic session blob, beside the cost of one fsync.

The blob is what StorageSession stores on every save: the codec's bytes for a signed-in
session (DC, 256-byte auth key, user, update state with 8 channels; entity rows kept
apart), about 700 bytes. Each storage is used as a session uses it: one object, its lease
held. SQLiteSession's equivalent is its own session row: store = ``set_dc()`` (rewrites the
sessions table) + ``save()`` (commit), load = ``SQLiteSession(path)``. The floor is the raw
cost on the same disk: write 1 KiB + ``os.fsync`` (store), open + read 1 KiB (load).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from telethon.sessions import SQLiteSession

from tgsession.codec import encode_session
from tgsession.storage import Lockable

from .contenders import (
    FAKE_DC,
    OURS,
    available,
    close_storage,
    fake_key,
    make_storage,
    session_data,
    unique_name,
    write_sqlite,
)
from .harness import Row, Settings, median, p99

FLOOR = "fsync floor"
WARMUP = 3


async def _sample(operation: Callable[[], Awaitable[object] | object], count: int) -> list[float]:
    samples = []
    for index in range(WARMUP + count):
        start = time.perf_counter()
        result = operation()
        if isinstance(result, Awaitable):
            await result
        if index >= WARMUP:
            samples.append(time.perf_counter() - start)
    return samples


async def run(settings: Settings) -> list[Row]:
    count = settings.pick(full=150, quick=10)
    ours = available(settings, OURS)
    blob = encode_session(session_data(FAKE_DC, fake_key()))
    stores: dict[str, list[float]] = {}
    loads: dict[str, list[float]] = {}

    filename = write_sqlite(settings.workdir / unique_name("latency"), FAKE_DC, fake_key(), [])
    sqlite = SQLiteSession(filename)
    ports = iter(range(10**9))

    def sqlite_store() -> None:
        sqlite.set_dc(FAKE_DC.id, FAKE_DC.address, 1000 + next(ports) % 50_000)
        sqlite.save()

    def sqlite_load() -> None:
        SQLiteSession(filename).close()

    stores["sqlite"] = await _sample(sqlite_store, count)
    loads["sqlite"] = await _sample(sqlite_load, count)
    sqlite.close()

    for contender in ours:
        storage = make_storage(settings, contender, unique_name("latency"))
        lease = await storage.acquire() if isinstance(storage, Lockable) else None
        try:
            stores[contender] = await _sample(lambda s=storage: s.store_session(blob), count)
            loads[contender] = await _sample(storage.load_session, count)
        finally:
            if lease is not None:
                await lease.release()
            await close_storage(storage)

    floor_path = settings.workdir / unique_name("floor")
    fd = os.open(floor_path, os.O_RDWR | os.O_CREAT, 0o600)
    kib = os.urandom(1024)
    try:
        def fsync_floor() -> None:
            os.pwrite(fd, kib, 0)
            os.fsync(fd)

        stores[FLOOR] = await _sample(fsync_floor, count)
    finally:
        os.close(fd)
    loads[FLOOR] = await _sample(floor_path.read_bytes, count)

    notes = [f"blob {len(blob)} bytes; {count} samples after {WARMUP} warm-ups; "
             "p99 in results.json",
             "sqlite: its session row (set_dc + commit / SQLiteSession(path)); "
             "fsync floor: 1 KiB write + fsync / open + read 1 KiB on the same disk"]
    return [
        Row(f"session {what} latency", len(blob), "ms",
            {name: median(values) * 1e3 for name, values in samples.items()},
            repeats=count,
            p99={name: p99(values) * 1e3 for name, values in samples.items()},
            notes=list(notes))
        for what, samples in (("store", stores), ("load", loads))
    ]
