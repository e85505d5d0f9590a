from __future__ import annotations

import pytest

from tgsession import MemoryStorage
from tests.contract import Reopen, StorageContract


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    def reopen(self) -> Reopen:
        storage = MemoryStorage()
        return lambda: storage


def test_repr_shows_no_data() -> None:
    assert "secret" not in repr(MemoryStorage(b"secret"))
