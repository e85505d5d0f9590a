"""Everything the fake Telegram knows: accounts, auth keys, login codes, and message delivery.

Pure state plus delivery; no sockets. Connections register here so that delivery can push
updates to whoever is online.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import re
import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from telethon.crypto import AuthKey
from telethon.tl import types

from ._accounts import Account, StoredMessage

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

    # --- messages -------------------------------------------------------------------------

    def live_connections(self, account: Account) -> Iterator[LiveConnection]:
        for record in self.keys_of(account):
            if not record.burned:
                yield from (c for c in list(record.connections) if c.is_alive())

    def deliver(
        self,
        sender: Account,
        recipient: Account,
        text: str,
        *,
        reply_to_msg_id: int | None = None,
        origin: LiveConnection | None = None,
    ) -> StoredMessage:
        """Put a private message in both boxes and push it to everyone online.

        Returns the sender's copy. ``origin`` (the connection that sent it) gets no push: it
        learns the result from its ``rpc_result``.
        """
        date = now()
        outgoing = sender.box.add(recipient.id, sender.id, True, text, date, reply_to_msg_id)
        self._push(sender, outgoing, recipient, exclude=origin)
        if recipient is not sender:
            incoming = recipient.box.add(sender.id, sender.id, False, text, date)
            self._push(recipient, incoming, sender)
        self._notify_waiters()
        return outgoing

    def _push(
        self,
        owner: Account,
        message: StoredMessage,
        other: Account,
        *,
        exclude: LiveConnection | None = None,
    ) -> None:
        updates = types.Updates(
            updates=[types.UpdateNewMessage(message=message.as_tl(), pts=message.pts, pts_count=1)],
            users=[other.as_user(owner), owner.as_user(owner)],
            chats=[],
            date=now(),
            seq=0,
        )
        for connection in self.live_connections(owner):
            if connection is not exclude:
                connection.push(updates)

    def _notify_waiters(self) -> None:
        for event in self._waiters:
            event.set()

    async def wait_for_message(
        self, to: Account, from_: Account | None, timeout: float
    ) -> StoredMessage:
        """The oldest incoming message of ``to`` (from ``from_``) not yet returned by a wait."""

        def find() -> StoredMessage | None:
            for message in to.box.messages:
                if message.out or message.id in to.box.taken:
                    continue
                if from_ is None or message.from_id == from_.id:
                    to.box.taken.add(message.id)
                    return message
            return None

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (message := find()) is None:
            event = asyncio.Event()
            self._waiters.add(event)
            try:
                await asyncio.wait_for(event.wait(), max(deadline - loop.time(), 0))
            finally:
                self._waiters.discard(event)
        return message
