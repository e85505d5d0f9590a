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

from . import _mtproto
from ._accounts import Account
from ._clients import AuthorizedKey
from ._connection import ClientConnection
from ._rsa import PUBLIC_KEY_PATH, trust_test_key
from ._world import RpcFailure, World, normalize_phone

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
    - Only private chats exist; each account has its own message ids and pts (starting at 1).

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

    def add_bot(self, username: str, first_name: str | None = None, dc_id: int = 2) -> Account:
        """Register a bot; ``importBotAuthorization`` takes its ``token`` (``"<id>:AA…"``)."""
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

    # --- messages -------------------------------------------------------------------------

    async def send_message(self, sender: Account, peer: Account | str, text: str) -> int:
        """Deliver ``text`` from ``sender`` to ``peer`` (an account or username) as if the
        sender's client had sent it; returns the message id in the sender's box."""
        recipient = self._require(peer)
        return self._world.deliver(self._require(sender), recipient, text).id

    async def wait_for_message(
        self, to: Account, from_: Account | str | None = None, timeout: float = 5
    ) -> str:
        """Wait for a message addressed to ``to`` (from ``from_``) and return its text.

        Each message is returned once, oldest first, including ones that arrived before the
        call. Raises ``asyncio.TimeoutError``.
        """
        sender = None if from_ is None else self._require(from_)
        message = await self._world.wait_for_message(self._require(to), sender, timeout)
        return message.text

    def _require(self, who: Account | str) -> Account:
        return self.account(who)


def _key_id(key: bytes | AuthKey) -> int:
    key_id: int = (key if isinstance(key, AuthKey) else AuthKey(key)).key_id
    return key_id
