"""pytest plugin: the ``fake_telegram`` fixture, and a fresh Telethon config for every test.

Enable it with ``pytest_plugins = ["tgsession.testing.pytest_plugin"]`` in the top-level
``conftest.py``. Needs pytest-asyncio.

Example::

    async def test_bot_logs_in(fake_telegram):
        bot = fake_telegram.add_bot("echo_bot")
        client = fake_telegram.client()
        await client.start(bot_token=bot.token)
        assert (await client.get_me()).bot
        await client.disconnect()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from ._clients import reset_client_config
from ._server import FakeTelegram


@pytest.fixture(autouse=True)
def _fresh_telethon_config() -> Iterator[None]:
    """Telethon caches ``help.getConfig`` on the ``TelegramClient`` class (its DC list, ports
    included); every test starts and ends without it, so none sees another server's DCs."""
    reset_client_config()
    yield
    reset_client_config()


@pytest_asyncio.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A running :class:`FakeTelegram` for one test, stopped (connections closed) after it."""
    async with FakeTelegram() as tg:
        yield tg
