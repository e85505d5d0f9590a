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
    """The storage holds no session (nothing stored, or an empty value).

    Raised by every storage's ``load_session``; :meth:`StorageSession.open
    <tgsession.StorageSession.open>` and the factories treat it as "start a new session".
    """


class SessionCorruptError(TgSessionError):
    """Stored data could not be decoded; the data itself is left untouched.

    Raised when a session is opened (``StorageSession.open``, the factories, the CLI) and by
    the importers of :mod:`tgsession.formats`. The message names the source (a path, a URL
    without its password) and the field, and never quotes the data.
    """


class SessionVersionError(SessionCorruptError):
    """The session was written by a newer tgsession whose format this one cannot read.

    Raised where :class:`SessionCorruptError` is; upgrade tgsession to read the session.
    """


class SessionDecryptError(TgSessionError):
    """Encrypted session data could not be decrypted: wrong key, or the data was altered.

    Raised by :class:`~tgsession.EncryptedStorage` loads (so by ``StorageSession.open`` and
    the factories with ``SESSION_KEY`` set), also for a session that is not encrypted at
    all. The stored data is never changed by the refusal.
    """


class SessionLockedError(TgSessionError):
    """Another process or host holds the session; using it too would burn the auth key.

    Raised by ``acquire()`` of a :class:`~tgsession.Lockable` storage once ``lock_wait``
    seconds pass (so by ``StorageSession.open``, the factories and the CLI), and by a write
    without a lease while another holder has one. ``holder`` names the holder.
    """

    def __init__(self, message: str, *, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder
        """A description of the current holder (``pid 123 on host-a``), when known."""


class LeaseLostError(TgSessionError):
    """This holder's lease expired or was taken over; its writes are refused (fenced).

    Raised by ``Lease.check()`` and by the writes of a storage whose lease another holder
    took; ``StorageSession`` then stops writing and :class:`~tgsession.Client` disconnects.
    """


class SessionStorageError(TgSessionError):
    """The storage failed to read or write (disk full, I/O error, server unreachable).

    Raised by the built-in storages; ``StorageSession`` keeps the state in memory and
    retries a failed background write, and ``flush()`` raises it. The previously stored
    session stays.
    """


class ConfigError(TgSessionError):
    """A setting is missing or invalid; the message names it and says how to fix it.

    Raised by the factories, :func:`~tgsession.storage_from_url`, the storages'
    ``from_url`` and ``BotToken``/``EnvAuth``, before anything is connected or stored.
    """


class AuthError(TgSessionError):
    """Signing in cannot continue (too many wrong codes, sign-up required, ...).

    Raised by :func:`~tgsession.auth_if_necessary` and the flows; nothing is stored.
    """
