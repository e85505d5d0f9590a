"""Encryption at rest: a storage wrapper that seals every value with AES-256-GCM.

Each value (the session, and each entity row) is sealed alone::

    offset  size  field
    0       4     magic b"TGSE"
    4       1     format version (1)
    5       1     KDF id: 0 = raw 32-byte key, 1 = scrypt(passphrase)
    6       16    scrypt salt                      } only when KDF id is 1
    22      1     scrypt log2(n)                   }
    23      1     scrypt r                         }
    24      1     scrypt p                         }
    ...     12    nonce (fresh and random for every write)
    ...     n+16  AES-256-GCM ciphertext, then its 16-byte tag

The associated data is the whole header (magic to nonce) followed by what the value is
(``session``, or ``entity:<peer id>``), so no header byte can be altered and no row can
be swapped for another or for the session without the tag failing.

Entity lookup keys (``username:alice``...) are never stored in clear: the inner storage
gets ``h:`` + base64url(HMAC-SHA256(subkey, key)), where the subkey is HKDF-SHA256 of a
raw key, or scrypt of a passphrase under a fixed public salt (every process must find the
same keys without reading anything first; prefer a raw key from ``tgsession keygen``,
which no dictionary can guess). A lookup then reads and opens one row.

Cost bound: entity rows are opened only with what this storage writes with: a raw key, or
a passphrase under this storage's own scrypt salt and the default parameters. A row sealed
under other scrypt parameters or another salt is a cache miss, opened with no key
derivation, so a crafted store cannot make a start slow. Each distinct (passphrase,
parameters) is derived at most once per process.

Data that is not sealed (no magic) is refused with :class:`~tgsession.SessionDecryptError`
rather than accepted: anyone able to write the storage could otherwise plant a session
of their choosing, which authenticated encryption exists to prevent. An existing
plaintext session is sealed in place, deliberately, with
:meth:`EncryptedStorage.encrypt_existing`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import struct
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from .._errors import (
    SessionCorruptError,
    SessionDecryptError,
    SessionNotFoundError,
    SessionVersionError,
)
from ..keys import KEY_LENGTH, SessionKey, parse_key
from .base import ENCRYPTED_MAGIC, EntityRecord, EntityStorage, Lease, Lockable, Storage

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
except ImportError as exc:  # the crypto extra is optional; say how to get it
    raise ImportError(
        "EncryptedStorage needs the cryptography package: pip install 'telethon-tgsession[crypto]'"
    ) from exc

__all__ = ["EncryptedStorage"]

logger = logging.getLogger(__name__)

MAGIC = ENCRYPTED_MAGIC
VERSION = 1
KDF_RAW = 0
KDF_SCRYPT = 1

NONCE_LENGTH = 12
TAG_LENGTH = 16
SALT_LENGTH = 16
#: scrypt cost for new passphrase headers: 32 MiB and about 0.1 s on a laptop core.
SCRYPT_LOG2_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
# Bounds on header-supplied scrypt parameters: a hostile header must not make us spend
# gigabytes or minutes. The upper bounds leave room for raising the default cost later.
_SCRYPT_LOG2_N_RANGE = range(14, 19)
_SCRYPT_R_RANGE = range(1, 17)
_SCRYPT_P_RANGE = range(1, 5)
_SCRYPT_MAX_MEMORY = 256 * 1024 * 1024
# Derived passphrase keys kept per process (distinct passphrases x salts in use).
_DERIVED_CACHE_SIZE = 16
# Lookup keys: what the HMAC subkey is derived with, and how blinded keys begin.
_LOOKUP_INFO = b"tgsession entity lookup keys v1"
_LOOKUP_SALT = hashlib.sha256(_LOOKUP_INFO).digest()[:SALT_LENGTH]
_BLIND_PREFIX = "h:"

_PREFIX = struct.Struct(">4sBB")
_SCRYPT = struct.Struct(">16sBBB")
_SESSION_CONTEXT = b"session"

# Sealing or opening this much on the event loop would stall it; hand it to a thread.
_THREAD_THRESHOLD_BYTES = 64 * 1024
_THREAD_THRESHOLD_ROWS = 64


@dataclass(frozen=True, slots=True)
class _ScryptParams:
    salt: bytes
    log2_n: int
    r: int
    p: int


@dataclass(frozen=True, slots=True)
class _Sealed:
    """A parsed sealed value: ``header`` is authenticated, ``body`` is ciphertext + tag."""

    header: bytes
    scrypt: _ScryptParams | None
    nonce: bytes
    body: bytes


class _Unsealable(Exception):
    """Internal: the value is malformed; the message says how (never its content)."""


class _NotSealed(_Unsealable):
    """Internal: the value carries no magic, so it was never sealed."""


class _NewerFormat(_Unsealable):
    """Internal: sealed by a newer tgsession, in a format this one cannot read."""


def _parse(blob: bytes) -> _Sealed:
    if not blob.startswith(MAGIC):
        raise _NotSealed("the data is not encrypted by tgsession (no TGSE header)")
    if len(blob) < _PREFIX.size:
        raise _Unsealable("the data is truncated")
    _, version, kdf = _PREFIX.unpack_from(blob)
    if version > VERSION:
        raise _NewerFormat(
            f"it was encrypted by a newer tgsession (encryption format {version}; this one "
            f"reads up to {VERSION}). Upgrade tgsession: pip install -U telethon-tgsession"
        )
    if version != VERSION:
        raise _Unsealable(f"unknown encryption format {version}")
    offset = _PREFIX.size
    scrypt: _ScryptParams | None = None
    if kdf == KDF_SCRYPT:
        if len(blob) < offset + _SCRYPT.size:
            raise _Unsealable("the data is truncated")
        salt, log2_n, r, p = _SCRYPT.unpack_from(blob, offset)
        scrypt = _ScryptParams(salt, log2_n, r, p)
        if (
            log2_n not in _SCRYPT_LOG2_N_RANGE
            or r not in _SCRYPT_R_RANGE
            or p not in _SCRYPT_P_RANGE
            or 128 * r * p * (1 << log2_n) > _SCRYPT_MAX_MEMORY
        ):
            raise _Unsealable("the header has out-of-range scrypt parameters")
        offset += _SCRYPT.size
    elif kdf != KDF_RAW:
        raise _Unsealable(f"unknown key derivation {kdf}")
    if len(blob) < offset + NONCE_LENGTH + TAG_LENGTH:
        raise _Unsealable("the data is truncated")
    nonce = blob[offset : offset + NONCE_LENGTH]
    offset += NONCE_LENGTH
    return _Sealed(blob[:offset], scrypt, nonce, blob[offset:])


def _derive(passphrase: bytes, params: _ScryptParams) -> bytes:
    kdf = Scrypt(salt=params.salt, length=KEY_LENGTH, n=1 << params.log2_n, r=params.r, p=params.p)
    return kdf.derive(passphrase)


# (passphrase, params) -> derived key, shared by every EncryptedStorage of the process, so a
# restart of a session in one process, or many storages over one key, derive once.
_derived_keys: OrderedDict[tuple[bytes, _ScryptParams], bytes] = OrderedDict()


# Derivations under way, so that concurrent lookups wait for one instead of each deriving.
_pending_keys: dict[tuple[bytes, _ScryptParams], asyncio.Future[bytes]] = {}


async def _derive_cached(passphrase: bytes, params: _ScryptParams) -> bytes:
    cache_key = (passphrase, params)
    derived = _derived_keys.get(cache_key)
    if derived is None:
        pending = _pending_keys.get(cache_key)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(asyncio.to_thread(_derive, passphrase, params))
            _pending_keys[cache_key] = pending
        try:
            derived = await asyncio.shield(pending)  # a cancelled waiter leaves it running
        finally:
            if pending.done() and _pending_keys.get(cache_key) is pending:
                del _pending_keys[cache_key]
        _derived_keys[cache_key] = derived
        while len(_derived_keys) > _DERIVED_CACHE_SIZE:
            _derived_keys.popitem(last=False)
    _derived_keys.move_to_end(cache_key)
    return derived


def _default_params(salt: bytes) -> _ScryptParams:
    return _ScryptParams(salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)


async def _lookup_subkey(key: SessionKey) -> bytes:
    """The HMAC key that blinds lookup keys: the same in every process with ``key``."""
    if key.kind == "raw":
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LOOKUP_INFO)
        return hkdf.derive(key.material)
    return await _derive_cached(key.material, _default_params(_LOOKUP_SALT))


def _blind(subkey: bytes, key: str) -> str:
    digest = hmac.new(subkey, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return _BLIND_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _entity_context(peer_id: int) -> bytes:
    return b"entity:%d" % peer_id


class EncryptedStorage:
    """Wraps any storage so what it keeps is sealed with AES-256-GCM.

    ``key`` is 32 raw bytes, base64 text of 32 bytes (``SESSION_KEY``, see
    :func:`tgsession.keys.generate_key`) or a passphrase (derived with scrypt in a worker
    thread, once per salt and process). ``old_keys`` are tried when ``key`` does not open
    a value, so keys can be rotated: values are always written with ``key``. Entity rows
    move to the new key as they are stored again; a row only an old key opens is still
    read, and one no key opens is a cache miss (the session fetches it again).

    ``load_session`` raises :class:`~tgsession.SessionNotFoundError` when the inner
    storage has nothing, and :class:`~tgsession.SessionDecryptError` for a wrong key,
    altered, truncated or unencrypted data; the stored data is never changed by a load.

    The wrapper is an :class:`~tgsession.storage.EntityStorage` exactly when ``inner`` is
    one (each row sealed alone, lookup keys blinded with HMAC-SHA256; a row that does not
    open reads as ``None``) and :class:`~tgsession.storage.Lockable` exactly when
    ``inner`` is (``acquire`` delegates), so ``isinstance`` checks answer truthfully::

        storage = EncryptedStorage(FileStorage("session.json"), os.environ["SESSION_KEY"])

    Importing this module raises :class:`ImportError` naming the ``crypto`` extra when
    cryptography is missing (importing :mod:`tgsession` itself never needs it).
    """

    def __new__(
        cls,
        inner: Storage,
        key: str | bytes | SessionKey,
        *,
        old_keys: Iterable[str | bytes | SessionKey] = (),
    ) -> EncryptedStorage:
        if cls is EncryptedStorage:
            entities = isinstance(inner, EntityStorage)
            lockable = isinstance(inner, Lockable)
            if entities and lockable:
                cls = _EncryptedEntityLockableStorage
            elif entities:
                cls = _EncryptedEntityStorage
            elif lockable:
                cls = _EncryptedLockableStorage
        return super().__new__(cls)

    def __init__(
        self,
        inner: Storage,
        key: str | bytes | SessionKey,
        *,
        old_keys: Iterable[str | bytes | SessionKey] = (),
    ) -> None:
        self._inner = inner
        self._keys = [parse_key(key), *(parse_key(old) for old in old_keys)]
        # The salt new passphrase values are written with: the one last read when it was
        # the current key's (a restart then derives once, not twice), else a fresh one.
        self._write_params: _ScryptParams | None = None
        # Every raw key's cipher, made once (a row lookup opens one row with them).
        self._raw_ciphers = [AESGCM(k.material) for k in self._keys if k.kind == "raw"]
        # One HMAC subkey per key (current first), derived on first use.
        self._lookup_subkeys: list[bytes] | None = None

    def __repr__(self) -> str:
        rotation = f", old_keys={len(self._keys) - 1}" if len(self._keys) > 1 else ""
        return f"EncryptedStorage({self._inner!r}, key=<{self._keys[0].kind}>{rotation})"

    @property
    def inner(self) -> Storage:
        """The wrapped storage, which holds only sealed bytes."""
        return self._inner

    async def load_session(self) -> bytes:
        blob = await self._inner.load_session()
        if not blob:
            raise SessionNotFoundError(f"no session is stored in {self._inner!r}")
        return await self._open_session(blob)

    async def _open_session(self, blob: bytes) -> bytes:
        try:
            plaintext, _ = await self._open(blob, _SESSION_CONTEXT)
        except _NotSealed:
            raise SessionDecryptError(
                f"the session stored in {self._inner!r} is not encrypted (it was probably "
                "saved before SESSION_KEY was set). It was left untouched. Encrypt it once "
                "with `tgsession encrypt` (in Python: `await storage.encrypt_existing()`), "
                "or unset SESSION_KEY to keep using it unencrypted"
            ) from None
        except _NewerFormat as exc:
            raise SessionVersionError(f"the session stored in {self._inner!r}: {exc}") from None
        except _Unsealable as exc:
            raise SessionDecryptError(
                f"cannot decrypt the session stored in {self._inner!r}: {exc}. "
                "It was left untouched"
            ) from None
        return plaintext

    async def store_session(self, data: bytes) -> None:
        if not data:
            # Empty means "nothing stored" throughout; sealing it would hide that.
            await self._inner.store_session(b"")
            return
        await self._inner.store_session(await self._seal(bytes(data), _SESSION_CONTEXT))

    async def aclose(self) -> None:
        """Close the inner storage (its ``aclose()``, when it has one)."""
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()

    async def encrypt_existing(self) -> bool:
        """Seal a session (and its entity rows) that was stored before encryption was on.

        Returns ``True`` if something was sealed, ``False`` if the stored session was
        already encrypted or nothing is stored. A one-off migration to call deliberately:
        a load never accepts unencrypted data. Raises
        :class:`~tgsession.SessionDecryptError` if the stored value is sealed but not
        openable with these keys.
        """
        try:
            blob = await self._inner.load_session()
        except SessionNotFoundError:
            return False
        if not blob:
            return False
        if _is_sealed(blob):
            await self.load_session()  # sealed already: only check that the keys open it
            return False
        if isinstance(self._inner, EntityStorage):
            await self._encrypt_existing_rows(self._inner)
        await self._inner.store_session(await self._seal(blob, _SESSION_CONTEXT))
        logger.warning("encrypted the session stored in %r, which was not encrypted", self._inner)
        return True

    # -- sealing --------------------------------------------------------------------------

    async def _seal(self, plaintext: bytes, context: bytes) -> bytes:
        cipher, header_prefix = await self._write_cipher()
        if len(plaintext) > _THREAD_THRESHOLD_BYTES:
            return await asyncio.to_thread(_seal_one, cipher, header_prefix, plaintext, context)
        return _seal_one(cipher, header_prefix, plaintext, context)

    async def _seal_records(self, records: Sequence[EntityRecord]) -> list[EntityRecord]:
        """Rows sealed alone (bound to their id), lookup keys blinded."""
        cipher, header_prefix = await self._write_cipher()
        subkey = (await self._subkeys())[0]

        def seal_all() -> list[EntityRecord]:
            return [
                (
                    peer,
                    _seal_one(cipher, header_prefix, bytes(row), _entity_context(peer)),
                    tuple(_blind(subkey, key) for key in keys),
                )
                for peer, row, keys in records
            ]

        if len(records) > _THREAD_THRESHOLD_ROWS:
            return await asyncio.to_thread(seal_all)
        return seal_all()

    async def _subkeys(self) -> list[bytes]:
        if self._lookup_subkeys is None:
            self._lookup_subkeys = [await _lookup_subkey(key) for key in self._keys]
        return self._lookup_subkeys

    async def _write_cipher(self) -> tuple[AESGCM, bytes]:
        """The current key's cipher and the header up to (not including) the nonce."""
        key = self._keys[0]
        if key.kind == "raw":
            return AESGCM(key.material), _PREFIX.pack(MAGIC, VERSION, KDF_RAW)
        if self._write_params is None:
            self._write_params = _default_params(os.urandom(SALT_LENGTH))
        params = self._write_params
        cipher = await self._passphrase_cipher(0, params)
        header = _PREFIX.pack(MAGIC, VERSION, KDF_SCRYPT) + _SCRYPT.pack(
            params.salt, params.log2_n, params.r, params.p
        )
        return cipher, header

    async def _passphrase_cipher(self, index: int, params: _ScryptParams) -> AESGCM:
        return AESGCM(await _derive_cached(self._keys[index].material, params))

    # -- opening --------------------------------------------------------------------------

    async def _open(self, blob: bytes, context: bytes) -> tuple[bytes, int]:
        """Open ``blob``: its plaintext and the index of the key that opened it.

        Raises :class:`_Unsealable` (or :class:`_NotSealed`) saying what is wrong.
        """
        sealed = _parse(blob)
        ciphers = await self._candidate_ciphers(sealed)
        big = len(sealed.body) > _THREAD_THRESHOLD_BYTES
        for index, cipher in ciphers:
            if big:
                plaintext = await asyncio.to_thread(_open_one, cipher, sealed, context)
            else:
                plaintext = _open_one(cipher, sealed, context)
            if plaintext is not None:
                if index == 0 and sealed.scrypt is not None:
                    self._write_params = sealed.scrypt
                return plaintext, index
        raise _Unsealable(self._wrong_key_message(sealed, len(ciphers)))

    async def _candidate_ciphers(self, sealed: _Sealed) -> list[tuple[int, AESGCM]]:
        ciphers: list[tuple[int, AESGCM]] = []
        for index, key in enumerate(self._keys):
            if sealed.scrypt is None and key.kind == "raw":
                ciphers.append((index, AESGCM(key.material)))
            elif sealed.scrypt is not None and key.kind == "passphrase":
                ciphers.append((index, await self._passphrase_cipher(index, sealed.scrypt)))
        return ciphers

    def _wrong_key_message(self, sealed: _Sealed, tried: int) -> str:
        written = "a passphrase" if sealed.scrypt is not None else "a raw key"
        if tried == 0:
            have = "a raw key" if self._keys[0].kind == "raw" else "a passphrase"
            return f"it was encrypted with {written} but SESSION_KEY is {have}; check SESSION_KEY"
        return (
            "wrong key, or the data was altered or truncated; check SESSION_KEY "
            "(when rotating keys, pass the previous one in old_keys)"
        )

    # -- entity rows (used by the EntityStorage subclasses) ------------------------------

    def _entity_inner(self) -> EntityStorage:
        assert isinstance(self._inner, EntityStorage)
        return self._inner

    async def _row_ciphers(self, sealed: _Sealed) -> list[AESGCM]:
        """The ciphers that may open a row, at no derivation beyond this storage's own.

        Raw keys for a raw row. For a passphrase row: only when it has the default scrypt
        parameters and this storage's write salt (adopted from the row when this storage
        has none yet, as a session read would): anything else is a cache miss.
        """
        if sealed.scrypt is None:
            return self._raw_ciphers
        params = sealed.scrypt
        if params != _default_params(params.salt):
            return []
        if self._write_params is None and self._keys[0].kind == "passphrase":
            self._write_params = params
        if params != self._write_params:
            return []
        return [
            await self._passphrase_cipher(index, params)
            for index, key in enumerate(self._keys)
            if key.kind == "passphrase"
        ]

    async def _open_row(self, peer: int, blob: bytes) -> bytes | None:
        try:
            sealed = _parse(blob)
        except _Unsealable:
            return None
        context = _entity_context(peer)
        for cipher in await self._row_ciphers(sealed):
            plaintext = _open_one(cipher, sealed, context)
            if plaintext is not None:
                return plaintext
        return None

    async def _get_row(self, entity_id: int) -> bytes | None:
        blob = await self._entity_inner().get_entity(entity_id)
        return None if blob is None else await self._open_row(entity_id, blob)

    async def _find_row(self, key: str) -> tuple[int, bytes] | None:
        inner = self._entity_inner()
        for subkey in await self._subkeys():  # the current key's blinding first
            found = await inner.find_entity(_blind(subkey, key))
            if found is not None:
                row = await self._open_row(*found)
                if row is not None:
                    return found[0], row
        return None

    async def _store_rows(self, records: Sequence[EntityRecord]) -> None:
        if records:
            await self._entity_inner().store_entities(await self._seal_records(records))

    async def _iter_rows(self, batch: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        async for blobs in self._entity_inner().iter_entities(batch):
            parsed: list[tuple[int, _Sealed, list[AESGCM]]] = []
            for peer, blob in blobs:
                try:
                    sealed = _parse(blob)
                except _Unsealable:
                    continue
                parsed.append((peer, sealed, await self._row_ciphers(sealed)))

            if len(parsed) > _THREAD_THRESHOLD_ROWS:
                rows = await asyncio.to_thread(_open_rows, parsed)
            else:
                rows = _open_rows(parsed)
            if len(rows) < len(blobs):
                missed = len(blobs) - len(rows)
                logger.debug("%d of %d entity rows did not open", missed, len(blobs))
            if rows:
                yield rows

    async def _encrypt_existing_rows(self, inner: EntityStorage) -> None:
        """Seal plaintext rows with blinded keys; the plaintext keys must go, so every row
        is read, the rows cleared, and all stored again (a one-off migration)."""
        from ..codec import decode_entity_row, entity_lookup_keys

        records: list[EntityRecord] = []
        plain = False
        async for blobs in inner.iter_entities(1000):
            for peer, blob in blobs:
                if _is_sealed(blob):
                    row = await self._open_row(peer, blob)
                    if row is None:
                        continue
                else:
                    plain, row = True, blob
                try:
                    keys = entity_lookup_keys(decode_entity_row(row))
                except SessionCorruptError:
                    keys = ()
                records.append((peer, row, keys))
        if not plain:
            return
        await inner.clear_entities()
        for start in range(0, len(records), 1000):
            await self._store_rows(records[start : start + 1000])


def _seal_one(cipher: AESGCM, header_prefix: bytes, plaintext: bytes, context: bytes) -> bytes:
    header = header_prefix + os.urandom(NONCE_LENGTH)
    nonce = header[-NONCE_LENGTH:]
    return header + cipher.encrypt(nonce, plaintext, header + context)


def _open_one(cipher: AESGCM, sealed: _Sealed, context: bytes) -> bytes | None:
    try:
        return cipher.decrypt(sealed.nonce, sealed.body, sealed.header + context)
    except InvalidTag:
        return None


def _open_rows(parsed: list[tuple[int, _Sealed, list[AESGCM]]]) -> list[tuple[int, bytes]]:
    """Each row opened with the first of its ciphers that opens it; others left out."""
    opened: list[tuple[int, bytes]] = []
    for peer, sealed, ciphers in parsed:
        context = _entity_context(peer)
        for cipher in ciphers:
            plaintext = _open_one(cipher, sealed, context)
            if plaintext is not None:
                opened.append((peer, plaintext))
                break
    return opened


def _is_sealed(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


class _EncryptedEntityStorage(EncryptedStorage):
    """An :class:`EncryptedStorage` over an EntityStorage: rows sealed alone, keys blinded."""

    async def get_entity(self, entity_id: int) -> bytes | None:
        """The row under ``entity_id``; ``None`` if absent or if it does not open."""
        return await self._get_row(entity_id)

    async def find_entity(self, key: str) -> tuple[int, bytes] | None:
        """Looks up the blinded ``key`` (the current key's, then each old key's)."""
        return await self._find_row(key)

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        await self._store_rows(records)

    async def clear_entities(self) -> None:
        await self._entity_inner().clear_entities()

    async def count_entities(self) -> int:
        """The inner storage's count (rows that no key opens count too)."""
        return await self._entity_inner().count_entities()

    def iter_entities(self, batch: int = 1000) -> AsyncIterator[list[tuple[int, bytes]]]:
        """The rows that open, batch by batch (rows that do not are skipped)."""
        return self._iter_rows(batch)

    async def delete_session(self) -> None:
        """Remove the session and its rows, and what the inner storage keeps for them
        (its ``delete_session``, when it has one)."""
        await self.clear_entities()
        delete = getattr(self._inner, "delete_session", None)
        if delete is not None:
            await delete()
        else:
            await self._inner.store_session(b"")


class _EncryptedLockableStorage(EncryptedStorage):
    """An :class:`EncryptedStorage` over a Lockable storage: the lease is the inner one."""

    async def acquire(self, *, wait: float = 0.0) -> Lease:
        assert isinstance(self._inner, Lockable)
        return await self._inner.acquire(wait=wait)

    async def acquire_and_load(self, *, wait: float = 0.0) -> tuple[Lease, bytes | None]:
        """The inner storage's lease and the decrypted session (``None`` when nothing is
        stored): its ``acquire_and_load`` when it has one (one round trip), else
        ``acquire`` then ``load_session``. If the session cannot be read or decrypted the
        lease is released and the error raised, as :meth:`load_session` raises it."""
        inner = self._inner
        assert isinstance(inner, Lockable)
        combined = getattr(inner, "acquire_and_load", None)
        blob: bytes | None
        if combined is not None:
            lease, blob = await combined(wait=wait)
        else:
            lease, blob = await inner.acquire(wait=wait), None
        try:
            if combined is None:
                try:
                    blob = await inner.load_session()
                except SessionNotFoundError:
                    blob = None
            return lease, (await self._open_session(blob) if blob else None)
        except BaseException:
            await lease.release()
            raise


class _EncryptedEntityLockableStorage(_EncryptedEntityStorage, _EncryptedLockableStorage):
    """Both: rows sealed alone, and the inner storage's lease."""
