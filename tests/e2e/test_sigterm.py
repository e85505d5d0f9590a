"""SIGTERM (``docker stop``, ``systemctl restart``, a Kubernetes rollout) is a clean stop.

By default it kills a Python program on the spot; a program built with tgsession's
factories instead stops its clients as leaving ``async with`` does (session flushed, lease
released), then ends by that same signal. So a bot restarted by its service manager starts
again at once, also over Redis, where a dead holder's lease used to refuse it.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import services
from tests.services import forget_redis_session, with_name
from tgsession.testing import FakeTelegram

from .conftest import ROOT, Program, start_program
from .test_bot_restarts import World

PROGRAM = ROOT / "tests" / "e2e" / "bot_program.py"

redis_url = services.redis_url  # a fixture


async def start(env: dict[str, str], script: Path = PROGRAM) -> Program:
    program = await start_program(env, script=script)
    await program.expect("@restart_bot running", timeout=30)
    return program


async def start_script(world: World, tmp_path: Path, text: str) -> Program:
    """Run ``text`` as a program in a new process, until it says it is running."""
    script = tmp_path / "program.py"
    script.write_text(text)
    return await start(world.env, script)


async def end(program: Program, signum: signal.Signals) -> int:
    """Send ``signum``; the program's exit status once it has ended."""
    program.process.send_signal(signum)
    code, _ = await program.finish()
    return code


@pytest.fixture
async def redis_session(redis_url: str) -> AsyncIterator[str]:
    name = f"e2e-sigterm-{uuid.uuid4().hex}"
    yield with_name(redis_url, name)  # lock_wait 0: a held lease refuses at once
    await forget_redis_session(redis_url, name)


@pytest.mark.services
async def test_a_bot_stopped_by_sigterm_starts_again_at_once_over_redis(
    tg: FakeTelegram, tmp_path: Path, redis_session: str
) -> None:
    world = World(tg, tmp_path)
    env = {**world.env, "SESSION_URL": redis_session}
    first = await start(env)
    await world.send("before", world.bot)
    await world.wait_answered(["before"])
    assert await end(first, signal.SIGTERM) == -signal.SIGTERM  # ended by the signal, as before

    await world.send("while down", world.bot)
    second = await start(env)  # no lease left behind: not refused, no takeover wait
    await world.wait_answered(["while down"])
    assert await end(second, signal.SIGINT) == 0
    assert world.answers() == {"before": 1, "while down": 1}  # a clean stop: exactly once
    assert tg.call_count("auth.importBotAuthorization") == 1


async def test_sigterm_releases_the_file_lock_and_flushes_the_session(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    world = World(tg, tmp_path)
    first = await start(world.env)
    await world.send("one", world.group)
    await world.wait_answered(["one"])
    assert await end(first, signal.SIGTERM) == -signal.SIGTERM
    lock = world.session_file.with_name(world.session_file.name + ".lock")
    assert lock.read_bytes() == b""  # released by the program, not by its death

    await world.send("two", world.group)
    second = await start(world.env)
    await world.wait_answered(["two"])
    assert await end(second, signal.SIGINT) == 0
    assert world.answers() == {"one": 1, "two": 1}


OWN_HANDLER = r"""
import asyncio, signal, sys
from tgsession import bot_from_environment

async def main():
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    bot = await bot_from_environment()
    async with bot:
        print("@restart_bot running", flush=True)
        await stopped.wait()
        print("own handler ran", flush=True)
    print("stopped by the program", flush=True)

asyncio.run(main())
"""


async def test_a_programs_own_sigterm_handler_is_kept(tg: FakeTelegram, tmp_path: Path) -> None:
    program = await start_script(World(tg, tmp_path), tmp_path, OWN_HANDLER)
    program.process.send_signal(signal.SIGTERM)
    await program.expect("own handler ran")
    await program.expect("stopped by the program")
    code, _ = await program.finish()
    assert code == 0


LOOP_NOT_RUNNING = r"""
import asyncio, time
from tgsession import bot_from_environment

loop = asyncio.new_event_loop()
bot = loop.run_until_complete(bot_from_environment())  # connected; the loop then stops
print("@restart_bot running", flush=True)
time.sleep(60)  # synchronous work: nothing runs the loop
"""


async def test_sigterm_while_the_loop_is_not_running_ends_the_program_at_once(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    program = await start_script(World(tg, tmp_path), tmp_path, LOOP_NOT_RUNNING)
    program.process.send_signal(signal.SIGTERM)
    code, _ = await program.finish(timeout=10)  # not left waiting for a loop that never runs
    assert code == -signal.SIGTERM
