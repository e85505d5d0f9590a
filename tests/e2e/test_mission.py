"""The mission, end to end: the real Telethon client, the offline Telegram, new processes.

Each start of a program is a new process (tests/e2e/child.py or examples/echo_bot.py).
Most tests start from a key the server already knows (no handshake); a few do the real one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
from pathlib import Path

from tgsession import FileStorage
from tgsession.codec import DcAddress, SessionData, decode_session, encode_session
from tgsession.testing import Account, FakeTelegram

from .conftest import ROOT, Program, start_program

pytestmark = []


def env_for(tg: FakeTelegram, session_file: Path, **extra: str) -> dict[str, str]:
    return {**tg.env(), "SESSION_FILE": str(session_file), **extra}


async def store_signed_in(tg: FakeTelegram, account: Account, path: Path) -> bytes:
    """A stored session whose key the server knows as ``account`` (skips the handshake)."""
    key = tg.preauthorize(account)
    data = SessionData(dc=DcAddress(key.dc_id, key.host, key.port), auth_key=key.auth_key,
                       user_id=account.id, bot=account.is_bot)
    await FileStorage(path).store_session(encode_session(data))
    return key.auth_key


def stored(path: Path) -> SessionData:
    return decode_session(path.read_bytes(), source=str(path))


async def log_in(program: Program, tg: FakeTelegram, phone: str) -> dict[str, object]:
    await program.expect("ASK phone")
    await program.answer("+" + phone)
    await program.expect("ASK code")
    await program.answer(tg.login_code(phone))
    return await program.result()


async def test_user_logs_in_once_and_the_file_is_0600(tg: FakeTelegram, tmp_path: Path) -> None:
    user = tg.add_user(first_name="Ann", username="ann")
    session_file = tmp_path / "state" / "session.json"
    program = await start_program(env_for(tg, session_file), "user")
    result = await log_in(program, tg, user.phone or "")
    code, stderr = await program.finish()
    assert code == 0, stderr
    assert result["id"] == user.id
    assert program.asked == ["phone", "code"]
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(session_file.parent.stat().st_mode) == 0o700
    assert stored(session_file).user_id == user.id, stderr


async def test_restart_prompts_nothing_and_signs_in_nothing(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user = tg.add_user(first_name="Ann")
    session_file = tmp_path / "session.json"
    first = await start_program(env_for(tg, session_file), "user")
    await log_in(first, tg, user.phone or "")
    assert (await first.finish())[0] == 0
    tg.reset_counts()
    handshakes = tg.handshakes

    second = await start_program(env_for(tg, session_file), "user")
    result = await second.result()
    code, stderr = await second.finish()
    assert code == 0, stderr
    assert result["id"] == user.id
    assert second.asked == []
    assert tg.call_count("auth.sendCode") == 0
    assert tg.call_count("auth.signIn") == 0
    assert tg.handshakes == handshakes  # the stored key was used: no new handshake


async def test_bot_signs_in_with_its_token_once(tg: FakeTelegram, tmp_path: Path) -> None:
    bot = tg.add_bot("echo_bot")
    env = env_for(tg, tmp_path / "bot.json", BOT_TOKEN=bot.token or "")
    for _ in range(2):
        program = await start_program(env, "bot")
        result = await program.result()
        code, stderr = await program.finish()
        assert code == 0, stderr
        assert result == {"id": bot.id, "bot": True, "phone": None}
    assert tg.call_count("auth.importBotAuthorization") == 1


async def test_two_step_password_is_asked_again_when_wrong(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user = tg.add_user(password="correct horse")
    program = await start_program(env_for(tg, tmp_path / "s.json"), "user")
    await program.expect("ASK phone")
    await program.answer(user.phone or "")
    await program.expect("ASK code")
    await program.answer(tg.login_code(user.phone or ""))
    await program.expect("ASK password")
    await program.answer("wrong battery")
    await program.expect("ASK password")
    await program.answer("correct horse")
    result = await program.result()
    code, stderr = await program.finish()
    assert code == 0, stderr
    assert result["id"] == user.id
    assert program.asked == ["phone", "code", "password", "password"]
    assert tg.call_count("auth.checkPassword") == 2


async def start_and_log_in(
    tg: FakeTelegram, user: Account, session_file: Path
) -> str:
    """Start the user program on ``session_file``, answer its flow, return its stderr."""
    program = await start_program(env_for(tg, session_file), "user")
    result = await log_in(program, tg, user.phone or "")
    code, stderr = await program.finish()
    assert code == 0, stderr
    assert result["id"] == user.id
    assert program.asked == ["phone", "code"]
    return stderr


async def test_revoked_session_is_replaced_after_one_flow(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user = tg.add_user()
    session_file = tmp_path / "s.json"
    old_key = await store_signed_in(tg, user, session_file)
    tg.revoke(user)
    stderr = await start_and_log_in(tg, user, session_file)
    assert "no longer usable" in stderr and "revoked" in stderr
    new = stored(session_file)
    assert new.auth_key is not None and new.auth_key != old_key
    assert new.user_id == user.id


async def test_key_unknown_to_the_server_is_replaced(tg: FakeTelegram, tmp_path: Path) -> None:
    user = tg.add_user()
    session_file = tmp_path / "s.json"
    old_key = await store_signed_in(tg, user, session_file)
    tg.forget_key(old_key)
    stderr = await start_and_log_in(tg, user, session_file)
    assert "does not know its key" in stderr
    assert stored(session_file).auth_key not in (None, old_key)


async def test_copied_session_used_twice_is_reported_and_replaced(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    """Two hosts with a copy of one session: the lock cannot see across hosts, Telegram
    answers AUTH_KEY_DUPLICATED; the newcomer says so, and signs in with a new key."""
    user = tg.add_user()
    host_a, host_b = tmp_path / "a.json", tmp_path / "b.json"
    key = await store_signed_in(tg, user, host_a)
    host_b.write_bytes(host_a.read_bytes())
    os.chmod(host_b, 0o600)
    holder = await start_program(env_for(tg, host_a), "hold")
    await holder.expect("HOLDING")
    stderr = await start_and_log_in(tg, user, host_b)
    assert "AUTH_KEY_DUPLICATED" in stderr
    assert stored(host_b).auth_key not in (None, key)
    await holder.answer("")
    await holder.finish()
    assert stored(host_a).auth_key == key  # the other copy was not touched


async def test_user_homed_on_another_dc_is_stored_there(tg: FakeTelegram, tmp_path: Path) -> None:
    user = tg.add_user(dc_id=4)
    session_file = tmp_path / "s.json"
    program = await start_program(env_for(tg, session_file), "user")
    await log_in(program, tg, user.phone or "")
    assert (await program.finish())[0] == 0
    dc = stored(session_file).dc
    assert dc is not None and (dc.id, dc.port) == (4, tg.dc_address(4)[1])
    handshakes = tg.handshakes
    tg.reset_counts()
    again = await start_program(env_for(tg, session_file), "user")
    assert (await again.result())["id"] == user.id
    assert (await again.finish())[0] == 0
    assert tg.handshakes == handshakes
    assert tg.call_count("auth.sendCode") == 0


async def start_echo_bot(env: dict[str, str]) -> Program:
    program = await start_program(env, script=ROOT / "examples" / "echo_bot.py")
    await program.expect("@", timeout=30)  # "@echo_bot is running"
    return program


async def stop(program: Program) -> int:
    program.process.send_signal(signal.SIGINT)
    code, _ = await program.finish()
    return code


async def test_example_echo_bot_answers_hi(tg: FakeTelegram, tmp_path: Path) -> None:
    bot, user = tg.add_bot("echo_bot"), tg.add_user()
    env = env_for(tg, tmp_path / "bot.json", BOT_TOKEN=bot.token or "")
    program = await start_echo_bot(env)
    await tg.send_message(user, bot, "hi")
    assert await tg.wait_for_message(to=user, from_=bot, timeout=10) == "hi"
    assert await stop(program) == 0


async def test_updates_missed_while_down_arrive_with_catch_up(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    bot, user = tg.add_bot("echo_bot"), tg.add_user()
    env = env_for(tg, tmp_path / "bot.json", BOT_TOKEN=bot.token or "")
    program = await start_echo_bot(env)
    await tg.send_message(user, bot, "first")
    assert await tg.wait_for_message(to=user, from_=bot, timeout=10) == "first"
    assert await stop(program) == 0
    assert stored(tmp_path / "bot.json").updates is not None
    await tg.send_message(user, bot, "while you were away")
    program = await start_program(env, script=ROOT / "tests" / "e2e" / "catch_up_bot.py")
    assert await tg.wait_for_message(to=user, from_=bot, timeout=15) == "while you were away"
    assert await stop(program) == 0
    assert tg.call_count("auth.importBotAuthorization") == 1


async def test_resolved_username_needs_no_network_after_restart(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user, friend = tg.add_user(), tg.add_user(username="friend")
    session_file = tmp_path / "s.json"
    await store_signed_in(tg, user, session_file)
    first = await start_program(env_for(tg, session_file), "resolve", "friend")
    await first.result()
    assert (await first.result())["resolved"] == friend.id
    assert (await first.finish())[0] == 0
    assert tg.call_count("contacts.resolveUsername") == 1
    second = await start_program(env_for(tg, session_file), "resolve", "friend")
    await second.result()
    assert (await second.result())["resolved"] == friend.id
    assert (await second.finish())[0] == 0
    assert tg.call_count("contacts.resolveUsername") == 1


async def test_second_process_is_refused_before_it_connects(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user = tg.add_user()
    session_file = tmp_path / "s.json"
    await store_signed_in(tg, user, session_file)
    holder = await start_program(env_for(tg, session_file), "hold")
    await holder.expect("HOLDING")
    connections = tg.call_count("invokeWithLayer")
    second = await start_program(env_for(tg, session_file), "user")
    result = await second.result()
    code, _ = await second.finish()
    assert code == 3
    assert str(session_file) in str(result["locked"])
    assert f"pid {holder.process.pid}" in str(result["locked"])
    assert tg.call_count("invokeWithLayer") == connections
    await holder.answer("")
    assert (await holder.finish())[0] == 0


async def test_session_file_round_trips_through_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    await FileStorage(path).store_session(encode_session(SessionData()))
    assert json.loads(path.read_bytes())["format"] == "tgsession"
    await asyncio.sleep(0)
