"""A private redis-server on a free loopback port, for tests that stop and start it.

The shared Redis on 6379 must never be stopped; tests of outages run their own. Without
persistence: a restart starts empty, as a Redis without AOF or RDB does.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

__all__ = ["OwnRedis", "own_redis"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OwnRedis:
    """One redis-server process that can be stopped and started again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self._folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                await asyncio.sleep(0.025)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            await asyncio.get_running_loop().run_in_executor(None, process.wait)


@asynccontextmanager
async def own_redis(folder: Path) -> AsyncIterator[OwnRedis]:
    """A running private Redis, stopped at the end; skips when redis-server is missing."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(folder)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
