"""The entity cache: a bounded hot cache in memory, point lookups in the storage behind it."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from telethon.sessions import SQLiteSession
from telethon.tl import types

from tgsession import FileStorage, MemoryStorage, StorageSession
from tgsession.codec import decode_session
from tgsession.entities import DEFAULT_ENTITY_CACHE_SIZE, INLINE_ENTITY_LIMIT, iter_entity_rows
from tgsession.storage.base import EntityRecord, Storage
from tgsession.testing import FakeTelegram

from .test_session import PlainStorage


async def lookup(session: object, key: object) -> object:
    """What ``get_input_entity`` answers, awaited as Telethon awaits it; "ValueError" if none."""
    try:
        answer = session.get_input_entity(key)  # type: ignore[attr-defined]
        return await answer if inspect.isawaitable(answer) else answer
    except ValueError:
        return "ValueError"


def users(ids: Sequence[int]) -> list[types.User]:
    return [types.User(id=i, access_hash=i * 10, first_name=f"U{i}", username=f"user{i}")
            for i in ids]


class CountingStorage(MemoryStorage):
    """MemoryStorage counting the entity calls it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.stored_rows = 0

    async def get_entity(self, entity_id: int) -> bytes | None:
        self.calls.append(f"get {entity_id}")
        return await super().get_entity(entity_id)

    async def find_entity(self, key: str) -> tuple[int, bytes] | None:
        self.calls.append(f"find {key}")
        return await super().find_entity(key)

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        self.stored_rows += len(records)
        await super().store_entities(records)

    def iter_entities(self, batch: int = 1000):  # type: ignore[no-untyped-def]
        self.calls.append("iter")
        return super().iter_entities(batch)


async def stored_session(rows: list[types.User], storage: MemoryStorage | None = None,
                         ) -> MemoryStorage:
    storage = storage if storage is not None else CountingStorage()
    session = await StorageSession.open(storage)
    session.set_dc(2, "127.0.0.1", 1)
    session.process_entities(rows)
    await session.release()
    return storage


# -- bounded memory ------------------------------------------------------------------------


async def test_default_size_is_documented_and_used() -> None:
    session = StorageSession(MemoryStorage())
    assert session.entity_cache_size == DEFAULT_ENTITY_CACHE_SIZE == 10_000


async def test_hot_cache_holds_at_most_entity_cache_size_rows() -> None:
    storage = CountingStorage()
    session = await StorageSession.open(storage, entity_cache_size=100)
    session.process_entities(users(range(1, 1001)))
    assert session.entity_count == 100
    await session.flush()
    assert await storage.count_entities() == 1000  # all of them stored


@pytest.mark.parametrize("size", [0, -1, 1.5, "10", True])
async def test_entity_cache_size_must_be_a_positive_integer(size: object) -> None:
    with pytest.raises(ValueError, match="entity_cache_size"):
        await StorageSession.open(MemoryStorage(), entity_cache_size=size)  # type: ignore[arg-type]


async def test_opening_reads_no_entity_rows() -> None:
    storage = await stored_session(users(range(1, 501)))
    assert isinstance(storage, CountingStorage)
    storage.calls.clear()
    session = await StorageSession.open(storage)
    assert storage.calls == [] and session.entity_count == 0
    await session.entities_loaded()  # kept for compatibility: nothing to wait for
    assert storage.calls == []


async def test_least_recently_used_row_is_evicted_first() -> None:
    storage = await stored_session(users([1, 2, 3]))
    session = await StorageSession.open(storage, entity_cache_size=2)
    assert await lookup(session, 1) == types.InputPeerUser(1, 10)
    assert await lookup(session, 2) == types.InputPeerUser(2, 20)
    assert session.get_input_entity(1) == types.InputPeerUser(1, 10)  # a hit: 1 is recent
    assert await lookup(session, 3) == types.InputPeerUser(3, 30)  # evicts 2, not 1
    assert session.get_input_entity(1) == types.InputPeerUser(1, 10)
    assert inspect.isawaitable(pending := session.get_input_entity(2))
    assert await pending == types.InputPeerUser(2, 20)


async def test_evicted_row_is_looked_up_again_in_the_storage_then_hot() -> None:
    storage = await stored_session(users(range(1, 11)))
    assert isinstance(storage, CountingStorage)
    session = await StorageSession.open(storage, entity_cache_size=3)
    session.process_entities(users(range(1, 11)))  # seen again: only the last three stay
    await session.flush()
    storage.calls.clear()
    miss = session.get_input_entity(1)
    assert inspect.isawaitable(miss)
    assert await miss == types.InputPeerUser(1, 10)
    assert storage.calls == ["get 1"]
    assert session.get_input_entity(1) == types.InputPeerUser(1, 10)  # synchronous now
    assert storage.calls == ["get 1"]


async def test_memory_does_not_grow_with_lookups_across_a_large_stored_cache() -> None:
    storage = await stored_session(users(range(1, 5001)))
    session = await StorageSession.open(storage, entity_cache_size=50)
    for i in range(1, 5001, 7):
        assert await lookup(session, f"user{i}") == types.InputPeerUser(i, i * 10)
    assert session.entity_count == 50


# -- the same answers as Telethon's SQLiteSession -------------------------------------------


def telethon_history() -> list[list[object]]:
    """Batches of what Telethon hands process_entities, with renames and a moved username."""
    return [
        [types.User(id=11, access_hash=111, first_name="Ann", last_name="Lee", username="AnnL",
                    phone="15550001"),
         types.User(id=12, access_hash=122, first_name="Bob", phone="15550002"),
         types.User(id=13, access_hash=None, first_name="NoHash"),
         types.User(id=14, access_hash=144, first_name="Min", min=True),
         types.User(id=20, access_hash=200, first_name="Old", username="taken")],
        [types.Channel(id=31, title="News", photo=types.ChatPhotoEmpty(), date=None,
                       access_hash=311, username="newschan"),
         types.Chat(id=21, title="Group", photo=types.ChatPhotoEmpty(), participants_count=3,
                    date=None, version=1),
         types.ChannelForbidden(id=32, access_hash=322, title="Gone")],
        [types.User(id=12, access_hash=122, first_name="Robert", username="bobby",
                    phone="15550002"),
         types.User(id=11, access_hash=111, first_name="Ann", last_name="Lee", username="ann2",
                    phone="15550001")],
        # The username "taken" moves from user 20 to user 25 (a higher id: SQLiteSession's
        # tie-break within one second is the id order).
        [types.User(id=25, access_hash=250, first_name="New", username="taken")],
    ]


KEYS: list[object] = [
    0, 11, 12, 13, 14, 20, 25, -21, 21, 31, 32, -1000000000031, -1000000000032,
    "annl", "ann2", "@ANN2", "bobby", "t.me/newschan", "https://t.me/newschan", "newschan",
    "taken", "+15550001", "+1 555 0002", "15550002", "Ann Lee", "Robert", "Bob", "News",
    "Group", "Gone", "nobody", "+19999999",
    types.PeerUser(11), types.PeerChannel(31), types.PeerChat(21), types.PeerUser(99),
    types.InputPeerSelf(), types.InputPeerUser(5, 6),
]


def storage_of_kind(kind: str, folder: Path) -> Storage:
    """A fresh storage: memory, file, or encrypted (rows sealed, lookup keys blinded)."""
    if kind == "memory":
        return MemoryStorage()
    if kind == "file":
        return FileStorage(folder / "session.json")
    pytest.importorskip("cryptography")
    from tgsession import EncryptedStorage

    return EncryptedStorage(MemoryStorage(), os.urandom(32))


@pytest.mark.parametrize("kind", ["memory", "file", "encrypted"])
@pytest.mark.parametrize("size", [1, 2, 1000])
async def test_lookups_after_a_restart_match_sqlite_session(
    size: int, kind: str, tmp_path: Path
) -> None:
    theirs = SQLiteSession()
    storage = storage_of_kind(kind, tmp_path)
    ours = await StorageSession.open(storage, entity_cache_size=size)
    for batch in telethon_history():
        theirs.process_entities(batch)
        ours.process_entities(batch)
    await ours.release()
    restarted = await StorageSession.open(storage, entity_cache_size=size)
    for key in KEYS:
        expected = await lookup(theirs, key)
        assert await lookup(ours, key) == expected, key
        assert await lookup(restarted, key) == expected, key
    await restarted.release()


async def test_moved_username_finds_its_new_holder() -> None:
    storage = await stored_session([types.User(id=7, access_hash=70, username="bob")])
    await stored_session([types.User(id=3, access_hash=30, username="bob")], storage)
    session = await StorageSession.open(storage)
    assert await lookup(session, "bob") == types.InputPeerUser(3, 30)
    # Reading the old holder by id does not give it the username back.
    assert await lookup(session, 7) == types.InputPeerUser(7, 70)
    assert await lookup(session, "bob") == types.InputPeerUser(3, 30)
    fresh = await StorageSession.open(storage)
    assert await lookup(fresh, 7) == types.InputPeerUser(7, 70)
    assert await lookup(fresh, "@bob") == types.InputPeerUser(3, 30)


async def test_a_username_given_up_is_not_found_by_its_stale_key() -> None:
    storage = await stored_session([types.User(id=7, access_hash=70, username="bob")])
    await stored_session([types.User(id=7, access_hash=70, username="robert")], storage)
    assert await storage.find_entity("username:bob") is not None  # the stale key is there
    session = await StorageSession.open(storage)
    assert await lookup(session, "bob") == "ValueError"
    assert await lookup(session, "robert") == types.InputPeerUser(7, 70)


async def test_a_row_changed_in_memory_wins_over_its_stored_version() -> None:
    storage = await stored_session([types.User(id=7, access_hash=70, username="bob")])
    session = await StorageSession.open(storage, entity_cache_size=1)
    session.process_entities([types.User(id=7, access_hash=70, username="robert")])
    session.process_entities([types.User(id=8, access_hash=80)])  # evicts 7 from memory
    assert await lookup(session, "bob") == "ValueError"
    assert await lookup(session, "robert") == types.InputPeerUser(7, 70)


class BlockedRowsStorage(MemoryStorage):
    """Row writes wait until ``open`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        await self.open.wait()
        await super().store_entities(records)


async def test_rows_not_stored_yet_are_found_after_eviction() -> None:
    storage = BlockedRowsStorage()
    session = await StorageSession.open(storage, entity_cache_size=2)
    session.process_entities(users(range(1, 11)))
    await asyncio.sleep(0.01)  # the writer is now waiting inside store_entities
    assert await lookup(session, "user1") == types.InputPeerUser(1, 10)
    assert await lookup(session, 2) == types.InputPeerUser(2, 20)
    storage.open.set()
    await session.release()
    assert await storage.count_entities() == 10


async def test_a_torn_row_costs_one_lookup(caplog: pytest.LogCaptureFixture) -> None:
    storage = await stored_session(users([1, 2]))
    await storage.store_entities([(1, b'[1, 10, "user1", nul', ("username:user1",))])
    session = await StorageSession.open(storage)
    with caplog.at_level(logging.WARNING, logger="tgsession"):
        assert await lookup(session, "user1") == "ValueError"
        assert await lookup(session, 1) == "ValueError"
    assert "unreadable cached entity" in caplog.text
    assert await lookup(session, "user2") == types.InputPeerUser(2, 20)
    session.process_entities(users([1]))  # Telegram tells us again: repaired
    await session.release()
    again = await StorageSession.open(storage)
    assert await lookup(again, "user1") == types.InputPeerUser(1, 10)


class DownStorage(MemoryStorage):
    async def get_entity(self, entity_id: int) -> bytes | None:
        raise OSError("storage unreachable")

    async def find_entity(self, key: str) -> tuple[int, bytes] | None:
        raise OSError("storage unreachable")


async def test_an_unreachable_storage_is_a_cache_miss(caplog: pytest.LogCaptureFixture) -> None:
    session = await StorageSession.open(DownStorage())
    with caplog.at_level(logging.WARNING, logger="tgsession"):
        assert await lookup(session, "someone") == "ValueError"
        assert await lookup(session, 5) == "ValueError"
    assert "could not look up a cached entity" in caplog.text


async def test_stored_rows_stream_decoded_in_bounded_batches() -> None:
    storage = await stored_session(users(range(1, 2501)))
    await storage.store_entities([(9999, b"torn", ())])
    batches = [rows async for rows in iter_entity_rows(storage, batch=1000)]
    assert max(map(len, batches)) <= 1000
    assert sorted(row[0] for rows in batches for row in rows) == list(range(1, 2501))


# -- save_entities = False ----------------------------------------------------------------


@pytest.mark.parametrize("storage_kind", ["entity-storage", "inline"])
async def test_save_entities_false_caches_and_stores_nothing(storage_kind: str) -> None:
    storage: MemoryStorage | PlainStorage = (
        MemoryStorage() if storage_kind == "entity-storage" else PlainStorage()
    )
    session = await StorageSession.open(storage)
    session.save_entities = False
    session.set_dc(2, "127.0.0.1", 1)
    session.process_entities([types.User(id=11, access_hash=111, first_name="Ann",
                                         username="ann", phone="15550001")])
    await session.release()
    assert session.entity_count == 0
    raw = await storage.load_session()
    assert b"15550001" not in raw and b"ann" not in raw
    assert decode_session(raw).entities in (None, [])
    if isinstance(storage, MemoryStorage):
        assert await storage.count_entities() == 0
    assert await lookup(session, "ann") == "ValueError"


# -- a two-method storage: rows inline, bounded ---------------------------------------------


async def test_inline_cache_keeps_the_most_recently_used_rows() -> None:
    storage = PlainStorage()
    session = await StorageSession.open(storage, entity_cache_size=3)
    session.process_entities(users(range(1, 11)))
    assert session.get_input_entity(9) == types.InputPeerUser(9, 90)  # 9 is now the newest
    await session.release()
    rows = decode_session(storage.data).entities
    assert [row[0] for row in rows or []] == [8, 10, 9]
    again = await StorageSession.open(storage, entity_cache_size=3)
    assert again.get_input_entity("user10") == types.InputPeerUser(10, 100)
    with pytest.raises(ValueError):  # inline, memory is the whole cache: no awaitable
        again.get_input_entity("user1")


async def test_the_session_document_keeps_at_most_the_inline_limit_of_rows() -> None:
    storage = PlainStorage()
    session = await StorageSession.open(storage, entity_cache_size=INLINE_ENTITY_LIMIT + 500)
    session.process_entities(users(range(1, INLINE_ENTITY_LIMIT + 501)))
    assert session.entity_count == INLINE_ENTITY_LIMIT + 500  # memory holds them all
    await session.release()
    rows = decode_session(storage.data).entities or []
    assert [row[0] for row in rows] == list(range(501, INLINE_ENTITY_LIMIT + 501))


async def test_an_old_inline_document_moves_its_rows_into_the_entity_storage() -> None:
    plain = PlainStorage()
    session = await StorageSession.open(plain)
    session.process_entities(users(range(1, 21)))
    await session.release()
    storage = MemoryStorage(plain.data)
    moved = await StorageSession.open(storage, entity_cache_size=5)
    moved.save()
    await moved.release()
    assert await storage.count_entities() == 20
    assert decode_session(await storage.load_session()).entities is None


# -- failures of the entity store never hold back the session (#13 item 7) ------------------


class FailingRowsStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.row_attempts = 0

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        self.row_attempts += 1
        if self.broken:
            raise PermissionError("entity store is readable by others: refused")
        await super().store_entities(records)


async def test_a_failing_entity_store_does_not_hold_back_the_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = FailingRowsStorage()
    session = await StorageSession.open(storage)
    with caplog.at_level(logging.ERROR, logger="tgsession"):
        session.set_dc(2, "127.0.0.1", 1)
        session.process_entities(users([1, 2, 3]))
        session.save()
        await session.flush()  # does not raise: the document is stored
    stored = decode_session(await storage.load_session())
    assert stored.dc is not None and stored.dc.port == 1
    assert "could not store cached entities" in caplog.text
    assert await storage.count_entities() == 0
    # Retried in the background; stored once the entity store works again.
    storage.broken = False
    for _ in range(100):
        if await storage.count_entities() == 3:
            break
        await asyncio.sleep(0.05)
    assert await storage.count_entities() == 3
    await session.release()


async def test_closing_with_a_failing_entity_store_still_stores_the_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = FailingRowsStorage()
    session = await StorageSession.open(storage)
    session.set_dc(2, "127.0.0.1", 7)
    session.process_entities(users([1]))
    with caplog.at_level(logging.WARNING, logger="tgsession"):
        await session.release()
    stored = decode_session(await storage.load_session())
    assert stored.dc is not None and stored.dc.port == 7
    assert "1 cached entities could not be stored" in caplog.text


# -- delete() without close() (#13 item 9) --------------------------------------------------


async def test_delete_without_close_releases_the_lease(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    session = await StorageSession.open(FileStorage(path))
    session.set_dc(2, "127.0.0.1", 1)
    session.process_entities(users([1]))
    await session.flush()
    await session.delete()
    again = await StorageSession.open(FileStorage(path))  # no SessionLockedError
    assert again.auth_key is None and again.server_address is None
    assert await lookup(again, "user1") == "ValueError"
    await again.release()


async def test_forgetting_the_account_clears_the_stored_rows() -> None:
    storage = await stored_session(users([1, 2]))
    session = await StorageSession.open(storage)
    await session.forget_account()
    assert await storage.count_entities() == 0
    assert await lookup(session, "user1") == "ValueError"
    await session.release()


# -- through a real Telethon client ---------------------------------------------------------


async def test_a_real_client_resolves_from_the_stored_cache_after_a_restart(
    tg: FakeTelegram,
) -> None:
    me, friend = tg.add_user(first_name="Me"), tg.add_user(first_name="Fr", username="friend")
    key = tg.preauthorize(me)
    storage = MemoryStorage()
    session = await StorageSession.open(storage, entity_cache_size=1)
    key.apply_to(session)
    client = tg.client(session)
    async with client:
        assert (await client.get_input_entity("@friend")).user_id == friend.id
        for _ in range(3):  # fill the one-row hot cache with others
            other = tg.add_user(username=None)
            await client.get_entity(types.InputPeerUser(other.id, other.access_hash))
    assert tg.call_count("contacts.resolveUsername") == 1
    tg.reset_counts()

    restarted = await StorageSession.open(storage, entity_cache_size=1)
    client = tg.client(restarted)
    async with client:
        peer = await client.get_input_entity("@friend")
        assert (peer.user_id, peer.access_hash) == (friend.id, friend.access_hash)
        assert (await client.get_entity(peer)).id == friend.id  # the stored hash works
    assert tg.call_count("contacts.resolveUsername") == 0


@pytest.mark.parametrize("planted", ["readable-by-others", "symlink"])
async def test_an_unusable_entity_file_does_not_hold_back_the_session_file(
    tmp_path: Path, planted: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "session.json"
    storage = FileStorage(path)
    session = await StorageSession.open(storage)
    session.set_dc(2, "127.0.0.1", 1)
    session.process_entities(users([1]))
    await session.release()
    entities = storage.entities_path
    assert entities.exists()
    if planted == "symlink":
        for leftover in entities.parent.glob(entities.name + "*"):
            leftover.unlink()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.write_bytes(b"")
        entities.symlink_to(elsewhere)
    else:
        entities.chmod(0o644)

    again = await StorageSession.open(FileStorage(path))
    with caplog.at_level(logging.ERROR, logger="tgsession"):
        again.set_dc(2, "127.0.0.1", 2)
        again.process_entities(users([2]))
        again.save()
        await again.flush()  # the session file is written regardless
    assert "could not store cached entities" in caplog.text
    stored = decode_session(path.read_bytes())
    assert stored.dc is not None and stored.dc.port == 2
    await again.release()
    if planted == "symlink":
        assert (tmp_path / "elsewhere").read_bytes() == b""  # never written through


async def test_the_factories_pass_entity_cache_size_on() -> None:
    from tgsession import client_from_environment

    client = await client_from_environment(
        env={"APP_ID": "1", "APP_HASH": "0" * 32}, dotenv=False, storage=MemoryStorage(),
        entity_cache_size=7,
    )
    assert client.session.entity_cache_size == 7
    await client.disconnect()
