"""A TelegramClient that connects in ``async with`` and leaves signing in to us."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telethon import TelegramClient, errors
from telethon.network.connection.connection import Connection

from ._errors import LeaseLostError
from .storage._lease import SendGate

__all__ = ["DEAD_KEY_ERRORS", "Client"]

log = logging.getLogger("tgsession")

#: Errors that mean the stored auth key is dead and must be replaced.
DEAD_KEY_ERRORS = (errors.AuthKeyNotFound, errors.AuthKeyError, errors.UnauthorizedError)


class Client(TelegramClient):  # type: ignore[misc]
    """Telethon's client, except that ``async with client:`` only connects.

    Plain Telethon runs ``client.start()`` there, which prompts with ``input()`` when the
    session is not signed in; here :func:`~tgsession.auth_if_necessary` decides whether to
    sign in. If the stored key turns out dead while connecting (AUTH_KEY_DUPLICATED, a key
    the server no longer knows), the block is still entered, disconnected, with the error
    in :attr:`dead_key_error`; ``auth_if_necessary`` then replaces the key. Leaving the
    block disconnects, which flushes the session to its storage and releases its lease.
    """

    #: The error that showed the stored key dead during ``async with``, if any.
    dead_key_error: BaseException | None = None

    def __init__(self, session: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(session, *args, **kwargs)
        on_lease_lost = getattr(session, "on_lease_lost", None)
        if on_lease_lost is not None:
            # Another holder has the session now: stop using its key at once.
            on_lease_lost(lambda: asyncio.ensure_future(self.disconnect()))
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

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except DEAD_KEY_ERRORS as exc:
            self.dead_key_error = exc
            log.warning("the stored session's key was refused while connecting (%s); "
                        "auth_if_necessary will replace it", type(exc).__name__)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()


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
