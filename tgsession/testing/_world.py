"""Everything the fake Telegram knows: accounts, auth keys, login codes, and message delivery.

Pure state plus delivery; no sockets. Connections register here so that delivery can push
updates to whoever is online.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import logging
import re
import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from telethon.crypto import AuthKey
from telethon.tl import types

from ._accounts import Account
from ._boxes import Event, Mailbox, StoredMessage
from ._chats import Chat

_log = logging.getLogger("tgsession.testing")

#: A channel with more new messages than this since the client's state date is announced in
#: ``updates.getDifference`` as ``updateChannelTooLong`` (the client then calls
#: ``updates.getChannelDifference`` from its stored pts); fewer come inline.
INLINE_CHANNEL_UPDATES = 10

Target = Account | Chat

_USERNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,31}$")


class RpcFailure(Exception):
    """An ``rpc_error`` to answer a request with (``code`` as Telegram uses it)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class LiveConnection(Protocol):
    """What delivery needs of an open client connection."""

    session_id: int | None

    def is_alive(self) -> bool:
        """False once the socket is closed or closing."""

    def push(self, updates: types.TypeUpdates) -> None:
        """Send an update to the client now."""


@dataclass(eq=False)
class AuthKeyRecord:
    """One auth key the server holds, on one DC.

    ``account_id`` is set once the key is signed in; ``pending_password_id`` between a correct
    code and the 2FA password; ``burned`` after AUTH_KEY_DUPLICATED (the key is dead for good).
    """

    key: AuthKey
    dc_id: int
    account_id: int | None = None
    pending_password_id: int | None = None
    burned: bool = False
    connections: set[LiveConnection] = field(default_factory=set)


@dataclass(eq=False)
class StoredFile:
    """A file uploaded to the fake Telegram, kept in memory."""

    id: int
    access_hash: int = field(repr=False)
    data: bytes = field(repr=False)
    photo: bool
    mime_type: str
    name: str | None
    attributes: list[Any]
    date: datetime.datetime
    dc_id: int

    def as_media(self) -> Any:
        """The ``MessageMedia`` of a message that carries this file."""
        if self.photo:
            return types.MessageMediaPhoto(photo=types.Photo(
                id=self.id, access_hash=self.access_hash, file_reference=b"", date=self.date,
                sizes=[types.PhotoSize(type="x", w=800, h=600, size=len(self.data))],
                dc_id=self.dc_id,
            ))
        return types.MessageMediaDocument(document=types.Document(
            id=self.id, access_hash=self.access_hash, file_reference=b"", date=self.date,
            mime_type=self.mime_type, size=len(self.data), dc_id=self.dc_id,
            attributes=self.attributes,
        ))


@dataclass
class _PendingCode:
    code: str
    phone_code_hash: str


def normalize_phone(phone: str) -> str:
    """Digits only, as Telethon sends them; raises ValueError when that is not a phone."""
    digits = re.sub(r"[+()\s-]", "", phone)
    if not digits.isdigit() or not 5 <= len(digits) <= 15:
        raise ValueError(f"not a phone number: {phone!r}")
    return digits


def now() -> datetime.datetime:
    """Whole seconds, as TL dates are."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


class World:
    """The fake Telegram's state, shared by all DCs of one server."""

    def __init__(
        self,
        dc_ids: list[int],
        *,
        code_listener: Callable[[str, str], None] | None = None,
    ) -> None:
        self.dc_ids = dc_ids
        self.dc_addresses: dict[int, tuple[str, int]] = {}
        self.accounts: dict[int, Account] = {}
        self.keys: dict[tuple[int, int], AuthKeyRecord] = {}
        self.counts: Counter[str] = Counter()
        self.failures: dict[str, deque[RpcFailure]] = {}
        self.handshakes = 0
        self.exported_authorizations: dict[bytes, int] = {}
        self._codes: dict[str, _PendingCode] = {}
        self._last_codes: dict[str, str] = {}
        self._code_listener = code_listener
        self._user_ids = itertools.count(1_000_001)
        self._bot_ids = itertools.count(7_000_000_001)
        self._waiters: set[asyncio.Event] = set()
        self.chats: dict[int, Chat] = {}
        self._chat_ids = itertools.count(4_000_001)
        self._channel_ids = itertools.count(1_500_000_001)
        self._message_keys = itertools.count(1)
        self.copies: dict[int, list[tuple[int, int]]] = {}
        self.uploads: dict[tuple[int, int], dict[int, bytes]] = {}
        self.files: dict[int, StoredFile] = {}
        self.callbacks: dict[int, asyncio.Future[Any]] = {}
        self.callback_timeout = 10.0
        self.unimplemented: set[str] = set()

    # --- accounts -------------------------------------------------------------------------

    def add_account(self, account: Account) -> Account:
        """Register an account; phone, username and token must be free."""
        for other in self.accounts.values():
            if account.phone and other.phone == account.phone:
                raise ValueError(f"phone {account.phone} is already registered")
            if account.username and (other.username or "").lower() == account.username.lower():
                raise ValueError(f"username {account.username} is already taken")
        if account.username and not _USERNAME_RE.match(account.username):
            raise ValueError(f"invalid username {account.username!r}")
        if account.dc_id not in self.dc_ids:
            raise ValueError(f"no DC {account.dc_id}; this server has {self.dc_ids}")
        self.accounts[account.id] = account
        return account

    def new_user_id(self) -> int:
        return next(self._user_ids)

    def new_bot_id(self) -> int:
        return next(self._bot_ids)

    def by_phone(self, phone: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.phone == phone), None)

    def by_username(self, username: str) -> Account | None:
        wanted = username.lower()
        return next(
            (a for a in self.accounts.values() if (a.username or "").lower() == wanted), None
        )

    def by_token(self, token: str) -> Account | None:
        return next((a for a in self.accounts.values() if a.token and a.token == token), None)

    # --- auth keys ------------------------------------------------------------------------

    def register_key(self, dc_id: int, key_bytes: bytes) -> AuthKeyRecord:
        """Remember a new auth key made on ``dc_id``."""
        record = AuthKeyRecord(AuthKey(key_bytes), dc_id)
        self.keys[(dc_id, record.key.key_id)] = record
        return record

    def find_key(self, dc_id: int, key_id: int) -> AuthKeyRecord | None:
        return self.keys.get((dc_id, key_id))

    def keys_of(self, account: Account) -> list[AuthKeyRecord]:
        return [r for r in self.keys.values() if r.account_id == account.id]

    def forget_key(self, key_id: int) -> bool:
        """Drop the key everywhere; returns whether it was known."""
        found = [k for k in self.keys if k[1] == key_id]
        for k in found:
            del self.keys[k]
        return bool(found)

    # --- login codes ----------------------------------------------------------------------

    def issue_code(self, phone: str) -> _PendingCode:
        """Send a new login code to ``phone`` (it replaces the previous one)."""
        pending = _PendingCode(f"{secrets.randbelow(100000):05d}", secrets.token_hex(9))
        self._codes[phone] = pending
        self._last_codes[phone] = pending.code
        if self._code_listener is not None:
            self._code_listener(phone, pending.code)
        return pending

    def pending_code(self, phone: str) -> _PendingCode | None:
        return self._codes.get(phone)

    def consume_code(self, phone: str) -> None:
        self._codes.pop(phone, None)

    def last_code(self, phone: str) -> str | None:
        return self._last_codes.get(phone)

    # --- rpc bookkeeping ------------------------------------------------------------------

    def take_failure(self, method: str) -> RpcFailure | None:
        queue = self.failures.get(method)
        return queue.popleft() if queue else None

    # --- chats --------------------------------------------------------------------------

    def create_chat(self, title: str, creator: Account, members: Iterable[Account], kind: str,
                    *, origin: LiveConnection | None = None) -> tuple[Chat, Any]:
        """A new basic group, supergroup or channel with its creation message; returns it
        and the creator's update of that message."""
        if not title.strip():
            raise RpcFailure(400, "CHAT_TITLE_EMPTY")
        channel = kind != "group"
        chat_id = next(self._channel_ids if channel else self._chat_ids)
        chat = Chat(
            id=chat_id, title=title, kind=kind, creator_id=creator.id, date=now(),
            access_hash=secrets.randbits(63) if channel else 0,
            box=Mailbox(channel_id=chat_id) if channel else None,
        )
        self.chats[chat.id] = chat
        chat.members[creator.id] = chat.date
        others = [m for m in members if m is not creator]
        for member in others:
            self._check_can_join(member, chat)
            chat.members[member.id] = chat.date
            if member.is_bot and chat.broadcast:
                chat.admins.add(member.id)
        action: Any
        if channel:
            action = types.MessageActionChannelCreate(title=title)
        else:
            action = types.MessageActionChatCreate(title=title, users=list(chat.members))
        return chat, self.send(creator, chat, action=action, origin=origin)[1]

    def add_members(self, chat: Chat, adder: Account, accounts: Iterable[Account],
                    *, origin: LiveConnection | None = None) -> Any:
        """Add members (bots in a broadcast channel become admins); returns the adder's
        update of the service message, if one was made."""
        if adder.id not in chat.members:
            raise RpcFailure(400, "CHANNEL_PRIVATE" if chat.is_channel else "CHAT_ID_INVALID")
        if chat.is_channel and not chat.is_admin(adder.id):
            raise RpcFailure(403, "CHAT_ADMIN_REQUIRED")
        new = [a for a in accounts if a.id not in chat.members]
        for account in new:
            self._check_can_join(account, chat)
            chat.members[account.id] = now()
            if account.is_bot and chat.broadcast:
                chat.admins.add(account.id)
        chat.version += 1
        if not new or chat.broadcast:
            return None
        action = types.MessageActionChatAddUser(users=[a.id for a in new])
        return self.send(adder, chat, action=action, origin=origin)[1]

    def remove_member(self, chat: Chat, remover: Account, account: Account,
                      *, origin: LiveConnection | None = None) -> Any:
        """Remove (kick, or leave when ``remover`` is ``account``) a member; returns the
        remover's update of the service message, if one was made."""
        if account.id not in chat.members:
            raise RpcFailure(400, "USER_NOT_PARTICIPANT")
        if remover is not account and not chat.is_admin(remover.id):
            raise RpcFailure(403, "CHAT_ADMIN_REQUIRED")
        if account.id == chat.creator_id and remover is not account:
            raise RpcFailure(400, "USER_ADMIN_INVALID")
        update = None
        if not chat.broadcast:  # the one leaving sees it too
            update = self.send(remover, chat, action=types.MessageActionChatDeleteUser(
                account.id), origin=origin)[1]
        del chat.members[account.id]
        chat.admins.discard(account.id)
        chat.version += 1
        return update

    def _check_can_join(self, account: Account, chat: Chat) -> None:
        if account.is_bot and not chat.broadcast and account.username is None:
            raise RpcFailure(400, "BOT_GROUPS_BLOCKED")

    def chat_of(self, viewer: Account, chat_id: int, *, channel: bool) -> Chat:
        """The chat ``viewer`` names by id; errors as Telegram's when it is not theirs."""
        chat = self.chats.get(chat_id)
        if chat is None or chat.is_channel != channel:
            raise RpcFailure(400, "CHANNEL_INVALID" if channel else "CHAT_ID_INVALID")
        if viewer.id not in chat.members and not chat.broadcast:
            raise RpcFailure(400, "CHANNEL_PRIVATE" if channel else "CHAT_ID_INVALID")
        return chat

    # --- messages -------------------------------------------------------------------------

    def live_connections(self, account: Account) -> Iterator[LiveConnection]:
        for record in self.keys_of(account):
            if not record.burned:
                yield from (c for c in list(record.connections) if c.is_alive())

    def _check_can_send(self, sender: Account, target: Target) -> None:
        if isinstance(target, Account):
            if target is sender:
                return
            if sender.is_bot and target.is_bot:
                raise RpcFailure(400, "USER_IS_BOT")
            if sender.is_bot:
                if target.id in sender.blocked_by:
                    raise RpcFailure(403, "USER_IS_BLOCKED")
                if target.id not in sender.started_by:
                    # Telegram's answer to a bot writing to someone who never started it.
                    raise RpcFailure(400, "PEER_ID_INVALID")
            if target.is_bot and sender.id in target.blocked_by:
                raise RpcFailure(400, "YOU_BLOCKED_USER")
            return
        if sender.id not in target.members:
            raise RpcFailure(403 if not target.is_channel else 400,
                             "CHAT_WRITE_FORBIDDEN" if not target.is_channel
                             else "CHANNEL_PRIVATE")
        if target.broadcast and not target.is_admin(sender.id):
            raise RpcFailure(403, "CHAT_ADMIN_REQUIRED")

    def _sees(self, account: Account, chat: Chat, sender: Account, text: str,
              action: Any, replied_sender: int | None) -> bool:
        """Whether a group message reaches ``account`` (bots in privacy mode see little)."""
        if not account.is_bot or not account.privacy or account is sender or action is not None:
            return True
        if chat.broadcast or chat.is_admin(account.id) or replied_sender == account.id:
            return True
        mention = f"@{account.username}".lower() if account.username else None
        words = text.split()
        if words and words[0].startswith("/"):
            addressed = words[0].partition("@")[2].lower()
            return not addressed or (mention is not None and f"@{addressed}" == mention)
        return mention is not None and mention in text.lower()

    def send(
        self,
        sender: Account,
        target: Target,
        text: str = "",
        *,
        reply_to_msg_id: int | None = None,
        origin: LiveConnection | None = None,
        action: Any = None,
        **fields: Any,
    ) -> tuple[StoredMessage, Any]:
        """Send a message as ``sender`` to a user, group or channel, and push it to everyone
        online who sees it. ``reply_to_msg_id`` is in the sender's view; ``fields`` are
        :class:`StoredMessage` fields (entities, reply_markup, media, fwd_from).

        Returns the sender's copy and the update the sender's client gets in its result.
        ``origin`` (the connection that sent it) gets no push.
        """
        self._check_can_send(sender, target)
        if not sender.is_bot:
            fields.pop("reply_markup", None)  # only bots attach inline keyboards
        date = now()
        key = next(self._message_keys)
        if isinstance(target, Chat) and target.is_channel:
            return self._send_to_channel(sender, target, text, date, key, reply_to_msg_id,
                                         origin, action, fields)
        replied = sender.box.by_id.get(reply_to_msg_id or 0)
        replied_sender = replied.sender_id if replied is not None else None
        if isinstance(target, Account):
            if target.is_bot and not sender.is_bot:
                target.started_by.add(sender.id)
            boxes = [(sender, types.PeerUser(target.id))]
            if target is not sender:
                boxes.append((target, types.PeerUser(sender.id)))
            chat = None
        else:
            chat = target
            boxes = [(self.accounts[m], target.peer) for m in target.members
                     if self._sees(self.accounts[m], target, sender, text, action,
                                   replied_sender)]
        copies: list[tuple[int, int]] = []
        sender_update: Any = None
        sender_copy: StoredMessage | None = None
        for owner, peer in boxes:
            reply_copy = (owner.box.find_key(replied.key) if replied is not None else None)
            message = owner.box.add(peer, sender.id, owner is sender, text, date,
                                    reply_copy.id if reply_copy else None, key=key,
                                    action=action, **fields)
            copies.append((owner.id, message.id))
            update = owner.box.log[-1].build(owner.id)
            related = [sender] + ([target] if isinstance(target, Account) else [])
            self._push(owner, [update], related, [chat] if chat else [],
                       exclude=origin if owner is sender else None)
            if owner is sender:
                sender_update, sender_copy = update, message
        self.copies[key] = copies
        self._notify_waiters()
        assert sender_copy is not None
        return sender_copy, sender_update

    def _send_to_channel(self, sender: Account, chat: Chat, text: str, date: datetime.datetime,
                         key: int, reply_to_msg_id: int | None, origin: LiveConnection | None,
                         action: Any, fields: dict[str, Any]) -> tuple[StoredMessage, Any]:
        box = chat.channel_box()
        replied = box.by_id.get(reply_to_msg_id or 0)
        replied_sender = replied.sender_id if replied is not None else None
        hidden = frozenset(
            m for m in chat.members
            if not self._sees(self.accounts[m], chat, sender, text, action, replied_sender)
        )
        message = box.add(chat.peer, sender.id, False, text, date,
                          replied.id if replied else None, key=key, action=action,
                          post=chat.broadcast, hidden_from=hidden, **fields)
        event = box.log[-1]
        for member_id in chat.members:
            if member_id in hidden:
                continue
            member = self.accounts[member_id]
            self._push(member, [event.build(member_id)], [sender], [chat],
                       exclude=origin if member is sender else None)
        self._notify_waiters()
        return message, event.build(sender.id)

    def view(self, viewer: Account, target: Target, message_id: int) -> StoredMessage:
        """The message ``message_id`` as ``viewer`` sees it in the chat with ``target``."""
        if isinstance(target, Chat) and target.is_channel:
            message = target.channel_box().by_id.get(message_id)
        else:
            message = viewer.box.by_id.get(message_id)
            peer = types.PeerUser(target.id) if isinstance(target, Account) else target.peer
            if message is not None and message.peer != peer:
                message = None
        if message is None:
            raise RpcFailure(400, "MESSAGE_ID_INVALID")
        return message

    def _copies(self, message: StoredMessage) -> list[tuple[Account, int]]:
        return [(self.accounts[a], m) for a, m in self.copies.get(message.key, [])]

    def edit(self, editor: Account, target: Target, message_id: int, *,
             origin: LiveConnection | None = None, **changes: Any) -> Any:
        """Edit a message everywhere it is; returns the editor's update."""
        message = self.view(editor, target, message_id)
        channel = isinstance(target, Chat) and target.is_channel
        may = message.sender_id == editor.id or (
            channel and isinstance(target, Chat) and target.broadcast
            and target.is_admin(editor.id))
        if not may or message.action is not None:
            raise RpcFailure(403, "MESSAGE_AUTHOR_REQUIRED")
        if not editor.is_bot:
            changes.pop("reply_markup", None)
        if all(getattr(message, k) == v for k, v in changes.items()):
            raise RpcFailure(400, "MESSAGE_NOT_MODIFIED")
        date = now()
        if channel:
            assert isinstance(target, Chat)
            event = target.channel_box().edit(message_id, date, edit_date=date, **changes)
            self._fan_out_channel(target, event, editor, origin)
            return event.build(editor.id)
        mine: Any = None
        for owner, copy_id in self._copies(message):
            event = owner.box.edit(copy_id, date, edit_date=date, **changes)
            update = event.build(owner.id)
            self._push(owner, [update], [editor], self._chats_of(message),
                       exclude=origin if owner is editor else None)
            if owner is editor:
                mine = update
        self._notify_waiters()
        return mine

    def delete(self, account: Account, ids: list[int], *, revoke: bool,
               origin: LiveConnection | None = None) -> tuple[int, int]:
        """Delete messages of ``account``'s box (and the other copies with ``revoke``);
        returns the box's pts and how many pts that took."""
        messages = [account.box.by_id[i] for i in ids if i in account.box.by_id]
        per_owner: dict[int, list[int]] = {account.id: [m.id for m in messages]}
        if revoke:
            for message in messages:
                for owner, copy_id in self._copies(message):
                    if owner is not account:
                        per_owner.setdefault(owner.id, []).append(copy_id)
        count = 0
        for owner_id, owner_ids in per_owner.items():
            owner = self.accounts[owner_id]
            event = owner.box.delete(owner_ids, now())
            if event is None:
                continue
            if owner is account:
                count = event.pts_count
            self._push(owner, [event.build(owner_id)], [], [],
                       exclude=origin if owner is account else None)
        self._notify_waiters()
        return account.box.pts, count

    def delete_in_channel(self, account: Account, chat: Chat, ids: list[int],
                          origin: LiveConnection | None = None) -> tuple[int, int]:
        box = chat.channel_box()
        for i in ids:
            message = box.by_id.get(i)
            if message is not None and message.sender_id != account.id and not chat.is_admin(
                    account.id):
                raise RpcFailure(403, "MESSAGE_DELETE_FORBIDDEN")
        event = box.delete(ids, now())
        if event is None:
            return box.pts, 0
        self._fan_out_channel(chat, event, account, origin)
        return box.pts, event.pts_count

    def pin(self, account: Account, target: Target, message_id: int, pinned: bool,
            origin: LiveConnection | None = None) -> Any:
        message = self.view(account, target, message_id)
        date = now()
        if isinstance(target, Chat) and target.is_channel:
            if not target.is_admin(account.id):
                raise RpcFailure(403, "CHAT_ADMIN_REQUIRED")
            event = target.channel_box().pin(message_id, pinned, date)
            self._fan_out_channel(target, event, account, origin)
            return event.build(account.id)
        mine: Any = None
        for owner, copy_id in self._copies(message):
            update = owner.box.pin(copy_id, pinned, date).build(owner.id)
            self._push(owner, [update], [account], self._chats_of(message),
                       exclude=origin if owner is account else None)
            if owner is account:
                mine = update
        self._notify_waiters()
        return mine

    def _fan_out_channel(self, chat: Chat, event: Event, actor: Account,
                         origin: LiveConnection | None) -> None:
        for member_id in chat.members:
            member = self.accounts[member_id]
            self._push(member, [event.build(member_id)], [actor], [chat],
                       exclude=origin if member is actor else None)
        self._notify_waiters()

    def _chats_of(self, message: StoredMessage) -> list[Chat]:
        chat = self.chats.get(message.peer_id)
        return [chat] if chat is not None and not isinstance(message.peer, types.PeerUser) else []

    def _push(self, owner: Account, updates: list[Any], users: Iterable[Account],
              chats: Iterable[Chat], *, exclude: LiveConnection | None = None) -> None:
        payload = self.updates_for(owner, updates, users, chats)
        for connection in self.live_connections(owner):
            if connection is not exclude:
                connection.push(payload)

    def updates_for(self, owner: Account, updates: list[Any], users: Iterable[Account],
                    chats: Iterable[Chat]) -> types.Updates:
        """An ``Updates`` for ``owner`` with the users and chats it mentions."""
        everyone = {owner.id: owner}
        everyone.update((u.id, u) for u in users)
        return types.Updates(
            updates=updates,
            users=[a.as_user(owner) for a in everyone.values()],
            chats=[c.as_tl(owner) for c in chats],
            date=now(),
            seq=0,
        )

    def push_to(self, owner: Account, update: Any, users: Iterable[Account] = (),
                chats: Iterable[Chat] = ()) -> None:
        """Push one update (no pts) to every live connection of ``owner``."""
        self._push(owner, [update], users, chats)

    # --- differences ----------------------------------------------------------------------

    def difference(self, me: Account, pts: int, date: datetime.datetime, state: Any) -> Any:
        """``updates.getDifference``: the account box's events after ``pts``, plus channel
        messages since ``date`` (inline, or ``updateChannelTooLong`` past a few)."""
        events = me.box.since(pts)
        new_messages = [e.message.as_tl() for e in events if e.message is not None]
        other: list[Any] = [e.build(me.id) for e in events if e.message is None]
        chats = {m.peer_id: self.chats[m.peer_id] for e in events
                 if (m := e.message) is not None and isinstance(m.peer, types.PeerChat)}
        users = {me.id} | {e.message.sender_id for e in events if e.message is not None}
        users |= {e.message.peer_id for e in events
                  if e.message is not None and isinstance(e.message.peer, types.PeerUser)}
        for chat in self.chats.values():
            if not chat.is_channel or me.id not in chat.members:
                continue
            recent = [e for e in chat.channel_box().log if e.date >= date and (
                e.message is None or me.id not in e.message.hidden_from)]
            if not recent:
                continue
            chats[chat.id] = chat
            if len(recent) > INLINE_CHANNEL_UPDATES:
                other.append(types.UpdateChannelTooLong(chat.id, pts=chat.channel_box().pts))
            else:
                other.extend(e.build(me.id) for e in recent)
                users |= {e.message.sender_id for e in recent if e.message is not None}
        if not new_messages and not other:
            return types.updates.DifferenceEmpty(date=now(), seq=0)
        return types.updates.Difference(
            new_messages=new_messages,
            new_encrypted_messages=[],
            other_updates=other,
            chats=[c.as_tl(me) for c in chats.values()],
            users=[self.accounts[u].as_user(me) for u in sorted(users) if u in self.accounts],
            state=state,
        )

    def channel_difference(self, me: Account, chat: Chat, pts: int, limit: int) -> Any:
        """``updates.getChannelDifference`` from ``pts``, at most ``limit`` events."""
        box = chat.channel_box()
        if pts > box.pts or pts <= 0:
            raise RpcFailure(400, "PERSISTENT_TIMESTAMP_INVALID")
        events = box.since(pts)
        if not events:
            return types.updates.ChannelDifferenceEmpty(pts=box.pts, final=True, timeout=30)
        chunk = events[: max(limit, 1)]
        visible = [e for e in chunk if e.message is None or me.id not in e.message.hidden_from]
        senders = {me.id} | {e.message.sender_id for e in visible if e.message is not None}
        return types.updates.ChannelDifference(
            pts=chunk[-1].pts,
            new_messages=[e.message.as_tl(me.id) for e in visible if e.message is not None],
            other_updates=[e.build(me.id) for e in visible if e.message is None],
            chats=[chat.as_tl(me)],
            users=[self.accounts[u].as_user(me) for u in sorted(senders)],
            final=len(chunk) == len(events),
            timeout=30,
        )

    # --- callback queries -----------------------------------------------------------------

    async def press_button(self, user: Account, target: Target, message_id: int,
                           data: bytes, timeout: float | None = None) -> Any:
        """``messages.getBotCallbackAnswer``: ask the bot, wait for its answer (at most
        ``timeout``, by default :attr:`callback_timeout`)."""
        message = self.view(user, target, message_id)
        bot = self.accounts.get(message.sender_id)
        if bot is None or not bot.is_bot:
            raise RpcFailure(400, "MESSAGE_ID_INVALID")
        if not any(d == data for _, d in message.callback_buttons()):
            raise RpcFailure(400, "DATA_INVALID")
        if isinstance(target, Chat) and target.is_channel:
            bot_message_id, peer, chats = message.id, target.peer, [target]
        else:
            copy = bot.box.find_key(message.key)
            if copy is None:
                raise RpcFailure(400, "MESSAGE_ID_INVALID")
            bot_message_id = copy.id
            if isinstance(target, Chat):
                peer, chats = target.peer, [target]
            else:
                peer, chats = types.PeerUser(user.id), []
        query_id = secrets.randbits(63)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.callbacks[query_id] = future
        update = types.UpdateBotCallbackQuery(
            query_id=query_id, user_id=user.id, peer=peer, msg_id=bot_message_id,
            chat_instance=hash((user.id, message.peer_id)) & (2**63 - 1), data=data,
        )
        self.push_to(bot, update, [user], chats)
        try:
            return await asyncio.wait_for(future, timeout or self.callback_timeout)
        except asyncio.TimeoutError:
            raise RpcFailure(400, "BOT_RESPONSE_TIMEOUT") from None
        finally:
            self.callbacks.pop(query_id, None)

    def answer_callback(self, query_id: int, answer: Any) -> None:
        future = self.callbacks.get(query_id)
        if future is None:
            raise RpcFailure(400, "QUERY_ID_INVALID")
        if not future.done():
            future.set_result(answer)

    # --- waiting --------------------------------------------------------------------------

    def _notify_waiters(self) -> None:
        for event in self._waiters:
            event.set()

    async def wait_until(self, condition: Callable[[], Any], timeout: float) -> Any:
        """Wait until ``condition()`` returns something truthy (re-checked after every
        change); return it. Raises ``asyncio.TimeoutError``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := condition()):
            event = asyncio.Event()
            self._waiters.add(event)
            try:
                await asyncio.wait_for(event.wait(), max(deadline - loop.time(), 0))
            finally:
                self._waiters.discard(event)
        return result

    async def wait_for_message(
        self, to: Account, from_: Account | None, timeout: float, chat: Chat | None = None
    ) -> StoredMessage:
        """The oldest message to ``to`` (from ``from_``, in ``chat`` or else in a private
        chat) not yet returned by a wait."""

        def find() -> StoredMessage | None:
            if chat is not None and chat.is_channel:
                box = chat.channel_box()
                candidates = [m for m in box.messages if to.id not in m.hidden_from
                              and m.sender_id != to.id]
            else:
                box = to.box
                peer_type = types.PeerUser if chat is None else types.PeerChat
                candidates = [m for m in box.messages if not m.out
                              and isinstance(m.peer, peer_type)
                              and (chat is None or m.peer_id == chat.id)]
            for message in candidates:
                if (to.id, message.id) in box.taken or message.action is not None:
                    continue
                if from_ is None or message.sender_id == from_.id:
                    box.taken.add((to.id, message.id))
                    return message
            return None

        found: StoredMessage = await self.wait_until(find, timeout)
        return found
