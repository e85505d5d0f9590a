"""``python -m tgsession.testing`` as a separate process, used by a real client."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import pytest
from telethon import TelegramClient
from telethon.sessions import MemorySession

from tgsession.testing import trust_test_key


async def _read_until(stream: asyncio.StreamReader, pattern: str) -> list[str]:
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(stream.readline(), 10)
        assert raw, f"server exited before printing {pattern!r}; got {lines}"
        lines.append(raw.decode().rstrip("\n"))
        if re.search(pattern, lines[-1]):
            return lines


async def test_standalone_server_prints_its_dcs_and_a_client_logs_in() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tgsession.testing",
        "--user",
        "+15550301:carol",
        "--bot",
        "cli_bot",
        "--print-codes",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        lines = await _read_until(process.stdout, "ready")
        env = dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_]+=", line))
        assert {"TG_DC", "TG_PUBLIC_KEYS", "APP_ID", "APP_HASH"} <= env.keys()
        assert sum(line.startswith("DC ") for line in lines) == 5
        [bot_line] = [line for line in lines if line.startswith("bot @cli_bot ")]
        assert re.fullmatch(r"bot @cli_bot id=\d+ token=\d+:AA\S+", bot_line)
        assert env["BOT_TOKEN"] == bot_line.rsplit("token=", 1)[1]  # ready for .env
        dc, host, port = re.fullmatch(r"(\d+)@(.+):(\d+)", env["TG_DC"]).groups()  # type: ignore[union-attr]

        trust_test_key()
        session = MemorySession()
        session.set_dc(int(dc), host, int(port))
        client = TelegramClient(session, int(env["APP_ID"]), env["APP_HASH"])
        await client.connect()
        try:
            await client.send_code_request("+15550301")
            [code_line] = await _read_until(process.stdout, "code for")
            me = await client.sign_in("+15550301", code_line.rsplit(" ", 1)[1])
            assert me.username == "carol"
        finally:
            await client.disconnect()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)

    assert process.returncode == 0
    assert b"Traceback" not in stderr


@pytest.mark.parametrize(
    ("arguments", "named"),
    [(["--bot", "x"], "--bot 'x'"), (["--user", "not-a-phone"], "--user 'not-a-phone'"),
     (["--dc", "9"], "--dc")],
)
async def test_bad_arguments_are_one_error_line_before_anything_is_printed(
    arguments: list[str], named: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tgsession.testing", *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 2
    assert out == b""
    [line] = err.decode().splitlines()
    assert line.startswith("tgsession: error: ") and named in line
