"""StorageSession behaves like Telethon's MemorySession, and persists without blocking."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from telethon import TelegramClient
from telethon.crypto import AuthKey
from telethon.sessions import MemorySession
from telethon.tl import types

from tgsession import MemoryStorage, SessionCorruptError, StorageSession
from tgsession.codec import decode_session
from tgsession.storage.base import EntityRecord

UTC = datetime.timezone.utc


def sample_entities() -> types.contacts.ResolvedPeer:
    users = [
        types.User(id=11, access_hash=111, first_name="Ann", last_name="Lee", username="AnnL",
                   phone="15550001"),
        types.User(id=12, access_hash=122, first_name="Bob", username=None, phone=None),
        types.User(id=13, access_hash=None, first_name="NoHash"),
        types.User(id=14, access_hash=144, first_name="Min", min=True),
        types.User(id=15, access_hash=155, first_name="Bot", bot=True, username="echo_bot"),
        types.InputPeerUser(0, 11),  # Telethon's "self" row: id 0, hash = own id
    ]
    chats = [
        types.Chat(id=21, title="Group", photo=types.ChatPhotoEmpty(), participants_count=3,
                   date=datetime.datetime.now(tz=UTC), version=1),
        types.Channel(id=31, title="News", photo=types.ChatPhotoEmpty(),
                      date=datetime.datetime.now(tz=UTC), access_hash=311, username="newschan"),
        types.ChannelForbidden(id=32, access_hash=322, title="Gone"),
    ]
    return types.contacts.ResolvedPeer(peer=types.PeerUser(11), chats=chats, users=users)


LOOKUPS: list[object] = [
    0, 11, 12, 13, 14, 15, -21, -1000000000031, -1000000000032, 21, 31,
    "annl", "@AnnL", "t.me/newschan", "+15550001", "Ann Lee", "News", "echo_bot", "nobody",
    types.PeerUser(11), types.PeerChannel(31), types.PeerChat(21), types.InputPeerSelf(),
]


async def lookup(session: MemorySession, key: object) -> object:
    """What ``get_input_entity`` answers, awaited as Telethon awaits it; "ValueError" if none."""
    try:
        answer = session.get_input_entity(key)
        return await answer if inspect.isawaitable(answer) else answer
    except ValueError:
        return "ValueError"


async def test_input_entities_match_memory_session() -> None:
    ours, theirs = StorageSession(MemoryStorage()), MemorySession()
    for session in (ours, theirs):
        session.process_entities(sample_entities())
    for key in LOOKUPS:
        assert await lookup(ours, key) == await lookup(theirs, key), key


async def test_self_row_gives_own_id() -> None:
    session = StorageSession(MemoryStorage())
    session.process_entities(sample_entities())
    assert session.get_input_entity(0) == types.InputPeerUser(0, 11)


async def test_unknown_entity_raises_value_error() -> None:
    with pytest.raises(ValueError):
        await StorageSession(MemoryStorage()).get_input_entity("nobody_here")
    with pytest.raises(ValueError):  # rows inline: memory is the whole cache, no awaitable
        StorageSession(PlainStorage()).get_input_entity("nobody_here")


async def test_renamed_username_no_longer_resolves_old_name() -> None:
    session = StorageSession(MemoryStorage())
    session.process_entities([types.User(id=5, access_hash=1, username="old")])
    session.process_entities([types.User(id=5, access_hash=1, username="new")])
    assert await lookup(session, "old") == "ValueError"
    assert session.get_input_entity("new") == types.InputPeerUser(5, 1)


async def test_self_user_is_recorded() -> None:
    session = StorageSession(MemoryStorage())
    session.process_entities([types.User(id=99, access_hash=9, is_self=True, bot=True)])
    assert (session.user_id, session.bot) == (99, True)


def fill(session: MemorySession) -> None:
    session.set_dc(4, "127.0.0.1", 4444)
    session.auth_key = AuthKey(os.urandom(256))
    session.takeout_id = 77
    session.set_update_state(0, types.updates.State(
        pts=10, qts=2, date=datetime.datetime(2026, 1, 1, tzinfo=UTC), seq=3, unread_count=0))
    session.set_update_state(1000, types.updates.State(
        pts=55, qts=0, date=datetime.datetime.now(tz=UTC), seq=0, unread_count=0))
    session.process_entities(sample_entities())


class CountingStorage(MemoryStorage):
    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.writes = 0
        self.row_writes: list[int] = []
        self.delay = delay

    async def store_session(self, data: bytes) -> None:
        self.writes += 1
        await asyncio.sleep(self.delay)
        await super().store_session(data)

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        self.row_writes.append(len(records))
        await super().store_entities(records)


@pytest.mark.parametrize("rows_beside", [True, False], ids=["entity-storage", "inline"])
async def test_state_survives_reopen(rows_beside: bool) -> None:
    storage = CountingStorage() if rows_beside else PlainStorage()
    session = await StorageSession.open(storage)
    fill(session)
    session.save()
    await session.flush()
    again = await StorageSession.open(storage)
    assert (again.dc_id, again.server_address, again.port) == (4, "127.0.0.1", 4444)
    assert again.auth_key.key == session.auth_key.key
    assert again.takeout_id == 77
    states = dict(again.get_update_states())
    assert (states[0].pts, states[0].qts, states[0].seq) == (10, 2, 3)
    assert states[0].date == datetime.datetime(2026, 1, 1, tzinfo=UTC)
    assert states[1000].pts == 55
    for key in LOOKUPS:
        assert await lookup(again, key) == await lookup(session, key), key


class PlainStorage:
    """A user's own storage: only the two required methods."""

    def __init__(self) -> None:
        self.data = b""

    async def load_session(self) -> bytes:
        from tgsession import SessionNotFoundError

        if not self.data:
            raise SessionNotFoundError("empty")
        return self.data

    async def store_session(self, data: bytes) -> None:
        self.data = data


class RowsButOneMethod(MemoryStorage):
    """Rows beside the session, but without one method of EntityStorage."""

    count_entities = None  # type: ignore[assignment]


def test_rows_are_kept_beside_the_session_exactly_in_an_entity_storage(tmp_path: Path) -> None:
    from tgsession.keys import generate_key
    from tgsession.session import _keeps_rows
    from tgsession.storage.base import EntityStorage
    from tgsession.storage.encrypted import EncryptedStorage
    from tgsession.storage.file import FileStorage

    storages: list[object] = [
        MemoryStorage(), FileStorage(tmp_path / "s.json"), PlainStorage(), RowsButOneMethod(),
        EncryptedStorage(MemoryStorage(), generate_key()),
        EncryptedStorage(PlainStorage(), generate_key()), None,
    ]
    for storage in storages:
        assert _keeps_rows(storage) == isinstance(storage, EntityStorage), storage
    assert [_keeps_rows(storage) for storage in storages] == [
        True, True, False, False, True, False, False]


async def test_burst_of_saves_coalesces_into_at_most_two_writes() -> None:
    storage = CountingStorage()
    session = await StorageSession.open(storage)
    for _ in range(1000):
        session.save()
    await asyncio.sleep(0.05)
    await session.flush()
    assert 1 <= storage.writes <= 2


async def test_save_returns_before_a_slow_storage_finishes() -> None:
    storage = CountingStorage(delay=0.5)
    session = await StorageSession.open(storage)
    fill(session)
    loop = asyncio.get_running_loop()
    started = loop.time()
    session.save()
    assert loop.time() - started < 0.05
    assert storage.writes == 0
    await session.flush()
    await asyncio.sleep(0.6)
    assert storage.writes >= 1


async def test_only_changed_rows_are_written() -> None:
    storage = CountingStorage()
    session = await StorageSession.open(storage)
    session.process_entities([types.User(id=i, access_hash=i) for i in range(1, 1001)])
    await session.flush()
    session.process_entities([types.User(id=i, access_hash=i) for i in range(1, 1001)])
    session.process_entities([types.User(id=5000, access_hash=1)])
    await session.flush()
    assert storage.row_writes == [1000, 1]


async def test_changed_rows_are_stored_without_waiting_for_a_save() -> None:
    # Telethon saves every 60 s; rows go out sooner, so the hot cache can evict them.
    storage = CountingStorage()
    session = await StorageSession.open(storage, entity_cache_size=10)
    session.process_entities([types.User(id=i, access_hash=i) for i in range(1, 101)])
    for _ in range(100):
        await asyncio.sleep(0.02)
        if await storage.count_entities() == 100:
            break
    assert await storage.count_entities() == 100
    assert storage.writes == 0  # the session document did not change


async def test_writes_are_in_order_and_the_last_state_wins() -> None:
    storage = CountingStorage(delay=0.01)
    session = await StorageSession.open(storage)
    for port in range(1000, 1050):
        session.set_dc(2, "127.0.0.1", port)
        session.save()
        await asyncio.sleep(0.003)
    await session.flush()
    stored = decode_session(await storage.load_session())
    assert stored.dc is not None and stored.dc.port == 1049


class GatedStorage(MemoryStorage):
    """Holds each session write until ``gate`` is set (when there is one)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.writing = asyncio.Event()
        self.in_flight = 0

    async def store_session(self, data: bytes) -> None:
        self.in_flight += 1
        self.writing.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            await super().store_session(data)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("in_flight", ["writer", "flush"])
async def test_a_change_undone_while_its_write_is_in_flight_is_stored(in_flight: str) -> None:
    # A save of the state last stored writes nothing; one made while another state is
    # being written must still be written, or the storage would keep the undone change.
    storage = GatedStorage()
    session = await StorageSession.open(storage)
    session.set_dc(2, "127.0.0.1", 1000)
    await session.flush()
    storage.gate, storage.writing = asyncio.Event(), asyncio.Event()
    session.set_dc(2, "127.0.0.1", 2000)
    if in_flight == "writer":
        session.save()
        flushing = None
    else:
        flushing = asyncio.ensure_future(session.flush())
    await storage.writing.wait()  # port 2000 is being written
    session.set_dc(2, "127.0.0.1", 1000)
    session.save()
    storage.gate.set()
    if flushing is not None:
        await flushing
    stored = None
    for _ in range(200):  # until nothing is being written and port 1000 is stored (2 s)
        dc = decode_session(await storage.load_session()).dc
        stored = None if dc is None else dc.port
        if stored == 1000 and storage.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert stored == 1000


async def _reopened_after_fill(storage: MemoryStorage) -> StorageSession:
    """A session opened from what another one, filled by :func:`fill`, stored."""
    session = await StorageSession.open(storage)
    fill(session)
    await session.flush()
    return await StorageSession.open(storage)


async def test_a_save_of_the_stored_state_writes_nothing() -> None:
    storage = CountingStorage()
    again = await _reopened_after_fill(storage)
    writes = storage.writes
    for _ in range(3):
        again.save()
        await asyncio.sleep(0.01)
    assert storage.writes == writes
    again.takeout_id = 78  # a change is written
    again.save()
    await asyncio.sleep(0.01)
    assert storage.writes == writes + 1


async def test_an_update_state_telethon_never_asked_for_is_stored_again_as_it_was() -> None:
    storage = CountingStorage()
    again = await _reopened_after_fill(storage)
    again.set_dc(4, "127.0.0.1", 4445)  # write the document, update state untouched
    await again.flush()
    third = await StorageSession.open(storage)
    states = dict(third.get_update_states())
    assert (states[0].pts, states[0].qts, states[0].seq) == (10, 2, 3)
    assert states[0].date == datetime.datetime(2026, 1, 1, tzinfo=UTC)
    assert states[1000].pts == 55 and sorted(states) == [0, 1000]


async def test_forgetting_the_account_drops_an_update_state_never_asked_for() -> None:
    storage = CountingStorage()
    again = await _reopened_after_fill(storage)
    await again.forget_account()
    assert decode_session(await storage.load_session()).updates is None
    assert list(again.get_update_states()) == []


class FlakyStorage(MemoryStorage):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def store_session(self, data: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("disk on fire")
        await super().store_session(data)


async def test_failed_write_is_logged_kept_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    storage = FlakyStorage(failures=3)
    session = await StorageSession.open(storage)
    fill(session)
    with caplog.at_level(logging.ERROR, logger="tgsession"):
        session.save()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if storage.failures == 0 and storage._data:
                break
    assert "could not store the session" in caplog.text
    assert decode_session(await storage.load_session()).dc is not None


async def test_flush_raises_the_storage_error() -> None:
    storage = FlakyStorage(failures=100)
    session = StorageSession(storage)
    session.set_dc(2, "127.0.0.1", 1)
    session._dirty = True
    with pytest.raises(OSError, match="disk on fire"):
        await session.flush()


async def test_disconnect_flushes() -> None:
    storage = CountingStorage()
    session = await StorageSession.open(storage)
    client = TelegramClient(session, 1, "0" * 32)
    session.set_dc(2, "127.0.0.1", 9)
    session.save()
    await client.disconnect()
    assert storage.writes >= 1
    assert decode_session(await storage.load_session()).dc is not None


NO_WARNING_PROGRAM = """
import asyncio
from telethon import TelegramClient
from tgsession import MemoryStorage, StorageSession

async def main():
    session = await StorageSession.open(MemoryStorage())
    client = TelegramClient(session, 1, "0" * 32)
    session.set_dc(2, "127.0.0.1", 9)
    session.save()
    await client.disconnect()
    print("disconnected")

asyncio.run(main())
"""


def test_telethon_gives_no_experimental_async_session_warning() -> None:
    # A new process: pytest rewrites warning filters, a user's program does not.
    result = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", NO_WARNING_PROGRAM],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "disconnected" in result.stdout
    assert "experimental" not in result.stderr


async def test_clone_is_memory_only() -> None:
    session = StorageSession(MemoryStorage())
    session.save_entities = False
    clone = session.clone()
    assert isinstance(clone, StorageSession) and clone.storage is None
    assert clone.save_entities is False
    clone.save()  # nothing to write to, and no error


async def test_delete_removes_the_stored_session() -> None:
    storage = MemoryStorage()
    session = await StorageSession.open(storage)
    fill(session)
    await session.flush()
    await session.delete()
    reopened = await StorageSession.open(storage)
    assert reopened.auth_key is None
    assert await storage.count_entities() == 0


async def test_corrupt_session_is_refused_and_left_untouched() -> None:
    storage = MemoryStorage(b'{"format": "tgsession", "version": 1, "auth_key": "AAAA"}')
    with pytest.raises(SessionCorruptError, match="auth_key"):
        await StorageSession.open(storage)
    assert await storage.load_session() == (
        b'{"format": "tgsession", "version": 1, "auth_key": "AAAA"}'
    )


async def test_repr_hides_the_auth_key() -> None:
    session = StorageSession(MemoryStorage())
    fill(session)
    text = repr(session) + str(session) + repr(session.snapshot())
    key = session.auth_key.key
    assert key.hex() not in text and key.hex().upper() not in text
    import base64

    assert base64.b64encode(key).decode() not in text


class LosableLease:
    holder = "pid 1 on test"

    def __init__(self) -> None:
        self.lost = asyncio.Event()
        self.released = False

    async def check(self) -> None:
        pass

    async def release(self) -> None:
        self.released = True

    async def wait_lost(self) -> None:
        await self.lost.wait()


class LeasedStorage(CountingStorage):
    def __init__(self) -> None:
        super().__init__()
        self.lease = LosableLease()

    async def acquire(self, *, wait: float = 0.0) -> LosableLease:
        return self.lease


async def test_lost_lease_stops_writes_and_tells_the_client() -> None:
    from tgsession import LeaseLostError

    storage = LeasedStorage()
    session = await StorageSession.open(storage)
    told: list[bool] = []
    session.on_lease_lost(lambda: told.append(True))
    storage.lease.lost.set()
    await asyncio.sleep(0.01)
    assert told == [True] and session.lease_lost
    session.save()
    await asyncio.sleep(0.01)
    assert storage.writes == 0
    with pytest.raises(LeaseLostError):
        await session.flush()
    await session.release()
    assert storage.lease.released and storage.writes == 0


async def test_close_releases_the_lease_after_the_last_write() -> None:
    storage = LeasedStorage()
    session = await StorageSession.open(storage)
    fill(session)
    await session.release()
    assert storage.lease.released and storage.writes == 1


