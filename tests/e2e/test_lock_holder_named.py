"""A second start is refused naming the holder's pid even in the moment after the holder
took the lock on its event loop, before it wrote its record into the lock file."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import pytest

from tgsession import FileStorage, SessionLockedError, StorageSession

HOLDER = """
import asyncio, os, signal, sys
from tgsession import FileStorage, StorageSession

async def main():
    session = await StorageSession.open(FileStorage(sys.argv[1]))
    os.kill(os.getpid(), signal.SIGSTOP)  # frozen before its record is written
    await session.close()

asyncio.run(main())
"""


async def test_a_frozen_fresh_holder_is_named_by_pid(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    async with await StorageSession.open(FileStorage(path)) as session:
        session.save()  # a released lock file is empty: the next holder takes the fast path
    assert (tmp_path / "session.json.lock").read_bytes() == b""
    holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, str(path))
    try:
        for _ in range(400):  # until it stops itself, lock held
            await asyncio.sleep(0.025)
            state = Path(f"/proc/{holder.pid}/stat").read_text().split(") ")[1][0]
            if state == "T":
                break
        assert (tmp_path / "session.json.lock").read_bytes() == b"", "record already written"
        with pytest.raises(SessionLockedError) as refused:
            await StorageSession.open(FileStorage(path))
        assert f"in use by pid {holder.pid} on " in str(refused.value)
        assert refused.value.holder == f"pid {holder.pid} on {socket.gethostname()}"
    finally:
        holder.send_signal(signal.SIGCONT)
        await holder.wait()
