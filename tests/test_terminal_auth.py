"""TerminalAuth at a real terminal: the program ``tgsession init --user`` writes, run in a
pseudo-terminal (its controlling terminal, as in a shell), interrupted with Ctrl-C (the
``\\x03`` byte, which the terminal turns into SIGINT) at each of its prompts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import signal
import sys
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tgsession.cli.init import project_files
from tgsession.testing import Account, FakeTelegram

SETTINGS = ("APP_ID", "APP_HASH", "BOT_TOKEN", "SESSION_FILE", "SESSION_DIR", "SESSION_URL",
            "SESSION_KEY", "TG_PHONE", "TG_PASSWORD", "TG_DC", "TG_PUBLIC_KEYS")
PROMPTS = ("Phone number", "Login code", "Two-step verification password")
TIMEOUT = 15  # only for a hang: a Ctrl-C that does not end the program fails here


class Terminal:
    """A program running with a pseudo-terminal as its controlling terminal."""

    def __init__(self, pid: int, master: int) -> None:
        self.pid, self.master, self.output = pid, master, b""

    async def read_until(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        while text.encode() not in self.output:
            chunk: asyncio.Future[bytes] = loop.create_future()

            def readable(chunk: asyncio.Future[bytes] = chunk) -> None:
                loop.remove_reader(self.master)
                try:
                    chunk.set_result(os.read(self.master, 4096))
                except OSError:  # EIO: the program exited and closed the terminal
                    chunk.set_result(b"")

            loop.add_reader(self.master, readable)
            try:
                data = await asyncio.wait_for(chunk, TIMEOUT)
            finally:
                loop.remove_reader(self.master)
            assert data, f"the program ended before {text!r}: {self.output.decode()}"
            self.output += data

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def exit_status(self) -> int:
        """Wait for the program to exit (a hang fails the test) and read what it printed."""
        _, status = await asyncio.wait_for(asyncio.to_thread(os.waitpid, self.pid, 0), TIMEOUT)
        with contextlib.suppress(OSError):
            while data := os.read(self.master, 4096):
                self.output += data
        return os.waitstatus_to_exitcode(status)

    def echo_is_on(self) -> bool:
        return bool(termios.tcgetattr(self.master)[3] & termios.ECHO)


@contextlib.asynccontextmanager
async def run_in_terminal(script: Path, env: dict[str, str]) -> AsyncIterator[Terminal]:
    environ = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    pid, master = pty.fork()
    if pid == 0:  # the child: nothing but exec (the parent has threads)
        try:
            os.chdir(script.parent)
            os.execve(sys.executable, [sys.executable, str(script)], {**environ, **env})
        finally:
            os._exit(127)
    terminal = Terminal(pid, master)
    try:
        yield terminal
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)


@pytest.fixture
def user_program(tmp_path: Path) -> Path:
    [program] = [f for f in project_files("t", user=True) if f.name == "user.py"]
    script = tmp_path / program.name
    script.write_text(program.text, encoding="utf-8")
    return script


async def reach_prompt(
    terminal: Terminal, prompt: str, tg: FakeTelegram, user: Account
) -> None:
    """Answer the prompts before ``prompt`` rightly, then wait for ``prompt``."""
    phone = f"+{user.phone}"
    await terminal.read_until(PROMPTS[0])
    if prompt == PROMPTS[0]:
        return
    terminal.type(f"{phone}\n")
    await terminal.read_until(PROMPTS[1])
    if prompt == PROMPTS[1]:
        return
    terminal.type(f"{tg.login_code(phone)}\n")
    await terminal.read_until(PROMPTS[2])


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_ctrl_c_at_a_prompt_ends_the_program_at_once_and_stores_nothing_new(
    tg: FakeTelegram, user_program: Path, prompt: str
) -> None:
    user = tg.add_user(first_name="Ann", password="secret words")
    env = tg.env()
    session_file = user_program.parent / ".tgsession" / "session.json"
    async with run_in_terminal(user_program, env) as first:  # a first try, given up
        await first.read_until(PROMPTS[0])
        first.type("\x03")
        assert await first.exit_status() == 0
    stored = session_file.read_bytes()  # an auth key, no account

    async with run_in_terminal(user_program, env) as terminal:
        await reach_prompt(terminal, prompt, tg, user)
        terminal.type("\x03")
        status = await terminal.exit_status()
        echo = terminal.echo_is_on()

    output = terminal.output.decode()
    assert status == 0, output
    assert "Traceback" not in output and "Signed in" not in output
    assert echo, "the terminal was left without echo"
    assert session_file.read_bytes() == stored
    assert tg.call_count("auth.signIn") == (0 if prompt != PROMPTS[2] else 1)
    assert tg.call_count("auth.checkPassword") == 0
