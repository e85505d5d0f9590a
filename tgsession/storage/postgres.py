"""PostgreSQL storage: sessions shared across hosts, one row per named session.

Why asyncpg: it is async-native (no thread pool between the event loop and the
database), among the fastest PostgreSQL drivers for Python, ships as a wheel that needs no
libpq on the host, and is mature and widely deployed. tgsession's queries are few and
simple, so asyncpg's PostgreSQL-only API costs nothing here.

Three tables, created on first use if missing (``table_prefix`` defaults to ``tgsession``)::

    tgsession_sessions     (name text PRIMARY KEY, data bytea, lease_token, lease_holder,
                            lease_since, lease_expires, updated_at)
    tgsession_entities     (session text, id bigint, data bytea, PRIMARY KEY (session, id))
    tgsession_entity_keys  (session text, key bytea, id bigint, PRIMARY KEY (session, key))

The lease lives in the session's row; its expiry is computed with the server's ``now()``.
A holder's writes are fenced: ``UPDATE ... WHERE lease_token = <ours>`` for the session;
for entity rows, ONE statement whose first CTE holds the session row ``FOR SHARE`` and
checks the lease, and whose other CTEs write only when it holds, so a holder whose lease
was taken over cannot overwrite the newer holder's data, in one round trip. Lookups are
one indexed statement each (by id, or by lookup key joined to its row).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - exercised with the extra missing
    raise ImportError(
        "PostgresStorage needs the asyncpg package: pip install 'telethon-tgsession[postgres]'"
    ) from exc

from .._errors import (
    ConfigError,
    SessionNotFoundError,
    SessionStorageError,
    TgSessionError,
)
from ._lease import (
    DEFAULT_LEASE_TTL,
    HeldBy,
    LeasingStorage,
    ServerLease,
    current_token,
    describe_holder,
    locked_error,
)
from ._url_options import (
    mask_secrets,
    quoted,
    redact_url,
    split_options,
    split_url,
    url_secrets,
)
from .base import EntityRecord, lookup_key_bytes

__all__ = ["PostgresStorage"]

_T = TypeVar("_T")

_IDENTIFIER = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
# Serialises CREATE TABLE IF NOT EXISTS across processes: run concurrently, two of them
# can both miss the table and one fails on the catalog's unique index.
_SCHEMA_LOCK = 0x7467_7365_7373_0001

# Failures after which the statement is retried once on a fresh connection: the server
# closed the connection (restart, pg_terminate_backend, network drop). Every statement
# here is idempotent, so a retry after a lost reply is harmless.
_RECONNECT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,
)
_STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)


class PostgresStorage(LeasingStorage):
    """A session kept in a PostgreSQL row, shared by every host that can reach the server.

    ``dsn`` is a ``postgresql://user[:password]@host[:port]/db`` URL (without tgsession
    options; see :meth:`from_url`), or an ``asyncpg.Pool`` that the storage then uses but
    never closes. ``name`` selects the session's row, so many sessions share one table.
    Also an :class:`~tgsession.storage.EntityStorage` (one row per entity, upserted in one
    statement per save) and a :class:`~tgsession.storage.Lockable` (see :meth:`acquire`).

    Nothing is connected until the first call; the tables are created when a statement
    finds them missing (no schema query on the hot path once they exist). Failures raise
    :class:`~tgsession.SessionStorageError`; a connection the server closed is replaced on
    the next call (the pool reconnects, and a statement that met a dead connection is
    retried once on a new one).

    >>> storage = PostgresStorage.from_url("postgresql://bot@db.internal/bots?name=bot1")
    """

    def __init__(
        self,
        dsn: str | asyncpg.Pool = "postgresql://localhost/postgres",
        *,
        name: str = "default",
        table_prefix: str = "tgsession",
        lease_ttl: float = DEFAULT_LEASE_TTL,
        lock_wait: float = 0.0,
    ) -> None:
        self._set_lease_options(name=name, lease_ttl=lease_ttl, lock_wait=lock_wait)
        if not _IDENTIFIER.match(table_prefix):
            raise ConfigError(
                f"PostgresStorage: table_prefix {table_prefix!r} must be an SQL identifier "
                "(letters, digits, _), optionally schema-qualified (myschema.tgsession)"
            )
        self._pool: Any = None
        self._dsn: str | None = None
        self._secrets: tuple[str, ...] = ()
        if isinstance(dsn, str):
            if split_url(dsn, "PostgreSQL URL").scheme.lower() not in ("postgresql", "postgres"):
                raise ConfigError(
                    f"PostgreSQL URL {redact_url(dsn)!r} must start with postgresql:// "
                    "or postgres://"
                )
            _, options = split_options(dsn, prefix_option="table_prefix")
            if options.given:
                raise ConfigError(
                    f"PostgreSQL URL {redact_url(dsn)!r} sets {', '.join(sorted(options.given))}"
                    ": pass the URL to PostgresStorage.from_url(), or give them as keyword "
                    "arguments"
                )
            parts = split_url(dsn, "PostgreSQL URL")
            if not parts.path.strip("/") and not re.search(r"(^|&)(dbname|database)=",
                                                           parts.query):
                # asyncpg would fall back to the OS user's database over the local socket.
                raise ConfigError(
                    f"PostgreSQL URL {redact_url(dsn)!r} names no database: use "
                    "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
                )
            self._dsn = dsn
            self._url = redact_url(dsn)
            self._secrets = url_secrets(dsn)
            self._owns_pool = True
            self._application_name = (
                None if "application_name" in options.extra else f"tgsession:{name}"[:63]
            )
        else:
            self._pool = dsn
            self._url = "postgresql://(pool)"
            self._owns_pool = False
            self._application_name = None
        schema, _, base = table_prefix.rpartition(".")
        qualify = f'"{schema}".' if schema else ""
        base += "" if base.endswith("_") else "_"  # table_prefix=foo_ means foo_sessions
        self._sessions = f'{qualify}"{base}sessions"'
        self._entities = f'{qualify}"{base}entities"'
        self._entity_keys = f'{qualify}"{base}entity_keys"'
        self._where = f"{self._url} (session {name!r})"
        self._setup_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> PostgresStorage:
        """Build from ``postgresql://user[:password]@host[:port]/db[?options]``.

        Options: ``name``, ``lease_ttl``, ``lock_wait``, ``table_prefix``; any other query
        parameter goes to asyncpg (``sslmode``, ``application_name``, server settings).
        Raises :class:`~tgsession.ConfigError` naming the URL with its password masked.
        """
        driver_url, options = split_options(url, prefix_option="table_prefix")
        if options.prefix is not None and not _IDENTIFIER.match(options.prefix):
            raise ConfigError(
                f"storage URL {redact_url(url)!r}: table_prefix="
                f"{quoted(url, options.prefix)} must be an SQL identifier (letters, digits, _), "
                "optionally schema-qualified"
            )
        return cls(
            driver_url,
            name=options.name,
            table_prefix=options.prefix or "tgsession",
            lease_ttl=options.lease_ttl,
            lock_wait=options.lock_wait,
        )

    def __repr__(self) -> str:
        return f"PostgresStorage({self._url!r}, name={self.name!r})"

    # -- Storage ---------------------------------------------------------------------

    async def load_session(self) -> bytes:
        sql = f"SELECT data FROM {self._sessions} WHERE name = $1"
        data = await self._run("load the session", lambda c: c.fetchval(sql, self.name))
        if not data:
            raise SessionNotFoundError(f"no session is stored in PostgreSQL at {self._where}")
        return bytes(data)

    async def store_session(self, data: bytes) -> None:
        """Replace the session (one UPDATE or upsert), fenced by this storage's lease.

        Raises :class:`~tgsession.LeaseLostError` if this storage's lease was taken over,
        :class:`~tgsession.SessionLockedError` if it holds no lease and another holder
        does, :class:`~tgsession.SessionStorageError` if the database fails.
        """
        data = bytes(data)
        lease = self._lease
        token = current_token(lease)
        if token is not None:
            sql = (
                f"UPDATE {self._sessions} SET data = $2, updated_at = now() "
                "WHERE name = $1 AND lease_token = $3"
            )
            status = await self._run(
                "store the session", lambda c: c.execute(sql, self.name, data, token)
            )
            if status.split()[-1] == "0":
                assert lease is not None  # a token comes from a lease
                raise lease.taken_over()
            return
        sql = (
            f"INSERT INTO {self._sessions} AS s (name, data) VALUES ($1, $2) "
            "ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data, updated_at = now() "
            "WHERE s.lease_token IS NULL OR s.lease_expires <= now() RETURNING 1"
        )
        stored = await self._run("store the session", lambda c: c.fetchval(sql, self.name, data))
        if stored is None:
            await self._refuse_unleased("store the session")

    # -- EntityStorage ---------------------------------------------------------------

    async def get_entity(self, entity_id: int) -> bytes | None:
        """The row stored under ``entity_id``, or ``None`` (one indexed SELECT)."""
        if not -(1 << 63) <= entity_id < 1 << 63:
            return None  # no bigint holds it
        sql = f"SELECT data FROM {self._entities} WHERE session = $1 AND id = $2"
        data = await self._run(
            "look up an entity", lambda c: c.fetchval(sql, self.name, int(entity_id))
        )
        return None if data is None else bytes(data)

    async def find_entity(self, key: str) -> tuple[int, bytes] | None:
        """``(id, row)`` last stored with lookup key ``key``, or ``None`` (one SELECT)."""
        sql = (
            f"SELECT e.id, e.data FROM {self._entity_keys} AS k JOIN {self._entities} AS e "
            "ON e.session = k.session AND e.id = k.id WHERE k.session = $1 AND k.key = $2"
        )
        raw = lookup_key_bytes(key)
        row = await self._run("look up an entity", lambda c: c.fetchrow(sql, self.name, raw))
        return None if row is None else (int(row["id"]), bytes(row["data"]))

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        """Upsert ``records`` with their lookup keys: ONE statement, fenced like
        :meth:`store_session` (the lease check and both upserts are one atomic step)."""
        if not records:
            return
        rows: dict[int, bytes] = {}
        keys: dict[bytes, int] = {}
        for entity_id, row, row_keys in records:  # later records win, as in one upsert
            rows[int(entity_id)] = bytes(row)
            for key in row_keys:
                keys[lookup_key_bytes(key)] = int(entity_id)
        write = (
            f"rows AS (INSERT INTO {self._entities} (session, id, data) "
            "SELECT $1, u.id, u.data FROM unnest($3::bigint[], $4::bytea[]) AS u(id, data), "
            "fence WHERE fence.ok "
            "ON CONFLICT (session, id) DO UPDATE SET data = EXCLUDED.data), "
            f"keys AS (INSERT INTO {self._entity_keys} (session, key, id) "
            "SELECT $1, u.key, u.id FROM unnest($5::bytea[], $6::bigint[]) AS u(key, id), "
            "fence WHERE fence.ok "
            "ON CONFLICT (session, key) DO UPDATE SET id = EXCLUDED.id)"
        )
        args = (list(rows), list(rows.values()), list(keys), list(keys.values()))
        await self._fenced_statement("store entities", write, *args)

    async def clear_entities(self) -> None:
        """Remove every row and lookup key (one fenced statement)."""
        write = (
            f"rows AS (DELETE FROM {self._entities} WHERE session = $1 "
            "AND (SELECT ok FROM fence)), "
            f"keys AS (DELETE FROM {self._entity_keys} WHERE session = $1 "
            "AND (SELECT ok FROM fence))"
        )
        await self._fenced_statement("clear entities", write)

    async def count_entities(self) -> int:
        """How many rows are stored (``count(*)`` on the server; no row is sent)."""
        sql = f"SELECT count(*) FROM {self._entities} WHERE session = $1"
        return int(await self._run("count entities", lambda c: c.fetchval(sql, self.name)))

    async def iter_entities(self, batch: int = 1000) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Every ``(id, row)`` in id order, one indexed SELECT per ``batch`` rows."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        first = f"SELECT id, data FROM {self._entities} WHERE session = $1 ORDER BY id LIMIT $2"
        after = (
            f"SELECT id, data FROM {self._entities} WHERE session = $1 AND id > $3 "
            "ORDER BY id LIMIT $2"
        )
        last: int | None = None
        while True:
            sql, args = (first, ()) if last is None else (after, (last,))
            page = await self._run(
                "read entities", functools.partial(_fetch, sql, self.name, batch, *args)
            )
            if not page:
                return
            yield [(int(row["id"]), bytes(row["data"])) for row in page]
            if len(page) < batch:
                return
            last = int(page[-1]["id"])

    async def delete_session(self) -> None:
        """Remove the session's row (lease columns included), its entity rows and lookup
        keys in one statement, fenced like :meth:`store_session`: ``logout`` leaves no
        empty row."""
        write = (
            f"keys AS (DELETE FROM {self._entity_keys} WHERE session = $1 "
            "AND (SELECT ok FROM fence)), "
            f"rows AS (DELETE FROM {self._entities} WHERE session = $1 "
            "AND (SELECT ok FROM fence)), "
            f"doc AS (DELETE FROM {self._sessions} WHERE name = $1 "
            "AND (SELECT ok FROM fence))"
        )
        await self._fenced_statement("delete the session", write)

    # -- Lockable --------------------------------------------------------------------

    async def _try_acquire(
        self, token: str, holder: str, dead_token: str | None = None
    ) -> ServerLease | HeldBy:
        # Taking our own lease again counts as success, so a retried statement is harmless.
        # A live lease is taken only if its token is ``dead_token`` (its holder was proven
        # dead): the row's latest version is checked, so a new holder's lease is kept.
        # ``previous`` tells whether the lease we take had expired under another holder:
        # the token of a lease already expired in the statement's snapshot. A lease live
        # in the snapshot that we take anyway was released while the statement waited for
        # the row (the upsert re-checks the latest version; the snapshot does not): no
        # takeover, no grace. ``now()`` is fixed for the statement, so expiry cannot
        # differ between the two.
        # The statement also returns the session's bytes, so that acquire_and_load()
        # takes the lease and reads the session in this one round trip.
        claim = (
            f"WITH previous AS (SELECT lease_token FROM {self._sessions} "
            "WHERE name = $1 AND lease_expires <= now()) "
            f"INSERT INTO {self._sessions} AS s "
            "(name, lease_token, lease_holder, lease_since, lease_expires) "
            "VALUES ($1, $2, $3, now(), now() + make_interval(secs => $4)) "
            "ON CONFLICT (name) DO UPDATE SET lease_token = EXCLUDED.lease_token, "
            "lease_holder = EXCLUDED.lease_holder, lease_expires = EXCLUDED.lease_expires, "
            "lease_since = CASE WHEN s.lease_token = EXCLUDED.lease_token "
            "THEN s.lease_since ELSE now() END "
            "WHERE s.lease_token IS NULL OR s.lease_expires <= now() "
            "OR s.lease_token = EXCLUDED.lease_token OR s.lease_token = $5::text "
            "RETURNING lease_since, (SELECT lease_token FROM previous) AS previous_token, s.data"
        )
        for _ in range(3):  # the holder may let go between our two statements
            row = await self._run(
                "acquire the lease",
                lambda c: c.fetchrow(
                    claim, self.name, token, holder, self.lease_ttl, dead_token
                ),
            )
            if row is not None:
                previous = row["previous_token"]
                lease = ServerLease(
                    self, token=token, holder=holder, since=row["lease_since"],
                    ttl=self.lease_ttl, where=self._where,
                    took_over_expired=previous not in (None, token, dead_token),
                )  # fmt: skip
                lease.loaded = bytes(row["data"]) or None
                return lease
            current = await self._live_holder()
            if current is not None:
                return current
        return HeldBy("another holder", None, None)

    async def _renew_lease(self, lease: ServerLease) -> bool:
        sql = (
            f"UPDATE {self._sessions} SET lease_expires = now() + make_interval(secs => $3) "
            "WHERE name = $1 AND lease_token = $2"
        )
        status = await self._run(
            "renew the lease", lambda c: c.execute(sql, self.name, lease.token, lease.ttl)
        )
        return bool(status.split()[-1] != "0")

    async def _release_lease(self, lease: ServerLease) -> None:
        sql = (
            f"UPDATE {self._sessions} SET lease_token = NULL, lease_holder = NULL, "
            "lease_since = NULL, lease_expires = NULL WHERE name = $1 AND lease_token = $2"
        )
        await self._run("release the lease", lambda c: c.execute(sql, self.name, lease.token))

    async def _close_connections(self) -> None:
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # -- internals -------------------------------------------------------------------

    async def _fenced_statement(self, what: str, writes: str, *args: Any) -> None:
        """Run data-modifying CTEs ``writes`` (parameters ``$3``...) in ONE statement that
        holds the session row FOR SHARE and writes only when the lease allows it.

        ``writes`` guard themselves with the ``fence`` CTE (``fence.ok``). The row lock
        keeps a new holder from taking the lease until the statement commits, so the
        lease check and the writes are one atomic step, in one round trip.
        """
        lease = self._lease
        token = current_token(lease)
        sql = (
            "WITH lease AS (SELECT lease_token, lease_holder, lease_since, "
            f"lease_expires > now() AS live FROM {self._sessions} WHERE name = $1 FOR SHARE), "
            "fence AS (SELECT CASE WHEN $2::text IS NOT NULL "
            "THEN EXISTS (SELECT 1 FROM lease WHERE lease_token = $2::text) "
            "ELSE NOT EXISTS (SELECT 1 FROM lease WHERE lease_token IS NOT NULL AND live) "
            f"END AS ok), {writes} "
            "SELECT fence.ok, lease.lease_holder, lease.lease_since "
            "FROM fence LEFT JOIN lease ON true"
        )
        outcome = await self._run(what, lambda c: c.fetchrow(sql, self.name, token, *args))
        if outcome["ok"]:
            return
        if token is not None and lease is not None:
            raise lease.taken_over()
        raise locked_error(
            what, self._where, describe_holder(outcome["lease_holder"], outcome["lease_since"])
        )

    async def _live_holder(self) -> HeldBy | None:
        sql = (
            f"SELECT lease_holder, lease_since, lease_token FROM {self._sessions} "
            "WHERE name = $1 AND lease_token IS NOT NULL AND lease_expires > now()"
        )
        row = await self._run("read the lease", lambda c: c.fetchrow(sql, self.name))
        if row is None:
            return None
        return HeldBy(row["lease_holder"] or "", row["lease_since"], row["lease_token"])

    async def _refuse_unleased(self, what: str) -> None:
        current = await self._live_holder()
        holder = "another holder" if current is None else current.describe()
        raise locked_error(what, self._where, holder)

    async def _ready(self) -> Any:
        """The pool, created on first use (no connection is made until a statement runs)."""
        if self._pool is not None:
            return self._pool
        async with self._setup_lock:
            if self._pool is None:
                settings = {}
                if self._application_name:
                    settings["application_name"] = self._application_name
                connect = {}
                if _CONNECT_HOOK and self._dsn is not None and _plain_first(self._dsn):
                    connect["connect"] = _connect_plain_first
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=0,
                        max_size=4,
                        timeout=5,
                        command_timeout=10,
                        server_settings=settings,
                        **_NO_RESET,
                        **connect,
                    )
                except (asyncpg.ClientConfigurationError, ValueError) as exc:
                    raise ConfigError(
                        f"PostgreSQL URL {self._url!r} is invalid: "
                        f"{mask_secrets(str(exc), self._secrets)}"
                    ) from None
        return self._pool

    async def _create_tables(self, conn: Any) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._sessions} ("
                " name text PRIMARY KEY,"
                " data bytea NOT NULL DEFAULT ''::bytea,"
                " lease_token text,"
                " lease_holder text,"
                " lease_since timestamptz,"
                " lease_expires timestamptz,"
                " updated_at timestamptz NOT NULL DEFAULT now());"
                f"CREATE TABLE IF NOT EXISTS {self._entities} ("
                " session text NOT NULL,"
                " id bigint NOT NULL,"
                " data bytea NOT NULL,"
                " PRIMARY KEY (session, id));"
                f"CREATE TABLE IF NOT EXISTS {self._entity_keys} ("
                " session text NOT NULL,"
                " key bytea NOT NULL,"
                " id bigint NOT NULL,"
                " PRIMARY KEY (session, key));"
            )

    async def _run(self, what: str, op: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``op`` on a pooled connection; driver failures become SessionStorageError."""
        try:
            pool = await self._ready()
            try:
                return await self._with_connection(pool, op)
            except asyncpg.UndefinedTableError:
                # First use of these tables: create them, then run the statement again.
                # Checking for them before every first statement would cost a round trip
                # on every start; a missing table is found by the statement itself.
                await self._with_connection(pool, self._create_tables)
                return await self._with_connection(pool, op)
        except TgSessionError:
            raise
        except _STORAGE_ERRORS as exc:
            raise SessionStorageError(
                f"PostgreSQL at {self._where} could not {what}: {type(exc).__name__}: "
                f"{mask_secrets(str(exc), self._secrets)}"
            ) from exc

    @staticmethod
    async def _with_connection(pool: Any, op: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run ``op`` on a connection of its own; once more on a fresh one if it was dead.

        The connection is only ever handed back through the pool's API, never touched after
        a failure: when the server ends a connection, asyncpg may already have detached it
        from our proxy and put its holder back in the pool (where another task can take
        it), so calling anything on the proxy then fails or races. Instead the pool is told
        to replace every connection it has (``expire_connections``: after a server restart
        they are all dead) and the failed one is released, which closes it. The retry then
        starts on a new connection, and each statement runs alone on its connection.
        """
        for attempt in (1, 2):
            conn = await _acquire_fresh_enough(pool)
            try:
                result = await op(conn)
            except _RECONNECT_ERRORS:
                await _discard(pool, conn)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                await _release(pool, conn)
                raise
            await _release(pool, conn)  # the statement's outcome stands, whatever this meets
            return result
        raise AssertionError("unreachable")  # pragma: no cover


# Connecting may meet the same outage as the statement (a server restarting, a backend
# killed while it starts): a few quick tries, so one bad moment is not one failed write.
_CONNECT_TRIES = 3
_CONNECT_PAUSE = 0.05


async def _acquire_fresh_enough(pool: Any) -> Any:
    for attempt in range(1, _CONNECT_TRIES + 1):
        try:
            return await pool.acquire()
        except _RECONNECT_ERRORS:
            if attempt == _CONNECT_TRIES:
                raise
            await asyncio.sleep(_CONNECT_PAUSE * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


async def _discard(pool: Any, conn: Any) -> None:
    """Give a connection that met a dead server back so that the pool closes it."""
    await pool.expire_connections()  # every connection made before now is replaced
    await _release(pool, conn)


async def _release(pool: Any, conn: Any) -> None:
    """Hand ``conn`` back to the pool. The pool resets it, and if the reset fails (the
    server ended it meanwhile) terminates it itself: that is not this statement's failure."""
    with contextlib.suppress(*_RECONNECT_ERRORS, asyncio.TimeoutError):
        await asyncio.wait_for(pool.release(conn), _RELEASE_TIMEOUT)


_RELEASE_TIMEOUT = 2.0


async def _keep_state(conn: Any) -> None:
    """The pool's reset on release: nothing to send. tgsession's statements leave no
    session state (no SET, LISTEN, cursor or session-level advisory lock; transactions
    end before release), and asyncpg's default reset query (``RESET ALL``, ``UNLISTEN *``,
    ...) would cost a round trip after every statement."""
    del conn


def _pool_takes(option: str) -> bool:
    import inspect

    return option in inspect.signature(asyncpg.create_pool).parameters


_NO_RESET: dict[str, Any] = {"reset": _keep_state} if _pool_takes("reset") else {}  # >= 0.30
_CONNECT_HOOK = _pool_takes("connect")  # asyncpg >= 0.30


def _plain_first(dsn: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to connect to ``dsn`` without TLS negotiation first: its one host is a
    loopback address, and neither the URL (``sslmode``, ``sslrootcert``, ``service``, ...)
    nor the environment (``PGSSL*``, ``PGSERVICE``) says anything about TLS."""
    environ = os.environ if environ is None else environ
    parts = urlsplit(dsn)
    if any(key.lower().startswith("ssl") or key.lower() in ("host", "service")
           for key, _ in parse_qsl(parts.query)):
        return False
    if any(name.startswith(("PGSSL", "PGSERVICE")) for name in environ):
        return False
    host = parts.hostname
    if not host or "," in parts.netloc.rpartition("@")[2]:
        return False  # the environment's host, a unix socket, or several hosts
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _connect_plain_first(*args: Any, **kwargs: Any) -> Any:
    """The pool's connect on a loopback address: without TLS, and as asyncpg does by
    default (``sslmode=prefer``) if the server refuses that (``hostssl`` lines only).

    TLS to a loopback address guards nothing that leaves the machine, and asyncpg's
    default builds an SSL context for every connection before the server says whether it
    speaks TLS: with OpenSSL 3, 2.5 to 7 ms of CPU for the first one in a process, the
    biggest part of opening a session after the server's own work.
    """
    try:
        return await asyncpg.connect(*args, ssl=False, **kwargs)
    except asyncpg.PostgresError:
        return await asyncpg.connect(*args, **kwargs)


async def _fetch(sql: str, *args_and_conn: Any) -> Any:
    """``conn.fetch(sql, *args)`` with the connection passed last (for ``functools.partial``)."""
    *args, conn = args_and_conn
    return await conn.fetch(sql, *args)
