"""``tgsession demo``: log in once, restart, and see no second login. Offline, no credentials.

Starts the local Telegram in this process, writes a throwaway project (the ``bot.py`` that
``tgsession init`` writes, and a ``.env``), runs the bot twice as a real program, talks to
it as a user, and counts the sign-ins the server saw. Needs only the installed package.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._context import CliError

__all__ = ["register"]

#: Settings of the user's own environment that must not leak into the demo's bot.
_SETTINGS = ("APP_ID", "APP_HASH", "BOT_TOKEN", "SESSION_FILE", "SESSION_DIR", "SESSION_URL",
             "SESSION_KEY", "TG_PHONE", "TG_PASSWORD", "TG_DC", "TG_PUBLIC_KEYS")
_STARTUP_TIMEOUT = 20.0
_REPLY_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_SIGN_IN = "auth.importBotAuthorization"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "demo", help="see it work offline: an echo bot that logs in once, then restarts",
        description="Start a local offline Telegram, run an echo bot (the bot.py that "
                    "'tgsession init' writes) twice as a real program and check that only "
                    "the first start signs in. Needs no credentials and no network.",
    )
    parser.add_argument("--keep", action="store_true",
                        help="keep the demo's project folder (.env and session) afterwards")
    parser.set_defaults(func=_demo)


def _write_bot(folder: Path) -> Path:
    """The bot ``tgsession init`` writes, as the demo's program."""
    from .init import project_files

    [bot] = [f for f in project_files("demo") if f.name == "bot.py"]
    script = folder / bot.name
    script.write_text(bot.text, encoding="utf-8")
    return script


def _say(text: str) -> None:
    print(text, flush=True)


async def _demo(args: argparse.Namespace) -> int:
    from ..testing import FakeTelegram, reset_client_config

    folder = Path(tempfile.mkdtemp(prefix="tgsession-demo-"))
    try:
        script = _write_bot(folder)
        reset_client_config()
        async with FakeTelegram() as tg:
            bot = tg.add_bot("demo_echo_bot", first_name="Echo")
            user = tg.add_user(first_name="Ann", username="ann")
            session_file = folder / ".tgsession" / "echo_bot.json"
            _write_env(folder, {**tg.env(), "BOT_TOKEN": str(bot.token),
                                "SESSION_FILE": str(session_file)})
            _say("Started a local Telegram (offline, in this process) with a bot "
                 f"@{bot.username} and a user @{user.username}.")
            _say(f"Project folder: {folder}")
            _say("  .env: APP_ID, APP_HASH, TG_DC, TG_PUBLIC_KEYS (the local server), "
                 "BOT_TOKEN, SESSION_FILE")
            ok = True
            for start, label in ((1, "First"), (2, "Second")):
                _say(f"{label} start of {script.name}:")
                reply, returncode = await _run_echo_bot(script, folder, tg, user, bot)
                replied = reply == "hi"
                _say(f"  @{user.username} sent \"hi\"; the bot answered "
                     f"{reply!r}" + ("" if replied else "  <-- expected 'hi'"))
                calls = tg.call_count(_SIGN_IN)
                signed_in = calls == 1
                if start == 1:
                    _say(f"  signed in with the bot token ({_SIGN_IN} calls: {calls})"
                         + ("" if signed_in else "  <-- expected 1"))
                else:
                    _say(f"  signed in again? {'no' if signed_in else 'YES'}: {_SIGN_IN} "
                         f"calls {'still' if signed_in else 'now'} {calls}"
                         + (", the stored session was reused" if signed_in else
                            "  <-- expected 1"))
                stopped = returncode == 0
                _say("  stopped it with Ctrl-C (SIGINT): "
                     + ("exited cleanly" if stopped else f"exit status {returncode}"))
                ok = ok and replied and signed_in and stopped
            mode = _mode(session_file)
            private = mode == "0600"
            _say(f"Session file: {session_file} (mode {mode or 'missing'})"
                 + ("" if private else "  <-- expected 0600"))
            ok = ok and private
    finally:
        reset_client_config()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.keep:
        _say(f"Kept {folder}.")
    if ok:
        _say("Demo passed: the bot logged in once and restarted without logging in again.")
        return 0
    _say("Demo FAILED: see the lines marked above.")
    return 1


def _write_env(folder: Path, values: dict[str, str]) -> None:
    text = "".join(f"{key}={value}\n" for key, value in values.items())
    fd = os.open(folder / ".env", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def _mode(path: Path) -> str | None:
    try:
        return f"{stat.S_IMODE(path.stat().st_mode):04o}"
    except OSError:
        return None


def _bot_environment() -> dict[str, str]:
    import tgsession

    env = {key: value for key, value in os.environ.items() if key not in _SETTINGS}
    # The bot must import this very tgsession, even when it is not installed.
    source = str(Path(tgsession.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _run_echo_bot(
    script: Path, folder: Path, tg: Any, user: Any, bot: Any
) -> tuple[str | None, int | None]:
    """Start the bot, say "hi" as the user, wait for the answer, stop it with SIGINT.

    Returns (the answer or None, the bot's exit status)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=folder, env=_bot_environment(),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    errors: list[str] = []
    drain = asyncio.ensure_future(_collect(process.stderr, errors))
    reply: str | None = None
    try:
        if not await _wait_until_running(process.stdout):
            await process.wait()
            await drain
            tail = " | ".join(errors[-3:]) or "no output"
            raise CliError(f"the echo bot did not start (exit status {process.returncode}): "
                           f"{tail}")
        await tg.send_message(user, bot, "hi")
        try:
            reply = await tg.wait_for_message(user, from_=bot, timeout=_REPLY_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            reply = None
    finally:
        returncode = await _stop(process)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(drain, _STOP_TIMEOUT)
    return reply, returncode


async def _wait_until_running(stdout: asyncio.StreamReader) -> bool:
    async def read() -> bool:
        while line := await stdout.readline():
            if b"is running" in line:
                return True
        return False

    try:
        return await asyncio.wait_for(read(), _STARTUP_TIMEOUT)
    except (TimeoutError, asyncio.TimeoutError):
        return False


async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode("utf-8", "replace").strip())


async def _stop(process: asyncio.subprocess.Process) -> int | None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            process.kill()
            await process.wait()
    return process.returncode
