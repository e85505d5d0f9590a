from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import importlib.util
import subprocess
import sys
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.contract import Reopen, StorageContract
from tgsession import (
    EncryptedStorage,
    MemoryStorage,
    SessionCorruptError,
    SessionDecryptError,
    SessionNotFoundError,
    SessionVersionError,
)
from tgsession.codec import encode_entity_row
from tgsession.keys import SessionKey, generate_key, parse_key
from tgsession.storage import EntityStorage, Lease, Lockable, Storage
from tgsession.storage import encrypted as encrypted_module

KEY = generate_key()
OTHER_KEY = generate_key()
PASSPHRASE = "correct horse battery staple"
SESSION = b'{"format":"tgsession","version":1,"auth_key":"c2VjcmV0IGF1dGgga2V5"}'

redis_url = services.redis_url  # a fixture
postgres_url = services.postgres_url  # a fixture

HAVE_FILE_STORAGE = importlib.util.find_spec("tgsession.storage.file") is not None


# -- the contract, over each inner storage ---------------------------------------------


class TestEncryptedOverMemory(StorageContract):
    @pytest.fixture
    def reopen(self) -> Reopen:
        storage = EncryptedStorage(MemoryStorage(), KEY)
        return lambda: storage


class TestEncryptedOverMemoryWithPassphrase(StorageContract):
    @pytest.fixture
    def reopen(self) -> Reopen:
        storage = EncryptedStorage(MemoryStorage(), PASSPHRASE)
        return lambda: storage


@pytest.mark.skipif(not HAVE_FILE_STORAGE, reason="tgsession.storage.file is not written yet")
class TestEncryptedOverFile(StorageContract):
    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Reopen:
        from tgsession import FileStorage

        path = tmp_path / "session.json"
        return lambda: EncryptedStorage(FileStorage(path), KEY)


class TestEncryptedOverFileWithPassphrase(StorageContract):
    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Reopen:
        from tgsession import FileStorage

        path = tmp_path / "session.json"
        return lambda: EncryptedStorage(FileStorage(path), PASSPHRASE)


async def encrypted_over_server(
    open_inner: Callable[[str], Storage], key: str, forget: Callable[[str], Awaitable[None]]
) -> AsyncIterator[Reopen]:
    """Reopen storages on one fresh session of a server; close and forget them after."""
    name = f"test-{uuid.uuid4().hex}"
    opened: list[EncryptedStorage] = []

    def reopen() -> EncryptedStorage:
        opened.append(EncryptedStorage(open_inner(name), key))
        return opened[-1]

    yield reopen
    for storage in opened:
        await storage.aclose()
    await forget(name)


class TestEncryptedOverRedis(StorageContract):
    pytestmark = pytest.mark.services

    @pytest.fixture
    async def reopen(self, redis_url: str) -> AsyncIterator[Reopen]:
        from tgsession.storage.redis import RedisStorage

        async for reopen in encrypted_over_server(
            lambda name: RedisStorage.from_url(services.with_name(redis_url, name)),
            KEY,
            lambda name: services.forget_redis_session(redis_url, name),
        ):
            yield reopen


class TestEncryptedOverPostgres(StorageContract):
    pytestmark = pytest.mark.services

    @pytest.fixture
    async def reopen(self, postgres_url: str) -> AsyncIterator[Reopen]:
        from tgsession.storage.postgres import PostgresStorage

        async for reopen in encrypted_over_server(
            lambda name: PostgresStorage.from_url(services.with_name(postgres_url, name)),
            PASSPHRASE,
            lambda name: services.forget_postgres_session(postgres_url, name),
        ):
            yield reopen


# -- helpers ----------------------------------------------------------------------------


class PlainStorage:
    """A user's own storage: the two methods and nothing else."""

    def __init__(self) -> None:
        self.data = b""

    async def load_session(self) -> bytes:
        if not self.data:
            raise SessionNotFoundError("nothing stored")
        return self.data

    async def store_session(self, data: bytes) -> None:
        self.data = bytes(data)


class FakeLease:
    holder = "pid 1 on test"

    async def check(self) -> None:
        pass

    async def release(self) -> None:
        pass


class LockableStorage(PlainStorage):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    async def acquire(self, *, wait: float = 0.0) -> Lease:
        self.waits.append(wait)
        return FakeLease()


async def sealed(key: str | bytes = KEY, data: bytes = SESSION) -> MemoryStorage:
    """A MemoryStorage holding ``data`` sealed with ``key``."""
    inner = MemoryStorage()
    await EncryptedStorage(inner, key).store_session(data)
    return inner


async def stored(inner: MemoryStorage) -> bytes:
    return await inner.load_session()


def flip(blob: bytes, index: int) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= 0x01
    return bytes(changed)


# -- what the inner storage sees --------------------------------------------------------


async def test_inner_holds_neither_the_plaintext_nor_the_key() -> None:
    raw = bytes(range(32))
    for key in (KEY, raw, PASSPHRASE):
        blob = await stored(await sealed(key))
        assert b"tgsession" not in blob
        assert b"c2VjcmV0IGF1dGgga2V5" not in blob
        assert parse_key(key).material not in blob
        assert KEY.encode() not in blob


async def test_header_starts_with_magic_version_and_kdf() -> None:
    assert (await stored(await sealed(KEY)))[:6] == b"TGSE\x01\x00"
    assert (await stored(await sealed(PASSPHRASE)))[:6] == b"TGSE\x01\x01"


async def test_every_write_uses_a_fresh_nonce() -> None:
    inner = MemoryStorage()
    storage = EncryptedStorage(inner, KEY)
    blobs = set()
    for _ in range(20):
        await storage.store_session(SESSION)
        blobs.add((await stored(inner))[6:18])
    assert len(blobs) == 20


async def test_passphrase_header_carries_salt_and_scrypt_parameters() -> None:
    blob = await stored(await sealed(PASSPHRASE))
    salt, log2_n, r, p = blob[6:22], blob[22], blob[23], blob[24]
    assert len(set(salt)) > 1
    assert (1 << log2_n, r, p) == (2**15, 8, 1)


async def test_passphrase_round_trips_through_a_new_instance() -> None:
    inner = await sealed(PASSPHRASE)
    assert await EncryptedStorage(inner, PASSPHRASE).load_session() == SESSION


async def test_two_instances_salt_differently() -> None:
    first = await stored(await sealed(PASSPHRASE))
    second = await stored(await sealed(PASSPHRASE))
    assert first[6:22] != second[6:22]


async def test_generated_key_is_accepted_as_a_raw_key() -> None:
    key = generate_key()
    assert len(key) == 44
    assert parse_key(key) == SessionKey("raw", base64.b64decode(key))
    inner = await sealed(key)
    assert await EncryptedStorage(inner, key).load_session() == SESSION


async def test_raw_bytes_and_their_base64_forms_are_the_same_key() -> None:
    raw = bytes(range(200, 232))
    inner = await sealed(raw)
    for form in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        assert await EncryptedStorage(inner, form).load_session() == SESSION


# -- refusals leave the data untouched --------------------------------------------------


async def test_wrong_key_is_refused_and_the_data_left_untouched() -> None:
    inner = await sealed(KEY)
    before = await stored(inner)
    with pytest.raises(SessionDecryptError, match="SESSION_KEY") as raised:
        await EncryptedStorage(inner, OTHER_KEY).load_session()
    assert await stored(inner) == before
    assert "MemoryStorage" in str(raised.value)
    assert KEY not in str(raised.value) and OTHER_KEY not in str(raised.value)


async def test_wrong_passphrase_is_refused() -> None:
    inner = await sealed(PASSPHRASE)
    with pytest.raises(SessionDecryptError, match="wrong key"):
        await EncryptedStorage(inner, "another passphrase").load_session()


async def test_passphrase_data_with_a_raw_key_says_so() -> None:
    inner = await sealed(PASSPHRASE)
    with pytest.raises(SessionDecryptError, match="encrypted with a passphrase"):
        await EncryptedStorage(inner, KEY).load_session()


@pytest.mark.parametrize("key", [KEY, PASSPHRASE], ids=["raw", "passphrase"])
async def test_any_altered_byte_is_refused(key: str) -> None:
    inner = await sealed(key)
    blob = await stored(inner)
    storage = EncryptedStorage(inner, key)
    # Byte 4 is the version; it has its own test below.
    for index in [i for i in range(len(blob)) if i != 4]:
        tampered = flip(blob, index)
        await inner.store_session(tampered)
        with pytest.raises(SessionDecryptError):
            await storage.load_session()
        assert await stored(inner) == tampered


@pytest.mark.parametrize(
    ("region", "index"),
    [("magic", 0), ("kdf id", 5), ("nonce", 6), ("ciphertext", 20), ("tag", -1)],
)
async def test_altered_region_is_refused(region: str, index: int) -> None:
    inner = await sealed(KEY)
    await inner.store_session(flip(await stored(inner), index))
    with pytest.raises(SessionDecryptError):
        await EncryptedStorage(inner, KEY).load_session()


@pytest.mark.parametrize("length", [1, 4, 5, 6, 17, 18, 33, 34, len(SESSION) + 33])
async def test_truncated_data_is_refused(length: int) -> None:
    inner = await sealed(KEY)
    truncated = (await stored(inner))[:length]
    await inner.store_session(truncated)
    with pytest.raises(SessionDecryptError):
        await EncryptedStorage(inner, KEY).load_session()
    assert await stored(inner) == truncated


async def test_newer_format_version_asks_for_an_upgrade() -> None:
    inner = await sealed(KEY)
    blob = await stored(inner)
    await inner.store_session(blob[:4] + b"\x02" + blob[5:])
    with pytest.raises(SessionVersionError, match="pip install -U telethon-tgsession") as raised:
        await EncryptedStorage(inner, KEY).load_session()
    assert "MemoryStorage" in str(raised.value)


async def test_version_error_is_a_corrupt_error() -> None:
    assert issubclass(SessionVersionError, SessionCorruptError)


async def test_hostile_scrypt_parameters_are_refused_without_deriving() -> None:
    inner = await sealed(PASSPHRASE)
    blob = await stored(inner)
    await inner.store_session(blob[:22] + b"\x3f" + blob[23:])  # n = 2**63
    with pytest.raises(SessionDecryptError, match="scrypt"):
        await EncryptedStorage(inner, PASSPHRASE).load_session()


async def test_unencrypted_session_is_refused_with_a_way_to_migrate() -> None:
    inner = MemoryStorage(SESSION)
    with pytest.raises(SessionDecryptError, match="not encrypted") as raised:
        await EncryptedStorage(inner, KEY).load_session()
    assert "encrypt_existing" in str(raised.value)
    assert await stored(inner) == SESSION


async def test_empty_inner_is_session_not_found() -> None:
    with pytest.raises(SessionNotFoundError):
        await EncryptedStorage(MemoryStorage(), KEY).load_session()


async def test_storing_empty_stores_nothing() -> None:
    inner = await sealed(KEY)
    await EncryptedStorage(inner, KEY).store_session(b"")
    with pytest.raises(SessionNotFoundError):
        await inner.load_session()


# -- migration and rotation -------------------------------------------------------------


async def test_encrypt_existing_seals_a_plaintext_session_and_its_rows_once() -> None:
    inner = MemoryStorage(SESSION)
    row = encode_entity_row((5, 55, "alice", "15550001", "Alice"))
    await inner.store_entities([(5, row, ("username:alice", "phone:15550001", "name:Alice"))])
    storage = EncryptedStorage(inner, KEY)
    assert await storage.encrypt_existing() is True
    assert (await stored(inner)).startswith(b"TGSE")
    sealed_row = await inner.get_entity(5)
    assert sealed_row is not None and sealed_row.startswith(b"TGSE")
    assert await inner.find_entity("username:alice") is None  # no plaintext key is left
    assert await storage.load_session() == SESSION
    assert await storage.get_entity(5) == row  # type: ignore[attr-defined]
    assert await storage.find_entity("phone:15550001") == (5, row)  # type: ignore[attr-defined]
    assert await storage.encrypt_existing() is False


async def test_encrypt_existing_with_nothing_stored_does_nothing() -> None:
    assert await EncryptedStorage(MemoryStorage(), KEY).encrypt_existing() is False


async def test_encrypt_existing_refuses_data_sealed_with_another_key() -> None:
    with pytest.raises(SessionDecryptError):
        await EncryptedStorage(await sealed(OTHER_KEY), KEY).encrypt_existing()


async def test_old_key_opens_and_the_next_store_uses_the_new_key() -> None:
    inner = await sealed(OTHER_KEY)
    rotating = EncryptedStorage(inner, KEY, old_keys=[OTHER_KEY])
    assert await rotating.load_session() == SESSION
    await rotating.store_session(SESSION)
    assert await EncryptedStorage(inner, KEY).load_session() == SESSION
    with pytest.raises(SessionDecryptError):
        await EncryptedStorage(inner, OTHER_KEY).load_session()


async def test_rotation_from_a_passphrase_to_a_key() -> None:
    inner = await sealed(PASSPHRASE)
    rotating = EncryptedStorage(inner, KEY, old_keys=[PASSPHRASE])
    assert await rotating.load_session() == SESSION
    await rotating.store_session(SESSION)
    assert (await stored(inner))[5] == 0


async def test_rows_under_an_old_key_are_read_and_stored_again_under_the_new() -> None:
    inner = MemoryStorage()
    old = EncryptedStorage(inner, OTHER_KEY)
    await old.store_session(SESSION)
    await old.store_entities([(1, b"one", ("username:one",)), (2, b"two", ())])  # type: ignore[attr-defined]
    rotating = EncryptedStorage(inner, KEY, old_keys=[OTHER_KEY])
    assert await rotating.get_entity(1) == b"one"  # type: ignore[attr-defined]
    assert await rotating.find_entity("username:one") == (1, b"one")  # type: ignore[attr-defined]
    await rotating.store_entities([(2, b"two, updated", ("username:two",))])  # type: ignore[attr-defined]
    new_only = EncryptedStorage(inner, KEY)
    assert await new_only.get_entity(2) == b"two, updated"  # type: ignore[attr-defined]
    assert await new_only.find_entity("username:two") == (2, b"two, updated")  # type: ignore[attr-defined]
    assert await new_only.get_entity(1) is None  # type: ignore[attr-defined]  # a cache miss


# -- entity rows ------------------------------------------------------------------------


async def test_each_row_is_sealed_alone() -> None:
    inner = MemoryStorage()
    storage = EncryptedStorage(inner, KEY)
    await storage.store_entities([(1, b"one", ()), (2, b"two", ())])  # type: ignore[attr-defined]
    rows = {peer: await inner.get_entity(peer) for peer in (1, 2)}
    assert all(row is not None and row.startswith(b"TGSE") for row in rows.values())
    assert all(b"one" not in row and b"two" not in row for row in rows.values() if row)
    only_two = MemoryStorage()
    await only_two.store_entities([(2, rows[2] or b"", ())])
    assert await EncryptedStorage(only_two, KEY).get_entity(2) == b"two"  # type: ignore[attr-defined]


async def test_a_row_moved_to_another_id_is_a_miss() -> None:
    inner = MemoryStorage()
    storage = EncryptedStorage(inner, KEY)
    await storage.store_entities([(1, b"one", ("username:one",))])  # type: ignore[attr-defined]
    await inner.store_entities([(2, await inner.get_entity(1) or b"", ("username:two",))])
    assert await storage.get_entity(2) is None  # type: ignore[attr-defined]
    assert await storage.get_entity(1) == b"one"  # type: ignore[attr-defined]


async def test_a_session_blob_cannot_pass_as_a_row() -> None:
    inner = await sealed(KEY)
    await inner.store_entities([(1, await stored(inner), ())])
    assert await EncryptedStorage(inner, KEY).get_entity(1) is None  # type: ignore[attr-defined]


async def test_rows_under_a_wrong_key_or_unsealed_are_misses() -> None:
    inner = MemoryStorage()
    await EncryptedStorage(inner, OTHER_KEY).store_entities([(1, b"one", ())])  # type: ignore[attr-defined]
    await inner.store_entities([(2, b"planted in clear", ())])
    storage = EncryptedStorage(inner, KEY)
    assert await storage.get_entity(1) is None  # type: ignore[attr-defined]
    assert await storage.get_entity(2) is None  # type: ignore[attr-defined]
    assert [batch async for batch in storage.iter_entities()] == []  # type: ignore[attr-defined]


async def test_lookup_keys_are_blinded_per_key() -> None:
    inner = MemoryStorage()
    keys = ("username:alice", "phone:15550001", "name:Alice Liddell")
    await EncryptedStorage(inner, KEY).store_entities([(7, b"alice", keys)])  # type: ignore[attr-defined]
    stored_keys = list(inner._keys)
    assert len(stored_keys) == 3
    assert all(k.startswith("h:") and "alice" not in k.lower() for k in stored_keys)
    assert not any("1555" in k for k in stored_keys)
    assert await EncryptedStorage(inner, KEY).find_entity("phone:15550001") == (7, b"alice")  # type: ignore[attr-defined]
    other = EncryptedStorage(inner, OTHER_KEY)
    assert await other.find_entity("phone:15550001") is None  # type: ignore[attr-defined]


@pytest.mark.skipif(not HAVE_FILE_STORAGE, reason="tgsession.storage.file is not written yet")
async def test_no_username_or_phone_is_at_rest_in_the_file(tmp_path: Path) -> None:
    from tgsession import FileStorage

    inner = FileStorage(tmp_path / "session.json")
    storage = EncryptedStorage(inner, PASSPHRASE)
    await storage.store_session(SESSION)
    row = encode_entity_row((7, 77, "alice_secret", "15550001234", "Alice Liddell"))
    await storage.store_entities([(7, row, ("username:alice_secret", "phone:15550001234"))])
    assert await EncryptedStorage(inner, PASSPHRASE).find_entity("username:alice_secret") == (  # type: ignore[attr-defined]
        7,
        row,
    )
    await inner.aclose()
    at_rest = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"alice_secret" not in at_rest
    assert b"15550001234" not in at_rest
    assert b"Liddell" not in at_rest


@pytest.mark.skipif(not HAVE_FILE_STORAGE, reason="tgsession.storage.file is not written yet")
async def test_sealed_rows_of_an_old_entity_log_are_kept_by_id(tmp_path: Path) -> None:
    from tgsession import FileStorage
    from tgsession.storage._entitylog import HEADER, encode_records

    sealer = MemoryStorage()
    await EncryptedStorage(sealer, KEY).store_entities([(1, b"one", ()), (2, b"two", ())])  # type: ignore[attr-defined]
    inner = FileStorage(tmp_path / "session.json")
    sealed_rows = [(peer, await sealer.get_entity(peer) or b"") for peer in (1, 2)]
    inner.legacy_entities_path.write_bytes(HEADER + encode_records(sealed_rows))
    inner.legacy_entities_path.chmod(0o600)
    storage = EncryptedStorage(inner, KEY)
    assert await storage.get_entity(1) == b"one"  # type: ignore[attr-defined]
    assert await storage.get_entity(2) == b"two"  # type: ignore[attr-defined]
    assert not inner.legacy_entities_path.exists()


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The salts scrypt derives from, counted with an empty per-process cache."""
    calls: list[bytes] = []

    def counting(passphrase: bytes, params: Any) -> bytes:
        calls.append(params.salt)
        assert threading.current_thread() is not threading.main_thread()
        return hashlib.sha256(passphrase + params.salt).digest()  # as fast as a test wants

    monkeypatch.setattr(encrypted_module, "_derive", counting)
    monkeypatch.setattr(encrypted_module, "_derived_keys", OrderedDict())
    monkeypatch.setattr(encrypted_module, "_pending_keys", {})
    return calls


async def test_many_passphrase_rows_derive_the_key_once(derivations: list[bytes]) -> None:
    inner = MemoryStorage()
    writer = EncryptedStorage(inner, PASSPHRASE)
    await writer.store_session(SESSION)
    records = [(i, b"row %d" % i, (f"username:u{i}",)) for i in range(500)]
    await writer.store_entities(records)  # type: ignore[attr-defined]
    assert len(derivations) == 2  # the write salt, and the lookup-key subkey
    reader = EncryptedStorage(inner, PASSPHRASE)
    assert await reader.load_session() == SESSION
    assert await reader.find_entity("username:u499") == (499, b"row 499")  # type: ignore[attr-defined]
    seen = [row async for batch in reader.iter_entities(100) for row in batch]  # type: ignore[attr-defined]
    assert len(seen) == 500
    await reader.store_session(SESSION)  # writes with the salt it read
    assert len(derivations) == 2  # one process derives each (passphrase, salt) once


async def test_concurrent_lookups_wait_for_one_derivation(derivations: list[bytes]) -> None:
    inner = MemoryStorage()
    await EncryptedStorage(inner, PASSPHRASE).store_entities(  # type: ignore[attr-defined]
        [(i, b"row %d" % i, (f"username:u{i}",)) for i in range(20)]
    )
    derivations.clear()
    encrypted_module._derived_keys.clear()
    reader = EncryptedStorage(inner, PASSPHRASE)
    rows = await asyncio.gather(*(reader.get_entity(i) for i in range(20)))  # type: ignore[attr-defined]
    assert rows == [b"row %d" % i for i in range(20)]
    assert len(derivations) == 1


def sealed_with(params: tuple[bytes, int, int, int], body: bytes = b"\0" * 40) -> bytes:
    """A row header with chosen scrypt parameters, as a hostile file would hold it."""
    salt, log2_n, r, p = params
    return (
        encrypted_module._PREFIX.pack(b"TGSE", 1, 1)
        + encrypted_module._SCRYPT.pack(salt, log2_n, r, p)
        + body
    )


async def test_a_hostile_row_costs_no_key_derivation(derivations: list[bytes]) -> None:
    inner = MemoryStorage()
    await EncryptedStorage(inner, PASSPHRASE).store_session(SESSION)
    hostile = [
        (1, sealed_with((b"\x01" * 16, 18, 8, 1)), ("username:one",)),  # 256 MiB, in bounds
        (2, sealed_with((b"\x02" * 16, 17, 16, 1)), ()),
        (3, sealed_with((b"\x03" * 16, 15, 8, 1)), ()),  # default cost, another salt
        (4, sealed_with((b"\x04" * 16, 14, 16, 4)), ()),
    ]
    await inner.store_entities(hostile)
    reader = EncryptedStorage(inner, PASSPHRASE, old_keys=["old one", "old two"])
    assert await reader.load_session() == SESSION
    derivations.clear()
    for peer in (1, 2, 3, 4):
        assert await reader.get_entity(peer) is None  # type: ignore[attr-defined]
    assert [batch async for batch in reader.iter_entities()] == []  # type: ignore[attr-defined]
    assert derivations == []


async def test_rows_under_many_salts_cost_at_most_one_derivation(
    derivations: list[bytes],
) -> None:
    inner = MemoryStorage()
    for peer in range(20):  # twenty processes, each salting afresh, no session read
        await EncryptedStorage(inner, PASSPHRASE).store_entities([(peer, b"row", ())])  # type: ignore[attr-defined]
    derivations.clear()
    reader = EncryptedStorage(inner, PASSPHRASE)
    rows = [row async for batch in reader.iter_entities() for row in batch]  # type: ignore[attr-defined]
    assert len(rows) == 1  # the salt of the first row read is adopted; the others miss
    assert len(derivations) == 1


# -- protocols answer truthfully --------------------------------------------------------


def test_over_a_plain_storage_it_is_only_a_storage() -> None:
    storage = EncryptedStorage(PlainStorage(), KEY)
    assert isinstance(storage, Storage)
    assert isinstance(storage, EncryptedStorage)
    assert not isinstance(storage, EntityStorage)
    assert not isinstance(storage, Lockable)


def test_over_a_memory_storage_it_keeps_entities() -> None:
    storage = EncryptedStorage(MemoryStorage(), KEY)
    assert isinstance(storage, EntityStorage)
    assert not isinstance(storage, Lockable)


@pytest.mark.skipif(not HAVE_FILE_STORAGE, reason="tgsession.storage.file is not written yet")
def test_over_a_file_storage_it_is_every_protocol(tmp_path: Path) -> None:
    from tgsession import FileStorage

    storage = EncryptedStorage(FileStorage(tmp_path / "session.json"), KEY)
    assert isinstance(storage, EntityStorage)
    assert isinstance(storage, Lockable)


async def test_over_a_lockable_storage_acquire_delegates() -> None:
    inner = LockableStorage()
    storage = EncryptedStorage(inner, KEY)
    assert isinstance(storage, Lockable)
    assert not isinstance(storage, EntityStorage)
    lease = await storage.acquire(wait=2.5)
    assert lease.holder == "pid 1 on test"
    assert inner.waits == [2.5]


# -- secrets stay secret ----------------------------------------------------------------


@pytest.mark.parametrize("key", [KEY, PASSPHRASE], ids=["raw", "passphrase"])
def test_repr_shows_no_key_material(key: str) -> None:
    text = repr(EncryptedStorage(MemoryStorage(), key, old_keys=[OTHER_KEY]))
    assert key not in text and OTHER_KEY not in text
    assert "MemoryStorage" in text
    assert repr(parse_key(key)).count("kind") == 1 and key not in repr(parse_key(key))


def test_without_cryptography_it_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    monkeypatch.delitem(sys.modules, "tgsession.storage.encrypted")
    with pytest.raises(ImportError, match=r"pip install 'telethon-tgsession\[crypto\]'"):
        importlib.import_module("tgsession.storage.encrypted")


def test_importing_tgsession_does_not_need_cryptography() -> None:
    script = (
        "import sys; sys.modules['cryptography'] = None; import tgsession; "
        "assert 'tgsession.storage.encrypted' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


# -- parsing keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        (bytes(32), "raw"),
        (base64.b64encode(bytes(range(32))).decode(), "raw"),
        (base64.urlsafe_b64encode(b"\xfb" * 32).decode(), "raw"),
        (base64.b64encode(b"\xfb" * 32).decode() + "\n", "raw"),
        (base64.b64encode(b"\xfb" * 32), "raw"),
        ("hunter2", "passphrase"),
        (b"hunter2", "passphrase"),
        (base64.b64encode(bytes(31)).decode(), "passphrase"),
        (base64.b64encode(bytes(32)).decode().rstrip("="), "passphrase"),
        ("A" * 42 + "B=", "passphrase"),  # non-canonical trailing bits: no encoder wrote it
        ("a" * 44, "passphrase"),
    ],
)
def test_parse_key_tells_keys_from_passphrases(given: str | bytes, kind: str) -> None:
    assert parse_key(given).kind == kind


def test_passphrase_surrounding_whitespace_is_ignored() -> None:
    assert parse_key("  pass phrase\n") == parse_key("pass phrase")


@pytest.mark.parametrize("given", ["", "  \n", b""])
def test_empty_key_is_refused(given: str | bytes) -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_key(given)


def test_non_utf8_bytes_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="32 raw bytes"):
        parse_key(b"\xff" * 31)
