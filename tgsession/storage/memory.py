"""In-process storage, for tests and short-lived programs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from .._errors import SessionNotFoundError
from .base import EntityRecord

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """Keeps the session in this process only; gone when the process exits.

    Copies on load and on store, so a caller mutating its buffer cannot change what is
    stored. Also an :class:`~tgsession.storage.EntityStorage` (rows in two dicts).
    """

    def __init__(self, data: bytes | None = None) -> None:
        self._data = bytes(data) if data else b""
        self._entities: dict[int, bytes] = {}
        self._keys: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage(stored={bool(self._data)})"

    async def load_session(self) -> bytes:
        if not self._data:
            raise SessionNotFoundError("no session is stored in this MemoryStorage")
        return bytes(self._data)

    async def store_session(self, data: bytes) -> None:
        self._data = bytes(data)

    async def get_entity(self, entity_id: int) -> bytes | None:
        return self._entities.get(entity_id)

    async def find_entity(self, key: str) -> tuple[int, bytes] | None:
        entity_id = self._keys.get(key)
        if entity_id is None:
            return None
        row = self._entities.get(entity_id)
        return None if row is None else (entity_id, row)

    async def store_entities(self, records: Sequence[EntityRecord]) -> None:
        for entity_id, row, keys in records:
            self._entities[entity_id] = bytes(row)
            for key in keys:
                self._keys[key] = entity_id

    async def clear_entities(self) -> None:
        self._entities.clear()
        self._keys.clear()

    async def count_entities(self) -> int:
        return len(self._entities)

    async def iter_entities(self, batch: int = 1000) -> AsyncIterator[list[tuple[int, bytes]]]:
        items = list(self._entities.items())  # a snapshot: writes during iteration are safe
        for start in range(0, len(items), batch):
            yield items[start : start + batch]
