"""Real auth-key handshakes over each TCP transport."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from telethon import TelegramClient
from telethon.network import ConnectionTcpAbridged, ConnectionTcpFull, ConnectionTcpIntermediate

from tgsession.testing import FakeTelegram, _handshake

MakeClient = Callable[..., TelegramClient]


@pytest.mark.parametrize(
    "connection", [ConnectionTcpFull, ConnectionTcpAbridged, ConnectionTcpIntermediate]
)
async def test_handshake_makes_a_key_on_each_transport(
    fake_telegram: FakeTelegram, make_client: MakeClient, connection: type
) -> None:
    client = make_client(connection=connection)

    await client.connect()

    assert fake_telegram.handshakes == 1
    assert client.session.auth_key is not None and len(client.session.auth_key.key) == 256
    assert await client.get_me() is None
    assert not await client.is_user_authorized()


async def test_connect_sends_init_connection_with_get_config(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    await make_client().connect()

    assert fake_telegram.call_count("invokeWithLayer") == 1
    assert fake_telegram.call_count("initConnection") == 1
    assert fake_telegram.call_count("help.getConfig") == 1


async def test_short_key_is_retried_until_a_full_length_one_is_agreed(
    fake_telegram: FakeTelegram, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # About 1 key in 256 comes out 255 bytes long; force the first one to be such a key.
    verdicts = iter([False])
    monkeypatch.setattr(_handshake, "_is_full_length", lambda key: next(verdicts, True))
    client = make_client(retry_delay=0)

    await client.connect()

    assert next(verdicts, None) is None  # the short key was seen (and refused)
    assert fake_telegram.handshakes == 1
    assert await client.get_me() is None
