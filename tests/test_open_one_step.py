"""Opening a session takes the lease and reads the session in one step (issue 15).

Every storage of tgsession has ``acquire_and_load``: Redis one script call, PostgreSQL
one statement, FileStorage one worker-thread hop. ``StorageSession.open`` uses it, and
falls back to ``acquire`` + ``load_session`` for a storage without it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import services
from tests.services import forget_postgres_session, forget_redis_session, with_name
from tgsession import SessionLockedError, SessionStorageError
from tgsession.codec import DcAddress, SessionData, encode_session
from tgsession.session import StorageSession
from tgsession.storage.file import FileStorage
from tgsession.testing import FakeTelegram

redis_url = services.redis_url  # a fixture
postgres_url = services.postgres_url  # a fixture

KEY = b"\x05" * 256


def _document(port: int = 443) -> bytes:
    return encode_session(SessionData(dc=DcAddress(2, "127.0.0.1", port), auth_key=KEY))


@pytest.fixture
def session_path(tmp_path: Path) -> Path:
    folder = tmp_path / "sessions"
    return folder / "session.json"


async def test_file_acquire_and_load_returns_the_lease_and_the_bytes(session_path: Path) -> None:
    first = FileStorage(session_path)
    async with await first.acquire():
        await first.store_session(_document())
    storage = FileStorage(session_path)
    lease, data = await storage.acquire_and_load()
    try:
        assert data == _document()
        with pytest.raises(SessionLockedError):
            await FileStorage(session_path).acquire_and_load()
    finally:
        await lease.release()


async def test_file_acquire_and_load_of_nothing_stored_gives_none(session_path: Path) -> None:
    storage = FileStorage(session_path)
    lease, data = await storage.acquire_and_load()
    await lease.release()
    assert data is None
    session_path.write_bytes(b"")
    session_path.chmod(0o600)
    lease, data = await storage.acquire_and_load()
    await lease.release()
    assert data is None


async def test_file_acquire_and_load_of_an_insecure_file_refuses_and_gives_the_lock_back(
    session_path: Path,
) -> None:
    storage = FileStorage(session_path)
    async with await storage.acquire():
        await storage.store_session(_document())
    session_path.chmod(0o644)
    with pytest.raises(SessionStorageError, match="chmod 600"):
        await storage.acquire_and_load()
    assert session_path.read_bytes() == _document()  # left untouched
    lease = await FileStorage(session_path).acquire()  # the lock was given back
    await lease.release()


async def test_session_open_reads_through_acquire_and_load(session_path: Path) -> None:
    storage = FileStorage(session_path)
    async with await storage.acquire():
        await storage.store_session(_document(port=4430))
    session = await StorageSession.open(FileStorage(session_path))
    try:
        assert session.port == 4430
        assert session.auth_key is not None and session.auth_key.key == KEY
    finally:
        await session.close()


async def test_encrypted_acquire_and_load_decrypts_and_releases_on_a_wrong_key(
    session_path: Path,
) -> None:
    from tgsession import SessionDecryptError
    from tgsession.keys import generate_key
    from tgsession.storage.encrypted import EncryptedStorage

    key = generate_key()
    sealed = EncryptedStorage(FileStorage(session_path), key)
    async with await sealed.acquire():  # type: ignore[attr-defined]
        await sealed.store_session(_document())
    lease, data = await EncryptedStorage(FileStorage(session_path), key).acquire_and_load()  # type: ignore[attr-defined]
    await lease.release()
    assert data == _document()
    wrong = EncryptedStorage(FileStorage(session_path), generate_key())
    with pytest.raises(SessionDecryptError):
        await wrong.acquire_and_load()  # type: ignore[attr-defined]
    lease = await FileStorage(session_path).acquire()  # released after the failure
    await lease.release()


# -- Redis ---------------------------------------------------------------------------------


class _Recorder:
    """A TCP proxy in front of Redis that records what clients send."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = bytearray()
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> _Recorder:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, record: bool) -> None:
            while chunk := await src.read(65536):
                if record:
                    self.sent.extend(chunk)
                dst.write(chunk)
                await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False),
                             return_exceptions=True)


@pytest.fixture
async def redis_name(redis_url: str) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex}"
    yield name
    await forget_redis_session(redis_url, name)


async def test_redis_opens_with_one_script_call_and_no_client_info(
    redis_url: str, redis_name: str
) -> None:
    from urllib.parse import urlsplit

    from tgsession.storage.redis import RedisStorage

    writer = RedisStorage.from_url(with_name(redis_url, redis_name))
    async with writer, await writer.acquire():
        await writer.store_session(_document())
    parts = urlsplit(redis_url)
    async with _Recorder(parts.port or 6379) as proxy:
        url = redis_url.replace(parts.netloc.rpartition("@")[2], proxy.address)
        storage = RedisStorage.from_url(with_name(url, redis_name))
        try:
            lease, data = await storage.acquire_and_load()
            await lease.release()
        finally:
            await storage.aclose()
        sent = bytes(proxy.sent).upper()
    assert data == _document()
    # No handshake beyond the database's SELECT: no HELLO (RESP2 is enough), no
    # maintenance notifications, no client info.
    for needless in (b"HELLO", b"MAINT_NOTIFICATIONS", b"SETINFO"):
        assert needless not in sent
    assert b"$3\r\nGET\r\n" not in sent  # the session came with the lease, no second call
    assert b"EVALSHA" in sent


async def test_redis_acquire_and_load_of_nothing_stored_and_of_a_held_lease(
    redis_url: str, redis_name: str
) -> None:
    from tgsession.storage.redis import RedisStorage

    async with RedisStorage.from_url(with_name(redis_url, redis_name)) as storage:
        lease, data = await storage.acquire_and_load()
        assert data is None
        async with RedisStorage.from_url(with_name(redis_url, redis_name)) as other:
            with pytest.raises(SessionLockedError):
                await other.acquire_and_load()
        await lease.release()


# -- PostgreSQL ----------------------------------------------------------------------------


async def test_postgres_acquire_and_load_in_fresh_tables(postgres_url: str) -> None:
    import asyncpg

    from tgsession.storage.postgres import PostgresStorage

    prefix = f"t{uuid.uuid4().hex[:12]}"
    url = with_name(postgres_url, "one", table_prefix=prefix)
    try:
        async with PostgresStorage.from_url(url) as storage:
            lease, data = await storage.acquire_and_load()  # creates the tables on the way
            assert data is None
            await storage.store_session(_document())
            await lease.release()
        async with PostgresStorage.from_url(url) as storage:
            lease, data = await storage.acquire_and_load()
            assert data == _document()
            async with PostgresStorage.from_url(url) as other:
                with pytest.raises(SessionLockedError):
                    await other.acquire_and_load()
            await lease.release()
    finally:
        conn = await asyncpg.connect(postgres_url)
        try:
            for table in ("sessions", "entities", "entity_keys"):
                await conn.execute(f'DROP TABLE IF EXISTS "{prefix}_{table}"')
        finally:
            await conn.close()


async def test_postgres_session_open_after_a_missing_row(postgres_url: str) -> None:
    from tgsession.storage.postgres import PostgresStorage

    name = f"test-{uuid.uuid4().hex}"
    try:
        storage = PostgresStorage.from_url(with_name(postgres_url, name))
        session = await StorageSession.open(storage, close_storage=True)
        assert session.auth_key is None
        await session.close()
    finally:
        await forget_postgres_session(postgres_url, name)


def test_every_lockable_storage_of_tgsession_has_acquire_and_load() -> None:
    from tgsession.storage.postgres import PostgresStorage
    from tgsession.storage.redis import RedisStorage

    for kind in (FileStorage, RedisStorage, PostgresStorage):
        assert callable(getattr(kind, "acquire_and_load", None)), kind
    assert os.name  # keeps the import used on every platform


async def test_a_restart_that_changes_nothing_writes_no_session_document(
    tg: FakeTelegram, session_path: Path
) -> None:
    me = tg.add_user(first_name="Me")
    key = tg.preauthorize(me)
    first = await StorageSession.open(FileStorage(session_path))
    key.apply_to(first)
    async with tg.client(first) as client:
        await client.get_me()
    written = session_path.stat().st_ino  # every write is a new file renamed over it

    restarted = await StorageSession.open(FileStorage(session_path))
    async with tg.client(restarted) as client:
        assert (await client.get_me()).id == me.id
        await asyncio.sleep(0.05)  # the background writer would have run by now
        assert session_path.stat().st_ino == written
        restarted.set_user(me.id, True)  # a real change is still written
        await restarted.flush()
        assert session_path.stat().st_ino != written


class _TrackedLease:
    holder = "pid 1 on test"

    def __init__(self) -> None:
        self.released = False

    async def check(self) -> None:
        pass

    async def release(self) -> None:
        self.released = True


class _PlainLockable:
    """A user's storage: Lockable, but without acquire_and_load."""

    def __init__(self) -> None:
        self.data = b""
        self.leases: list[_TrackedLease] = []

    async def load_session(self) -> bytes:
        from tgsession import SessionNotFoundError

        if not self.data:
            raise SessionNotFoundError("nothing stored")
        return self.data

    async def store_session(self, data: bytes) -> None:
        self.data = bytes(data)

    async def acquire(self, *, wait: float = 0.0) -> _TrackedLease:
        self.leases.append(_TrackedLease())
        return self.leases[-1]


async def test_open_and_encryption_fall_back_for_a_storage_without_acquire_and_load() -> None:
    from tgsession import SessionDecryptError
    from tgsession.keys import generate_key
    from tgsession.storage.encrypted import EncryptedStorage

    inner = _PlainLockable()
    session = await StorageSession.open(inner)  # acquire, then load_session
    assert session.auth_key is None and len(inner.leases) == 1
    await session.close()
    inner.data = b""  # the session stored its (plain) document on close: start over

    key = generate_key()
    sealed = EncryptedStorage(inner, key)
    lease, data = await sealed.acquire_and_load()  # type: ignore[attr-defined]
    assert data is None
    await sealed.store_session(_document())
    lease, data = await sealed.acquire_and_load()  # type: ignore[attr-defined]
    assert data == _document() and not lease.released
    with pytest.raises(SessionDecryptError):
        await EncryptedStorage(inner, generate_key()).acquire_and_load()  # type: ignore[attr-defined]
    assert inner.leases[-1].released  # the lease taken for the failed read was given back
