"""Pyrogram / kurigram sessions: the session string and the ``.session`` SQLite file.

A Pyrogram session names its DC but not the DC's address (Pyrogram looks it up in a
built-in table, as :mod:`~tgsession.formats.datacenters` does here), and carries the
api_id it was made with. Strings are URL-safe base64 without padding of
``>BI?256sQ?`` (dc_id, api_id, test_mode, auth_key, user_id, is_bot); the two older
layouts without api_id (``>B?256sI?`` and ``>B?256sQ?``) are read too.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
import struct

from .._errors import SessionCorruptError
from ..codec import DcAddress, EntityRow, SessionData
from ._sqlite import Source, open_copy, read_source, table_columns
from ._validate import (
    cache_rows,
    check_one_byte_dc,
    checked_dc,
    checked_key_blob,
    checked_session,
    require_key,
    session_text,
)
from .datacenters import dc_address, is_private_address, is_test_address

__all__ = [
    "STRING_LENGTHS",
    "from_pyrogram_sqlite",
    "from_pyrogram_string",
    "to_pyrogram_string",
]

_FORMAT = ">BI?256sQ?"
_OLD_FORMAT = ">B?256sI?"
_OLD_FORMAT_64 = ">B?256sQ?"
_LAYOUTS = {struct.calcsize(f): f for f in (_FORMAT, _OLD_FORMAT, _OLD_FORMAT_64)}

#: Lengths of Pyrogram session strings (base64 without padding of each layout).
STRING_LENGTHS = frozenset(-(-size * 4 // 3) for size in _LAYOUTS)


def from_pyrogram_string(
    string: str | bytes, *, source: str = "the Pyrogram session string"
) -> SessionData:
    """Read a Pyrogram / kurigram session string (``export_session_string()``).

    The DC address comes from Telegram's well-known table (test DCs for a test-mode
    session). Raises :class:`~tgsession.SessionCorruptError` naming ``source``; the message
    never quotes the string.
    """
    text = session_text(string, source)
    try:
        packed = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SessionCorruptError(f"{source}: not valid URL-safe base64") from None
    layout = _LAYOUTS.get(len(packed))
    if layout is None:
        raise SessionCorruptError(
            f"{source}: decodes to {len(packed)} bytes, which is no Pyrogram session layout"
        )
    if layout == _FORMAT:
        dc_id, _api_id, test_mode, key, user_id, is_bot = struct.unpack(layout, packed)
    else:
        dc_id, test_mode, key, user_id, is_bot = struct.unpack(layout, packed)
    return checked_session(SessionData(
        dc=_known_dc(dc_id, test_mode, source),
        auth_key=key if any(key) else None,
        user_id=user_id or None,
        bot=is_bot if user_id else None,
        entities=[],
    ), source)


def to_pyrogram_string(data: SessionData, api_id: int) -> str:
    """The session as a Pyrogram / kurigram session string (the current layout).

    ``api_id`` is the app's id (``APP_ID``); Pyrogram stores it with the session. Pyrogram
    derives the DC address from the DC id, so a session on a local or private server cannot
    be exported. Raises ValueError for that, for a session without an auth key, and for an
    ``api_id`` out of range.
    """
    dc, key = require_key(data)
    check_one_byte_dc(dc, "a Pyrogram session string")
    if is_private_address(dc.address):
        raise ValueError(
            f"the session is on a local server ({dc.address}); a Pyrogram session string "
            "holds only a DC id and can only point at Telegram's own servers"
        )
    if not 0 < api_id < 2**32:
        raise ValueError("api_id must be the positive number from my.telegram.org")
    user_id = data.user_id or 0
    if not 0 <= user_id < 2**64:
        raise ValueError("the session's user id does not fit a Pyrogram session string")
    packed = struct.pack(
        _FORMAT, dc.id, api_id, is_test_address(dc.address), key, user_id, bool(data.bot)
    )
    return base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def from_pyrogram_sqlite(source: Source, *, name: str = "the Pyrogram session file") -> SessionData:
    """Read a Pyrogram / kurigram ``.session`` SQLite file (a path, or its bytes).

    Keeps the signed-in user and the peers as the entity cache (without display names,
    which Pyrogram does not store). The file itself is never opened for writing. Raises
    :class:`~tgsession.SessionCorruptError` for a file that is not one.
    """
    raw, where = read_source(source, name)
    with open_copy(raw, where) as db:
        tables = table_columns(db)
        columns = tables.get("sessions", set())
        if not {"dc_id", "test_mode", "auth_key", "user_id", "is_bot"} <= columns:
            raise SessionCorruptError(f"{where}: not a Pyrogram session (no sessions table)")
        address_columns = ", server_address, port" if {"server_address", "port"} <= columns else ""
        row = db.execute(
            f"SELECT dc_id, test_mode, auth_key, user_id, is_bot{address_columns} FROM sessions"
        ).fetchone()
        if row is None:
            raise SessionCorruptError(f"{where}: the Pyrogram session holds no session row")
        entities = _peers(db, tables)
    dc_id, test_mode, key, user_id, is_bot = row[:5]
    if not isinstance(dc_id, int):
        raise SessionCorruptError(f"{where}: the session row has an invalid DC id")
    key = checked_key_blob(key, where)
    address, port = (row[5], row[6]) if address_columns else (None, None)
    if isinstance(address, str) and address and isinstance(port, int):
        dc = checked_dc(dc_id, address, port, where)
    else:
        dc = _known_dc(dc_id, bool(test_mode), where)
    if not isinstance(user_id, int) or user_id <= 0:
        user_id = None
    return checked_session(SessionData(
        dc=dc,
        auth_key=key,
        user_id=user_id,
        bot=bool(is_bot) if user_id is not None else None,
        entities=entities,
    ), where)


def _peers(db: sqlite3.Connection, tables: dict[str, set[str]]) -> list[EntityRow]:
    peers = tables.get("peers", set())
    if not {"id", "access_hash", "phone_number"} <= peers:
        return []
    usernames: dict[int, str] = {}
    if {"id", "username"} <= tables.get("usernames", set()):
        for peer_id, username in db.execute("SELECT id, username FROM usernames"):
            if isinstance(peer_id, int) and isinstance(username, str) and username:
                usernames.setdefault(peer_id, username.lower())
    # Before schema version 4, usernames lived in the peers table.
    old_username = ", username" if "username" in peers else ", NULL"
    rows: list[EntityRow] = []
    for peer_id, access_hash, phone, username in db.execute(
        f"SELECT id, access_hash, phone_number{old_username} FROM peers"
    ):
        if not isinstance(peer_id, int):
            continue
        if isinstance(username, str) and username:
            usernames.setdefault(peer_id, username.lower())
        rows.append((
            peer_id,
            access_hash if isinstance(access_hash, int) else 0,
            usernames.get(peer_id),
            str(phone) if isinstance(phone, (str, int)) and phone else None,
            None,
        ))
    return cache_rows(rows)


def _known_dc(dc_id: int, test_mode: bool, source: str) -> DcAddress:
    dc = dc_address(dc_id, test_mode=test_mode)
    if dc is None:
        kind = "test " if test_mode else ""
        raise SessionCorruptError(
            f"{source}: names {kind}DC {dc_id}, which Telegram does not have"
        )
    return dc
