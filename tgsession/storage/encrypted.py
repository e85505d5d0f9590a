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

Data that is not sealed (no magic) is refused with :class:`~tgsession.SessionDecryptError`
rather than accepted: anyone able to write the storage could otherwise plant a session
of their choosing, which authenticated encryption exists to prevent. An existing
plaintext session is sealed in place, deliberately, with
:meth:`EncryptedStorage.encrypt_existing`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .._errors import SessionDecryptError, SessionNotFoundError, SessionVersionError
from ..keys import KEY_LENGTH, SessionKey, parse_key
from .base import ENCRYPTED_MAGIC, EntityStorage, Lease, Lockable, Storage

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
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
# Distinct salts derived per load of the entity rows; rows under others are dropped.
_MAX_ROW_SALTS = 8

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


def _entity_context(peer_id: int) -> bytes:
    return b"entity:%d" % peer_id


class EncryptedStorage:
    """Wraps any storage so what it keeps is sealed with AES-256-GCM.

    ``key`` is 32 raw bytes, base64 text of 32 bytes (``SESSION_KEY``, see
    :func:`tgsession.keys.generate_key`) or a passphrase (derived with scrypt in a worker
    thread, once per salt). ``old_keys`` are tried when ``key`` does not open a value, so
    keys can be rotated: values are always written with ``key``.

    ``load_session`` raises :class:`~tgsession.SessionNotFoundError` when the inner
    storage has nothing, and :class:`~tgsession.SessionDecryptError` for a wrong key,
    altered, truncated or unencrypted data; the stored data is never changed by a load.

    The wrapper is an :class:`~tgsession.storage.EntityStorage` exactly when ``inner`` is
    one (each row sealed alone) and :class:`~tgsession.storage.Lockable` exactly when
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
        # Derived keys per (passphrase index, scrypt params): scrypt runs once per salt.
        self._derived: dict[tuple[int, _ScryptParams], AESGCM] = {}
        # The salt new passphrase values are written with: the one last read when it was
        # the current key's (a restart then derives once, not twice), else a fresh one.
        self._write_params: _ScryptParams | None = None
        # Rows read with an old key, written again with the current key on the next store.
        self._stale_rows: dict[int, bytes] = {}

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
        await self._flush_stale_rows()

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
            rows = await self._inner.load_entities()
            plain = {peer: row for peer, row in rows.items() if not _is_sealed(row)}
            if plain:
                sealed = await self._seal_rows(plain)
                await self._inner.store_entities(sealed)
        await self._inner.store_session(await self._seal(blob, _SESSION_CONTEXT))
        logger.warning("encrypted the session stored in %r, which was not encrypted", self._inner)
        return True

    # -- sealing --------------------------------------------------------------------------

    async def _seal(self, plaintext: bytes, context: bytes) -> bytes:
        cipher, header_prefix = await self._write_cipher()
        if len(plaintext) > _THREAD_THRESHOLD_BYTES:
            return await asyncio.to_thread(_seal_one, cipher, header_prefix, plaintext, context)
        return _seal_one(cipher, header_prefix, plaintext, context)

    async def _seal_rows(self, rows: Mapping[int, bytes]) -> dict[int, bytes]:
        cipher, header_prefix = await self._write_cipher()

        def seal_all() -> dict[int, bytes]:
            return {
                peer: _seal_one(cipher, header_prefix, bytes(row), _entity_context(peer))
                for peer, row in rows.items()
            }

        if len(rows) > _THREAD_THRESHOLD_ROWS:
            return await asyncio.to_thread(seal_all)
        return seal_all()

    async def _write_cipher(self) -> tuple[AESGCM, bytes]:
        """The current key's cipher and the header up to (not including) the nonce."""
        key = self._keys[0]
        if key.kind == "raw":
            return AESGCM(key.material), _PREFIX.pack(MAGIC, VERSION, KDF_RAW)
        if self._write_params is None:
            self._write_params = _ScryptParams(
                os.urandom(SALT_LENGTH), SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P
            )
        params = self._write_params
        cipher = await self._passphrase_cipher(0, params)
        header = _PREFIX.pack(MAGIC, VERSION, KDF_SCRYPT) + _SCRYPT.pack(
            params.salt, params.log2_n, params.r, params.p
        )
        return cipher, header

    async def _passphrase_cipher(self, index: int, params: _ScryptParams) -> AESGCM:
        cached = self._derived.get((index, params))
        if cached is None:
            derived = await asyncio.to_thread(_derive, self._keys[index].material, params)
            cached = self._derived[(index, params)] = AESGCM(derived)
        return cached

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

    async def _load_rows(self) -> dict[int, bytes]:
        assert isinstance(self._inner, EntityStorage)
        blobs = await self._inner.load_entities()
        # Derive each distinct passphrase salt once, on a worker thread, before opening.
        ciphers: dict[_ScryptParams, list[tuple[int, AESGCM]]] = {}
        parsed: dict[int, _Sealed] = {}
        for peer, blob in blobs.items():
            try:
                sealed = _parse(blob)
            except _Unsealable:
                continue
            if sealed.scrypt is not None and sealed.scrypt not in ciphers:
                if len(ciphers) == _MAX_ROW_SALTS:
                    continue  # a hostile log must not cost a derivation per row
                ciphers[sealed.scrypt] = await self._candidate_ciphers(sealed)
            parsed[peer] = sealed
        raw_ciphers = [
            (index, AESGCM(key.material))
            for index, key in enumerate(self._keys)
            if key.kind == "raw"
        ]

        def open_all() -> dict[int, tuple[bytes, int]]:
            opened: dict[int, tuple[bytes, int]] = {}
            for peer, sealed in parsed.items():
                context = _entity_context(peer)
                candidates = raw_ciphers if sealed.scrypt is None else ciphers[sealed.scrypt]
                for index, cipher in candidates:
                    plaintext = _open_one(cipher, sealed, context)
                    if plaintext is not None:
                        opened[peer] = (plaintext, index)
                        break
            return opened

        if len(parsed) > _THREAD_THRESHOLD_ROWS:
            opened = await asyncio.to_thread(open_all)
        else:
            opened = open_all()
        rows = {peer: plaintext for peer, (plaintext, _) in opened.items()}
        # Rows under an old key, or under another salt of this passphrase, are rewritten
        # with the next store: keys rotate fully, and rows converge on one salt so a load
        # derives once however many times processes restarted.
        stale = {
            peer: plaintext
            for peer, (plaintext, index) in opened.items()
            if index != 0 or not self._is_write_salt(parsed[peer].scrypt)
        }
        dropped = len(blobs) - len(rows)
        if blobs and not rows:
            raise SessionDecryptError(
                f"cannot decrypt any of the {len(blobs)} entity rows stored in "
                f"{self._inner!r}: wrong key, or the rows were altered or not encrypted; "
                "check SESSION_KEY (when rotating keys, pass the previous one in old_keys)"
            )
        if dropped:
            # The entity cache tolerates lost rows (Telethon refetches them); a wrong key
            # would have failed every row, which is refused above.
            logger.warning(
                "dropped %d of %d entity rows in %r that could not be decrypted",
                dropped,
                len(blobs),
                self._inner,
            )
        self._stale_rows = stale
        return rows

    def _is_write_salt(self, params: _ScryptParams | None) -> bool:
        """Whether a value the current key opened was sealed as it would be now."""
        if params is None or self._keys[0].kind == "raw":
            return True
        if self._write_params is None:
            self._write_params = params
        return params == self._write_params

    async def _store_rows(self, rows: Mapping[int, bytes]) -> None:
        assert isinstance(self._inner, EntityStorage)
        for peer in rows:
            self._stale_rows.pop(peer, None)
        if rows:
            await self._inner.store_entities(await self._seal_rows(rows))
        await self._flush_stale_rows()

    async def _flush_stale_rows(self) -> None:
        if not self._stale_rows or not isinstance(self._inner, EntityStorage):
            return
        stale, self._stale_rows = self._stale_rows, {}
        await self._inner.store_entities(await self._seal_rows(stale))

    async def _clear_rows(self) -> None:
        assert isinstance(self._inner, EntityStorage)
        self._stale_rows = {}
        await self._inner.clear_entities()


def _seal_one(cipher: AESGCM, header_prefix: bytes, plaintext: bytes, context: bytes) -> bytes:
    header = header_prefix + os.urandom(NONCE_LENGTH)
    nonce = header[-NONCE_LENGTH:]
    return header + cipher.encrypt(nonce, plaintext, header + context)


def _open_one(cipher: AESGCM, sealed: _Sealed, context: bytes) -> bytes | None:
    try:
        return cipher.decrypt(sealed.nonce, sealed.body, sealed.header + context)
    except InvalidTag:
        return None


def _is_sealed(blob: bytes) -> bool:
    return blob.startswith(MAGIC)


class _EncryptedEntityStorage(EncryptedStorage):
    """An :class:`EncryptedStorage` over an EntityStorage: each row sealed alone."""

    async def load_entities(self) -> dict[int, bytes]:
        """The rows that open with these keys; rows that do not are dropped, with a warning.

        Raises :class:`~tgsession.SessionDecryptError` when rows exist but none opens.
        """
        return await self._load_rows()

    async def store_entities(self, rows: Mapping[int, bytes]) -> None:
        await self._store_rows(rows)

    async def clear_entities(self) -> None:
        await self._clear_rows()

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


class _EncryptedEntityLockableStorage(_EncryptedEntityStorage, _EncryptedLockableStorage):
    """Both: rows sealed alone, and the inner storage's lease."""
