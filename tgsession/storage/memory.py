"""In-process storage, for tests and short-lived programs."""

from __future__ import annotations

from collections.abc import Mapping

from .._errors import SessionNotFoundError

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """Keeps the session in this process only; gone when the process exits.

    Copies on load and on store, so a caller mutating its buffer cannot change what is
    stored. Also an :class:`~tgsession.storage.EntityStorage`.
    """

    def __init__(self, data: bytes | None = None) -> None:
        self._data = bytes(data) if data else b""
        self._entities: dict[int, bytes] = {}

    def __repr__(self) -> str:
        return f"MemoryStorage(stored={bool(self._data)})"

    async def load_session(self) -> bytes:
        if not self._data:
            raise SessionNotFoundError("no session is stored in this MemoryStorage")
        return bytes(self._data)

    async def store_session(self, data: bytes) -> None:
        self._data = bytes(data)

    async def load_entities(self) -> dict[int, bytes]:
        return dict(self._entities)

    async def store_entities(self, rows: Mapping[int, bytes]) -> None:
        self._entities.update((key, bytes(value)) for key, value in rows.items())

    async def clear_entities(self) -> None:
        self._entities.clear()
