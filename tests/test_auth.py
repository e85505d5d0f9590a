"""auth_if_necessary and its flows, in process against the offline Telegram."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tgsession import (
    AuthError,
    BotToken,
    Client,
    ConfigError,
    ConstantAuth,
    EnvAuth,
    MemoryStorage,
    StorageSession,
    auth_if_necessary,
)
from tgsession.codec import decode_session
from tgsession.testing import FakeTelegram


async def new_client(tg: FakeTelegram, storage: MemoryStorage) -> Client:
    session = await StorageSession.open(storage)
    if not session.server_address:
        session.set_dc(2, *tg.dc_address(2))
    return Client(session, tg.api_id, tg.api_hash)


class CountingFlow:
    def __init__(self, tg: FakeTelegram, phone: str, codes: list[str] | None = None,
                 passwords: list[str] | None = None) -> None:
        self.tg, self.number = tg, phone
        self.codes, self.passwords = codes, passwords
        self.asked: list[str] = []

    async def phone(self) -> str:
        self.asked.append("phone")
        return self.number

    async def code(self, sent_code: Any) -> str:
        self.asked.append("code")
        if self.codes:
            return self.codes.pop(0)
        return self.tg.login_code(self.number)

    async def password(self) -> str:
        self.asked.append("password")
        assert self.passwords
        return self.passwords.pop(0)


async def test_signed_in_session_prompts_nothing(tg: FakeTelegram) -> None:
    user = tg.add_user()
    storage = MemoryStorage()
    async with await new_client(tg, storage) as client:
        await auth_if_necessary(client, CountingFlow(tg, user.phone or ""))
    tg.reset_counts()
    flow = CountingFlow(tg, user.phone or "")
    async with await new_client(tg, storage) as client:
        me = await auth_if_necessary(client, flow)
    assert me.id == user.id
    assert flow.asked == []
    assert tg.call_count("auth.sendCode") == 0


async def test_session_is_stored_before_auth_returns(tg: FakeTelegram) -> None:
    user = tg.add_user()
    storage = MemoryStorage()
    async with await new_client(tg, storage) as client:
        await auth_if_necessary(client, CountingFlow(tg, user.phone or ""))
        stored = decode_session(await storage.load_session())
        assert stored.user_id == user.id and stored.auth_key is not None


async def test_wrong_code_is_asked_again_then_accepted(tg: FakeTelegram) -> None:
    user = tg.add_user()
    flow = CountingFlow(tg, user.phone or "", codes=["00000"])
    async with await new_client(tg, MemoryStorage()) as client:
        me = await auth_if_necessary(client, flow)
    assert me.id == user.id
    assert flow.asked == ["phone", "code", "code"]


async def test_wrong_code_too_often_raises_auth_error(tg: FakeTelegram) -> None:
    user = tg.add_user()
    flow = CountingFlow(tg, user.phone or "", codes=["00000", "11111", "22222"])
    async with await new_client(tg, MemoryStorage()) as client:
        with pytest.raises(AuthError, match="wrong 3 times"):
            await auth_if_necessary(client, flow)


async def test_wrong_password_too_often_raises_auth_error(tg: FakeTelegram) -> None:
    user = tg.add_user(password="right")
    flow = CountingFlow(tg, user.phone or "", passwords=["a", "b"])
    async with await new_client(tg, MemoryStorage()) as client:
        with pytest.raises(AuthError, match="password was wrong 2 times"):
            await auth_if_necessary(client, flow, max_attempts=2)


async def test_unregistered_phone_says_sign_up_is_not_possible(tg: FakeTelegram) -> None:
    async with await new_client(tg, MemoryStorage()) as client:
        with pytest.raises(AuthError, match="cannot sign up"):
            await auth_if_necessary(client, CountingFlow(tg, "+15559990000"))


async def test_refused_bot_token_is_an_auth_error_without_the_token(tg: FakeTelegram) -> None:
    token = "123456:AAnotAValidTokenAtAllxxxxxxxxxxxxxx"
    async with await new_client(tg, MemoryStorage()) as client:
        with pytest.raises(AuthError) as caught:
            await auth_if_necessary(client, BotToken(token))
    assert "AAnotAValid" not in str(caught.value)


async def test_bot_token_for_another_bot_replaces_the_session(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = tg.add_bot("first_bot"), tg.add_bot("second_bot")
    storage = MemoryStorage()
    async with await new_client(tg, storage) as client:
        await auth_if_necessary(client, BotToken(first.token or ""))
    with caplog.at_level(logging.WARNING, logger="tgsession"):
        async with await new_client(tg, storage) as client:
            me = await auth_if_necessary(client, BotToken(second.token or ""))
    assert me.id == second.id
    assert "belongs to bot" in caplog.text


async def test_constant_auth_with_code_function(tg: FakeTelegram) -> None:
    user = tg.add_user(password="pw")

    async def code(sent_code: Any) -> str:
        return tg.login_code(user.phone or "")

    async with await new_client(tg, MemoryStorage()) as client:
        me = await auth_if_necessary(client, ConstantAuth(user.phone or "", code, password="pw"))
    assert me.id == user.id


async def test_env_auth_reads_phone_and_password(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tg.add_user(password="pw")
    monkeypatch.setenv("MY_PHONE", user.phone or "")
    monkeypatch.setenv("MY_PASSWORD", "pw")

    async def code(sent_code: Any) -> str:
        return tg.login_code(user.phone or "")

    async with await new_client(tg, MemoryStorage()) as client:
        me = await auth_if_necessary(client, EnvAuth(prefix="MY_", code=code))
    assert me.id == user.id


async def test_env_auth_without_phone_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TG_PHONE", raising=False)
    with pytest.raises(ConfigError, match="TG_PHONE"):
        await EnvAuth().phone()


def test_flows_keep_secrets_out_of_repr() -> None:
    token = "123456:AAsecretsecretsecretsecretsecret123"
    texts = [repr(BotToken(token)), str(BotToken(token)),
             repr(ConstantAuth("+15550001", "97531", password="hunter2"))]
    for text in texts:
        for secret in ("AAsecret", "97531", "hunter2", "15550001"):
            assert secret not in text


def test_malformed_bot_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="BOT_TOKEN"):
        BotToken("not a token")
