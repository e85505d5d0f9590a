"""A TelegramClient that connects in ``async with`` and leaves signing in to us."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import weakref
from typing import Any

from telethon import TelegramClient, errors, utils
from telethon.network.connection.connection import Connection

from ._errors import LeaseLostError
from .storage._lease import SendGate

__all__ = ["DEAD_KEY_ERRORS", "TERMINATE_TIMEOUT", "Client"]

log = logging.getLogger("tgsession")

#: Errors that mean the stored auth key is dead and must be replaced.
DEAD_KEY_ERRORS = (errors.AuthKeyNotFound, errors.AuthKeyError, errors.UnauthorizedError)

#: Seconds a SIGTERM waits for the connected clients to stop cleanly before the process
#: ends anyway (``docker stop`` sends SIGKILL 10 s after its SIGTERM).
TERMINATE_TIMEOUT = 8.0


class Client(TelegramClient):  # type: ignore[misc]
    """Telethon's client, except that ``async with client:`` only connects.

    Plain Telethon runs ``client.start()`` there, which prompts with ``input()`` when the
    session is not signed in; here :func:`~tgsession.auth_if_necessary` decides whether to
    sign in. If the stored key turns out dead while connecting (AUTH_KEY_DUPLICATED, a key
    the server no longer knows), the block is still entered, disconnected, with the error
    in :attr:`dead_key_error`; ``auth_if_necessary`` then replaces the key. Leaving the
    block disconnects, which flushes the session to its storage and releases its lease.

    With ``catch_up=True`` no update is lost across a restart: the factories connect and
    sign in before the program registers its handlers, so the client holds every update
    (the missed ones it fetches and the live ones) until the program starts running, and
    its stored update state does not move meanwhile. It starts running at the first of
    :meth:`run_until_disconnected`, :meth:`start`, :meth:`catch_up`, ``async with client:``
    entered with a handler already registered, or the first handler registered inside
    ``async with client:`` (then at the program's next ``await``). The update state is
    stored as soon as it is first known, so even a program killed before its first clean
    stop catches up on its next start, and only while no handler is running. A clean stop
    (``disconnect()``, leaving ``async with``, Ctrl-C) first lets running handlers finish, for
    up to :attr:`handler_drain_timeout` seconds; an update whose handler it still had to
    cancel comes again after a restart. Delivery is at least once after a kill, exactly once
    after a clean stop whose handlers finished. SIGTERM is a clean stop too, unless the
    program set a SIGTERM handler of its own: the connected clients disconnect (for at most
    :data:`TERMINATE_TIMEOUT` seconds), then the signal ends the process as it would have.
    """

    #: How long a clean stop waits for running handlers (``catch_up=True`` only).
    handler_drain_timeout: float = 10.0

    dead_key_error: BaseException | None = None
    """The error that showed the stored key dead during ``async with``, if any."""

    def __init__(self, session: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(session, *args, **kwargs)
        self._running = asyncio.Event()
        self._inside_with = False
        self._handler_interrupted = False
        self._disconnect_caller: asyncio.Task[Any] | None = None
        self._drain = True
        on_lease_lost = getattr(session, "on_lease_lost", None)
        if on_lease_lost is not None:
            # Another holder has the session now: stop using its key at once.
            on_lease_lost(lambda: asyncio.ensure_future(self._disconnect_at_once()))
        gate = getattr(session, "lease", None)
        if isinstance(gate, SendGate):
            # Nothing goes out on the key unless the lease is surely held; when it may have
            # expired, the connection is closed first and the lease checked after.
            self._connection: type[Connection] = _gated_connection(self._connection, gate)
            gate.on_doubt(self._hang_up_in_doubt)

    def _hang_up_in_doubt(self) -> None:
        sender = self._sender
        connection = getattr(sender, "_connection", None)
        if connection is None or not sender.is_connected():
            return
        log.warning("closing the Telegram connection until the session lease is confirmed")
        # Close the socket now, synchronously, before any other task runs; then let
        # Telethon reconnect: its first packet waits at the gate.
        writer = getattr(connection, "_writer", None)
        if writer is not None:
            writer.close()
        sender._start_reconnect(None)

    async def connect(self) -> Any:
        """Telethon's; and in a program that leaves SIGTERM at its default, SIGTERM then
        stops this client cleanly (see :func:`_stop_cleanly_on_sigterm`)."""
        result = await super().connect()
        _stop_cleanly_on_sigterm(self)
        return result

    async def __aenter__(self) -> Client:
        try:
            if not self.is_connected():  # (bot_from_environment returns it connected)
                await self.connect()
        except DEAD_KEY_ERRORS as exc:
            self.dead_key_error = exc
            log.warning("the stored session's key was refused while connecting (%s); "
                        "auth_if_necessary will replace it", type(exc).__name__)
        self._inside_with = True
        if self._event_builders:
            self._start_running()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._inside_with = False
        await self.disconnect()

    # --- invariant 9: updates wait for the program's handlers --------------------------------

    def _start_running(self) -> None:
        """Let the update loop dispatch (and catch up) from now on."""
        self._running.set()

    async def _update_loop(self) -> None:
        # Telethon starts this loop in connect(), which the factories and auth_if_necessary
        # call before the program registers its handlers; its first act is the catch-up.
        # Until the program runs, updates wait in Telethon's queue, unprocessed, so the
        # message box (the update state saved to the session) stays where it was.
        if self._catch_up and not self._running.is_set():
            await self._running.wait()
        await super()._update_loop()

    def add_event_handler(self, callback: Any, event: Any = None) -> None:
        """Telethon's, and inside ``async with client:`` (or Telethon's synchronous ``with
        client:``) the client starts running at the program's next ``await`` (or the next
        time its loop runs): handlers registered together all see the caught-up updates."""
        super().add_event_handler(callback, event)
        if self._inside_with and not self._running.is_set():
            # The client's own loop: in synchronous code (``with client:`` then
            # ``add_event_handler``) no loop is running yet.
            self.loop.call_soon(self._start_running)

    def run_until_disconnected(self) -> Any:
        """Telethon's; the program starts running (held updates are dispatched)."""
        self._start_running()
        return super().run_until_disconnected()

    def start(self, *args: Any, **kwargs: Any) -> Any:
        """Telethon's; the program starts running (held updates are dispatched)."""
        self._start_running()
        return super().start(*args, **kwargs)

    async def catch_up(self) -> None:
        """Telethon's; the program starts running (held updates are dispatched)."""
        self._start_running()
        await super().catch_up()

    def disconnect(self) -> Any:
        """Telethon's; with ``catch_up=True`` running handlers may finish first."""
        with contextlib.suppress(RuntimeError):  # no running loop: Telethon runs one
            self._disconnect_caller = asyncio.current_task()
        return super().disconnect()

    def _disconnect_at_once(self) -> Any:
        # Another holder has the session: not one more request with its key.
        self._drain = False
        return self.disconnect()

    async def _disconnect_coro(self) -> None:
        if self._catch_up and self._drain:
            await self._drain_handlers()
        self._forget_interrupted_tasks()
        await super()._disconnect_coro()

    def _receiving_ended(self) -> bool:
        """Whether a Ctrl-C ended Telethon's receive loop (in a synchronous program): no
        request of a running handler can complete any more."""
        return _interrupted(getattr(self._sender, "_recv_loop_handle", None))

    def _forget_interrupted_tasks(self) -> None:
        """Drop Telethon's background tasks that a Ctrl-C already ended.

        A synchronous program (``with client:``, then ``run_until_disconnected()``) runs the
        loop itself, so Ctrl-C raises KeyboardInterrupt inside whichever task is running.
        Telethon's disconnect awaits its loops' tasks, and awaiting one that ended that way
        raises the same KeyboardInterrupt again: the disconnect stopped there, and the
        session was never flushed nor its lease released. Those tasks are over already.
        """
        sender = self._sender
        connection = getattr(sender, "_connection", None)
        for owner, name in ((self, "_updates_handle"), (self, "_keepalive_handle"),
                            (sender, "_send_loop_handle"), (sender, "_recv_loop_handle"),
                            (connection, "_send_task"), (connection, "_recv_task")):
            if _interrupted(getattr(owner, name, None)):
                setattr(owner, name, None)

    async def _drain_handlers(self) -> None:
        """Wait (at most :attr:`handler_drain_timeout`) for running handlers, while still
        connected so that their requests complete; a handler that called disconnect() itself
        is not waited for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.handler_drain_timeout
        while self.is_connected() and not self._receiving_ended():
            pending = {t for t in self._event_handler_tasks
                       if not t.done() and t is not self._disconnect_caller}
            if not pending:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("%d update handler(s) still running after %.0f s; stopping them "
                            "(their updates come again after a restart)", len(pending),
                            self.handler_drain_timeout)
                return
            await asyncio.wait(pending, timeout=remaining)

    async def _dispatch_update(self, update: Any) -> None:
        try:
            await super()._dispatch_update(update)
        except asyncio.CancelledError:
            # disconnect() cancels running handlers, then would store the update state past
            # them. A handler that asked for the disconnect itself is done, though: a "/stop"
            # handled again on every start would stop the program for good.
            if asyncio.current_task() is not self._disconnect_caller:
                self._handler_interrupted = True
            raise

    async def _save_states_and_entities(self) -> None:
        # Telethon calls this every minute and on disconnect. The update state it would store
        # is past every update fetched, including those whose handlers are still running (or
        # were just cancelled by disconnect): storing it then would lose them. Keep the
        # previous stored state instead; the next start fetches them again.
        if self._catch_up and (self._handler_interrupted or any(
                not task.done() for task in self._event_handler_tasks)):
            log.info("update state not stored: a handler is running or was interrupted; "
                     "its update will be delivered again after a restart")
            return
        await super()._save_states_and_entities()

    async def _on_login(self, user: Any) -> Any:
        # Telethon learns the update state here (updates.getState) but stores it only on
        # disconnect or a minute later: store it now, so a program killed before that still
        # has a state to catch up from on its next start.
        result = await super()._on_login(user)
        if self._catch_up:
            await self._save_states_and_entities()
            await utils.maybe_async(self.session.save())
        return result


def _interrupted(task: object) -> bool:
    """Whether ``task`` is a task that KeyboardInterrupt or SystemExit ended."""
    return (isinstance(task, asyncio.Future) and task.done() and not task.cancelled()
            and isinstance(task.exception(), (KeyboardInterrupt, SystemExit)))


_connected: weakref.WeakSet[Client] = weakref.WeakSet()


def _stop_cleanly_on_sigterm(client: Client) -> None:
    """Make SIGTERM (``docker stop``, ``systemctl stop``, a Kubernetes rollout) stop the
    connected clients as leaving ``async with`` does, then end the process by that same
    SIGTERM, as it would have ended.

    By default SIGTERM kills a Python program on the spot: the session is not flushed and
    its lease not released, so with Redis or PostgreSQL the restarted program is refused
    (the dead process still holds the lease) until the lease expires, and then waits one
    more ``lease_ttl`` of takeover grace. Only when nobody else has set a SIGTERM handler
    (the program's own always wins), from the main thread. A plain signal handler, not the
    loop's: when the loop is not running (closed, or between two ``run_until_complete``)
    the signal ends the process at once, as before.
    """
    global _sigterm_loop
    _connected.add(client)
    if getattr(signal, "SIGTERM", None) is None:
        return  # Windows
    current = signal.getsignal(signal.SIGTERM)
    if current is not signal.SIG_DFL and current is not _on_sigterm:
        return  # the program's own
    if current is signal.SIG_DFL:
        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread
            return
    _sigterm_loop = asyncio.get_running_loop()


_sigterm_loop: asyncio.AbstractEventLoop | None = None


def _on_sigterm(signum: int, frame: object) -> None:
    loop = _sigterm_loop
    if loop is None or loop.is_closed() or not loop.is_running():
        _die_by_sigterm()
        return
    loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_terminate()))


def _die_by_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)  # ends the process as SIGTERM always did


async def _terminate() -> None:
    clients = [client for client in list(_connected) if client.is_connected()]
    log.info("SIGTERM: stopping %d client(s) cleanly", len(clients))
    try:
        stops = [asyncio.ensure_future(client.disconnect()) for client in clients]
        if stops:
            done, pending = await asyncio.wait(stops, timeout=TERMINATE_TIMEOUT)
            for stop in done:
                if not stop.cancelled() and stop.exception() is not None:
                    log.warning("SIGTERM: a client did not stop cleanly: %r", stop.exception())
            if pending:
                log.warning("SIGTERM: %d client(s) still stopping after %.0f s; exiting",
                            len(pending), TERMINATE_TIMEOUT)
    finally:
        _die_by_sigterm()


def _gated_connection(base: type[Connection], gate: SendGate) -> type[Connection]:
    """A subclass of Telethon's connection ``base`` whose packets go out only through
    ``gate``: queueing waits for it, and a packet queued before the lease went into doubt
    (the process was frozen) is refused at the socket, which closes the connection."""

    class GatedConnection(base):  # type: ignore[misc]
        async def send(self, data: bytes) -> None:
            try:
                await gate.wait_until_sendable()
            except LeaseLostError:
                raise ConnectionError("the session lease was lost") from None
            await super().send(data)

        def _send(self, data: bytes) -> None:
            if not gate.may_send():
                raise ConnectionError("the session lease is not confirmed: not sending")
            super()._send(data)

    GatedConnection.__name__ = GatedConnection.__qualname__ = f"Gated{base.__name__}"
    return GatedConnection
