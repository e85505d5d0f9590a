"""Checks shared by the importers and exporters: every failure names the source."""

from __future__ import annotations

from typing import Any

from .._errors import SessionCorruptError
from ..codec import (
    AUTH_KEY_LENGTH,
    DC_ID_MAX,
    INT32_MAX,
    DcAddress,
    EntityRow,
    SessionData,
    decode_entity_row,
    decode_session,
    encode_entity_row,
    encode_session,
    is_host,
)

__all__ = [
    "cache_rows",
    "check_one_byte_dc",
    "checked_dc",
    "checked_key_blob",
    "checked_session",
    "counter",
    "require_key",
    "session_text",
]


def checked_session(data: SessionData, source: str) -> SessionData:
    """``data`` as the codec reads it back, so an import holds nothing that a later open,
    store or export cannot; SessionCorruptError naming ``source`` otherwise."""
    return decode_session(encode_session(data), source=source)


def cache_rows(rows: list[EntityRow]) -> list[EntityRow]:
    """The entity rows the codec can hold; others are dropped (it is only a cache)."""
    kept = []
    for row in rows:
        try:
            kept.append(decode_entity_row(encode_entity_row(row)))
        except SessionCorruptError:
            continue
    return kept


def counter(value: Any) -> bool:
    """Whether ``value`` is a pts, qts, seq or date the codec holds (TL ``int``, >= 0)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT32_MAX


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
    if not 1 <= dc_id <= DC_ID_MAX:
        raise SessionCorruptError(f"{source}: invalid DC id {dc_id}")
    if not 1 <= port <= 65535:
        raise SessionCorruptError(f"{source}: invalid port {port}")
    if not address:
        raise SessionCorruptError(f"{source}: no server address")
    if not is_host(address):
        raise SessionCorruptError(f"{source}: the server address is no IP address or host name")
    return DcAddress(dc_id, address, port)


def check_one_byte_dc(dc: DcAddress, what: str) -> None:
    """ValueError when a format that packs the DC id in one byte cannot hold ``dc``."""
    if not 1 <= dc.id <= 255:
        raise ValueError(f"DC {dc.id} does not fit {what} (DC ids 1 to 255)")


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
