"""Redis storage: sessions shared across hosts, one key per named session.

Keys for the session ``NAME`` (the ``{NAME}`` hash tag keeps them in one Redis Cluster
slot, so the fencing scripts may touch them together):

- ``tgsession:{NAME}:session``   the session's bytes (a string);
- ``tgsession:{NAME}:entities``  the entity cache, a hash of peer id -> row;
- ``tgsession:{NAME}:entity_keys`` a hash of lookup key -> the peer id last stored with it;
- ``tgsession:{NAME}:lease``     the current holder (a hash with a PX TTL);
- ``tgsession:{NAME}:owner``     the token of the latest holder, kept after release so
  that a holder whose lease expired can take it back only if nobody took it since.

Every write by a lease holder runs as one Lua script that checks the lease token first
(fencing). A lookup is one round trip: ``HGET`` by id, or one script that follows a lookup
key to its row. A Redis without persistence (``--save "" --appendonly no``) forgets the
lease on restart, and the session too: the holder's renew task then re-creates the lease
if nobody else took it, and the session adapter writes its in-memory state back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

try:
    import redis.asyncio as aioredis
    from redis.asyncio.connection import parse_url
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "RedisStorage needs the redis package: pip install 'telethon-tgsession[redis]'"
    ) from exc

from .._errors import ConfigError, SessionNotFoundError, SessionStorageError
from ._lease import (
    DEFAULT_LEASE_TTL,
    HeldBy,
    LeasingStorage,
    ServerLease,
    current_token,
    describe_holder,
    locked_error,
)
from ._url_options import mask_secrets, redact_url, split_options, split_url, url_secrets
from .base import EntityRecord, lookup_key_bytes

__all__ = ["RedisStorage"]

# Query parameters of a redis:// URL handed to redis-py; anything else is a typo.
_DRIVER_OPTIONS = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry_on_timeout",
        "max_connections",
        "health_check_interval",
        "client_name",
        "protocol",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)

# Rows per script call when storing entities: bounded arguments per round trip.
_ENTITY_BATCH = 5000

# KEYS[1] lease hash, KEYS[2] owner; ARGV[1] token ("" for a write without a lease),
# ARGV[2] ttl in ms, ARGV[3] holder, ARGV[4] since. Returns {1} held, {2} taken back
# after it expired unclaimed, {0} lost to another holder, {-1, holder, since} when a
# write without a lease meets a live lease.
_FENCE = """
local function fence()
  local token = ARGV[1]
  local cur = redis.call('HGET', KEYS[1], 'token')
  if token == '' then
    if cur then
      local h = redis.call('HMGET', KEYS[1], 'holder', 'since')
      return {-1, h[1] or '', h[2] or ''}
    end
    return {1}
  end
  if cur == token then return {1} end
  if cur then return {0} end
  local last = redis.call('GET', KEYS[2])
  if last and last ~= token then return {0} end
  redis.call('HSET', KEYS[1], 'token', token, 'holder', ARGV[3], 'since', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], token)
  return {2}
end
"""


def _fenced_script(body: str) -> str:
    """A script that runs ``body`` with ``fence()`` defined; body returns its reply."""
    return _FENCE + body


_RENEW = _fenced_script("""
local r = fence()
if r[1] == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return r
""")

# KEYS[3] session key, ARGV[5] data.
_STORE_SESSION = _fenced_script("""
local r = fence()
if r[1] > 0 then
  if ARGV[5] == '' then redis.call('DEL', KEYS[3]) else redis.call('SET', KEYS[3], ARGV[5]) end
end
return r
""")

# KEYS[3] entities hash, KEYS[4] lookup-key hash; ARGV[5..] per record: id, row, the
# number of its keys, then the keys. Applied in order, so a later record wins.
_STORE_ENTITIES = _fenced_script("""
local r = fence()
if r[1] > 0 then
  local i = 5
  while i <= #ARGV do
    local id, n = ARGV[i], tonumber(ARGV[i + 2])
    redis.call('HSET', KEYS[3], id, ARGV[i + 1])
    for k = i + 3, i + 2 + n do redis.call('HSET', KEYS[4], ARGV[k], id) end
    i = i + 3 + n
  end
end
return r
""")

# KEYS[3] entities hash, KEYS[4] lookup-key hash.
_CLEAR_ENTITIES = _fenced_script("""
local r = fence()
if r[1] > 0 then redis.call('DEL', KEYS[3], KEYS[4]) end
return r
""")

# KEYS[3] session, KEYS[4] entities, KEYS[5] lookup keys: the session's keys and the owner
# mark go; the lease itself goes when its holder releases it (it expires anyway).
_DELETE = _fenced_script("""
local r = fence()
if r[1] > 0 then redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[2]) end
return r
""")

# KEYS[1] entities hash, KEYS[2] lookup-key hash; ARGV[1] key. {id, row} or nil.
_FIND_ENTITY = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return nil end
local row = redis.call('HGET', KEYS[1], id)
if not row then return nil end
return {id, row}
"""

# KEYS[1] lease, KEYS[2] owner, KEYS[3] session; ARGV[1] token, ARGV[2] ttl ms, ARGV[3]
# holder, ARGV[4] the token of a holder proven dead ('' for none): its live lease is
# replaced only while it still holds that token. Taking our own lease again is a
# success, so a retried call is harmless. A refusal is {0, holder, since, token}. The
# fourth value is 1 when the previous holder's lease expired instead of being released
# (the owner key then still names a token of someone else, not the dead one); the fifth
# is the session's bytes (nil when none), so that opening a session is this one call.
_ACQUIRE = """
local dead = ARGV[4] ~= '' and ARGV[4]
local cur = redis.call('HMGET', KEYS[1], 'token', 'holder', 'since')
if cur[1] and cur[1] ~= ARGV[1] and cur[1] ~= dead then
  return {0, cur[2] or '', cur[3] or '', cur[1]}
end
local last = redis.call('GET', KEYS[2])
local expired = 0
if not cur[1] and last and last ~= ARGV[1] and last ~= dead
    and string.sub(last, 1, 9) ~= 'released:' then
  expired = 1
end
local since = cur[1] == ARGV[1] and cur[3] or redis.call('TIME')[1]
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'holder', ARGV[3], 'since', since)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
return {1, ARGV[3], since, expired, redis.call('GET', KEYS[3])}
"""

# The owner key keeps the token, marked released: no stale holder can take the lease
# back, and the next holder knows that nobody may still be connected. Once the session
# itself was deleted (KEYS[3], logout) nothing is left to guard: the owner key goes too.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('SET', KEYS[2], 'released:' .. ARGV[1])
  else
    redis.call('DEL', KEYS[2])
  end
end
return 1
"""


class RedisStorage(LeasingStorage):
    """A session kept in Redis under its own keys, shared by every host that can reach it.

    ``redis`` is a ``redis://``/``rediss://`` URL (without tgsession options; see
    :meth:`from_url` for those) or a ``redis.asyncio.Redis`` client created with
    ``decode_responses=False`` (the storage then leaves closing it to you). ``name``
    selects the session, so many sessions share one server. Also an
    :class:`~tgsession.storage.EntityStorage` (a hash, written row by row) and a
    :class:`~tgsession.storage.Lockable` (see :meth:`acquire`).

    Nothing is connected until the first call. Server failures raise
    :class:`~tgsession.SessionStorageError`; redis-py reconnects on the next call (with a
    few quick retries), so the storage works again as soon as the server is back.

    >>> storage = RedisStorage.from_url("redis://localhost:6379/0?name=bot1")
    """

    def __init__(
        self,
        redis: aioredis.Redis | str = "redis://localhost:6379/0",
        *,
        name: str = "default",
        key_prefix: str = "tgsession",
        lease_ttl: float = DEFAULT_LEASE_TTL,
        lock_wait: float = 0.0,
    ) -> None:
        self._set_lease_options(name=name, lease_ttl=lease_ttl, lock_wait=lock_wait)
        if not key_prefix:
            raise ConfigError("RedisStorage: key_prefix must be a non-empty string")
        if isinstance(redis, str):
            self._client = _client_from_url(redis)
            self._owns_client = True
            self._url = redact_url(redis)
            self._secrets = url_secrets(redis)
        else:
            kwargs = redis.connection_pool.connection_kwargs
            if kwargs.get("decode_responses"):
                raise ConfigError(
                    "RedisStorage needs a client created with decode_responses=False: "
                    "sessions are bytes"
                )
            self._client = redis
            self._owns_client = False
            password = kwargs.get("password")
            self._secrets = (password,) if isinstance(password, str) and password else ()
            self._url = (
                f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
                f"/{kwargs.get('db', 0)}"
            )
        tag = f"{key_prefix}:{{{name}}}"
        self._session_key = f"{tag}:session"
        self._entities_key = f"{tag}:entities"
        self._entity_keys_key = f"{tag}:entity_keys"
        self._lease_key = f"{tag}:lease"
        self._owner_key = f"{tag}:owner"
        self._where = f"{self._url} (session {name!r})"
        #: The scripts registered so far (each on first use: a start runs one or two).
        self._scripts: dict[str, Any] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisStorage:
        """Build from ``redis://[[user]:password@]host[:port][/db][?options]``.

        Options: ``name``, ``lease_ttl``, ``lock_wait``, ``key_prefix`` and redis-py's
        connection options (``socket_timeout``, ``ssl_cert_reqs``, ...). Raises
        :class:`~tgsession.ConfigError` naming the URL with its password masked.
        """
        driver_url, options = split_options(
            url, prefix_option="key_prefix", allowed_extra=_DRIVER_OPTIONS
        )
        return cls(
            driver_url,
            name=options.name,
            key_prefix=options.prefix or "tgsession",
            lease_ttl=options.lease_ttl,
            lock_wait=options.lock_wait,
        )

    def __repr__(self) -> str:
        return f"RedisStorage({self._url!r}, name={self.name!r})"

    # -- Storage ---------------------------------------------------------------------

    async def load_session(self) -> bytes:
        data: bytes | None = await self._call(
            "load the session", self._client.get(self._session_key)
        )
        if not data:
            raise SessionNotFoundError(f"no session is stored in Redis at {self._where}")
        return bytes(data)

    async def store_session(self, data: bytes) -> None:
        """Replace the session (atomically: one SET), fenced by this storage's lease.

        Raises :class:`~tgsession.LeaseLostError` if this storage's lease was taken over,
        :class:`~tgsession.SessionLockedError` if it holds no lease and another holder
        does, :class:`~tgsession.SessionStorageError` if Redis fails.
        """
        await self._fenced(
            "store the session", self._script(_STORE_SESSION), [self._session_key], [bytes(data)]
        )

    # -- EntityStorage ---------------------------------------------------------------

    async def get_entity(self, entity_id: int) -> bytes | None:
        """The row stored under ``entity_id``, or ``None`` (one ``HGET``)."""
        row: bytes | None = await self._call(
            "look up an entity", self._client.hget(self._entities_key, str(int(entity_id)))
        )
        return None if row is None else bytes(row)

    async def find_entity(self, key: str) -> tuple[int, bytes] | None:
        """``(id, row)`` last stored with lookup key ``key``, or ``None`` (one script call)."""
        reply = await self._call(
            "look up an entity",
            self._script(_FIND_ENTITY)(
                keys=[self._entities_key, self._entity_keys_key], args=[lookup_key_bytes(key)]
            ),
        )
        if not reply:
            return None
        return int(reply[0]), bytes(reply[1])

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        """Upsert ``records`` with their lookup keys (fenced like :meth:`store_session`);
        one script call per ``5000`` records, each applied whole."""
        for start in range(0, len(records), _ENTITY_BATCH):
            args: list[bytes | str] = []
            for entity_id, row, keys in records[start : start + _ENTITY_BATCH]:
                args += (str(int(entity_id)), bytes(row), str(len(keys)))
                args += (lookup_key_bytes(key) for key in keys)
            await self._fenced(
                "store entities",
                self._script(_STORE_ENTITIES),
                [self._entities_key, self._entity_keys_key],
                args,
            )

    async def clear_entities(self) -> None:
        """Remove every row and lookup key (fenced)."""
        await self._fenced(
            "clear entities",
            self._script(_CLEAR_ENTITIES),
            [self._entities_key, self._entity_keys_key],
            [],
        )

    async def count_entities(self) -> int:
        """How many rows are stored (``HLEN``: no row is read)."""
        count = await self._call("count entities", self._client.hlen(self._entities_key))
        return int(count)

    async def iter_entities(self, batch: int = 1000) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Every ``(id, row)`` via ``HSCAN`` (about ``batch`` rows per round trip).

        Like any ``HSCAN``, a row stored or removed during the iteration may be missed
        or seen twice; every row present throughout is seen.
        """
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        cursor: int = 0
        while True:
            cursor, page = await self._call(
                "read entities",
                self._client.hscan(self._entities_key, cursor, count=batch),
            )
            items = [(int(key), bytes(value)) for key, value in page.items()]
            for start in range(0, len(items), batch):
                yield items[start : start + batch]
            if not cursor:
                return

    async def delete_session(self) -> None:
        """Remove the session, its entity cache and the owner mark (``logout`` leaves no key
        without a TTL behind), fenced like :meth:`store_session`; the lease key goes when
        the holder releases it."""
        lease = self._lease
        reply = await self._call(
            "delete the session",
            self._script(_DELETE)(
                keys=[
                    self._lease_key, self._owner_key, self._session_key, self._entities_key,
                    self._entity_keys_key,
                ],
                args=self._fence_args(current_token(lease), lease),
            ),
        )
        if reply[0] > 0:
            return
        if reply[0] == 0 and lease is not None:
            raise lease.taken_over()
        since = float(reply[2]) if len(reply) > 2 and reply[2] else None
        holder = describe_holder(reply[1].decode(errors="replace"), since) if len(reply) > 1 else ""
        raise locked_error("delete the session", self._where, holder)

    # -- Lockable --------------------------------------------------------------------

    async def _try_acquire(
        self, token: str, holder: str, dead_token: str | None = None
    ) -> ServerLease | HeldBy:
        reply = await self._call(
            "acquire the lease",
            self._script(_ACQUIRE)(
                keys=[self._lease_key, self._owner_key, self._session_key],
                args=[token, str(round(self.lease_ttl * 1000)), holder, dead_token or ""],
            ),
        )
        since = float(reply[2]) if reply[2] else None
        if reply[0] != 1:
            current = reply[3].decode(errors="replace") if len(reply) > 3 else None
            return HeldBy(reply[1].decode(errors="replace"), since, current or None)
        lease = ServerLease(
            self, token=token, holder=holder, since=since, ttl=self.lease_ttl, where=self._where,
            took_over_expired=len(reply) > 3 and reply[3] == 1,
        )
        lease.loaded = bytes(reply[4]) if len(reply) > 4 and reply[4] else None
        return lease

    async def _renew_lease(self, lease: ServerLease) -> bool:
        reply = await self._call(
            "renew the lease",
            self._script(_RENEW)(
                keys=[self._lease_key, self._owner_key], args=self._fence_args(lease.token, lease)
            ),
        )
        if reply[0] == 2:
            lease.note_taken_back()
        return bool(reply[0] > 0)

    async def _release_lease(self, lease: ServerLease) -> None:
        await self._call(
            "release the lease",
            self._script(_RELEASE)(
                keys=[self._lease_key, self._owner_key, self._session_key], args=[lease.token]
            ),
        )

    async def _close_connections(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- internals -------------------------------------------------------------------

    def _script(self, body: str) -> Any:
        """redis-py's script object for ``body`` (EVALSHA, loaded on a NOSCRIPT reply)."""
        script = self._scripts.get(body)
        if script is None:
            script = self._scripts[body] = self._client.register_script(body)
        return script

    def _fence_args(self, token: str | None, lease: ServerLease | None) -> list[bytes | str]:
        if token is None or lease is None:
            return ["", "0", "", ""]
        since = str(int(lease.since)) if isinstance(lease.since, float) else ""
        return [token, str(round(lease.ttl * 1000)), lease.holder_id, since]

    async def _fenced(
        self, what: str, script: Any, target_keys: list[str], extra_args: list[bytes | str]
    ) -> None:
        lease = self._lease
        token = current_token(lease)
        reply = await self._call(
            what,
            script(
                keys=[self._lease_key, self._owner_key, *target_keys],
                args=self._fence_args(token, lease) + extra_args,
            ),
        )
        status = reply[0]
        if status > 0:
            if status == 2 and lease is not None:
                lease.note_taken_back()
            return
        if status == 0 and lease is not None:
            raise lease.taken_over()
        since = float(reply[2]) if len(reply) > 2 and reply[2] else None
        holder = describe_holder(reply[1].decode(errors="replace"), since) if len(reply) > 1 else ""
        raise locked_error(what, self._where, holder)

    async def _call(self, what: str, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise SessionStorageError(
                f"Redis at {self._where} could not {what}: {type(exc).__name__}: "
                f"{mask_secrets(str(exc), self._secrets)}"
            ) from exc


def _client_from_url(url: str) -> aioredis.Redis:
    if split_url(url, "Redis URL").scheme.lower() not in ("redis", "rediss"):
        raise ConfigError(f"Redis URL {redact_url(url)!r} must start with redis:// or rediss://")
    _, options = split_options(url, prefix_option="key_prefix", allowed_extra=_DRIVER_OPTIONS)
    if options.given:
        raise ConfigError(
            f"Redis URL {redact_url(url)!r} sets {', '.join(sorted(options.given))}: pass "
            "the URL to RedisStorage.from_url(), or give them as keyword arguments"
        )
    try:
        parse_url(url)  # checks the driver's options now, not on first use
    except ValueError as exc:
        reason = mask_secrets(str(exc), url_secrets(url))
        raise ConfigError(f"Redis URL {redact_url(url)!r} is invalid: {reason}") from None
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=3,
        socket_timeout=5,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries=3),
        **_NO_CLIENT_INFO,
    )


def _no_client_info() -> dict[str, Any]:
    """Keyword arguments that keep redis-py's connection handshake to what tgsession needs.

    By default a new connection first sends ``HELLO 3`` (redis-py 8 speaks RESP3), then
    ``CLIENT MAINT_NOTIFICATIONS ON`` (each a round trip of its own) and ``CLIENT SETINFO``
    (library name and version) before the first useful command: every restart would pay
    for them. tgsession reads nothing that needs RESP3, so RESP2 is the default (a
    ``?protocol=3`` in the URL still wins), maintenance notifications are off, and no
    client info is sent (``driver_info=None`` in redis-py 8, ``lib_name=None,
    lib_version=None`` before)."""
    import inspect

    accepted = inspect.signature(aioredis.Redis.__init__).parameters
    options: dict[str, Any] = {"protocol": 2}
    if "driver_info" in accepted:
        options["driver_info"] = None
    else:
        options.update(lib_name=None, lib_version=None)
    if "maint_notifications_config" in accepted:
        from redis.maint_notifications import MaintNotificationsConfig

        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return options


_NO_CLIENT_INFO = _no_client_info()
