"""End-to-end fixtures: the offline Telegram in this process, programs in new processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("child.py")
ROOT = Path(__file__).resolve().parents[2]


class Program:
    """A child process speaking the ASK / RESULT line protocol of child.py."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.asked: list[str] = []

    async def next_line(self, timeout: float = 20.0) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            stderr = await self.stderr()
            raise AssertionError(f"the program ended early; stderr:\n{stderr}")
        line = raw.decode().rstrip("\n")
        self.lines.append(line)
        return line

    async def expect(self, prefix: str, timeout: float = 20.0) -> str:
        while True:
            line = await self.next_line(timeout)
            if line.startswith("ASK "):
                self.asked.append(line[4:])
            if line.startswith(prefix):
                return line

    async def answer(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def result(self, timeout: float = 20.0) -> dict[str, Any]:
        line = await self.expect("RESULT ", timeout)
        return dict(json.loads(line[len("RESULT "):]))

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        try:
            data = await asyncio.wait_for(self.process.stderr.read(), 10)
        except asyncio.TimeoutError:
            return "<stderr still open>"
        return data.decode(errors="replace")

    async def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), timeout)
        for line in rest.decode().splitlines():
            self.lines.append(line)
            if line.startswith("ASK "):
                self.asked.append(line[4:])
        code = await asyncio.wait_for(self.process.wait(), timeout)
        return code, await self.stderr()


async def start_program(env: dict[str, str], *args: str, script: Path = CHILD) -> Program:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "TG_", "SESSION_",
                                                                          "BOT_"))}
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=full_env, cwd=str(env.get("CWD", ROOT)),
    )
    return Program(process)
