"""Signing in against the fake Telegram with the real Telethon client."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from telethon import TelegramClient, errors
from telethon.sessions import StringSession

from tgsession.testing import FakeTelegram

MakeClient = Callable[..., TelegramClient]


async def test_user_signs_in_with_the_code_sent_to_the_phone(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550001", first_name="Ann", username="ann")
    client = make_client()
    await client.connect()

    await client.send_code_request("+15550001")
    me = await client.sign_in("+15550001", fake_telegram.login_code("+15550001"))

    assert me.id == user.id and me.username == "ann" and me.is_self
    assert await client.is_user_authorized()
    assert (await client.get_me()).id == user.id


async def test_wrong_code_is_asked_again(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550002")
    answers: Iterator[str] = iter(["wrong"])

    def code() -> str:
        return next(answers, None) or fake_telegram.login_code("+15550002")

    client = make_client()
    await client.start(phone="+15550002", code_callback=code)

    assert (await client.get_me()).id == user.id
    assert fake_telegram.call_count("auth.signIn") == 2
    assert fake_telegram.call_count("auth.sendCode") == 1


async def test_wrong_code_raises_phone_code_invalid(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    fake_telegram.add_user(phone="+15550003")
    client = make_client()
    await client.connect()
    await client.send_code_request("+15550003")

    with pytest.raises(errors.PhoneCodeInvalidError):
        await client.sign_in("+15550003", "1")


async def test_two_factor_password_is_asked_again_after_a_wrong_one(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550004", password="correct horse")
    client = make_client()
    await client.connect()
    await client.send_code_request("+15550004")

    with pytest.raises(errors.SessionPasswordNeededError):
        await client.sign_in("+15550004", fake_telegram.login_code("+15550004"))
    with pytest.raises(errors.PasswordHashInvalidError):
        await client.sign_in(password="battery staple")
    me = await client.sign_in(password="correct horse")

    assert me.id == user.id
    assert await client.is_user_authorized()


async def test_bot_signs_in_with_its_token(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    bot = fake_telegram.add_bot("echo_bot", first_name="Echo")
    client = make_client()

    await client.start(bot_token=bot.token)

    me = await client.get_me()
    assert me.id == bot.id and me.bot and me.username == "echo_bot"
    assert fake_telegram.call_count("auth.importBotAuthorization") == 1


async def test_bad_bot_token_is_access_token_invalid(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    bot = fake_telegram.add_bot("echo_bot")
    client = make_client()
    await client.connect()

    with pytest.raises(errors.AccessTokenInvalidError):
        await client.sign_in(bot_token=f"{bot.id}:AAnot-the-token")


async def test_unregistered_phone_needs_sign_up(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    client = make_client()
    await client.connect()
    await client.send_code_request("+15559999")

    with pytest.raises(errors.PhoneNumberUnoccupiedError):
        await client.sign_in("+15559999", fake_telegram.login_code("+15559999"))


async def test_invalid_phone_is_rejected(make_client: MakeClient) -> None:
    client = make_client()
    await client.connect()

    with pytest.raises(errors.PhoneNumberInvalidError):
        await client.send_code_request("123")


async def test_user_of_another_dc_is_migrated_and_the_session_keeps_the_final_dc(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550005", dc_id=4)
    session = StringSession()
    client = make_client(session, dc_id=2)
    await client.connect()

    await client.send_code_request("+15550005")
    me = await client.sign_in("+15550005", fake_telegram.login_code("+15550005"))

    assert me.id == user.id
    assert session.dc_id == 4
    assert (session.server_address, session.port) == fake_telegram.dc_address(4)
    assert fake_telegram.handshakes == 2


async def test_restart_with_the_saved_key_skips_login_and_handshake(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550006")
    first = make_client(StringSession())
    await first.connect()
    await first.send_code_request("+15550006")
    await first.sign_in("+15550006", fake_telegram.login_code("+15550006"))
    saved = first.session.save()
    await first.disconnect()
    fake_telegram.reset_counts()
    handshakes = fake_telegram.handshakes

    second = make_client(StringSession(saved))
    await second.connect()

    assert (await second.get_me()).id == user.id
    assert fake_telegram.call_count("auth.sendCode") == 0
    assert fake_telegram.call_count("auth.signIn") == 0
    assert fake_telegram.handshakes == handshakes


async def test_injected_failure_answers_the_next_call_only(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550007")
    fake_telegram.fail_next("auth.signIn", "PHONE_CODE_EXPIRED")
    client = make_client()
    await client.connect()
    await client.send_code_request("+15550007")

    with pytest.raises(errors.PhoneCodeExpiredError):
        await client.sign_in("+15550007", fake_telegram.login_code("+15550007"))
    await client.send_code_request("+15550007")
    me = await client.sign_in("+15550007", fake_telegram.login_code("+15550007"))

    assert me.id == user.id
    assert fake_telegram.call_count("auth.signIn") == 2


def test_login_code_for_a_phone_that_got_none_says_so(fake_telegram: FakeTelegram) -> None:
    with pytest.raises(LookupError, match="no login code"):
        fake_telegram.login_code("+15550008")
