"""Accounts of the fake Telegram: users and bots, each with its own message box."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telethon.tl import types

from ._boxes import Mailbox, StoredMessage
from ._srp import PasswordVerifier

__all__ = ["Account", "Mailbox", "StoredMessage"]


@dataclass(eq=False)
class Account:
    """A user or bot known to the fake server.

    ``phone`` is digits only (no ``+``); ``token`` is set for bots (``"<id>:<secret>"``);
    ``dc_id`` is the home DC, where the account must sign in (elsewhere the server answers
    PHONE_MIGRATE_X / USER_MIGRATE_X). ``box`` holds its private and basic-group messages.
    A bot with ``privacy`` (Telegram's default) sees in groups only commands, mentions of it,
    replies to it and service messages. ``started_by`` holds the users who wrote to the bot
    (only they can receive its messages); ``blocked_by`` those who blocked it. Secrets are
    kept out of ``repr``. Build accounts with ``FakeTelegram.add_user`` / ``add_bot``.
    """

    id: int
    first_name: str
    dc_id: int
    access_hash: int = field(repr=False)
    phone: str | None = None
    username: str | None = None
    last_name: str | None = None
    is_bot: bool = False
    token: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    privacy: bool = True
    box: Mailbox = field(default_factory=lambda: Mailbox(), init=False, repr=False)
    contacts: set[int] = field(default_factory=set, init=False, repr=False)
    started_by: set[int] = field(default_factory=set, init=False, repr=False)
    blocked_by: set[int] = field(default_factory=set, init=False, repr=False)
    bot_commands: list[Any] = field(default_factory=list, init=False, repr=False)
    _verifier: PasswordVerifier | None = field(default=None, init=False, repr=False)

    @property
    def verifier(self) -> PasswordVerifier | None:
        """The SRP verifier of the 2FA password, derived on first use."""
        if self.password is not None and self._verifier is None:
            self._verifier = PasswordVerifier.from_password(self.password)
        return self._verifier

    def as_user(self, viewer: Account | None) -> types.User:
        """This account as the ``User`` object that ``viewer`` sees."""
        is_self = viewer is self
        return types.User(
            id=self.id,
            is_self=is_self,
            bot=self.is_bot,
            contact=(viewer is not None and self.id in viewer.contacts) or None,
            access_hash=self.access_hash,
            first_name=self.first_name,
            last_name=self.last_name,
            username=self.username,
            phone=self.phone if (is_self or not self.is_bot) else None,
            bot_info_version=1 if self.is_bot else None,
            bot_chat_history=(not self.privacy) if self.is_bot else None,
            status=None if self.is_bot else types.UserStatusRecently(),
        )
