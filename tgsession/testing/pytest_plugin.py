"""pytest plugin: the ``fake_telegram`` fixture, and a fresh Telethon config for every test.

Enable it with ``pytest_plugins = ["tgsession.testing.pytest_plugin"]`` in the top-level
``conftest.py``; nothing else to configure. It needs pytest-asyncio (the ``testing`` extra
brings it) and runs ``async def`` tests with it in its default strict mode too: a
coroutine test without a marker of its own gets ``@pytest.mark.asyncio``. Tests marked
for another framework (``anyio``, ``trio``) are left alone.

Example::

    async def test_bot_logs_in(fake_telegram):
        bot = fake_telegram.add_bot("echo_bot")
        client = fake_telegram.client()
        await client.start(bot_token=bot.token)
        assert (await client.get_me()).bot
        await client.disconnect()
"""

from __future__ import annotations

import inspect
import signal
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from ._clients import reset_client_config
from ._server import FakeTelegram

#: Markers that mean a coroutine test already has a runner.
_ASYNC_MARKERS = frozenset({"asyncio", "anyio", "trio"})


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tgsession's sessions are awaitable on purpose (see tgsession.session); pytest resets
    # warning filters for each test, so the filter is given to pytest too.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:Using async sessions support is an experimental feature:UserWarning",
    )
    # pytest-asyncio (0.24 to 1.x) warns at configure time when
    # asyncio_default_fixture_loop_scope is unset, which is the case in a project whose only
    # async fixture is ours (function-scoped either way). Runs before pytest-asyncio's hook,
    # inside pytest's own catch_warnings block, so the filter ends with it.
    warnings.filterwarnings(
        "ignore",
        message='The configuration option "asyncio_default_fixture_loop_scope" is unset',
    )
    _let_ctrl_c_reach_started_programs()


def _let_ctrl_c_reach_started_programs() -> None:
    """A test run started with SIGINT ignored (a background job of a shell without job
    control, some CI runners) passes that on to every program a test starts: a bot the test
    stops with Ctrl-C (SIGINT), as its user would, then never stops. Python's own handler
    here makes the programs started from now on get the default disposition again."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark coroutine tests for pytest-asyncio before it turns them into items."""
    if not inspect.iscoroutinefunction(obj):
        return
    istestfunction = getattr(collector, "istestfunction", None)
    if istestfunction is None or not istestfunction(obj, name):
        return
    marks = getattr(obj, "pytestmark", [])
    if any(getattr(mark, "name", None) in _ASYNC_MARKERS for mark in marks):
        return
    pytest.mark.asyncio(obj)


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
