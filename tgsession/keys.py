"""Session encryption keys: generating one, and telling a key from a passphrase.

``SESSION_KEY`` (or the ``key`` of :class:`~tgsession.EncryptedStorage`) is one of:

- 32 raw bytes (a ``bytes`` value of exactly 32 bytes);
- base64 text of 32 bytes: 44 characters ending in one ``=``, standard (``+/``) or
  URL-safe (``-_``) alphabet, as printed by :func:`generate_key` and ``tgsession keygen``;
- anything else: a passphrase, stretched with scrypt (slow on purpose, once per salt).

Surrounding whitespace is ignored (a trailing newline from a key file is harmless). A
passphrase is told apart by elimination: text that is not exactly 44 characters of
canonical, padded base64 of 32 bytes. A human passphrase never looks like that by
accident, and one that did would be a random 256-bit key anyway.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["KEY_LENGTH", "SessionKey", "generate_key", "parse_key"]

#: AES-256: keys are 32 bytes.
KEY_LENGTH = 32

_BASE64_KEY_LENGTH = 44  # len(base64 of 32 bytes), with its one "=" of padding


@dataclass(frozen=True, slots=True)
class SessionKey:
    """A parsed key: ``kind`` says whether ``material`` is a raw AES key or a passphrase.

    ``material`` is secret: it is kept out of ``repr``, ``str`` and comparisons' output.
    """

    kind: Literal["raw", "passphrase"]
    material: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"SessionKey(kind={self.kind!r})"


def generate_key() -> str:
    """A new random key: standard base64 of 32 bytes from :mod:`secrets` (44 characters)."""
    return base64.b64encode(secrets.token_bytes(KEY_LENGTH)).decode("ascii")


def parse_key(key: str | bytes | SessionKey) -> SessionKey:
    """Classify ``key`` as a raw 32-byte key or a passphrase (see the module docstring).

    Raises :class:`ValueError` for an empty key or for bytes that are neither 32 long nor
    UTF-8 text. The message never contains the key.
    """
    if isinstance(key, SessionKey):
        return key
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if len(raw) == KEY_LENGTH:
            return SessionKey("raw", raw)
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"a key given as bytes must be {KEY_LENGTH} raw bytes or UTF-8 text "
                f"(got {len(raw)} bytes that are neither)"
            ) from None
    if not isinstance(key, str):
        raise TypeError(f"a key must be str or bytes, not {type(key).__name__}")
    text = key.strip()
    if not text:
        raise ValueError(
            "the encryption key is empty; generate one with `tgsession keygen` "
            "(or tgsession.keys.generate_key())"
        )
    decoded = _decode_base64_key(text)
    if decoded is not None:
        return SessionKey("raw", decoded)
    return SessionKey("passphrase", text.encode("utf-8"))


def _decode_base64_key(text: str) -> bytes | None:
    """The 32 bytes ``text`` encodes as canonical padded base64, or ``None``."""
    if len(text) != _BASE64_KEY_LENGTH or not text.isascii():
        return None
    standard = text.replace("-", "+").replace("_", "/")
    if ("-" in text or "_" in text) and ("+" in text or "/" in text):
        return None  # a mix of both alphabets is not something an encoder prints
    try:
        raw = base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != KEY_LENGTH or base64.b64encode(raw).decode("ascii") != standard:
        return None  # non-canonical padding bits: not a key an encoder wrote
    return raw
