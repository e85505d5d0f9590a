from __future__ import annotations

import pytest

from tests.contract import Reopen, StorageContract
from tgsession import MemoryStorage


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    def reopen(self) -> Reopen:
        storage = MemoryStorage()
        return lambda: storage


def test_repr_shows_no_data() -> None:
    assert "secret" not in repr(MemoryStorage(b"secret"))
