"""What happens to auth keys: pre-authorized, revoked, forgotten, used twice at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from telethon import TelegramClient, errors
from telethon.sessions import StringSession
from telethon.tl import functions, types

from tgsession.testing import Account, FakeTelegram

MakeClient = Callable[..., TelegramClient]
SignedIn = Callable[..., Awaitable[TelegramClient]]


async def test_preauthorized_key_is_signed_in_without_a_handshake(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550101", username="ann")
    key = fake_telegram.preauthorize(user)

    client = make_client(StringSession(key.string_session()))
    await client.connect()

    assert (await client.get_me()).id == user.id
    assert fake_telegram.handshakes == 0
    assert (key.host, key.port) == fake_telegram.dc_address(user.dc_id)


async def test_revoked_account_gets_auth_key_unregistered(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550102")
    client = await signed_in(user)

    fake_telegram.revoke(user)

    with pytest.raises(errors.AuthKeyUnregisteredError):
        await client(functions.users.GetFullUserRequest(types.InputUserSelf()))
    assert await client.get_me() is None


async def test_forgotten_key_raises_auth_key_not_found_on_connect(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550103")
    key = fake_telegram.preauthorize(user)

    fake_telegram.forget_key(key.auth_key)

    client = make_client(StringSession(key.string_session()))
    with pytest.raises(errors.AuthKeyNotFound):
        await client.connect()


async def test_forgotten_key_fails_the_next_call_of_a_live_client(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550104")
    client = await signed_in(user)

    fake_telegram.forget_key(client.session.auth_key.key)

    with pytest.raises(errors.AuthKeyNotFound):
        await client(functions.users.GetFullUserRequest(types.InputUserSelf()))


async def _two_holders(
    fake_telegram: FakeTelegram, make_client: MakeClient, user: Account
) -> tuple[TelegramClient, TelegramClient, bytes]:
    key = fake_telegram.preauthorize(user)
    first = make_client(StringSession(key.string_session()))
    second = make_client(StringSession(key.string_session()))
    await first.connect()
    return first, second, key.auth_key


async def test_key_used_by_two_clients_at_once_is_duplicated_and_burned(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550105")
    first, second, key = await _two_holders(fake_telegram, make_client, user)

    with pytest.raises(errors.AuthKeyDuplicatedError):
        await second.connect()

    assert fake_telegram.is_burned(key)
    with pytest.raises(errors.AuthKeyDuplicatedError):
        await first(functions.users.GetFullUserRequest(types.InputUserSelf()))


async def test_key_reused_after_the_first_client_left_is_not_duplicated(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550106")
    first, second, key = await _two_holders(fake_telegram, make_client, user)
    await first.disconnect()

    await second.connect()

    assert (await second.get_me()).id == user.id
    assert not fake_telegram.is_burned(key)


async def test_telethon_reconnect_with_a_new_session_id_is_not_duplicated(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550107")
    client = await signed_in(user)

    await client.disconnect()
    await client.connect()

    assert (await client.get_me()).id == user.id
    assert not fake_telegram.is_burned(client.session.auth_key.key)
