"""Storage URLs: one string (``SESSION_URL``) picks and configures a storage.

=====================================================  ======================================
URL                                                    storage
=====================================================  ======================================
``memory://``                                          :class:`~tgsession.MemoryStorage`
``file:///abs/path/session.json``                      ``FileStorage("/abs/path/session.json")``
``file:relative/session.json``                         ``FileStorage("relative/session.json")``
``redis://[[user]:password@]host[:port][/db]``         :class:`~tgsession.RedisStorage`
``rediss://...`` (TLS)                                 :class:`~tgsession.RedisStorage`
``postgresql://user[:password]@host[:port]/db``        :class:`~tgsession.PostgresStorage`
``postgres://...``                                     :class:`~tgsession.PostgresStorage`
=====================================================  ======================================

Options for Redis and PostgreSQL, in the query string:

- ``name=`` the session's name (default ``default``): many sessions share one server;
- ``lease_ttl=`` seconds a holder's lease lives without renewal (default 15);
- ``lock_wait=`` seconds ``acquire()`` waits for another holder to let go (default 0:
  fail fast). Set it for rolling deploys, e.g. ``lock_wait=30``;
- Redis: ``key_prefix=`` (default ``tgsession``) and the redis-py connection options
  (``socket_timeout``, ``ssl_cert_reqs``, ...);
- PostgreSQL: ``table_prefix=`` (default ``tgsession``: tables ``tgsession_sessions`` and
  ``tgsession_entities``), plus anything libpq-style that asyncpg understands
  (``sslmode``, ``application_name``, ...).

``file://relative`` is refused: in a URL the part after ``//`` is a host, so it would
silently mean something else than it reads. Write ``file:relative/path`` (relative to the
working directory) or ``file:///absolute/path``.

Every message, ``repr`` and log line shows URLs through :func:`redact_url`, which masks
passwords, however malformed the URL. Parsing options and masking live in the leaf module
``_url_options`` (the Redis and PostgreSQL storages use it); this module only dispatches
by scheme, importing each backend when its scheme is used.
"""

from __future__ import annotations

from urllib.parse import unquote

from .._errors import ConfigError
from ._url_options import (
    _SCHEME,
    StorageOptions,
    mask_secrets,
    redact_url,
    split_options,
    split_url,
    url_secrets,
)
from .base import Storage

__all__ = [
    "StorageOptions",
    "mask_secrets",
    "redact_url",
    "split_options",
    "split_url",
    "storage_from_url",
    "url_secrets",
]

_SUPPORTED = "memory://, file:///path, redis://, rediss://, postgresql:// or postgres://"


def storage_from_url(url: str) -> Storage:
    """Build the storage a URL describes (see the module docstring for the schemes).

    Nothing is connected yet: Redis and PostgreSQL connect on first use. Raises
    :class:`~tgsession.ConfigError`, naming the URL with its password masked, for an
    unsupported scheme or an invalid option, and ImportError naming the extra to install
    (``pip install 'telethon-tgsession[redis]'``) when the driver is missing.

    >>> storage_from_url("memory://")
    MemoryStorage(stored=False)
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"storage URL must be a non-empty string such as {_SUPPORTED}")
    url = url.strip()
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme == "memory":
        _refuse_memory_extras(url)
        from .memory import MemoryStorage

        return MemoryStorage()
    if scheme == "file":
        return _file_storage(url)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStorage

        return RedisStorage.from_url(url)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStorage

        return PostgresStorage.from_url(url)
    if not scheme:
        raise ConfigError(f"storage URL {redact_url(url)!r} has no scheme; use one of {_SUPPORTED}")
    raise ConfigError(
        f"storage URL {redact_url(url)!r} has an unsupported scheme {scheme + '://'!r}; "
        f"use one of {_SUPPORTED}"
    )


def _refuse_memory_extras(url: str) -> None:
    parts = split_url(url)
    if parts.query or parts.fragment or parts.netloc or parts.path:
        raise ConfigError(
            f"storage URL {redact_url(url)!r}: memory:// takes no host, path or options"
        )


def _file_storage(url: str) -> Storage:
    if "#" in url or "?" in url:
        raise ConfigError(f"storage URL {redact_url(url)!r}: file URLs take no options")
    parts = split_url(url)
    if parts.query or parts.fragment:
        raise ConfigError(f"storage URL {redact_url(url)!r}: file URLs take no options")
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(
            f"storage URL {redact_url(url)!r} names a host ({parts.netloc!r}); write "
            "file:///absolute/path or file:relative/path"
        )
    path = unquote(parts.path)
    if not path or path.endswith("/"):
        raise ConfigError(
            f"storage URL {redact_url(url)!r} needs a file path, such as "
            "file:///var/lib/bot/session.json"
        )
    from .file import FileStorage

    storage: Storage = FileStorage(path)
    return storage
