"""Exceptions raised by tgsession.

All of them derive from :class:`TgSessionError`, so one ``except`` catches them all::

    TgSessionError
    ├── SessionNotFoundError   (also a LookupError)  nothing is stored yet
    ├── SessionCorruptError                          stored data cannot be decoded
    │   └── SessionVersionError                      written by a newer tgsession
    ├── SessionDecryptError                          wrong key or tampered ciphertext
    ├── SessionLockedError                           another holder uses the session
    ├── LeaseLostError                               this holder's lease was taken over
    ├── SessionStorageError                          the storage failed to read or write
    ├── ConfigError                                  a missing or invalid setting
    └── AuthError                                    signing in cannot go on

Messages name the place (a file, a URL without its password, a variable) and never
contain a secret.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "LeaseLostError",
    "SessionCorruptError",
    "SessionDecryptError",
    "SessionLockedError",
    "SessionNotFoundError",
    "SessionStorageError",
    "SessionVersionError",
    "TgSessionError",
]


class TgSessionError(Exception):
    """Base class of every error raised by tgsession."""


class SessionNotFoundError(TgSessionError, LookupError):
    """The storage holds no session (nothing stored, or an empty value)."""


class SessionCorruptError(TgSessionError):
    """Stored data could not be decoded; the data itself is left untouched."""


class SessionVersionError(SessionCorruptError):
    """The session was written by a newer tgsession whose format this one cannot read."""


class SessionDecryptError(TgSessionError):
    """Encrypted session data could not be decrypted: wrong key, or the data was altered."""


class SessionLockedError(TgSessionError):
    """Another process or host holds the session; using it too would burn the auth key."""

    def __init__(self, message: str, *, holder: str | None = None) -> None:
        super().__init__(message)
        #: A description of the current holder (``pid 123 on host-a``), when known.
        self.holder = holder


class LeaseLostError(TgSessionError):
    """This holder's lease expired or was taken over; its writes are refused (fenced)."""


class SessionStorageError(TgSessionError):
    """The storage failed to read or write (disk full, I/O error, server unreachable)."""


class ConfigError(TgSessionError):
    """A setting is missing or invalid; the message names it and says how to fix it."""


class AuthError(TgSessionError):
    """Signing in cannot continue (too many wrong codes, sign-up required, ...)."""
