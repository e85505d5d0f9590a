"""Secrets never reach output: a whole login and restart at DEBUG, searched for each secret."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests import services
from tests.services import forget_postgres_session
from tgsession import EncryptedStorage, FileStorage
from tgsession.codec import decode_session
from tgsession.keys import generate_key
from tgsession.testing import FakeTelegram

from .conftest import start_program

postgres_url = services.postgres_url  # a fixture


def forms(secret: bytes | str) -> list[str]:
    """The ways a secret could be printed: as is, hex, base64 (standard and URL-safe)."""
    raw = secret.encode() if isinstance(secret, str) else secret
    found = [raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(),
             base64.urlsafe_b64encode(raw).decode().rstrip("=")]
    if isinstance(secret, str):
        found.append(secret)
    return found


async def test_debug_run_prints_no_secret(tg: FakeTelegram, tmp_path: Path) -> None:
    password, session_key = "tr0ub4dor&3", generate_key()
    user = tg.add_user(password=password, username="careful")
    session_file = tmp_path / "s.json"
    env = {**tg.env(), "SESSION_FILE": str(session_file), "SESSION_KEY": session_key,
           "CHILD_LOG_LEVEL": "DEBUG"}
    outputs: list[str] = []
    codes: list[str] = []
    for run in range(2):
        program = await start_program(env, "reveal")
        if run == 0:
            await program.expect("ASK phone")
            await program.answer(user.phone or "")
            await program.expect("ASK code")
            codes.append(tg.login_code(user.phone or ""))
            await program.answer(codes[-1])
            await program.expect("ASK password")
            await program.answer(password)
        await program.result()
        code, stderr = await program.finish()
        assert code == 0, stderr
        outputs.append("\n".join(program.lines) + "\n" + stderr)
    output = "\n".join(outputs)
    assert "DEBUG telethon" in output  # the run really logged at DEBUG
    assert "REVEAL" in output

    storage = EncryptedStorage(FileStorage(session_file), session_key)
    auth_key = decode_session(await storage.load_session()).auth_key
    assert auth_key is not None
    secrets: dict[str, list[str]] = {
        "auth key": forms(auth_key),
        "api_hash": forms(tg.api_hash),
        "2FA password": forms(password),
        "SESSION_KEY": forms(session_key) + forms(base64.b64decode(session_key)),
    }
    for name, variants in secrets.items():
        for variant in variants:
            assert variant not in output, f"the {name} appeared in the output"
    # The code is short digits: look for it as a whole number, not inside msg ids.
    assert not re.search(rf"(?<!\d){codes[0]}(?!\d)", output), "the login code appeared"


async def test_bot_token_never_printed(tg: FakeTelegram, tmp_path: Path) -> None:
    bot = tg.add_bot("quiet_bot")
    assert bot.token is not None
    env = {**tg.env(), "SESSION_FILE": str(tmp_path / "b.json"), "BOT_TOKEN": bot.token,
           "CHILD_LOG_LEVEL": "DEBUG"}
    program = await start_program(env, "bot")
    await program.result()
    code, stderr = await program.finish()
    assert code == 0, stderr
    output = "\n".join(program.lines) + stderr
    assert "DEBUG" in output
    for variant in [*forms(bot.token), bot.token.split(":", 1)[1]]:
        assert variant not in output


@pytest.mark.services
async def test_database_password_never_printed(
    tg: FakeTelegram, postgres_url: str
) -> None:
    """A SESSION_URL with a password: the test PostgreSQL trusts loopback, so any password
    is accepted, and none may show up in the output of a DEBUG run."""
    password = "Db-Pa55word-" + uuid.uuid4().hex[:8]
    name = f"secrets-{uuid.uuid4().hex}"
    parts = urlsplit(postgres_url)
    user = parts.username or "postgres"
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit(parts._replace(netloc=netloc))
    user_account = tg.add_user()
    env = {**tg.env(), "SESSION_URL": f"{url}?name={name}", "CHILD_LOG_LEVEL": "DEBUG"}
    try:
        program = await start_program(env, "reveal")
        await program.expect("ASK phone")
        await program.answer(user_account.phone or "")
        await program.expect("ASK code")
        await program.answer(tg.login_code(user_account.phone or ""))
        await program.result()
        code, stderr = await program.finish()
        assert code == 0, stderr
    finally:
        await forget_postgres_session(postgres_url, name)
    output = "\n".join(program.lines) + stderr
    assert "REVEAL" in output and "DEBUG" in output
    assert password not in output
