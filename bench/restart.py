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
number of cached entities stored with the session.
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

from .contenders import (
    OURS,
    available,
    close_storage,
    entity_rows,
    make_storage,
    session_data,
    storage_url,
    store_state,
    unique_name,
    write_sqlite,
)
from .harness import Row, Settings, median

MEASURE = "restart to first authorized request"
WHOLE = "restart, whole process (parent's clock)"

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
        raise RuntimeError(f"restart child for {job['kind']} failed:\n{err.decode()[-2000:]}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return float(result["elapsed"]), wall


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(0, 10_000), quick=(0,))
    repeats = settings.pick(full=9, quick=1)
    ours = available(settings, [name for name in OURS if name != "ts-memory"])
    rows = []
    async with FakeTelegram() as tg:
        account = tg.add_user(first_name="Bench")
        for size in sizes:
            cached = entity_rows(size)
            jobs: dict[str, dict[str, object]] = {}
            cleanup = []
            key = tg.preauthorize(account)
            dc = DcAddress(key.dc_id, key.host, key.port)
            base = {"api_id": tg.api_id, "api_hash": tg.api_hash}
            sqlite = write_sqlite(settings.workdir / unique_name("restart"), dc, key.auth_key,
                                  cached)
            jobs["sqlite"] = {"kind": "sqlite", "where": sqlite, **base}
            jobs["string"] = {"kind": "string", "where": key.string_session(), **base}
            for contender in ours:
                name = unique_name("restart")
                storage = make_storage(settings, contender, name)
                data = session_data(dc, key.auth_key)
                data.user_id = account.id
                await store_state(storage, data, cached)
                cleanup.append(storage)
                jobs[contender] = {"kind": "ours", "where": storage_url(settings, contender, name),
                                   **base}
            for storage in cleanup:
                await close_storage(storage)
            elapsed: dict[str, list[float]] = {}
            walls: dict[str, list[float]] = {}
            for _ in range(repeats):
                for contender, job in jobs.items():  # interleaved: drift hits everyone alike
                    inside, wall = await _child(job)
                    elapsed.setdefault(contender, []).append(inside)
                    walls.setdefault(contender, []).append(wall)
            notes = [
                "child's clock: after imports (same imports for all), until get_me() returns; "
                f"{size:,} entities cached; memory/ts-memory cannot survive a restart",
                "StringSession keeps no entities (its size is always 0)",
            ]
            rows.append(Row(MEASURE, size, "ms",
                            {k: median(v) * 1e3 for k, v in elapsed.items()},
                            target=1.0, repeats=repeats, notes=list(notes)))
            rows.append(Row(WHOLE, size, "ms",
                            {k: median(v) * 1e3 for k, v in walls.items()},
                            repeats=repeats, notes=["interpreter start, imports, work, "
                                                    "disconnect (and its final save)"]))
    return rows

