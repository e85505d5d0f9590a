"""Groups, supergroups and channels of the fake Telegram."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telethon.tl import types

from ._boxes import Mailbox, Peer

if TYPE_CHECKING:
    from ._accounts import Account

#: The rights every admin of the fake Telegram has.
ADMIN_RIGHTS = types.ChatAdminRights(
    change_info=True, post_messages=True, edit_messages=True, delete_messages=True,
    ban_users=True, invite_users=True, pin_messages=True, add_admins=True, manage_call=True,
    other=True,
)


@dataclass(eq=False)
class Chat:
    """A basic group (``kind="group"``), a supergroup or a broadcast channel.

    A basic group's messages live in each member's own box (ids and pts per member); a
    supergroup or channel has one box of its own (``box``, ids and pts per channel).
    ``members`` maps member ids to when they joined, in joining order. In a broadcast
    channel only admins post, and their posts carry no author.
    """

    id: int
    title: str
    kind: str
    creator_id: int
    date: datetime.datetime
    access_hash: int = field(default=0, repr=False)
    members: dict[int, datetime.datetime] = field(default_factory=dict, repr=False)
    admins: set[int] = field(default_factory=set, repr=False)
    version: int = field(default=1, repr=False)
    box: Mailbox | None = field(default=None, repr=False)

    @property
    def is_channel(self) -> bool:
        """A supergroup or a broadcast channel (Telegram's "channel" kind of chat)."""
        return self.kind != "group"

    @property
    def broadcast(self) -> bool:
        return self.kind == "channel"

    @property
    def peer(self) -> Peer:
        if self.is_channel:
            return types.PeerChannel(self.id)
        return types.PeerChat(self.id)

    def channel_box(self) -> Mailbox:
        """The channel's own box; a basic group has none."""
        assert self.box is not None, "a basic group has no box of its own"
        return self.box

    def is_admin(self, account_id: int) -> bool:
        return account_id == self.creator_id or account_id in self.admins

    def as_tl(self, viewer: Account | None) -> Any:
        """The ``Chat`` or ``Channel`` object ``viewer`` sees."""
        viewer_id = viewer.id if viewer is not None else 0
        if not self.is_channel:
            return types.Chat(
                id=self.id, title=self.title, photo=types.ChatPhotoEmpty(),
                participants_count=len(self.members), date=self.date, version=self.version,
                creator=viewer_id == self.creator_id or None,
                left=viewer_id not in self.members or None,
                admin_rights=ADMIN_RIGHTS if self.is_admin(viewer_id) else None,
            )
        return types.Channel(
            id=self.id, title=self.title, photo=types.ChatPhotoEmpty(), date=self.date,
            access_hash=self.access_hash, broadcast=self.broadcast or None,
            megagroup=not self.broadcast or None,
            creator=viewer_id == self.creator_id or None,
            left=viewer_id not in self.members or None,
            admin_rights=ADMIN_RIGHTS if self.is_admin(viewer_id) else None,
            participants_count=len(self.members),
        )
