"""Measure 1: restart to the first authorized request, a new process per run.

The offline Telegram (``tgsession.testing.FakeTelegram``) runs in this process; each run
starts ``sys.executable -c CHILD``, which builds the session from what is stored, builds a
``TelegramClient``, connects and calls ``get_me()``. The child's clock starts after its
imports (the same imports for every contender: Telethon, tgsession, both server
drivers and ``concurrent.futures.thread``, which asyncio would import lazily on the first
``to_thread``) and stops when ``get_me()`` returns; it prints the elapsed time. A second row
gives the whole process as the parent sees it (interpreter start, imports, disconnect).

Stored state per contender, pre-made with ``tg.preauthorize(account)`` (no handshake, no
sign-in in the child): an ``SQLiteSession`` file, a ``StringSession`` string (handed to the
child in an environment variable), and for StorageSession the codec's bytes plus entity
rows in the contender's storage, opened in the child by ``storage_from_url``. Sizes are the
number of cached entities stored with the session: the run's shared stored caches, with the
session document replaced by one holding the pre-authorized key. A third row divides each
contender's restart with the biggest cache by its restart with none.

With PostgreSQL, a fourth row gives the floor of ``ts-postgres``: ``StringSession``'s
restart (no storage I/O) plus one PostgreSQL connection made with no driver
(``postgres_floor``), timed between the runs on the same server. Above 1x SQLite, the
target is below what any PostgreSQL library could reach on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence

from tgsession.codec import DcAddress
from tgsession.testing import FakeTelegram

from .contenders import session_data, storage_url, stored_caches
from .harness import Row, Settings, median
from .postgres_floor import Endpoint, NoFloor, connect_once, endpoint

MEASURE = "restart to first authorized request"
WHOLE = "restart, whole process (parent's clock)"
GROWTH = "restart with the cache / restart with none"
FLOOR = "restart floor of ts-postgres (string + raw pg connect)"
#: The floor row's column of the raw connection alone.
RAW_CONNECT = "raw pg connect"

CHILD = r"""
import asyncio, json, os, sys, time
# asyncio imports this lazily on the first to_thread(); it is an import, so it is done
# here, before the clock starts, like every other import.
import concurrent.futures.thread
from telethon import TelegramClient
from telethon.network import ConnectionTcpFull
from telethon.sessions import SQLiteSession, StringSession
from tgsession.session import StorageSession
from tgsession.storage.url import storage_from_url
import tgsession.storage.file
try:
    import tgsession.storage.redis, tgsession.storage.postgres
except ImportError:
    pass

async def main():
    job = json.loads(os.environ["BENCH_RESTART"])
    storage = None
    start = time.perf_counter()
    if job["kind"] == "sqlite":
        session = SQLiteSession(job["where"])
    elif job["kind"] == "string":
        session = StringSession(job["where"])
    else:
        storage = storage_from_url(job["where"])
        session = await StorageSession.open(storage)
    client = TelegramClient(session, job["api_id"], job["api_hash"],
                            connection=ConnectionTcpFull)
    await client.connect()
    me = await client.get_me()
    elapsed = time.perf_counter() - start
    await client.disconnect()
    if storage is not None and hasattr(storage, "aclose"):
        await storage.aclose()
    print(json.dumps({"elapsed": elapsed, "me": me.id}))

asyncio.run(main())
"""


async def _child(job: dict[str, object]) -> tuple[float, float]:
    """Run one restart; returns (child's elapsed, parent's wall time) in seconds."""
    env = dict(os.environ, BENCH_RESTART=json.dumps(job))
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await process.communicate()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"restart child for {job['contender']} ({job['size']:,} cached) "
                           f"failed:\n{err.decode()[-3000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return float(result["elapsed"]), wall


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(0, 1_000_000), quick=(0, 1_000))
    repeats = settings.pick(full=15, quick=1)
    connects_per_round = settings.pick(full=5, quick=2)
    floor_at, no_floor = _floor_endpoint(settings)
    connects: list[float] = []
    rows = []
    async with FakeTelegram() as tg:
        account = tg.add_user(first_name="Bench")
        jobs: dict[int, dict[str, dict[str, object]]] = {}
        for size in sizes:
            stored = await stored_caches(settings, size)
            key = tg.preauthorize(account)
            data = session_data(DcAddress(key.dc_id, key.host, key.port), key.auth_key)
            data.user_id = account.id
            base = {"api_id": tg.api_id, "api_hash": tg.api_hash, "size": size}
            await stored.replace_session(settings, "sqlite", data)
            jobs[size] = {
                "sqlite": {"kind": "sqlite", "where": stored.sqlite, **base},
                "string": {"kind": "string", "where": key.string_session(), **base},
            }
            for contender in stored.ours:
                if contender == "ts-memory":
                    continue  # cannot survive a restart
                await stored.replace_session(settings, contender, data)
                jobs[size][contender] = {
                    "kind": "ours", **base,
                    "where": storage_url(settings, contender, stored.names[contender]),
                }
        elapsed: dict[int, dict[str, list[float]]] = {size: {} for size in sizes}
        walls: dict[int, dict[str, list[float]]] = {size: {} for size in sizes}
        for _ in range(repeats):  # interleaved: drift hits every contender and size alike
            for size in sizes:
                for contender, job in jobs[size].items():
                    inside, wall = await _child({**job, "contender": contender})
                    elapsed[size].setdefault(contender, []).append(inside)
                    walls[size].setdefault(contender, []).append(wall)
            if floor_at is not None:  # blocking, between runs: nothing else runs meanwhile
                connects.extend(connect_once(floor_at) for _ in range(connects_per_round))
    by_size = {size: {k: median(v) * 1e3 for k, v in elapsed[size].items()} for size in sizes}
    for size in sizes:
        notes = [
            "child's clock: after imports (same imports for all), until get_me() returns; "
            f"{size:,} entities cached; memory/ts-memory cannot survive a restart",
            "StringSession keeps no entities (its size is always 0)",
            *([no_floor] if no_floor else []),
        ]
        rows.append(Row(MEASURE, size, "ms", by_size[size],
                        target=1.0, repeats=repeats, notes=list(notes)))
        rows.append(Row(WHOLE, size, "ms",
                        {k: median(v) * 1e3 for k, v in walls[size].items()},
                        repeats=repeats, notes=["interpreter start, imports, work, "
                                                "disconnect (and its final save)"]))
        if connects and "string" in by_size[size]:
            rows.append(_floor_row(size, by_size[size], connects, floor_at, repeats))
    biggest, smallest = max(sizes), min(sizes)
    rows.append(Row(
        GROWTH, biggest, "x",
        {name: value / by_size[smallest][name] for name, value in by_size[biggest].items()
         if name != "string" and by_size[smallest].get(name)},
        target=1.1, absolute=True, repeats=repeats,
        notes=[f"median restart with {biggest:,} cached entities divided by the median "
               f"with {smallest:,}; runs of both sizes interleaved; target: within 1.1x"],
    ))
    return rows


def _floor_endpoint(settings: Settings) -> tuple[Endpoint | None, str | None]:
    """Where to time raw connections, or why not (a note); ``(None, None)`` when
    ts-postgres is not measured at all (it has its own note then)."""
    if not settings.postgres_url:
        return None, None
    try:
        where = endpoint(settings.postgres_url)
        connect_once(where)  # a warm-up, and the check that no password is asked
    except (NoFloor, OSError) as error:
        return None, f"no ts-postgres floor row: {error}"
    return where, None


def _floor_row(size: int, restarts: dict[str, float], connects: list[float],
               where: Endpoint | None, repeats: int) -> Row:
    raw = median(connects) * 1e3
    return Row(
        FLOOR, size, "ms",
        {"sqlite": restarts["sqlite"], "string": restarts["string"], RAW_CONNECT: raw,
         "ts-postgres": restarts["string"] + raw},
        repeats=repeats,
        notes=[f"ts-postgres: StringSession's restart (no storage I/O) + {RAW_CONNECT} "
               f"(median of {len(connects)}, {where}: connect, startup packet, trust auth, "
               "until ReadyForQuery; no TLS, no driver, no statement; PostgreSQL forks a "
               "backend per connection); above 1x, the <= 1x target is below the floor"],
    )
