"""Deleting a FileStorage session's lock file, or its folder, under a running client never
lets a second process use the key: real clients in new processes, the offline Telegram."""

from __future__ import annotations

import re
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from tgsession.testing import FakeTelegram

from .conftest import Program, start_program
from .test_mission import store_signed_in


async def start_holder(tg: FakeTelegram, session_file: Path) -> Program:
    holder = await start_program({**tg.env(), "SESSION_FILE": str(session_file)},
                                 "hold-until-lost")
    await holder.expect("HOLDING")
    return holder


async def refused_then_holder_stops(
    tg: FakeTelegram, session_file: Path, holder: Program, delete: Callable[[], None]
) -> str:
    """``delete()`` under the holder; a second process is refused naming the holder, which
    then stops. Returns the holder's stderr.

    The holder is frozen while the second process tries, so that it cannot notice the
    deletion and let go first (then the second process would rightly get the session).
    """
    holder.process.send_signal(signal.SIGSTOP)
    try:
        delete()
        second = await start_program({**tg.env(), "SESSION_FILE": str(session_file)}, "user")
        refusal = await second.result()
        assert f"pid {holder.process.pid}" in refusal["locked"], refusal
        assert (await second.finish())[0] == 3
    finally:
        holder.process.send_signal(signal.SIGCONT)
    # The holder notices that its lock file is gone and stops, as on a lost lease.
    assert await holder.expect("STOPPED", timeout=10) == "STOPPED lease_lost=True"
    code, stderr = await holder.finish()
    assert code == 0, stderr
    return stderr


async def test_deleted_lock_file_refuses_a_second_opener_and_stops_the_holder(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user = tg.add_user()
    session_file = tmp_path / "bot" / "session.json"
    key = await store_signed_in(tg, user, session_file)
    holder = await start_holder(tg, session_file)

    lock_file = session_file.with_name("session.json.lock")
    stderr = await refused_then_holder_stops(tg, session_file, holder, lock_file.unlink)
    assert re.search(r"lock file .* was (deleted|replaced) while held", stderr), stderr

    # Only then may another process use the session: same key, no new sign-in.
    third = await start_program({**tg.env(), "SESSION_FILE": str(session_file)}, "hold")
    assert (await third.result())["id"] == user.id
    await third.expect("HOLDING")
    await third.answer("")
    assert (await third.finish())[0] == 0
    assert not tg.is_burned(key)
    assert tg.call_count("auth.sendCode") == 0


async def test_deleted_session_folder_refuses_a_second_opener_and_stops_the_holder(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user = tg.add_user()
    session_file = tmp_path / "bot" / "session.json"
    key = await store_signed_in(tg, user, session_file)
    holder = await start_holder(tg, session_file)

    await refused_then_holder_stops(
        tg, session_file, holder, lambda: shutil.rmtree(session_file.parent))
    # The holder wrote nothing into the folder that the second opener re-created.
    assert not session_file.exists()
    assert not tg.is_burned(key)
