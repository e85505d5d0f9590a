"""``FakeTelegram``: the listeners (one per DC) and the controls tests use."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from telethon import TelegramClient
from telethon.crypto import AuthKey
from telethon.network import ConnectionTcpFull
from telethon.sessions import MemorySession
from telethon.tl import types

from . import _mtproto
from ._accounts import Account
from ._boxes import StoredMessage
from ._chats import Chat
from ._clients import AuthorizedKey
from ._connection import ClientConnection
from ._rsa import PUBLIC_KEY_PATH, trust_test_key
from ._world import RpcFailure, StoredFile, World, normalize_phone, now

DEFAULT_API_ID = 611335
DEFAULT_API_HASH = "d524b414d21f4d37f08684c1df41ac9c"


class FakeTelegram:
    """An offline Telegram: a local MTProto server that unmodified Telethon clients talk to.

    One listener per DC on ``host`` (ephemeral ports unless ``ports`` says otherwise), real
    auth-key handshakes with the throwaway key of :func:`trust_test_key`, accounts, login codes,
    2FA, bots, message delivery with real pts, and controls to break things on purpose.
    State lives in memory and dies with the server.

    ``api_id``/``api_hash`` are what tests should hand their clients; the server accepts any.
    ``code_listener(phone, code)`` is called for every login code "sent". ``allow_short_keys``
    lets 255-byte auth keys through (by default the server answers ``dh_gen_retry``, which
    costs Telethon its ``retry_delay``, so every key fits a StringSession's 256 bytes).

    How it behaves where Telegram leaves a choice:

    - Auth keys belong to the DC they were made on; elsewhere they are unknown (-404).
    - A key used by two live connections with different MTProto session ids at once is burned:
      the newcomer's requests, and from then on every request with that key from anyone, get
      406 AUTH_KEY_DUPLICATED. A connection that has closed (Telethon reconnecting with a new
      session id) does not count.
    - ``revoke`` signs keys out (401 AUTH_KEY_UNREGISTERED); ``forget_key`` drops them
      (transport -404, which Telethon raises as ``AuthKeyNotFound``).
    - Access hashes are checked (one per account, the same for every viewer); usernames need
      3 to 32 characters; phones are kept as digits.
    - Private chats and basic groups: each account has its own message ids and pts (from 1);
      supergroups and channels have their own, shared by their members. Missed channel
      messages come inline in ``updates.getDifference``, or past ten as
      ``updateChannelTooLong`` (then ``updates.getChannelDifference`` from the client's pts).
    - A bot writes only to users who wrote to it first (else 400 PEER_ID_INVALID, or 403
      USER_IS_BLOCKED after :meth:`block`), cannot read history (BOT_METHOD_INVALID), and in
      privacy mode (the default) sees only commands, mentions and replies in groups.
    - Edits drop an inline keyboard the edit does not repeat; a button press waits for the
      bot's ``setBotCallbackAnswer`` (BOT_RESPONSE_TIMEOUT after :attr:`callback_timeout`).
    - Files live in memory; every method it lacks is logged once, by name, as a warning.

    Example::

        async with FakeTelegram() as tg:
            bot = tg.add_bot("echo_bot")
            client = tg.client()
            await client.start(bot_token=bot.token)
    """

    def __init__(
        self,
        *,
        dc_ids: Iterable[int] = (1, 2, 3, 4, 5),
        host: str = "127.0.0.1",
        ports: Mapping[int, int] | None = None,
        api_id: int = DEFAULT_API_ID,
        api_hash: str = DEFAULT_API_HASH,
        code_listener: Callable[[str, str], None] | None = None,
        allow_short_keys: bool = False,
    ) -> None:
        self.host = host
        self.api_id = api_id
        self.api_hash = api_hash
        self._ports = dict(ports or {})
        self._allow_short_keys = allow_short_keys
        self._world = World(sorted(dc_ids), code_listener=code_listener)
        self._ids = _mtproto.MessageIds()
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the listeners (and trust the test RSA key in this process)."""
        trust_test_key()
        try:
            for dc_id in self._world.dc_ids:
                server = await asyncio.start_server(
                    self._serve_factory(dc_id), self.host, self._ports.get(dc_id, 0)
                )
                self._servers.append(server)
                port = server.sockets[0].getsockname()[1]
                self._world.dc_addresses[dc_id] = (self.host, port)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close the listeners and every client connection."""
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _serve_factory(
        self, dc_id: int
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            try:
                connection = ClientConnection(
                    self._world,
                    dc_id,
                    reader,
                    writer,
                    self._ids,
                    allow_short_keys=self._allow_short_keys,
                )
                await connection.run()
            except asyncio.CancelledError:
                # stop() cancels connections; a cancelled handler task makes asyncio 3.11
                # report "Exception in callback", so end quietly instead.
                pass
            finally:
                self._connections.discard(task)

        return serve

    # --- where the DCs are ----------------------------------------------------------------

    @property
    def dc_ids(self) -> list[int]:
        return list(self._world.dc_ids)

    def dc_address(self, dc_id: int = 2) -> tuple[str, int]:
        """``(host, port)`` of a DC; raises KeyError before ``start()`` or for an unknown DC."""
        return self._world.dc_addresses[dc_id]

    def dc_string(self, dc_id: int = 2) -> str:
        """The DC as ``ID@HOST:PORT`` (the format of ``TG_DC``)."""
        host, port = self.dc_address(dc_id)
        return f"{dc_id}@{host}:{port}"

    @property
    def public_keys_path(self) -> str:
        """A PEM file with the server's RSA public key (the value for ``TG_PUBLIC_KEYS``)."""
        return str(PUBLIC_KEY_PATH)

    def env(self, dc_id: int = 2) -> dict[str, str]:
        """``APP_ID``, ``APP_HASH``, ``TG_DC`` and ``TG_PUBLIC_KEYS`` for a client process."""
        return {
            "APP_ID": str(self.api_id),
            "APP_HASH": self.api_hash,
            "TG_DC": self.dc_string(dc_id),
            "TG_PUBLIC_KEYS": self.public_keys_path,
        }

    def client(self, session: Any = None, *, dc_id: int = 2, **kwargs: Any) -> TelegramClient:
        """A Telethon client for this server (a new ``MemorySession`` on ``dc_id`` by default).

        A session that already has a server address keeps it. Extra keyword arguments go to
        ``TelegramClient`` (``connection=`` defaults to ``ConnectionTcpFull``).
        """
        if session is None:
            session = MemorySession()
        if not session.server_address:
            session.set_dc(dc_id, *self.dc_address(dc_id))
        kwargs.setdefault("connection", ConnectionTcpFull)
        return TelegramClient(session, self.api_id, self.api_hash, **kwargs)

    # --- accounts -------------------------------------------------------------------------

    def add_user(
        self,
        phone: str | None = None,
        first_name: str = "Test",
        username: str | None = None,
        password: str | None = None,
        dc_id: int = 2,
        *,
        last_name: str | None = None,
    ) -> Account:
        """Register a user whose home DC is ``dc_id``; ``password`` turns on 2FA.

        Without ``phone`` one is made up (``1555…``). Raises ValueError for a taken phone or
        username, an invalid phone or username, or an unknown DC.
        """
        account_id = self._world.new_user_id()
        digits = normalize_phone(phone) if phone else f"1555{account_id:07d}"
        return self._world.add_account(
            Account(
                id=account_id,
                first_name=first_name,
                last_name=last_name,
                dc_id=dc_id,
                access_hash=secrets.randbits(63),
                phone=digits,
                username=username,
                password=password,
            )
        )

    def add_bot(self, username: str, first_name: str | None = None, dc_id: int = 2, *,
                privacy: bool = True) -> Account:
        """Register a bot; ``importBotAuthorization`` takes its ``token`` (``"<id>:AA…"``).

        With ``privacy`` (Telegram's default) the bot sees in groups only commands, mentions
        of it, replies to it and service messages; ``privacy=False`` lets it see everything.
        """
        if not username.lower().endswith("bot"):
            raise ValueError(f"a bot username must end in 'bot': {username!r}")
        account_id = self._world.new_bot_id()
        return self._world.add_account(
            Account(
                id=account_id,
                first_name=first_name or username,
                dc_id=dc_id,
                access_hash=secrets.randbits(63),
                username=username,
                is_bot=True,
                privacy=privacy,
                token=f"{account_id}:AA{secrets.token_urlsafe(25)[:33]}",
            )
        )

    def account(self, who: int | str | Account) -> Account:
        """Look an account up by id, ``@username``/username or phone; KeyError if unknown."""
        found = self._find(who)
        if found is None:
            raise KeyError(f"no account {who!r}")
        return found

    def _find(self, who: int | str | Account) -> Account | None:
        if isinstance(who, Account):
            return self._world.accounts.get(who.id)
        if isinstance(who, int):
            return self._world.accounts.get(who)
        found = self._world.by_username(who.removeprefix("@"))
        if found is None:
            try:
                found = self._world.by_phone(normalize_phone(who))
            except ValueError:
                return None
        return found

    def login_code(self, phone: str) -> str:
        """The last login code "sent" to ``phone``; LookupError if none was sent."""
        code = self._world.last_code(normalize_phone(phone))
        if code is None:
            raise LookupError(f"no login code was sent to {phone}")
        return code

    # --- auth keys ------------------------------------------------------------------------

    @property
    def handshakes(self) -> int:
        """How many auth-key handshakes have completed on this server."""
        return self._world.handshakes

    def preauthorize(self, account: Account, dc_id: int | None = None) -> AuthorizedKey:
        """Register a fresh random key already signed in as ``account`` (no handshake needed).

        The key lives on ``dc_id`` (default: the account's home DC).
        """
        dc = dc_id if dc_id is not None else account.dc_id
        host, port = self.dc_address(dc)
        key_bytes = b"\x01" + os.urandom(255)
        record = self._world.register_key(dc, key_bytes)
        record.account_id = self._require(account).id
        return AuthorizedKey(dc, host, port, key_bytes)

    def revoke(self, account: Account) -> None:
        """Sign every key of ``account`` out: their next call needing auth gets 401."""
        target = self._require(account)
        for record in self._world.keys.values():
            if target.id in (record.account_id, record.pending_password_id):
                record.account_id = record.pending_password_id = None

    def forget_key(self, key: int | bytes | AuthKey) -> None:
        """Forget a key (by key id, bytes or ``AuthKey``): its next use gets transport -404.

        Raises KeyError for a key the server does not know.
        """
        key_id = key if isinstance(key, int) else _key_id(key)
        if not self._world.forget_key(key_id):
            raise KeyError("unknown auth key")

    def is_burned(self, key: bytes | AuthKey) -> bool:
        """Whether the key was burned by AUTH_KEY_DUPLICATED."""
        key_id = _key_id(key)
        return any(r.burned for (_, kid), r in self._world.keys.items() if kid == key_id)

    # --- rpc controls ---------------------------------------------------------------------

    def call_count(self, method: str) -> int:
        """How often ``method`` (TL name, e.g. ``"auth.sendCode"``) was called since the last reset.

        Wrappers count too: ``invokeWithLayer``, ``initConnection``.
        """
        return self._world.counts[method]

    def reset_counts(self) -> None:
        self._world.counts.clear()

    def fail_next(self, method: str, message: str, code: int = 400) -> None:
        """Answer the next call of ``method`` with ``rpc_error code message`` (queues up)."""
        self._world.failures.setdefault(method, deque()).append(RpcFailure(code, message))

    @property
    def unimplemented_calls(self) -> set[str]:
        """TL methods clients called that this server does not implement (each was logged
        once as a warning, and answered 400 INPUT_METHOD_INVALID)."""
        return set(self._world.unimplemented)

    # --- groups and channels --------------------------------------------------------------

    def create_group(self, title: str, creator: Account | str, *members: Account | str) -> Chat:
        """A basic group made by ``creator`` with ``members`` (as ``messages.createChat``)."""
        accounts = [self._require(m) for m in members]
        return self._world.create_chat(title, self._require(creator), accounts, "group")[0]

    def create_channel(self, title: str, creator: Account | str, *members: Account | str,
                       megagroup: bool = False) -> Chat:
        """A broadcast channel (or, with ``megagroup``, a supergroup) made by ``creator`` with
        ``members``; bots added to a broadcast channel become its admins, as they must."""
        accounts = [self._require(m) for m in members]
        kind = "supergroup" if megagroup else "channel"
        return self._world.create_chat(title, self._require(creator), accounts, kind)[0]

    def add_members(self, chat: Chat, *members: Account | str, by: Account | str | None = None
                    ) -> None:
        """Add members to a group or channel, as its creator (or ``by``) would."""
        adder = self._require(by) if by is not None else self.account(chat.creator_id)
        self._world.add_members(chat, adder, [self._require(m) for m in members])

    def make_admin(self, chat: Chat, member: Account | str) -> None:
        """Make a member of a supergroup or channel an admin."""
        account = self._require(member)
        if account.id not in chat.members:
            self.add_members(chat, account)
        chat.admins.add(account.id)

    def chat(self, chat_id: int) -> Chat:
        """A group or channel by id; KeyError if unknown."""
        return self._world.chats[chat_id]

    # --- messages -------------------------------------------------------------------------

    async def send_message(
        self,
        sender: Account | str,
        peer: Account | Chat | str,
        text: str,
        *,
        reply_to: int | None = None,
        buttons: list[list[tuple[str, bytes]]] | None = None,
    ) -> int:
        """Deliver ``text`` from ``sender`` to a user, group or channel as if the sender's
        client had sent it (Telegram's rules apply: a bot can only write to users who
        started it, only admins post in a channel); returns the message id in the sender's
        view. ``reply_to`` is a message id in that view; ``buttons`` (bots only) is an inline
        keyboard, rows of ``(text, callback data)``. Raises ``RpcFailure`` as Telegram would.
        """
        markup = None
        if buttons:
            markup = types.ReplyInlineMarkup(rows=[
                types.KeyboardButtonRow(buttons=[
                    types.KeyboardInlineButton(text=label,
                                               type=types.InlineButtonTypeCallback(data=data))
                    for label, data in row
                ]) for row in buttons
            ])
        message, _ = self._world.send(self._require(sender), self._target(peer), text,
                                      reply_to_msg_id=reply_to, reply_markup=markup)
        return message.id

    async def post(self, channel: Chat, text: str, *, by: Account | str | None = None) -> int:
        """Post ``text`` in a channel as its creator (or the admin ``by``); returns its id."""
        author = self._require(by) if by is not None else self.account(channel.creator_id)
        return await self.send_message(author, channel, text)

    async def send_file(
        self,
        sender: Account | str,
        peer: Account | Chat | str,
        data: bytes,
        *,
        name: str = "file.bin",
        mime_type: str = "application/octet-stream",
        caption: str = "",
        photo: bool = False,
    ) -> int:
        """Send a file (kept in memory) with a caption; returns the message id in the
        sender's view. ``photo`` sends it as a photo instead of a document."""
        account = self._require(sender)
        file = StoredFile(
            id=secrets.randbits(63), access_hash=secrets.randbits(63), data=bytes(data),
            photo=photo, mime_type="image/jpeg" if photo else mime_type, name=name,
            attributes=[] if photo else [types.DocumentAttributeFilename(name)],
            date=now(), dc_id=account.dc_id,
        )
        self._world.files[file.id] = file
        message, _ = self._world.send(account, self._target(peer), caption,
                                      media=file.as_media())
        return message.id

    def file_of(self, message: StoredMessage) -> bytes:
        """The bytes of the file a message carries; LookupError when it carries none."""
        media = message.media
        item = getattr(media, "document", None) or getattr(media, "photo", None)
        found = self._world.files.get(getattr(item, "id", 0))
        if found is None:
            raise LookupError(f"message {message.id} carries no file")
        return found.data

    async def edit_message(self, editor: Account | str, peer: Account | Chat | str,
                           message_id: int, text: str) -> None:
        """Edit a message's text, as its sender's client would (its keyboard is dropped, as
        Telegram drops it from an edit that does not repeat it)."""
        self._world.edit(self._require(editor), self._target(peer), message_id, text=text,
                         entities=None, reply_markup=None)

    async def delete_messages(self, account: Account | str, peer: Account | Chat | str,
                              *message_ids: int, revoke: bool = True) -> None:
        """Delete messages in ``account``'s view (for everyone with ``revoke``)."""
        who, target = self._require(account), self._target(peer)
        if isinstance(target, Chat) and target.is_channel:
            self._world.delete_in_channel(who, target, list(message_ids))
        else:
            self._world.delete(who, list(message_ids), revoke=revoke)

    async def press_button(
        self,
        user: Account | str,
        peer: Account | Chat | str,
        message_id: int | None = None,
        *,
        text: str | None = None,
        data: bytes | None = None,
        timeout: float | None = None,
    ) -> str | None:
        """Press an inline button of a bot's message, as the user's app would, and return
        the bot's answer (its notification text, or None).

        The message is ``message_id`` in the user's view, or the newest one from the bot in
        that chat with such a button. Pick the button by ``text`` or by ``data``. Raises
        ``RpcFailure`` BOT_RESPONSE_TIMEOUT when the bot does not answer within ``timeout``
        (default ``callback_timeout``, 10 s), LookupError when no such button exists.
        """
        who, target = self._require(user), self._target(peer)
        candidates = (self.messages(who, target) if message_id is None
                      else [self._world.view(who, target, message_id)])
        for message in reversed(candidates):
            for label, payload in message.callback_buttons():
                if (text is None or label == text) and (data is None or payload == data):
                    answer = await self._world.press_button(who, target, message.id, payload,
                                                            timeout)
                    return getattr(answer, "message", None)
        raise LookupError(f"no inline button {text or data!r} in that chat")

    @property
    def callback_timeout(self) -> float:
        """How long a button press waits for the bot's answer (Telegram: a few seconds)."""
        return self._world.callback_timeout

    @callback_timeout.setter
    def callback_timeout(self, seconds: float) -> None:
        self._world.callback_timeout = seconds

    def block(self, user: Account | str, bot: Account | str) -> None:
        """``user`` blocks ``bot``: the bot's messages to them fail with USER_IS_BLOCKED."""
        self._require(bot).blocked_by.add(self._require(user).id)

    def bot_commands(self, bot: Account | str) -> list[tuple[str, str]]:
        """The commands the bot set with ``bots.setBotCommands``, as (command, description)."""
        return [(c.command, c.description) for c in self._require(bot).bot_commands]

    def messages(self, of: Account | str, peer: Account | Chat | str) -> list[StoredMessage]:
        """The messages in ``of``'s view of the chat with ``peer``, oldest first (service
        messages included; in a channel, those ``of`` can see)."""
        who, target = self._require(of), self._target(peer)
        if isinstance(target, Chat) and target.is_channel:
            return [m for m in target.channel_box().messages if who.id not in m.hidden_from]
        wanted = types.PeerUser(target.id) if isinstance(target, Account) else target.peer
        return [m for m in who.box.messages if m.peer == wanted]

    async def wait_for_message(
        self,
        to: Account | str,
        from_: Account | str | None = None,
        timeout: float = 5,
        *,
        chat: Chat | None = None,
    ) -> str:
        """Wait for a message to ``to`` (from ``from_``) and return its text.

        Without ``chat`` it looks in private chats, with it in that group or channel. Each
        message is returned once, oldest first, including ones that arrived before the
        call. Raises ``asyncio.TimeoutError``.
        """
        return (await self.wait_for(to, from_, timeout, chat=chat)).text

    async def wait_for(
        self,
        to: Account | str,
        from_: Account | str | None = None,
        timeout: float = 5,
        *,
        chat: Chat | None = None,
    ) -> StoredMessage:
        """Like :meth:`wait_for_message`, returning the message itself (text, media,
        ``reply_markup``, ``reply_to_msg_id``, ``entities``, ``sender_id``, ...)."""
        sender = None if from_ is None else self._require(from_)
        return await self._world.wait_for_message(self._require(to), sender, timeout, chat)

    async def wait_until(self, condition: Callable[[], Any], timeout: float = 5) -> Any:
        """Wait until ``condition()`` is truthy (checked after every change the server
        makes, e.g. ``lambda: tg.messages(user, bot)[-1].edit_date``); return its value.
        Raises ``asyncio.TimeoutError``."""
        return await self._world.wait_until(condition, timeout)

    def _require(self, who: Account | str) -> Account:
        return self.account(who)

    def _target(self, peer: Account | Chat | str) -> Account | Chat:
        return peer if isinstance(peer, Chat) else self._require(peer)


def _key_id(key: bytes | AuthKey) -> int:
    key_id: int = (key if isinstance(key, AuthKey) else AuthKey(key)).key_id
    return key_id
