"""The lease shared by the server storages (Redis, PostgreSQL): one holder per session.

A lease is a record on the server (a Redis key with a PX TTL, a PostgreSQL row with an
expiry computed by ``now()``) naming a random token and a holder. Expiry is measured by the
server's clock only; local clocks are used for nothing but pacing (polling, renewing).

:class:`ServerLease` renews the record in a background task every ``ttl / 3`` and fences:
the storage checks the token in the same server-side step as every write, so a holder whose
lease was taken over gets :class:`~tgsession.LeaseLostError` instead of overwriting the
newer holder's session. A lease that merely expired (process paused, server restarted) and
that nobody else took in the meantime is taken back silently by the next renew or write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from types import TracebackType
from typing import TypeVar

from .._errors import ConfigError, LeaseLostError, SessionLockedError, SessionStorageError

__all__ = [
    "DEFAULT_LEASE_TTL",
    "LeasingStorage",
    "ServerLease",
    "acquire_polling",
    "current_token",
    "describe_holder",
    "local_holder",
    "locked_error",
    "new_token",
    "validate_lease_ttl",
]

#: Seconds a lease lives without being renewed; the holder renews every third of it.
DEFAULT_LEASE_TTL = 15.0

_log = logging.getLogger("tgsession.lease")

# Waiting holders poll; the interval grows from the first value to the second.
_POLL_FIRST = 0.05
_POLL_MAX = 0.25


def local_holder() -> str:
    """Describe this process for other holders: ``pid 123 on host-a``."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def new_token() -> str:
    """A fresh, unguessable lease token."""
    return uuid.uuid4().hex


def describe_holder(holder: str, since: datetime | float | None) -> str:
    """``pid 123 on host-a (since 12:00:01Z)``; ``since`` is server time (UTC)."""
    if since is None:
        return holder or "an unknown holder"
    if not isinstance(since, datetime):
        since = datetime.fromtimestamp(since, tz=timezone.utc)
    stamp = since.astimezone(timezone.utc).strftime("%H:%M:%SZ")
    return f"{holder or 'an unknown holder'} (since {stamp})"


def locked_error(what: str, where: str, holder: str) -> SessionLockedError:
    """The refusal of a write by someone who does not hold the live lease."""
    return SessionLockedError(
        f"cannot {what}: the session on {where} is held by {holder}; "
        "acquire the lease first, or stop the other holder",
        holder=holder,
    )


def validate_lease_ttl(ttl: float) -> float:
    """Return ``ttl`` as a float, or raise ValueError when it is not a usable duration."""
    ttl = float(ttl)
    if not 0.1 <= ttl <= 86400:
        raise ValueError(f"lease_ttl must be between 0.1 and 86400 seconds, not {ttl}")
    return ttl


class ServerLease:
    """A lease held on a server; implements :class:`~tgsession.storage.Lease`.

    Renewed in the background every ``ttl / 3`` until :meth:`release`. Once lost it stays
    lost: every fenced write and :meth:`check` raise :class:`~tgsession.LeaseLostError`.
    Also an async context manager that releases on exit.
    """

    def __init__(
        self,
        storage: LeasingStorage,
        *,
        token: str,
        holder: str,
        since: datetime | float | None,
        ttl: float,
        where: str,
    ) -> None:
        self._storage = storage
        self.token = token
        #: This holder as stored on the server, without the time (``pid 1 on host``).
        self.holder_id = holder
        self.since = since
        self.ttl = ttl
        self._where = where
        self._lost_reason: str | None = None
        self._lost = asyncio.Event()
        self._released = False
        self._task: asyncio.Task[None] | None = None
        self._taken_back_callbacks: list[Callable[[], object]] = []

    def __repr__(self) -> str:
        state = "lost" if self.lost else "released" if self._released else "held"
        return f"<ServerLease {state} on {self._where} by {self.holder}>"

    @property
    def holder(self) -> str:
        """This holder: ``pid 123 on host-a (since 12:00:01Z)``."""
        return describe_holder(self.holder_id, self.since)

    @property
    def lost(self) -> bool:
        """True once another holder took the session over (sticky)."""
        return self._lost_reason is not None

    @property
    def released(self) -> bool:
        return self._released

    def start(self) -> None:
        """Start the background renewal; called by the storage right after acquiring."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._renew_forever(), name=f"tgsession lease renewal on {self._where}"
            )

    def mark_lost(self, reason: str) -> None:
        """Record that the lease is gone; called by fenced writes and the renew task."""
        if self._lost_reason is None:
            self._lost_reason = reason
            self._lost.set()
            _log.error("lost the session lease on %s: %s", self._where, reason)
        self._stop_renewing()

    def raise_if_lost(self) -> None:
        """Raise :class:`~tgsession.LeaseLostError` if the lease is known to be lost."""
        if self._lost_reason is not None:
            raise self.lost_error()

    def taken_over(self) -> LeaseLostError:
        """Record that another holder took the lease over; return the error to raise."""
        self.mark_lost("another holder took it over")
        return self.lost_error()

    def lost_error(self) -> LeaseLostError:
        """The error that reports this lease as lost."""
        return LeaseLostError(
            f"the lease on {self._where} was lost ({self._lost_reason or 'taken over'}); "
            "another holder may be using the session"
        )

    async def check(self) -> None:
        """Ask the server whether this lease still holds (and extend it).

        Raises :class:`~tgsession.LeaseLostError` when another holder took it or it was
        released, :class:`~tgsession.SessionStorageError` when the server cannot be reached.
        """
        self.raise_if_lost()
        if self._released:
            raise LeaseLostError(f"the lease on {self._where} was released")
        if not await self._storage._renew_lease(self):
            raise self.taken_over()

    async def wait_lost(self) -> None:
        """Return once the lease is lost, for example to stop the client at once."""
        await self._lost.wait()

    def on_taken_back(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` each time the lease is found expired and taken back (nobody
        else took it). The server may have lost what it held, as a Redis restarted without
        persistence does: :class:`~tgsession.StorageSession` then writes back what it holds."""
        self._taken_back_callbacks.append(callback)

    def note_taken_back(self) -> None:
        """Record that a renew or a fenced write took the expired lease back."""
        _log.warning("the lease on %s had expired and was taken back", self._where)
        for callback in self._taken_back_callbacks:
            callback()

    async def release(self) -> None:
        """Give the session up so a waiting holder takes it at once; idempotent.

        If the server cannot be reached the record simply expires after ``ttl``.
        """
        if self._released:
            return
        self._released = True
        self._stop_renewing()
        if self.lost:
            return
        try:
            await self._storage._release_lease(self)
            _log.info("released the session lease on %s", self._where)
        except SessionStorageError as exc:
            _log.warning(
                "could not release the lease on %s (it expires by itself within %gs): %s",
                self._where,
                self.ttl,
                exc,
            )

    async def __aenter__(self) -> ServerLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()

    def _stop_renewing(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _renew_forever(self) -> None:
        interval = self.ttl / 3
        failing_since: float | None = None
        while not (self._released or self.lost):
            await asyncio.sleep(interval)
            if self._released or self.lost:
                return
            try:
                held = await self._storage._renew_lease(self)
            except SessionStorageError as exc:
                # Keep trying: once the server is back the lease is renewed, or taken
                # back if it expired and nobody else took it, or found lost.
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                _log.warning(
                    "could not renew the lease on %s for %.1fs (ttl %gs), retrying: %s",
                    self._where,
                    now - failing_since,
                    self.ttl,
                    exc,
                )
                continue
            except Exception:  # pragma: no cover - a bug; keep the holder informed
                _log.exception("renewing the lease on %s failed", self._where)
                continue
            if failing_since is not None:
                _log.info("renewed the lease on %s again", self._where)
                failing_since = None
            if not held:
                self.mark_lost("another holder took it over")
                return


_S = TypeVar("_S", bound="LeasingStorage")


class LeasingStorage:
    """Base of the server storages: lease settings, :meth:`acquire`, ``async with``.

    A subclass sets ``_where`` (its place, password masked) and implements one attempt to
    take the lease, its renewal, its release and closing its connections, each a single
    server-side atomic step.
    """

    name: str
    lease_ttl: float
    #: Seconds :meth:`acquire` waits by default for another holder to let go.
    lock_wait: float
    _where: str
    _lease: ServerLease | None = None

    def _set_lease_options(self, *, name: str, lease_ttl: float, lock_wait: float) -> None:
        kind = type(self).__name__
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{kind}: name must be a non-empty string")
        try:
            self.lease_ttl = validate_lease_ttl(lease_ttl)
        except ValueError as exc:
            raise ConfigError(f"{kind}: {exc}") from None
        if not lock_wait >= 0:
            raise ConfigError(f"{kind}: lock_wait must be 0 or more, not {lock_wait}")
        self.name = name
        self.lock_wait = float(lock_wait)

    async def acquire(self, *, wait: float | None = None) -> ServerLease:
        """Become the session's only holder, across every host using this server.

        Fails fast (``wait=0``) or waits up to ``wait`` seconds (default: this storage's
        ``lock_wait``), then raises :class:`~tgsession.SessionLockedError` naming the
        holder. The lease expires ``lease_ttl`` seconds after its last renewal, by the
        server's clock; the returned lease renews itself every ``lease_ttl / 3`` until
        released. From then on the storage's writes are fenced by the lease.
        """
        if self._lease is not None and not (self._lease.released or self._lease.lost):
            raise SessionLockedError(
                f"this storage object already holds the lease on {self._where}",
                holder=self._lease.holder,
            )
        token, holder = new_token(), local_holder()
        self._lease = await acquire_polling(
            lambda: self._try_acquire(token, holder),
            wait=self.lock_wait if wait is None else wait,
            where=self._where,
        )
        return self._lease

    async def aclose(self) -> None:
        """Release a held lease, then close the connections if this storage opened them."""
        if self._lease is not None:
            await self._lease.release()
        await self._close_connections()

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _try_acquire(self, token: str, holder: str) -> ServerLease | str:
        """Take the lease once (taking our own again succeeds); else describe the holder."""
        raise NotImplementedError

    async def _renew_lease(self, lease: ServerLease) -> bool:
        """Extend (or take back) the lease; False when another holder has it.

        Raises :class:`~tgsession.SessionStorageError` when the server is unreachable.
        """
        raise NotImplementedError

    async def _release_lease(self, lease: ServerLease) -> None:
        """Delete the lease record if it is still this lease's."""
        raise NotImplementedError

    async def _close_connections(self) -> None:
        raise NotImplementedError


def current_token(lease: ServerLease | None) -> str | None:
    """The token a write must be fenced with, or None for an unleased write.

    Raises :class:`~tgsession.LeaseLostError` when ``lease`` was lost: a holder that lost
    its lease must not fall back to unleased writes.
    """
    if lease is None or lease.released:
        return None
    lease.raise_if_lost()
    return lease.token


async def acquire_polling(
    try_once: Callable[[], Awaitable[ServerLease | str]],
    *,
    wait: float,
    where: str,
) -> ServerLease:
    """Call ``try_once`` until it returns a lease or ``wait`` seconds have passed.

    ``try_once`` returns the current holder's description when the session is taken.
    Raises :class:`~tgsession.SessionLockedError` naming that holder.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, wait)
    delay = _POLL_FIRST
    while True:
        outcome = await try_once()
        if isinstance(outcome, ServerLease):
            outcome.start()
            _log.info("acquired the session lease on %s as %s", where, outcome.holder)
            return outcome
        remaining = deadline - loop.time()
        if remaining <= 0:
            waited = f" after waiting {wait:g}s" if wait > 0 else ""
            raise SessionLockedError(
                f"the session on {where} is held by {outcome}{waited}; stop that instance, "
                "wait for its lease to expire, or acquire with wait= (lock_wait= in the URL)",
                holder=outcome,
            )
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL_MAX)
