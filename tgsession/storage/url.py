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
passwords.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .._errors import ConfigError
from ._lease import DEFAULT_LEASE_TTL, validate_lease_ttl
from .base import Storage

__all__ = [
    "StorageOptions",
    "mask_secrets",
    "redact_url",
    "split_options",
    "storage_from_url",
    "url_secrets",
]

_MASK = "***"
# Query parameters whose value is a secret, in any driver's dialect.
_SECRET_PARAMS = frozenset({"password", "passwd", "pass", "pwd", "sslpassword", "ssl_password"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)

_SUPPORTED = "memory://, file:///path, redis://, rediss://, postgresql:// or postgres://"


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``, safe for messages and logs.

    Masks the password of the user-info part (``redis://:***@host``,
    ``postgresql://user:***@host``), a Redis user-info without a colon (often a
    password written without it), and password-like query parameters. Works on
    malformed URLs too, erring on the side of masking.
    """
    match = _SCHEME.match(url)
    if match is None:
        # Not a URL at all: mask anything that looks like credentials.
        return re.sub(r"^[^@/]*@", f"{_MASK}@", url) if "@" in url else url
    scheme, rest = match.group(1), match.group(2)
    fragment = ""
    if "#" in rest:
        rest, fragment = rest.split("#", 1)
        fragment = "#" + fragment
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
        query = "?" + _redact_query(query)
    if rest.startswith("//") and scheme.lower() != "file":
        authority_and_path = rest[2:]
        # The LAST "@" before the query ends the user-info, even if a password holds an
        # unescaped "/" or "@".
        userinfo, at, host_and_path = authority_and_path.rpartition("@")
        if at:
            rest = "//" + _redact_userinfo(scheme, userinfo) + "@" + host_and_path
    return f"{scheme}:{rest}{query}{fragment}"


def url_secrets(url: str) -> tuple[str, ...]:
    """The passwords in ``url`` (as written and percent-decoded), for :func:`mask_secrets`."""
    parts = urlsplit(url)
    found = [parts.password or ""]
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS]
    return tuple({s for secret in found for s in (secret, unquote(secret)) if s})


def mask_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` (a driver's error message) with each of ``secrets`` masked.

    Drivers do not put passwords in their messages today; this keeps it so if one ever does.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def _redact_userinfo(scheme: str, userinfo: str) -> str:
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{user}:{_MASK}"
    if scheme.lower() in ("redis", "rediss"):
        return _MASK
    return user


def _redact_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        key, eq, _value = part.partition("=")
        if eq and unquote(key).lower() in _SECRET_PARAMS:
            part = f"{key}={_MASK}"
        parts.append(part)
    return "&".join(parts)


class StorageOptions:
    """The tgsession options of a Redis or PostgreSQL URL, validated."""

    __slots__ = ("extra", "given", "lease_ttl", "lock_wait", "name", "prefix")

    def __init__(
        self,
        *,
        name: str,
        lease_ttl: float,
        lock_wait: float,
        prefix: str | None,
        extra: dict[str, str],
        given: frozenset[str],
    ) -> None:
        self.name = name
        self.lease_ttl = lease_ttl
        self.lock_wait = lock_wait
        #: ``key_prefix`` (Redis) or ``table_prefix`` (PostgreSQL), when given.
        self.prefix = prefix
        #: The remaining query parameters, meant for the driver.
        self.extra = extra
        #: The tgsession options the URL actually sets.
        self.given = given


def split_options(
    url: str, *, prefix_option: str, allowed_extra: frozenset[str] | None = None
) -> tuple[str, StorageOptions]:
    """Take tgsession's options out of ``url``'s query string.

    Returns the URL with only the driver's parameters left, and the options. Raises
    :class:`~tgsession.ConfigError` (with the URL redacted) for an invalid value, or for a
    parameter not in ``allowed_extra`` when that set is given.
    """
    parts = urlsplit(url)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError(f"storage URL {redact_url(url)!r} has a malformed query string") from None
    seen: set[str] = set()
    ours: dict[str, str] = {}
    extra: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"storage URL {redact_url(url)!r} sets {key!r} twice")
        seen.add(key)
        if key in ("name", "lease_ttl", "lock_wait", prefix_option):
            ours[key] = value
        elif allowed_extra is not None and key not in allowed_extra:
            raise ConfigError(
                f"storage URL {redact_url(url)!r} has an unknown option {key!r}; "
                f"tgsession understands name, lease_ttl, lock_wait and {prefix_option}"
            )
        else:
            extra[key] = value
    name = ours.get("name", "default")
    if not name:
        raise ConfigError(f"storage URL {redact_url(url)!r}: name= must not be empty")
    options = StorageOptions(
        name=name,
        lease_ttl=_seconds(url, "lease_ttl", ours.get("lease_ttl"), DEFAULT_LEASE_TTL),
        lock_wait=_seconds(url, "lock_wait", ours.get("lock_wait"), 0.0),
        prefix=ours.get(prefix_option),
        extra=extra,
        given=frozenset(ours),
    )
    if options.prefix == "":
        raise ConfigError(f"storage URL {redact_url(url)!r}: {prefix_option}= must not be empty")
    query = urlencode(list(extra.items()), quote_via=quote)
    return urlunsplit(parts._replace(query=query)), options


def _seconds(url: str, key: str, raw: str | None, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
        if key == "lease_ttl":
            return validate_lease_ttl(value)
        if not 0 <= value < float("inf"):
            raise ValueError(value)
    except ValueError:
        raise ConfigError(
            f"storage URL {redact_url(url)!r}: {key}={raw!r} is not a valid number of seconds"
            + (" (0.1 to 86400)" if key == "lease_ttl" else " (0 or more)")
        ) from None
    return value


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
    parts = urlsplit(url)
    if parts.query or parts.fragment or parts.netloc or parts.path:
        raise ConfigError(
            f"storage URL {redact_url(url)!r}: memory:// takes no host, path or options"
        )


def _file_storage(url: str) -> Storage:
    parts = urlsplit(url)
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
