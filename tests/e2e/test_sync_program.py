"""Telethon's examples (``telethon_examples/print_updates.py``, ``replier.py``) are
synchronous: ``with client:``, then ``client.add_event_handler(...)`` with no event loop
running. A client from the factories works there too, and a restart catches up."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tgsession.testing import FakeTelegram

from .conftest import ROOT, Program, start_program

PROGRAM = ROOT / "tests" / "e2e" / "sync_bot_program.py"


async def start(env: dict[str, str]) -> Program:
    program = await start_program(env, script=PROGRAM)
    await program.expect("sync bot running", timeout=30)
    return program


async def test_a_synchronous_program_registers_handlers_and_restarts(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    bot = tg.add_bot("sync_echo_bot")
    ann = tg.add_user(first_name="Ann")
    env = {**tg.env(), "SESSION_FILE": str(tmp_path / "bot.json"), "BOT_TOKEN": bot.token or ""}

    program = await start(env)
    await tg.send_message(ann, bot, "one")
    assert await tg.wait_for_message(to=ann, from_=bot, timeout=10) == "sync echo: one"
    # Let the handler's request finish first: in a synchronous program Ctrl-C raises
    # KeyboardInterrupt wherever the loop is; one that lands in a handler, or in the loop
    # that receives its answer, leaves that handler unfinished, so its update comes again
    # after the restart (at least once, as after a kill).
    await asyncio.sleep(1)
    program.process.send_signal(signal.SIGINT)
    await program.finish()

    await tg.send_message(ann, bot, "while down")  # caught up after the restart
    program = await start(env)
    assert await tg.wait_for_message(to=ann, from_=bot, timeout=10) == "sync echo: while down"
    await tg.send_message(ann, bot, "two")
    assert await tg.wait_for_message(to=ann, from_=bot, timeout=10) == "sync echo: two"
    program.process.send_signal(signal.SIGINT)
    await program.finish()
    assert tg.call_count("auth.importBotAuthorization") == 1


INTERRUPTED = r"""
import asyncio, sys
from tgsession import FileStorage, StorageSession, bot_from_environment

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
client = loop.run_until_complete(bot_from_environment())


async def interrupted():
    raise KeyboardInterrupt  # what Ctrl-C does to the task it lands in, in a sync program


task = loop.create_task(interrupted())
try:
    loop.run_until_complete(task)
except KeyboardInterrupt:
    print("interrupted", flush=True)
client._updates_handle.cancel()
client._updates_handle = task  # Telethon's update loop, as if the Ctrl-C had landed there
client.disconnect()  # runs the loop itself; Telethon awaits that task: not raised again
loop.run_until_complete(StorageSession.open(FileStorage(sys.argv[1])))  # lease released
print("disconnected cleanly", flush=True)
"""


async def test_a_ctrl_c_that_ended_a_telethon_task_still_disconnects_cleanly(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    bot = tg.add_bot("sync_echo_bot")
    session = tmp_path / "bot.json"
    env = {**tg.env(), "SESSION_FILE": str(session), "BOT_TOKEN": bot.token or ""}
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    program = await start_program(env, str(session), script=script)
    await program.expect("interrupted", timeout=30)
    await program.expect("disconnected cleanly")
    code, stderr = await program.finish()
    assert code == 0, stderr
