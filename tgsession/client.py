"""A TelegramClient that connects in ``async with`` and leaves signing in to us."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telethon import TelegramClient, errors

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

    dead_key_error: BaseException | None = None
    """The error that showed the stored key dead during ``async with``, if any."""

    def __init__(self, session: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(session, *args, **kwargs)
        on_lease_lost = getattr(session, "on_lease_lost", None)
        if on_lease_lost is not None:
            # Another holder has the session now: stop using its key at once.
            on_lease_lost(lambda: asyncio.ensure_future(self.disconnect()))

    async def __aenter__(self) -> Client:
        try:
            if not self.is_connected():  # (bot_from_environment returns it connected)
                await self.connect()
        except DEAD_KEY_ERRORS as exc:
            self.dead_key_error = exc
            log.warning("the stored session's key was refused while connecting (%s); "
                        "auth_if_necessary will replace it", type(exc).__name__)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()
