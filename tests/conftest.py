"""Shared fixtures: the offline Telegram from tgsession's own pytest plugin."""

from __future__ import annotations

import pytest

from tgsession.testing import FakeTelegram

pytest_plugins = ["tgsession.testing.pytest_plugin"]


@pytest.fixture
def tg(fake_telegram: FakeTelegram) -> FakeTelegram:
    """A running offline Telegram for one test (short name for ``fake_telegram``)."""
    return fake_telegram
