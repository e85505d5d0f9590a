"""Measure 7: RSS growth of a process that opens a big stored session and looks up 10,000
random cached users, over the same process with an empty session.

One new process per contender (``sys.executable -c CHILD``): after its imports it opens an
empty stored session of the contender's kind and looks the same keys up (all misses),
collects garbage and reads its RSS (``/proc/self/statm``); then it opens the big stored
session (the first one stays open), looks the keys up (each found), collects garbage and
reads its RSS again. The figure is the difference, in MB.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence

from .contenders import sample_keys, storage_url, stored_caches, unique_name
from .harness import Row, Settings, median

MEASURE = "RSS growth: open + 10,000 random lookups"
TARGET_MB = 32.0

CHILD = r"""
import asyncio, gc, inspect, json, os, sys
import concurrent.futures.thread
from telethon.sessions import SQLiteSession
from tgsession.session import StorageSession
from tgsession.storage.url import storage_from_url
import tgsession.storage.file
try:
    import tgsession.storage.redis, tgsession.storage.postgres
except ImportError:
    pass

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

async def use(kind, where, keys):
    if kind == "sqlite":
        session = SQLiteSession(where)
    else:
        session = await StorageSession.open(storage_from_url(where), lock=False)
    found = 0
    for key in keys:
        try:
            answer = session.get_input_entity(key)
            if inspect.isawaitable(answer):
                answer = await answer
            found += 1
        except ValueError:
            pass
    return session, found

async def main():
    job = json.loads(os.environ["BENCH_MEMORY"])
    with open(job["keys"]) as f:
        keys = json.load(f)
    empty, _ = await use(job["kind"], job["empty"], keys)
    gc.collect()
    before = rss()
    full, found = await use(job["kind"], job["full"], keys)
    gc.collect()
    after = rss()
    print(json.dumps({"growth": after - before, "found": found, "keys": len(keys)}))

asyncio.run(main())
"""


async def _child(job: dict[str, object]) -> dict[str, float]:
    env = dict(os.environ, BENCH_MEMORY=json.dumps(job))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"memory child for {job['kind']} failed:\n{err.decode()[-2000:]}")
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def run(settings: Settings) -> list[Row]:
    sizes: Sequence[int] = settings.sizes(full=(1_000_000,), quick=(1_000,))
    repeats = settings.pick(full=3, quick=1)
    lookups = settings.pick(full=10_000, quick=200)
    empty = await stored_caches(settings, 0)
    rows = []
    for size in sizes:
        stored = await stored_caches(settings, size)
        keys_file = settings.workdir / unique_name("keys")
        keys_file.write_text(json.dumps(sample_keys(size, lookups, "id", seed=13)))
        jobs = {"sqlite": {"kind": "sqlite", "empty": empty.sqlite, "full": stored.sqlite}}
        for contender in stored.ours:
            if contender == "ts-memory" or contender not in empty.names:
                continue  # cannot be opened from another process
            jobs[contender] = {
                "kind": "ours",
                "empty": storage_url(settings, contender, empty.names[contender]),
                "full": storage_url(settings, contender, stored.names[contender]),
            }
        growth: dict[str, list[float]] = {}
        found: dict[str, float] = {}
        for _ in range(repeats):
            for contender, job in jobs.items():
                result = await _child({**job, "keys": str(keys_file)})
                growth.setdefault(contender, []).append(result["growth"] / 2**20)
                found[contender] = result["found"]
        missing = [name for name, value in found.items() if value != lookups]
        rows.append(Row(
            MEASURE, size, "MB", {name: median(values) for name, values in growth.items()},
            target=TARGET_MB, absolute=True, repeats=repeats,
            notes=[f"{lookups:,} random cached users by id, in a new process per run, over "
                   "the same process with an empty session; target: at most 32 MB"]
            + ([f"not every key found by: {', '.join(missing)}"] if missing else []),
        ))
    return rows
