"""Glue between the fake server and Telethon clients in the same process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telethon import TelegramClient
from telethon.crypto import AuthKey
from telethon.sessions import StringSession


def reset_client_config() -> None:
    """Forget the ``help.getConfig`` answer Telethon caches on the ``TelegramClient`` class.

    Telethon keeps it class-wide (shared by every client in the process) and uses its DC list
    for migrations, so a config from one server (or from a previous test's ports) would send a
    client to the wrong place. Call it between servers; the pytest fixture does.
    """
    TelegramClient._config = None
    TelegramClient._cdn_config = None


@dataclass(frozen=True)
class AuthorizedKey:
    """An auth key the fake server already knows as signed in (see ``FakeTelegram.preauthorize``).

    Example::

        key = tg.preauthorize(user)
        session = StringSession()
        key.apply_to(session)
        client = TelegramClient(session, tg.api_id, tg.api_hash)
    """

    dc_id: int
    host: str
    port: int
    auth_key: bytes = field(repr=False)

    def apply_to(self, session: Any) -> None:
        """Point a Telethon session at the key's DC and give it the key."""
        session.set_dc(self.dc_id, self.host, self.port)
        session.auth_key = AuthKey(self.auth_key)

    def string_session(self) -> str:
        """The key as a Telethon ``StringSession`` string."""
        session = StringSession()
        self.apply_to(session)
        value: str = session.save()
        return value
