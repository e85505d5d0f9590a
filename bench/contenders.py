"""The fixtures of every measure: contenders, their stored state, and the workloads.

Stored state is written the way each library would leave it: Telethon's ``SQLiteSession``
tables (entities committed), tgsession's codec and :class:`~tgsession.storage.EntityStorage`
rows with their lookup keys. A stored cache of each size is made once per run
(:func:`stored_caches`) and shared by the measures that read it. Redis and PostgreSQL keys
live under their own prefix and are removed at the end.

Workloads: :func:`entity_rows` (the cached rows), :func:`sample_keys` (random lookups of
cached entities), :func:`change` (what an incoming update does to a session).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import itertools
import os
import random
import re
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession
from telethon.tl import types

from tgsession.codec import (
    DcAddress,
    EntityRow,
    SessionData,
    UpdateState,
    encode_session,
)
from tgsession.entities import entity_records
from tgsession.session import StorageSession
from tgsession.storage import EntityStorage, Storage

from .harness import Settings

#: Key prefix (Redis) and table prefix (PostgreSQL) of everything the benchmarks store:
#: ``tgsession_bench_<pid>`` per run, so that two runs at once keep apart.
SERVER_PREFIX = "tgsession_bench"
RUN_PREFIX = f"{SERVER_PREFIX}_{os.getpid()}"
_LEFTOVER = re.compile(rf"{SERVER_PREFIX}_(\d+)[:_]")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: StorageSession contenders and the storage each one uses.
OURS = {"ts-memory": "memory", "ts-file": "file", "ts-redis": "redis", "ts-postgres": "postgres"}

_names = itertools.count()
_ENTITY_CHUNK = 20_000


# -- synthetic data --------------------------------------------------------------------------


def entity_row(i: int) -> EntityRow:
    """Row number ``i`` of every stored cache: 90 % users (two in three with a username,
    one in five with a phone), 10 % channels; ids and hashes are deterministic."""
    access_hash = (i * 0x9E3779B97F4A7C15 + 12345) & 0x7FFFFFFFFFFFFFFF
    if i % 10 == 9:
        return (-1000000000000 - (1_000_000 + i), access_hash, f"chan{i}", None,
                f"Channel number {i}")
    return (100_000 + i, access_hash, f"user{i}" if i % 3 else None,
            f"1555{i:07d}" if i % 5 == 0 else None, f"First{i} Last{i}")


def entity_rows(count: int, start: int = 0) -> list[EntityRow]:
    """``count`` realistic cache rows (:func:`entity_row` ``start`` onwards)."""
    return [entity_row(i) for i in range(start, start + count)]


def sample_keys(size: int, count: int, kind: str, seed: int = 7) -> list[Any]:
    """``count`` distinct random lookups of users cached in a store of ``size`` rows, as a
    program passes them to ``get_input_entity``: a user id, ``"userN"``, ``"+1555..."``."""
    rng = random.Random(f"{seed}-{kind}-{size}")
    wanted, share = {
        "id": (lambda i: i % 10 != 9, 0.9),
        "username": (lambda i: i % 10 != 9 and i % 3 != 0, 0.6),
        "phone": (lambda i: i % 5 == 0, 0.2),
    }[kind]
    picked: set[int] = set()
    limit = min(count, int(size * share * 0.9))
    while len(picked) < limit:
        i = rng.randrange(size)
        if wanted(i):
            picked.add(i)
    keys: list[Any] = []
    for i in rng.sample(sorted(picked), len(picked)):
        row = entity_row(i)
        keys.append(row[0] if kind == "id" else row[2] if kind == "username" else "+" + str(row[3]))
    return keys


def session_data(dc: DcAddress, auth_key: bytes, *, inline: Sequence[EntityRow] | None = None
                 ) -> SessionData:
    """A signed-in session: home DC, auth key, user, update state with a few channels."""
    return SessionData(
        dc=dc,
        auth_key=auth_key,
        user_id=SELF_ID,
        bot=False,
        self_access_hash=SELF_HASH,
        updates=UpdateState(pts=1234, qts=0, date=int(time.time()), seq=56,
                            channels={1_000_000 + i: 100 + i for i in range(8)}),
        entities=None if inline is None else list(inline),
    )


FAKE_DC = DcAddress(2, "127.0.0.1", 443)

#: The signed-in user of the stored sessions, and the two rows Telethon keeps for it: the
#: "self" row (id 0, hash = own id) and its own user row.
SELF_ID, SELF_HASH = 7_000_001, 0x5E1F
SELF_ROWS: list[EntityRow] = [
    (0, SELF_ID, None, None, None),
    (SELF_ID, SELF_HASH, "me", None, "Me"),
]


def fake_key() -> bytes:
    return b"\x01" + os.urandom(255)


# -- Telethon's sessions -----------------------------------------------------------------


def write_sqlite(path: Path, dc: DcAddress, auth_key: bytes, rows: Sequence[EntityRow]) -> str:
    """A committed ``SQLiteSession`` file with the key and ``rows``; returns its filename."""
    from telethon.crypto import AuthKey

    session = SQLiteSession(str(path))
    session.set_dc(dc.id, dc.address, dc.port)
    session.auth_key = AuthKey(auth_key)
    now = int(time.time())
    connection: sqlite3.Connection = session._conn
    connection.executemany(
        "insert or replace into entities values (?,?,?,?,?,?)", [(*row, now) for row in rows]
    )
    session.save()
    filename: str = session.filename
    session.close()
    return filename


# -- tgsession's storages --------------------------------------------------------------------


def unique_name(label: str) -> str:
    return f"{label}-{os.getpid()}-{next(_names)}"


def storage_url(settings: Settings, contender: str, name: str) -> str:
    """The storage URL of a StorageSession contender (the child processes use it too)."""
    kind = OURS[contender]
    if kind == "memory":
        return "memory://"
    if kind == "file":
        return (settings.workdir / f"{name}.json").as_uri()
    if kind == "redis":
        assert settings.redis_url
        return _with_query(settings.redis_url, f"name={name}&key_prefix={RUN_PREFIX}")
    assert settings.postgres_url
    return _with_query(settings.postgres_url, f"name={name}&table_prefix={RUN_PREFIX}")


def _with_query(url: str, query: str) -> str:
    """``url`` with ``query`` added (a server URL may have options of its own, such as
    ``?sslmode=disable``)."""
    return f"{url}{'&' if '?' in url else '?'}{query}"


def make_storage(settings: Settings, contender: str, name: str) -> Storage:
    from tgsession.storage.url import storage_from_url

    return storage_from_url(storage_url(settings, contender, name))


async def close_storage(storage: Any) -> None:
    closer = getattr(storage, "aclose", None)
    if closer is not None:
        await closer()


async def store_state(storage: Storage, data: SessionData, rows: Sequence[EntityRow]) -> None:
    """Store ``data`` and ``rows`` as StorageSession would after flushing them."""
    data = dataclasses.replace(data)
    if isinstance(storage, EntityStorage):
        for chunk in _chunks(rows, _ENTITY_CHUNK):
            await storage.store_entities(entity_records(chunk))
        data.entities = None
    else:
        data.entities = list(rows)
    await storage.store_session(encode_session(data))


async def open_session(storage: Storage, *, lock: bool = True) -> StorageSession:
    """Open as a program would."""
    return await StorageSession.open(storage, lock=lock)


@dataclasses.dataclass
class StoredCaches:
    """One stored session with ``size`` cached entities per contender, made once per run.

    ``sqlite`` is the SQLiteSession file; ``names`` the storage name of each StorageSession
    contender (open it with :meth:`storage`). Measures may add a few rows; they never
    remove any.
    """

    size: int
    sqlite: str
    names: dict[str, str]
    memory: Storage | None = None

    @property
    def ours(self) -> list[str]:
        """The StorageSession contenders stored at this size."""
        return list(self.names)

    def storage(self, settings: Settings, contender: str) -> Storage:
        """A new storage object on the contender's stored cache (``ts-memory``: the same)."""
        if contender == "ts-memory":
            assert self.memory is not None
            return self.memory
        return make_storage(settings, contender, self.names[contender])

    async def replace_session(self, settings: Settings, contender: str,
                              data: SessionData) -> None:
        """Store another session document over the cached rows (a key the server knows)."""
        if contender == "sqlite":
            session = SQLiteSession(self.sqlite)
            assert data.dc is not None and data.auth_key is not None
            session.set_dc(data.dc.id, data.dc.address, data.dc.port)
            session.auth_key = AuthKey(data.auth_key)
            session.save()
            session.close()
            return
        storage = self.storage(settings, contender)
        try:
            await storage.store_session(encode_session(dataclasses.replace(data, entities=None)))
        finally:
            if contender != "ts-memory":
                await close_storage(storage)


async def stored_caches(settings: Settings, size: int) -> StoredCaches:
    """The run's stored caches of ``size`` entities (made on first use, for every
    contender available, ts-memory included); rows are :data:`SELF_ROWS` then
    :func:`entity_rows`."""
    made = settings.stored.get(size)
    if made is not None:
        return made
    started = time.perf_counter()
    key = fake_key()
    rows = [*SELF_ROWS, *entity_rows(size)]
    sqlite = write_sqlite(settings.workdir / unique_name(f"cache{size}"), FAKE_DC, key, rows)
    made = StoredCaches(size, sqlite, {})
    for contender in available(settings, OURS):
        if contender == "ts-memory" and size > 100_000:
            continue  # a million rows in this process would skew every other measure
        name = unique_name(f"cache{size}")
        storage = make_storage(settings, contender, name)
        await store_state(storage, session_data(FAKE_DC, key), rows)
        made.names[contender] = name
        if contender == "ts-memory":
            made.memory = storage
        else:
            await close_storage(storage)
    del rows
    settings.stored[size] = made
    if size >= 100_000:
        print(f"  stored caches of {size:,} entities in {time.perf_counter() - started:.0f} s",
              flush=True)
    return made


def change(session: Any, round_: int, new: int = 10) -> None:
    """What an incoming update does to a session: ``new`` new users and a new update state."""
    base = 50_000_000 + round_ * new
    users = [
        types.User(id=base + i, access_hash=base * 31 + i, first_name=f"New{i}",
                   username=f"new{base + i}")
        for i in range(new)
    ]
    session.process_entities(types.Updates(updates=[], users=users, chats=[], date=None, seq=0))
    session.set_update_state(0, types.updates.State(
        pts=10_000 + round_, qts=0, seq=100 + round_, unread_count=0,
        date=datetime.datetime.now(tz=datetime.timezone.utc),
    ))


async def settle(session: StorageSession) -> None:
    """Wait until the background writer started by ``save()`` has finished.

    Uses the writer task rather than ``flush()``, which would force one more write.
    """
    writer: asyncio.Task[None] | None = getattr(session, "_writer", None)
    if writer is None:
        await session.flush()
    elif not writer.done():
        await asyncio.shield(writer)


def _chunks(rows: Sequence[EntityRow], size: int) -> Iterable[Sequence[EntityRow]]:
    for index in range(0, len(rows), size):
        yield rows[index : index + size]


# -- which backends can run ------------------------------------------------------------------


async def probe_backends(settings: Settings) -> None:
    """Fill ``settings.redis_url``/``postgres_url`` and ``unavailable`` (never raises)."""
    settings.redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    settings.postgres_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    for contender in ("ts-redis", "ts-postgres"):
        try:
            storage = make_storage(settings, contender, unique_name("probe"))
        except ImportError as error:
            settings.unavailable[contender] = f"not importable ({error})"
            continue
        except Exception as error:
            settings.unavailable[contender] = f"not configurable ({type(error).__name__}: {error})"
            continue
        try:
            await asyncio.wait_for(_probe(storage), timeout=5)
        except Exception as error:
            reason = str(error) or type(error).__name__
            settings.unavailable[contender] = f"not reachable ({reason[:120]})"
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_storage(storage), timeout=5)
    if "ts-redis" in settings.unavailable:
        settings.redis_url = None
    if "ts-postgres" in settings.unavailable:
        settings.postgres_url = None


async def _probe(storage: Storage) -> None:
    from tgsession import SessionNotFoundError

    with contextlib.suppress(SessionNotFoundError):
        await storage.load_session()


def available(settings: Settings, names: Iterable[str]) -> list[str]:
    return [name for name in names if name not in settings.unavailable]


async def clean_servers(settings: Settings, *, leftovers: bool = False) -> None:
    """Remove every key and table this run created (best effort); with ``leftovers``,
    also those of earlier runs on this host that ended without cleaning up (their
    process is gone). A run that is still going is never touched."""
    prefixes = {RUN_PREFIX}
    if settings.redis_url:
        try:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(settings.redis_url)
            try:
                keys = [key.decode() async for key in client.scan_iter(
                    match=f"{SERVER_PREFIX}_*" if leftovers else f"{RUN_PREFIX}:*")]
                doomed = [key for key in keys if _doomed(key, prefixes)]
                for index in range(0, len(doomed), 1000):
                    await client.delete(*doomed[index : index + 1000])
            finally:
                await client.aclose()
        except Exception as error:
            print(f"note: could not clean Redis keys {RUN_PREFIX}:* ({error})")
    if settings.postgres_url:
        try:
            import asyncpg

            connection = await asyncpg.connect(settings.postgres_url)
            try:
                tables = [RUN_PREFIX + end for end in ("_entities", "_entity_keys", "_sessions")]
                if leftovers:
                    found = await connection.fetch(
                        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                        "AND tablename LIKE $1", f"{SERVER_PREFIX}\\_%")
                    tables += [row["tablename"] for row in found
                               if _doomed(row["tablename"], prefixes)]
                names = ", ".join(f'"{table}"' for table in sorted(set(tables)))
                await connection.execute(f"drop table if exists {names} cascade")
            finally:
                await connection.close()
        except Exception as error:
            print(f"note: could not drop PostgreSQL tables {RUN_PREFIX}_* ({error})")


def _doomed(name: str, ours: set[str]) -> bool:
    """Whether a key or table ``name`` is this run's, or a finished run's on this host."""
    match = _LEFTOVER.match(name)
    if match is None:
        return False
    if f"{SERVER_PREFIX}_{match[1]}" in ours:
        return True
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return True  # that run is gone
    except (PermissionError, OverflowError):
        return False  # alive (another user's), or not a pid
    return False
