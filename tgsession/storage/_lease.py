"""The lease shared by the server storages (Redis, PostgreSQL): one holder per session.

A lease is a record on the server (a Redis key with a PX TTL, a PostgreSQL row with an
expiry computed by ``now()``) naming a random token and a holder. Expiry is measured by the
server's clock only; local clocks are used for nothing but pacing (polling, renewing).

:class:`ServerLease` renews the record in a background task every ``ttl / 3`` and fences:
the storage checks the token in the same server-side step as every write, so a holder whose
lease was taken over gets :class:`~tgsession.LeaseLostError` instead of overwriting the
newer holder's session. A lease that merely expired (process paused, server restarted) and
that nobody else took in the meantime is taken back silently by the next renew or write.
A lease whose holder is proven dead on this machine (``_holder.is_dead_here``: killed with
``kill -9``, say) is taken at once, by a compare-and-set on its token, without waiting for
it to expire.

Fencing protects the storage, not the Telegram connection. For that, every lease is also a
:class:`SendGate`: the holder tracks on the monotonic clock until when its lease is surely
held (the start of the last successful renewal plus ``ttl``). Past that moment (a frozen or
starved process, an unreachable server) it closes its connection first, sends nothing on the
key, and checks the lease after; a holder that took over a lease which expired (rather than
one that was released) waits one more ``ttl`` before returning, so that a frozen former
holder that wakes up meanwhile has closed its connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from types import TracebackType
from typing import NamedTuple, TypeVar

from .._errors import ConfigError, LeaseLostError, SessionLockedError, SessionStorageError
from ._holder import human_holder, is_dead_here, tagged_holder

__all__ = [
    "DEFAULT_LEASE_TTL",
    "HeldBy",
    "LeasingStorage",
    "SendGate",
    "ServerLease",
    "acquire_polling",
    "current_token",
    "describe_holder",
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


def new_token() -> str:
    """A fresh, unguessable lease token."""
    return uuid.uuid4().hex


def describe_holder(holder: str, since: datetime | float | None) -> str:
    """``pid 123 on host-a (since 12:00:01Z)``; ``since`` is server time (UTC). The
    holder's machine tag, if any, is left out."""
    holder = human_holder(holder) if holder else holder
    if since is None:
        return holder or "an unknown holder"
    if not isinstance(since, datetime):
        since = datetime.fromtimestamp(since, tz=timezone.utc)
    stamp = since.astimezone(timezone.utc).strftime("%H:%M:%SZ")
    return f"{holder or 'an unknown holder'} (since {stamp})"


class HeldBy(NamedTuple):
    """A refused attempt to take the lease: the live lease's holder as stored (with its
    machine tag), since when (server time), and its token (None when not known)."""

    holder: str
    since: datetime | float | None
    token: str | None

    def describe(self) -> str:
        """The holder as messages show it (no machine tag)."""
        return describe_holder(self.holder, self.since)


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


class SendGate:
    """Whether the holder may send on the session's key now; a base of every lease.

    ``may_send()`` is true while the lease is surely held: not lost, not released while
    the caller still relies on it, and (for an expiring lease) before ``valid_until`` on
    the monotonic clock. :class:`~tgsession.Client` checks it before every packet and
    awaits :meth:`wait_until_sendable` before queueing one; ``on_doubt`` callbacks run
    when the lease may have expired (they close the connection), before it is checked.
    """

    _valid_until: float = float("inf")
    _gate_ttl: float | None = None

    def _init_gate(self, ttl: float | None) -> None:
        self._gate_ttl = ttl
        self._valid_until = float("inf") if ttl is None else float("-inf")
        self._gate_changed = asyncio.Event()
        self._doubt_callbacks: list[Callable[[], object]] = []
        self._doubt_timer: asyncio.TimerHandle | None = None
        self._in_doubt = False

    @property
    def lost(self) -> bool:  # overridden
        return False

    @property
    def released(self) -> bool:  # overridden
        return False

    def may_send(self) -> bool:
        """True while the lease is surely held (a released lease no longer guards)."""
        if self.released:
            return True
        return not self.lost and time.monotonic() < self._valid_until

    async def wait_until_sendable(self) -> None:
        """Return once :meth:`may_send` is true; raise LeaseLostError once it is lost."""
        while not self.may_send():
            if self.lost:
                raise LeaseLostError("the session's lease was lost: nothing more is sent")
            event = self._gate_changed
            await event.wait()

    def on_doubt(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` each time the lease may have expired, before checking it."""
        self._doubt_callbacks.append(callback)

    def _confirm(self, started: float) -> None:
        """The lease was found held by a request sent at ``started`` (monotonic)."""
        if self._gate_ttl is None:
            return
        # The server counts ttl from when it ran the request, which is after ``started``.
        self._valid_until = max(self._valid_until, started + self._gate_ttl)
        self._in_doubt = False
        self._gate_changed.set()
        self._gate_changed = asyncio.Event()
        if self._doubt_timer is not None:
            self._doubt_timer.cancel()
        loop = asyncio.get_running_loop()
        # A timer on the loop's (monotonic) clock: if nothing confirms the lease in time,
        # the connection closes when the lease may expire, not when the next renewal runs.
        delay = self._valid_until - time.monotonic()
        self._doubt_timer = loop.call_later(max(delay, 0.0), self._doubt_if_expired)

    def _doubt_if_expired(self) -> bool:
        """Run the doubt callbacks (once until the next confirmation) if the lease may have
        expired; True if it may."""
        if self.lost or self.released or time.monotonic() < self._valid_until:
            return False
        if self._in_doubt:
            return True
        self._in_doubt = True
        _log.warning("the session lease may have expired (this process was paused, or the "
                     "server did not answer); closing the connection until it is confirmed")
        for callback in list(self._doubt_callbacks):
            try:
                callback()
            except Exception:  # pragma: no cover - a callback's bug must not stop the others
                _log.exception("a lease doubt callback failed")
        return True

    def _gate_closed_for_good(self) -> None:
        """Wake waiters after the lease was lost or released."""
        if self._doubt_timer is not None:
            self._doubt_timer.cancel()
            self._doubt_timer = None
        self._gate_changed.set()
        self._gate_changed = asyncio.Event()


class ServerLease(SendGate):
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
        took_over_expired: bool = False,
    ) -> None:
        self._init_gate(ttl)
        self._storage = storage
        #: Whether another holder's lease had expired (not been released) when this one
        #: took the session: that holder may still have a connection open.
        self.took_over_expired = took_over_expired
        self.token = token
        #: This holder as stored on the server, without the time (``pid 1 on host``,
        #: then the machine tag that messages leave out; see ``_holder``).
        self.holder_id = holder
        self.since = since
        self.ttl = ttl
        self._where = where
        self._lost_reason: str | None = None
        self._lost = asyncio.Event()
        self._released = False
        self._task: asyncio.Task[None] | None = None
        self._taken_back_callbacks: list[Callable[[], object]] = []
        #: The session's bytes read in the same server step that took the lease (``None``:
        #: nothing stored); handed over, then dropped, by ``acquire_and_load()``.
        self.loaded: bytes | None = None

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
        self._gate_closed_for_good()

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
        started = time.monotonic()
        if not await self._storage._renew_lease(self):
            raise self.taken_over()
        self._confirm(started)

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
        self._gate_closed_for_good()
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
            # Woken late (a frozen or starved process): stop the connection first.
            self._doubt_if_expired()
            started = time.monotonic()
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
            self._confirm(started)


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
        token, holder = new_token(), tagged_holder()
        self._lease = await acquire_polling(
            lambda: self._try_acquire_or_take_from_dead(token, holder),
            wait=self.lock_wait if wait is None else wait,
            where=self._where,
        )
        return self._lease

    async def acquire_and_load(
        self, *, wait: float | None = None
    ) -> tuple[ServerLease, bytes | None]:
        """:meth:`acquire`, and the stored session's bytes (``None`` when nothing is
        stored) read in the same server-side step: one round trip to open a session.

        Waiting, errors and the grace after taking over an expired lease are those of
        :meth:`acquire`. Nobody else can change the session while the lease is held
        (every write is fenced), so the bytes are still current when this returns.
        """
        lease = await self.acquire(wait=wait)
        data, lease.loaded = lease.loaded, None
        return lease, data

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

    async def _try_acquire_or_take_from_dead(self, token: str, holder: str) -> ServerLease | str:
        """Take the lease once; from a holder proven dead on this machine too (a process
        killed with ``kill -9`` has no connection left: no expiry, no grace to wait for).
        Else describe the holder."""
        outcome = await self._try_acquire(token, holder)
        if isinstance(outcome, ServerLease):
            return outcome
        if outcome.token is None or not is_dead_here(outcome.holder):
            return outcome.describe()
        # Replaced only if the dead holder's token is still there: one atomic step.
        taken = await self._try_acquire(token, holder, dead_token=outcome.token)
        if not isinstance(taken, ServerLease):
            return taken.describe()
        _log.info("took over the lease on %s from %s: that process is no longer running on "
                  "this machine", self._where, outcome.describe())
        return taken

    async def _try_acquire(
        self, token: str, holder: str, dead_token: str | None = None
    ) -> ServerLease | HeldBy:
        """Take the lease once (taking our own again succeeds; a live lease only if its
        token is ``dead_token``); else say who holds it."""
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
    Raises :class:`~tgsession.SessionLockedError` naming that holder. A server that cannot
    be reached is retried like a taken lease for the whole ``wait`` (a replica waiting for
    its turn outlives a server restart); only once ``wait`` is over does its
    :class:`~tgsession.SessionStorageError` propagate.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, wait)
    delay = _POLL_FIRST
    unreachable_since: float | None = None
    while True:
        started = time.monotonic()
        try:
            outcome = await try_once()
        except SessionStorageError as exc:
            now = loop.time()
            if now >= deadline:
                raise
            if unreachable_since is None:
                unreachable_since = now
                _log.warning("cannot reach the server of %s to take the lease; retrying for "
                             "up to %.1fs more: %s", where, deadline - now, exc)
            await asyncio.sleep(min(delay, deadline - now))
            delay = min(delay * 2, _POLL_MAX)
            continue
        if unreachable_since is not None:
            _log.info("reached the server of %s again", where)
            unreachable_since = None
        if isinstance(outcome, ServerLease):
            outcome._confirm(started)
            outcome.start()
            _log.info("acquired the session lease on %s as %s", where, outcome.holder)
            if outcome.took_over_expired:
                await _grace_after_takeover(outcome, where)
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


async def _grace_after_takeover(lease: ServerLease, where: str) -> None:
    """Wait one ``ttl`` after taking over an expired lease, before the caller connects.

    The former holder stopped renewing without releasing: it crashed, or it is frozen
    with its Telegram connection still open. A frozen holder that wakes within this time
    closes its connection before sending anything (its lease has expired by its own
    clock), so our first request cannot meet its connection. The lease is kept renewed
    meanwhile. If it is lost during the wait, :class:`~tgsession.LeaseLostError` is raised.
    """
    _log.warning("the previous holder of %s let its lease expire without releasing it; "
                 "waiting %gs before using the session so that it can hang up", where,
                 lease.ttl)
    try:
        await asyncio.sleep(lease.ttl)
        await lease.check()
    except BaseException:
        await lease.release()
        raise
