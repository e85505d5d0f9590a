"""Accounts of the fake Telegram and their message boxes (ids and pts per account)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from telethon.tl import types

from ._srp import PasswordVerifier


@dataclass(eq=False)
class Account:
    """A user or bot known to the fake server.

    ``phone`` is digits only (no ``+``); ``token`` is set for bots (``"<id>:<secret>"``);
    ``dc_id`` is the home DC, where the account must sign in (elsewhere the server answers
    PHONE_MIGRATE_X / USER_MIGRATE_X). ``box`` holds its messages. Secrets are kept out of
    ``repr``. Build accounts with ``FakeTelegram.add_user`` / ``add_bot``.
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
    box: Mailbox = field(default_factory=lambda: Mailbox(), init=False, repr=False)
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
            bot_nochats=self.is_bot or None,
            access_hash=self.access_hash,
            first_name=self.first_name,
            last_name=self.last_name,
            username=self.username,
            phone=self.phone if (is_self or not self.is_bot) else None,
            bot_info_version=1 if self.is_bot else None,
            status=None if self.is_bot else types.UserStatusRecently(),
        )


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A private-chat message as it sits in one account's box."""

    id: int
    pts: int
    peer_id: int
    from_id: int
    out: bool
    text: str
    date: datetime.datetime
    reply_to_msg_id: int | None = None

    def as_tl(self) -> types.Message:
        """The ``Message`` the box owner receives."""
        return types.Message(
            id=self.id,
            peer_id=types.PeerUser(self.peer_id),
            date=self.date,
            message=self.text,
            out=self.out,
            from_id=types.PeerUser(self.from_id),
            reply_to=(
                types.MessageReplyHeader(reply_to_msg_id=self.reply_to_msg_id)
                if self.reply_to_msg_id
                else None
            ),
        )


@dataclass
class Mailbox:
    """One account's common message box: message ids and pts grow by one per message.

    pts starts at 1 because Telethon reads pts 0 from ``updates.getState`` as "no state".
    """

    pts: int = 1
    last_message_id: int = 0
    messages: list[StoredMessage] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)

    def add(
        self,
        peer_id: int,
        from_id: int,
        out: bool,
        text: str,
        date: datetime.datetime,
        reply_to_msg_id: int | None = None,
    ) -> StoredMessage:
        """Store a new message, advancing the message id and pts."""
        self.pts += 1
        self.last_message_id += 1
        message = StoredMessage(
            self.last_message_id, self.pts, peer_id, from_id, out, text, date, reply_to_msg_id
        )
        self.messages.append(message)
        return message

    def since(self, pts: int) -> list[StoredMessage]:
        """Messages with a pts above ``pts`` (what ``updates.getDifference`` returns)."""
        return [m for m in self.messages if m.pts > pts]
