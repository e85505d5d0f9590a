"""Storage URL text: tgsession's query options, and passwords masked for messages.

A leaf module (no storage imported): the Redis and PostgreSQL storages parse their own URLs
with it, and :mod:`tgsession.storage.url` dispatches by scheme above them.

Masking assumes nothing about how well-formed a URL is. A password may hold unescaped
``@``, ``/``, ``#``, ``?`` or ``:``; the URL may have one slash after the scheme, an unknown
scheme (``redis+sentinel://``), or an unbalanced IPv6 bracket. So the user-info is
everything between the scheme and the LAST ``@`` in the whole URL (masking too much rather
than too little), and password-like parameters are masked wherever a ``?``, ``&``, ``;``
or ``#`` starts them.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .._errors import ConfigError
from ._lease import DEFAULT_LEASE_TTL, validate_lease_ttl

__all__ = [
    "StorageOptions",
    "mask_secrets",
    "quoted",
    "redact_url",
    "split_options",
    "split_url",
    "url_secrets",
]

_MASK = "***"
# Query parameters whose value is a secret, in any driver's dialect.
_SECRET_PARAMS = frozenset({"password", "passwd", "pass", "pwd", "sslpassword", "ssl_password"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_SERVER_SCHEMES = frozenset({"redis", "rediss", "postgresql", "postgres"})
_KNOWN_SCHEMES = _SERVER_SCHEMES | {"memory", "file"}
# Schemes whose user-info without a colon is a user name, not a password.
_USER_WITHOUT_PASSWORD = frozenset({"postgresql", "postgres", "file"})
# A key=value parameter anywhere. Its value runs to the next & or ; that starts another
# key=value: @, ?, #, and a & or ; not followed by one, may be part of a password.
_SECRET_PARAM = re.compile(r"[?&;#]([^?&;#=]*)=((?:[^&;]|[&;](?![\w.%-]*=))*)")
_SHOWABLE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``, safe for messages and logs.

    Masks the password of the user-info part (``redis://:***@host``,
    ``postgresql://user:***@host``), a user-info without a colon except for PostgreSQL
    (in Redis it is often a password written without its colon), and the values of
    password-like parameters. Never raises; on a malformed URL it masks more rather than
    less: what either reading below calls secret is masked.
    """
    masked = [False] * len(url)
    for start, end in _secret_spans(url):
        masked[start:end] = [True] * (end - start)
    out: list[str] = []
    for index, char in enumerate(url):
        if not masked[index]:
            out.append(char)
        elif index == 0 or not masked[index - 1]:
            out.append(_MASK)
    return "".join(out)


def url_secrets(url: str) -> tuple[str, ...]:
    """The passwords in ``url`` (as written and percent-decoded), for :func:`mask_secrets`.

    Never raises: the spans :func:`redact_url` masks, plus what ``urlsplit`` finds.
    """
    found = [url[start:end] for start, end in _secret_spans(url)]
    try:
        parts = urlsplit(url)
        found.append(parts.password or "")
        found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS]
    except ValueError:
        pass
    return tuple({s for secret in found for s in (secret, unquote(secret)) if s})


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Where secrets may be, as ``(start, end)`` offsets, by two readings at once:

    * the user-info runs from after ``scheme:`` and its slashes to the LAST ``@`` of the
      URL (a password may hold ``@``, ``/``, ``?`` or ``#``); its password is what follows
      the first ``:``, or all of it without one (except PostgreSQL's, a user name);
    * a password-like ``key=value`` starts after any ``?``, ``&``, ``;`` or ``#`` and runs
      to the next ``&`` or ``;`` (its value may hold ``@``, ``?`` or ``#``).
    """
    spans: list[tuple[int, int]] = []
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    body_start = 0
    if match:
        body_start = match.start(2)
        while body_start < len(url) and url[body_start] == "/":
            body_start += 1
    last_at = url.rfind("@")
    if scheme not in _KNOWN_SCHEMES and last_at > 0:
        # Perhaps no scheme at all ("user:pw@host"): read it as a user-info too.
        colon = url.find(":", 0, last_at)
        spans.append((colon + 1 if colon >= 0 else 0, last_at))
    if scheme != "file" and last_at >= body_start:
        colon = url.find(":", body_start, last_at)
        # A user name holds none of these, and follows exactly two slashes: otherwise the
        # URL is mangled, and what looks like a user name may be a password.
        user_end = colon if colon >= 0 else last_at
        plain_user = (
            match is not None and url[match.start(2):body_start] == "//"
            and not any(c in url[body_start:user_end] for c in "@/?#[]")
        )
        if not plain_user:
            spans.append((body_start, last_at))
        elif colon >= 0:
            spans.append((colon + 1, last_at))
        elif scheme not in _USER_WITHOUT_PASSWORD:
            spans.append((body_start, last_at))
    for index in range(body_start, len(url)):
        # Every separator, even inside another parameter's value: overlapping readings.
        param = _SECRET_PARAM.match(url, index) if url[index] in "?&;#" else None
        if param is None or unquote(param.group(1)).lower() not in _SECRET_PARAMS:
            continue
        end = param.end(2)
        if end == param.start(2) and end < len(url):
            # "password=&rest": an empty password is no password; an unescaped & is likelier.
            following = re.compile(r"[&;][^&;]*").match(url, end)
            end = following.end() if following else end
        spans.append((param.start(2), end))
    return [(start, end) for start, end in spans if end > start]


def split_url(url: str, what: str = "storage URL") -> SplitResult:
    """``urlsplit(url)``, checked: :class:`~tgsession.ConfigError` (password masked) for
    what ``urlsplit`` or its ``.port`` would raise ValueError on (an unbalanced ``[``, a
    port that is no number), for a ``#`` (never part of a storage URL: in a password it
    must be written ``%23``), for an ``@`` after a ``?`` (an unescaped ``?`` in the
    password would make the rest of it look like options), and for a Redis or PostgreSQL
    URL without exactly two slashes before its host (``redis:/:pw@host``)."""
    if "#" in url:
        raise ConfigError(
            f"{what} {redact_url(url)!r} holds a '#': percent-encode it as %23 (in a password "
            "too), and ? as %3F"
        )
    match = _SCHEME.match(url)
    if match is not None and match.group(1).lower() in _SERVER_SCHEMES:
        rest = match.group(2)
        slashes = len(rest) - len(rest.lstrip("/"))
        if slashes != 2 and not (slashes == 3 and "@" not in rest):
            raise ConfigError(
                f"{what} {redact_url(url)!r} must begin {match.group(1)}:// followed by the "
                "host (or {}:/// and no user for a local socket)".format(match.group(1))
            )
    query = url.find("?")
    if 0 <= query < url.rfind("@"):
        # Either the password holds a "?" or an option value holds an "@": which one, no
        # parser can tell, and guessing wrong would show a password as an option.
        raise ConfigError(
            f"{what} {redact_url(url)!r} has an '@' after a '?': percent-encode ? as %3F and "
            "@ as %40 in the password and in option values"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        reason = "an invalid port" if "port" in str(exc).lower() else "an invalid host"
        raise ConfigError(
            f"{what} {redact_url(url)!r} has {reason} (percent-encode any /, @, :, #, ?, [ "
            "or ] in the password)"
        ) from None
    return parts


def quoted(url: str, text: str) -> str:
    """``repr(text)`` for a message about ``url`` (an option name or value), or a note
    that it is not shown when it may be part of a password (an unescaped ``?`` or ``#``
    in a password makes the rest of it look like options)."""
    secrets = url_secrets(url)
    if _SHOWABLE.fullmatch(text) and not any(text in secret for secret in secrets):
        return repr(text)
    return "(not shown: it may be part of a password)"


def mask_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` (a driver's error message) with each of ``secrets`` masked.

    Drivers do not put passwords in their messages today; this keeps it so if one ever does.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


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
    parts = split_url(url)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError(f"storage URL {redact_url(url)!r} has a malformed query string") from None
    seen: set[str] = set()
    ours: dict[str, str] = {}
    extra: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"storage URL {redact_url(url)!r} sets {quoted(url, key)} twice")
        seen.add(key)
        if key in ("name", "lease_ttl", "lock_wait", prefix_option):
            ours[key] = value
        elif allowed_extra is not None and key not in allowed_extra:
            raise ConfigError(
                f"storage URL {redact_url(url)!r} has an unknown option {quoted(url, key)}; "
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
            f"storage URL {redact_url(url)!r}: {key}={quoted(url, raw)} is not a valid number "
            "of seconds"
            + (" (0.1 to 86400)" if key == "lease_ttl" else " (0 or more)")
        ) from None
    return value
