from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.contract import Reopen, StorageContract
from tgsession import (
    EncryptedStorage,
    MemoryStorage,
    SessionCorruptError,
    SessionDecryptError,
    SessionNotFoundError,
    SessionVersionError,
)
from tgsession.keys import SessionKey, generate_key, parse_key
from tgsession.storage import EntityStorage, Lease, Lockable, Storage
from tgsession.storage import encrypted as encrypted_module

KEY = generate_key()
OTHER_KEY = generate_key()
PASSPHRASE = "correct horse battery staple"
SESSION = b'{"format":"tgsession","version":1,"auth_key":"c2VjcmV0IGF1dGgga2V5"}'

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


async def test_encrypt_existing_seals_a_plaintext_session_once() -> None:
    inner = MemoryStorage(SESSION)
    await inner.store_entities({5: b"row five"})
    storage = EncryptedStorage(inner, KEY)
    assert await storage.encrypt_existing() is True
    assert (await stored(inner)).startswith(b"TGSE")
    assert (await inner.load_entities())[5].startswith(b"TGSE")
    assert await storage.load_session() == SESSION
    assert await storage.load_entities() == {5: b"row five"}  # type: ignore[attr-defined]
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


async def test_rows_read_with_an_old_key_are_rewritten_on_the_next_store() -> None:
    inner = MemoryStorage()
    old = EncryptedStorage(inner, OTHER_KEY)
    await old.store_session(SESSION)
    await old.store_entities({1: b"one", 2: b"two"})  # type: ignore[attr-defined]
    rotating = EncryptedStorage(inner, KEY, old_keys=[OTHER_KEY])
    assert await rotating.load_entities() == {1: b"one", 2: b"two"}  # type: ignore[attr-defined]
    await rotating.store_entities({2: b"two, updated"})  # type: ignore[attr-defined]
    new_only = EncryptedStorage(inner, KEY)
    assert await new_only.load_entities() == {1: b"one", 2: b"two, updated"}  # type: ignore[attr-defined]


# -- entity rows ------------------------------------------------------------------------


async def test_each_row_is_sealed_alone() -> None:
    inner = MemoryStorage()
    storage = EncryptedStorage(inner, KEY)
    await storage.store_entities({1: b"one", 2: b"two"})  # type: ignore[attr-defined]
    rows = await inner.load_entities()
    assert all(row.startswith(b"TGSE") and b"one" not in row for row in rows.values())
    only_two = MemoryStorage()
    await only_two.store_entities({2: rows[2]})
    assert await EncryptedStorage(only_two, KEY).load_entities() == {2: b"two"}  # type: ignore[attr-defined]


async def test_a_row_moved_to_another_id_does_not_open(caplog: pytest.LogCaptureFixture) -> None:
    inner = MemoryStorage()
    storage = EncryptedStorage(inner, KEY)
    await storage.store_entities({1: b"one", 2: b"two"})  # type: ignore[attr-defined]
    rows = await inner.load_entities()
    await inner.store_entities({2: rows[1]})
    with caplog.at_level(logging.WARNING):
        assert await storage.load_entities() == {1: b"one"}  # type: ignore[attr-defined]
    assert "dropped 1 of 2 entity rows" in caplog.text


async def test_a_session_blob_cannot_pass_as_a_row() -> None:
    inner = await sealed(KEY)
    await inner.store_entities({1: await stored(inner)})
    with pytest.raises(SessionDecryptError):
        await EncryptedStorage(inner, KEY).load_entities()  # type: ignore[attr-defined]


async def test_rows_under_a_wrong_key_are_refused() -> None:
    inner = MemoryStorage()
    await EncryptedStorage(inner, OTHER_KEY).store_entities({1: b"one"})  # type: ignore[attr-defined]
    with pytest.raises(SessionDecryptError, match="SESSION_KEY"):
        await EncryptedStorage(inner, KEY).load_entities()  # type: ignore[attr-defined]


async def test_many_passphrase_rows_derive_the_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    derive = encrypted_module._derive

    def counting(passphrase: bytes, params: object) -> bytes:
        calls.append(threading.current_thread().name)
        return derive(passphrase, params)  # type: ignore[arg-type]

    monkeypatch.setattr(encrypted_module, "_derive", counting)
    inner = MemoryStorage()
    writer = EncryptedStorage(inner, PASSPHRASE)
    await writer.store_session(SESSION)
    await writer.store_entities({i: b"row %d" % i for i in range(500)})  # type: ignore[attr-defined]
    assert len(calls) == 1
    reader = EncryptedStorage(inner, PASSPHRASE)
    assert len(await reader.load_entities()) == 500  # type: ignore[attr-defined]
    assert await reader.load_session() == SESSION
    await reader.store_session(SESSION)  # writes with the salt it read: no new derivation
    assert len(calls) == 2
    assert threading.main_thread().name not in calls


def fast_derive(passphrase: bytes, params: Any) -> bytes:
    return hashlib.sha256(passphrase + params.salt).digest()


async def test_rows_under_other_salts_converge_on_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encrypted_module, "_derive", fast_derive)
    inner = MemoryStorage()
    for peer in range(3):  # three processes, each salting afresh
        await EncryptedStorage(inner, PASSPHRASE).store_entities({peer: b"row"})  # type: ignore[attr-defined]
    storage = EncryptedStorage(inner, PASSPHRASE)
    assert len(await storage.load_entities()) == 3  # type: ignore[attr-defined]
    await storage.store_session(SESSION)
    salts = {row[6:22] for row in (await inner.load_entities()).values()}
    assert salts == {(await stored(inner))[6:22]}


async def test_a_log_of_many_salts_costs_a_bounded_number_of_derivations(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[bytes] = []

    def counting(passphrase: bytes, params: Any) -> bytes:
        calls.append(params.salt)
        return fast_derive(passphrase, params)

    monkeypatch.setattr(encrypted_module, "_derive", counting)
    inner = MemoryStorage()
    for peer in range(50):
        await EncryptedStorage(inner, PASSPHRASE).store_entities({peer: b"row"})  # type: ignore[attr-defined]
    calls.clear()
    with caplog.at_level(logging.WARNING):
        rows = await EncryptedStorage(inner, PASSPHRASE).load_entities()  # type: ignore[attr-defined]
    assert len(rows) == len(calls) == encrypted_module._MAX_ROW_SALTS
    assert "dropped 42 of 50" in caplog.text


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
