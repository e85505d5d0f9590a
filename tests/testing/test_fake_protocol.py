"""The encrypted MTProto layer: ping, containers, gzip both ways, unknown methods."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from telethon import TelegramClient, errors, functions, types

from tgsession.testing import FakeTelegram

SignedIn = Callable[..., Awaitable[TelegramClient]]


async def test_ping_gets_pong(fake_telegram: FakeTelegram, signed_in: SignedIn) -> None:
    client = await signed_in(fake_telegram.add_user(phone="+15550401"))

    pong = await client(functions.PingRequest(ping_id=1234))

    assert isinstance(pong, types.Pong) and pong.ping_id == 1234


async def test_concurrent_requests_each_get_their_result(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550402", username="ann")
    bot = fake_telegram.add_bot("many_bot")
    client = await signed_in(user)

    me, entity, state = await asyncio.gather(
        client.get_me(),
        client.get_entity("many_bot"),
        client(functions.updates.GetStateRequest()),
    )

    assert (me.id, entity.id, state.pts) == (user.id, bot.id, 1)


async def test_large_message_travels_gzipped_both_ways(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550403")
    fake_telegram.add_bot("big_bot")
    client = await signed_in(user)
    text = "lorem ipsum " * 299 + "lorem ipsum"

    await client.send_message("big_bot", text)
    [message] = await client.get_messages("big_bot", limit=1)

    assert message.text == text


async def test_unsupported_method_is_an_rpc_error(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    client = await signed_in(fake_telegram.add_user(phone="+15550404"))

    with pytest.raises(errors.InputMethodInvalidError):
        await client(functions.help.GetPromoDataRequest())


async def test_unauthorized_key_gets_401_for_methods_that_need_a_login(
    fake_telegram: FakeTelegram,
) -> None:
    client = fake_telegram.client()
    await client.connect()
    try:
        with pytest.raises(errors.AuthKeyUnregisteredError):
            await client(functions.updates.GetStateRequest())
    finally:
        await client.disconnect()
