"""Fixtures for the fake Telegram's own tests: the plugin's server plus client factories."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from telethon import TelegramClient
from telethon.sessions import StringSession

from tgsession.testing import Account, FakeTelegram

MakeClient = Callable[..., TelegramClient]
SignedIn = Callable[..., Awaitable[TelegramClient]]


@pytest.fixture
async def make_client(fake_telegram: FakeTelegram) -> AsyncIterator[MakeClient]:
    """``make_client(session=None, **kwargs)``: a client of the fake server, disconnected at
    the end of the test."""
    made: list[TelegramClient] = []

    def make(session: Any = None, **kwargs: Any) -> TelegramClient:
        client = fake_telegram.client(session, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.disconnect()


@pytest.fixture
def signed_in(fake_telegram: FakeTelegram, make_client: MakeClient) -> SignedIn:
    """``await signed_in(account, **kwargs)``: a connected client already signed in as
    ``account`` through a pre-authorized key (no handshake)."""

    async def connect(account: Account, **kwargs: Any) -> TelegramClient:
        key = fake_telegram.preauthorize(account)
        client = make_client(StringSession(key.string_session()), **kwargs)
        await client.connect()
        return client

    return connect
