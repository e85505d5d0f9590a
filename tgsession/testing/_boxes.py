"""Messages and the boxes that hold them, with the pts event log Telegram's updates follow.

An account's common box holds its private and basic-group messages (ids and pts of its own);
a channel or supergroup has one box shared by all its members (ids and pts of the channel).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from telethon.tl import types

#: A ``PeerUser``, ``PeerChat`` or ``PeerChannel`` (Telethon's TL types are untyped).
Peer: TypeAlias = Any


@dataclass(slots=True)
class StoredMessage:
    """One message as it sits in one box (a private chat's two sides are two copies).

    ``sender_id`` is the account that sent it; ``key`` is shared by all copies of one message
    (so an edit, a deletion or a reply finds the other side's copy). ``out`` is the box
    owner's view in an account box; in a channel box it is computed per viewer.
    """

    id: int
    pts: int
    peer: Peer
    sender_id: int
    out: bool
    text: str
    date: datetime.datetime
    key: int = 0
    reply_to_msg_id: int | None = None
    entities: list[Any] | None = None
    reply_markup: Any = None
    media: Any = None
    fwd_from: Any = None
    action: Any = None
    post: bool = False
    pinned: bool = False
    edit_date: datetime.datetime | None = None
    hidden_from: frozenset[int] = frozenset()

    @property
    def peer_id(self) -> int:
        """The id of the chat the message is in (user, group or channel id)."""
        peer = self.peer
        if isinstance(peer, types.PeerUser):
            return int(peer.user_id)
        if isinstance(peer, types.PeerChat):
            return int(peer.chat_id)
        return int(peer.channel_id)

    @property
    def from_id(self) -> int:
        """Who sent it (kept for older tests; the same as ``sender_id``)."""
        return self.sender_id

    def buttons(self) -> list[Any]:
        """The inline keyboard's buttons, row after row (empty without one)."""
        markup = self.reply_markup
        if not isinstance(markup, types.ReplyInlineMarkup):
            return []
        return [button for row in markup.rows for button in row.buttons]

    def callback_buttons(self) -> list[tuple[str, bytes]]:
        """The ``(text, data)`` of each inline callback button, row after row."""
        return [(b.text, b.type.data) for b in self.buttons()
                if isinstance(getattr(b, "type", None), types.InlineButtonTypeCallback)]

    def as_tl(self, viewer_id: int | None = None) -> types.TypeMessage:
        """The ``Message`` (or ``MessageService``) the box owner, or ``viewer_id``, receives."""
        out = self.out if viewer_id is None else self.sender_id == viewer_id
        from_id = None if self.post else types.PeerUser(self.sender_id)
        reply_to = (types.MessageReplyHeader(reply_to_msg_id=self.reply_to_msg_id)
                    if self.reply_to_msg_id else None)
        if self.action is not None:
            return types.MessageService(
                id=self.id, peer_id=self.peer, date=self.date, action=self.action, out=out,
                from_id=from_id, post=self.post or None, reply_to=reply_to,
            )
        return types.Message(
            id=self.id,
            peer_id=self.peer,
            date=self.date,
            message=self.text,
            out=out,
            from_id=from_id,
            post=self.post or None,
            reply_to=reply_to,
            entities=self.entities or None,
            reply_markup=self.reply_markup,
            media=self.media,
            fwd_from=self.fwd_from,
            pinned=self.pinned or None,
            edit_date=self.edit_date,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One step of a box's pts sequence; ``build(viewer_id)`` makes the TL update."""

    pts: int
    pts_count: int
    date: datetime.datetime
    build: Callable[[int], Any]
    message: StoredMessage | None = None  # set for new messages


@dataclass
class Mailbox:
    """A message box: ids and pts grow as messages come, change and go.

    pts starts at 1 because Telethon reads pts 0 from ``updates.getState`` as "no state".
    ``channel_id`` is set for a channel's box (its updates are the channel kind).
    """

    channel_id: int | None = None
    pts: int = 1
    last_message_id: int = 0
    by_id: dict[int, StoredMessage] = field(default_factory=dict)
    log: list[Event] = field(default_factory=list)
    taken: set[tuple[int, int]] = field(default_factory=set)

    @property
    def messages(self) -> list[StoredMessage]:
        """The messages present now, oldest first."""
        return list(self.by_id.values())

    def add(self, peer: Peer, sender_id: int, out: bool, text: str, date: datetime.datetime,
            reply_to_msg_id: int | None = None, **fields: Any) -> StoredMessage:
        """Store a new message, advancing the message id and pts."""
        self.pts += 1
        self.last_message_id += 1
        message = StoredMessage(self.last_message_id, self.pts, peer, sender_id, out, text, date,
                                reply_to_msg_id=reply_to_msg_id, **fields)
        self.by_id[message.id] = message
        channel_id, pts = self.channel_id, self.pts

        def build(viewer: int) -> Any:
            if channel_id is not None:
                return types.UpdateNewChannelMessage(message.as_tl(viewer), pts, 1)
            return types.UpdateNewMessage(message.as_tl(), pts, 1)

        self.log.append(Event(pts, 1, date, build, message))
        return message

    def edit(self, message_id: int, date: datetime.datetime, **changes: Any) -> Event:
        """Replace fields of a message (an edit); returns its update."""
        message = dataclasses.replace(self.by_id[message_id], **changes)
        self.by_id[message_id] = message
        self.pts += 1
        channel_id, pts = self.channel_id, self.pts

        def build(viewer: int) -> Any:
            if channel_id is not None:
                return types.UpdateEditChannelMessage(message.as_tl(viewer), pts, 1)
            return types.UpdateEditMessage(message.as_tl(), pts, 1)

        event = Event(pts, 1, date, build)
        self.log.append(event)
        return event

    def delete(self, ids: Iterable[int], date: datetime.datetime) -> Event | None:
        """Delete the messages that exist among ``ids``; None when none did."""
        gone = [i for i in ids if self.by_id.pop(i, None) is not None]
        if not gone:
            return None
        self.pts += len(gone)
        channel_id, pts, count = self.channel_id, self.pts, len(gone)

        def build(viewer: int) -> Any:
            if channel_id is not None:
                return types.UpdateDeleteChannelMessages(channel_id, gone, pts, count)
            return types.UpdateDeleteMessages(gone, pts, count)

        event = Event(pts, count, date, build)
        self.log.append(event)
        return event

    def pin(self, message_id: int, pinned: bool, date: datetime.datetime) -> Event:
        """Pin or unpin a message."""
        message = dataclasses.replace(self.by_id[message_id], pinned=pinned)
        self.by_id[message_id] = message
        self.pts += 1
        channel_id, pts, peer = self.channel_id, self.pts, message.peer

        def build(viewer: int) -> Any:
            if channel_id is not None:
                return types.UpdatePinnedChannelMessages(channel_id, [message_id], pts, 1,
                                                         pinned=pinned)
            return types.UpdatePinnedMessages(peer, [message_id], pts, 1, pinned=pinned)

        event = Event(pts, 1, date, build)
        self.log.append(event)
        return event

    def since(self, pts: int) -> list[Event]:
        """Events with a pts above ``pts`` (what a difference returns)."""
        return [e for e in self.log if e.pts > pts]

    def find_key(self, key: int) -> StoredMessage | None:
        """This box's copy of the message with ``key``."""
        return next((m for m in self.by_id.values() if m.key == key), None)
