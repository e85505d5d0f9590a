"""The factories read the environment and fail with one clear ConfigError per bad setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tgsession import (
    BotFromEnvironment,
    Client,
    ClientFromEnvironment,
    ConfigError,
    MemoryStorage,
    bot_from_environment,
    client_from_environment,
)
from tgsession.environment import read_settings

GOOD = {"APP_ID": "12345", "APP_HASH": "0123456789abcdef0123456789abcdef"}


def test_aliases_name_the_same_factories() -> None:
    assert ClientFromEnvironment is client_from_environment
    assert BotFromEnvironment is bot_from_environment


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"APP_HASH": GOOD["APP_HASH"]}, "APP_ID"),
        ({"APP_ID": "12345"}, "APP_HASH"),
        ({**GOOD, "APP_ID": "twelve"}, "APP_ID"),
        ({**GOOD, "APP_HASH": "short"}, "APP_HASH"),
        ({**GOOD, "TG_DC": "localhost"}, "TG_DC"),
        ({**GOOD, "TG_DC": "2@127.0.0.1:70000"}, "TG_DC"),
        ({**GOOD, "TG_DC": "20000@127.0.0.1:443"}, "TG_DC"),
        ({**GOOD, "TG_PUBLIC_KEYS": "/nonexistent/keys.pem"}, "TG_PUBLIC_KEYS"),
    ],
)
async def test_missing_or_invalid_variable_is_named(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await client_from_environment(env=env, storage=MemoryStorage())
    assert variable in str(caught.value)
    assert ".env.example" in str(caught.value) or "not a file" in str(caught.value)


async def test_bot_without_token_names_bot_token() -> None:
    with pytest.raises(ConfigError, match="BOT_TOKEN"):
        await bot_from_environment(env=GOOD, storage=MemoryStorage())


async def test_bad_app_hash_is_not_quoted() -> None:
    secret = "not-a-hash-but-maybe-a-secret"
    with pytest.raises(ConfigError) as caught:
        await client_from_environment(env={**GOOD, "APP_HASH": secret}, storage=MemoryStorage())
    assert secret not in str(caught.value)


async def test_client_from_environment_builds_a_client_with_tg_dc() -> None:
    client = await client_from_environment(
        env={**GOOD, "TG_DC": "4@127.0.0.1:4444"}, storage=MemoryStorage()
    )
    assert isinstance(client, Client)
    assert (client.session.dc_id, client.session.server_address, client.session.port) == (
        4, "127.0.0.1", 4444,
    )
    await client.disconnect()


def test_default_session_file_is_per_project(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        folder.mkdir()
        (folder / ".env").write_text("# this project's settings\n")
    cwd = os.getcwd()
    try:
        os.chdir(one)
        first = read_settings(dotenv=True).session_file
        os.chdir(two)
        second = read_settings(dotenv=True).session_file
    finally:
        os.chdir(cwd)
    assert first != second
    assert first == one / ".tgsession" / "session.json"


def test_session_dir_and_session_file(tmp_path: Path) -> None:
    by_dir = read_settings({"SESSION_DIR": str(tmp_path)}).session_file
    assert by_dir == tmp_path / "session.json"
    by_file = read_settings({"SESSION_FILE": str(tmp_path / "x.json")}).session_file
    assert by_file == tmp_path / "x.json"


def test_settings_repr_hides_secrets() -> None:
    settings = read_settings({**GOOD, "BOT_TOKEN": "1:SECRETTOKEN", "SESSION_KEY": "KEYKEY"})
    text = repr(settings)
    for secret in (GOOD["APP_HASH"], "SECRETTOKEN", "KEYKEY"):
        assert secret not in text


def test_dotenv_does_not_override_real_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("APP_ID=111\nSESSION_DIR=/from/dotenv\n")
    monkeypatch.setenv("APP_ID", "222")
    monkeypatch.delenv("SESSION_DIR", raising=False)
    settings = read_settings(dotenv=dotenv)
    assert settings.api_id == 222
    assert settings.session_file == Path("/from/dotenv/session.json")
    monkeypatch.delenv("SESSION_DIR", raising=False)


def test_a_dotenv_that_is_not_utf8_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .env saved in another encoding is one ConfigError naming the file, not a
    UnicodeDecodeError from python-dotenv."""
    (tmp_path / ".env").write_bytes(b"APP_ID=1\nAPP_HASH=\xff\xfe\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"the \.env file .*\.env is not UTF-8 text"):
        read_settings()
