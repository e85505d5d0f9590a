"""Checks shared by the importers and exporters: every failure names the source."""

from __future__ import annotations

from typing import Any

from .._errors import SessionCorruptError
from ..codec import AUTH_KEY_LENGTH, DcAddress, SessionData

__all__ = ["checked_dc", "checked_key_blob", "require_key", "session_text"]


def session_text(value: str | bytes | bytearray | memoryview, source: str) -> str:
    """``value`` as stripped text; SessionCorruptError when bytes are not ASCII."""
    if isinstance(value, str):
        return value.strip()
    try:
        return bytes(value).decode("ascii").strip()
    except UnicodeDecodeError:
        raise SessionCorruptError(f"{source}: not text (a session string is ASCII)") from None


def checked_dc(dc_id: int, address: str, port: int, source: str) -> DcAddress:
    """A :class:`~tgsession.codec.DcAddress` within the codec's limits."""
    if not 1 <= dc_id <= 10_000:
        raise SessionCorruptError(f"{source}: invalid DC id {dc_id}")
    if not 1 <= port <= 65535:
        raise SessionCorruptError(f"{source}: invalid port {port}")
    if not address:
        raise SessionCorruptError(f"{source}: no server address")
    return DcAddress(dc_id, address, port)


def require_key(data: SessionData) -> tuple[DcAddress, bytes]:
    """The DC and auth key an export needs; ValueError when the session has none."""
    if data.auth_key is None or data.dc is None:
        raise ValueError("the session is not signed in (it has no auth key): nothing to export")
    return data.dc, data.auth_key


def checked_key_blob(key: Any, where: str) -> bytes | None:
    """An auth key read from an SQLite column: 256 bytes, or ``None`` when empty."""
    if key is None or key == b"":
        return None
    if not isinstance(key, bytes):
        raise SessionCorruptError(f"{where}: the auth key is not a blob")
    if len(key) != AUTH_KEY_LENGTH:
        raise SessionCorruptError(f"{where}: the auth key is {len(key)} bytes, not "
                                  f"{AUTH_KEY_LENGTH}")
    return key
