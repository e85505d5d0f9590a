"""A TelegramClient that connects in ``async with`` and leaves signing in to us."""

from __future__ import annotations

from typing import Any

from telethon import TelegramClient

__all__ = ["Client"]


class Client(TelegramClient):  # type: ignore[misc]
    """Telethon's client, except that ``async with client:`` only connects.

    Plain Telethon runs ``client.start()`` there, which prompts with ``input()`` when the
    session is not signed in; here :func:`~tgsession.auth_if_necessary` decides whether to
    sign in. Leaving the block disconnects, which flushes the session to its storage and
    releases its lease.
    """

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()
