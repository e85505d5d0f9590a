"""user.py against the offline Telegram: it asks on the terminal once, then never again.

Runs the real program, as you would, with settings that point it at the local server
(no credentials, no network). Run with: python -m pytest
"""

import asyncio
import os
import sys
from pathlib import Path

from tgsession.testing import FakeTelegram

PROGRAM = Path(__file__).with_name("user.py")
# Settings of your own environment must not reach the program under test.
SETTINGS = ("APP_ID", "APP_HASH", "BOT_TOKEN", "SESSION_FILE", "SESSION_DIR", "SESSION_URL",
            "SESSION_KEY", "TG_PHONE", "TG_PASSWORD", "TG_DC", "TG_PUBLIC_KEYS")


async def start(env: dict[str, str], folder: Path) -> asyncio.subprocess.Process:
    environ = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PROGRAM), cwd=folder, env={**environ, **env},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def read_until(stream: asyncio.StreamReader, text: str) -> None:
    """Read the output until ``text`` (a prompt ends without a newline)."""
    seen = ""
    while text not in seen:
        chunk = await asyncio.wait_for(stream.read(200), 30)
        assert chunk, f"user.py stopped before asking {text!r}:\n{seen}"
        seen += chunk.decode()


async def test_asks_for_phone_and_code_once_then_never_again(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    user = fake_telegram.add_user(first_name="Ann")
    phone = f"+{user.phone}"
    env = fake_telegram.env()

    first = await start(env, tmp_path)
    assert first.stdin is not None and first.stdout is not None
    await read_until(first.stdout, "Phone number")
    first.stdin.write(f"{phone}\n".encode())
    await read_until(first.stdout, "Login code")
    first.stdin.write(f"{fake_telegram.login_code(phone)}\n".encode())
    output, _ = await asyncio.wait_for(first.communicate(), 30)
    assert first.returncode == 0, output.decode()
    assert f"Signed in as Ann (id {user.id})" in output.decode()

    second = await start(env, tmp_path)
    output, _ = await asyncio.wait_for(second.communicate(b""), 30)  # nothing to answer with
    assert second.returncode == 0, output.decode()
    assert f"Signed in as Ann (id {user.id})" in output.decode()
    assert fake_telegram.call_count("auth.sendCode") == 1
