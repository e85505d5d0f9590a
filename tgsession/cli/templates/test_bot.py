"""bot.py against the offline Telegram: it answers, and a restart does not sign in again.

Runs the real program, as you would, with settings that point it at the local server
(no credentials, no network). Run with: python -m pytest
"""

import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

from tgsession.testing import FakeTelegram

BOT = Path(__file__).with_name("bot.py")
# Settings of your own environment must not reach the bot under test.
SETTINGS = ("APP_ID", "APP_HASH", "BOT_TOKEN", "SESSION_FILE", "SESSION_DIR", "SESSION_URL",
            "SESSION_KEY", "TG_PHONE", "TG_PASSWORD", "TG_DC", "TG_PUBLIC_KEYS")


async def start_bot(env: dict[str, str], folder: Path) -> asyncio.subprocess.Process:
    """Start bot.py in ``folder`` and wait until it says it is running."""
    environ = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(BOT), cwd=folder, env={**environ, **env},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output = ""
    while "is running" not in output:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, f"bot.py stopped before it was running:\n{output}"
        output += line.decode()
    return process


async def stop_bot(process: asyncio.subprocess.Process) -> None:
    """Stop it as you would, with Ctrl-C (SIGINT); it must exit cleanly."""
    process.send_signal(signal.SIGINT)
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    assert "Traceback" not in output.decode()


async def test_bot_answers_and_restarts_without_signing_in_again(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    bot = fake_telegram.add_bot("my_echo_bot")
    user = fake_telegram.add_user(username="ann")
    env = {**fake_telegram.env(), "BOT_TOKEN": str(bot.token)}

    for _ in range(2):  # the second start finds the session stored by the first
        process = await start_bot(env, tmp_path)
        try:
            await fake_telegram.send_message(user, bot, "hi")
            assert await fake_telegram.wait_for_message(to=user, from_=bot) == "hi"
        finally:
            await stop_bot(process)

    assert fake_telegram.call_count("auth.importBotAuthorization") == 1
    session = tmp_path / ".tgsession" / f"bot-{bot.id}.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
