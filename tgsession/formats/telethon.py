"""Telethon 1.x sessions: the ``StringSession`` string and the ``.session`` SQLite file.

A string session holds the DC, its IP address and port, and the auth key; the SQLite file
adds the takeout id, the entity cache and the update state. Exports are built by
Telethon's own ``StringSession`` and ``SQLiteSession``, so Telethon reads them back as its
own.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import functools
import ipaddress
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .._errors import SessionCorruptError
from ..codec import AUTH_KEY_LENGTH, EntityRow, SessionData, UpdateState
from ._sqlite import Source, open_copy, open_file_copy, read_source, table_columns
from ._validate import (
    cache_rows,
    check_one_byte_dc,
    checked_dc,
    checked_key_blob,
    checked_session,
    counter,
    require_key,
    session_text,
)

__all__ = [
    "from_telethon_sqlite",
    "from_telethon_string",
    "open_telethon_sqlite",
    "telethon_sqlite_writer",
    "to_telethon_sqlite",
    "to_telethon_string",
]

#: Entity rows per batch when a ``.session`` file is streamed.
ENTITY_BATCH = 5000

_STRING_VERSION = "1"
_IPV4_PACKED = 1 + 4 + 2 + AUTH_KEY_LENGTH
_IPV6_PACKED = 1 + 16 + 2 + AUTH_KEY_LENGTH


def from_telethon_string(
    string: str | bytes, *, source: str = "the Telethon string session"
) -> SessionData:
    """Read a Telethon ``StringSession`` string (``StringSession.save()``).

    Raises :class:`~tgsession.SessionCorruptError` naming ``source`` for anything else;
    the message never quotes the string.
    """
    text = session_text(string, source)
    if not text.startswith(_STRING_VERSION):
        raise SessionCorruptError(
            f"{source}: not a Telethon string session (it must start with version "
            f"{_STRING_VERSION!r})"
        )
    try:
        packed = base64.b64decode(text[1:], altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise SessionCorruptError(f"{source}: not valid URL-safe base64") from None
    if len(packed) not in (_IPV4_PACKED, _IPV6_PACKED):
        raise SessionCorruptError(
            f"{source}: decodes to {len(packed)} bytes; a Telethon string session has "
            f"{_IPV4_PACKED} (IPv4) or {_IPV6_PACKED} (IPv6)"
        )
    ip_length = 4 if len(packed) == _IPV4_PACKED else 16
    dc_id, ip, port, key = struct.unpack(f">B{ip_length}sH{AUTH_KEY_LENGTH}s", packed)
    return checked_session(SessionData(
        dc=checked_dc(dc_id, ipaddress.ip_address(ip).compressed, port, source),
        auth_key=key if any(key) else None,
        entities=[],
    ), source)


def to_telethon_string(data: SessionData) -> str:
    """The session as a Telethon ``StringSession`` string, made by Telethon itself.

    Raises ValueError when the session has no auth key or DC, or when its server address
    is a host name (a string session holds only IP addresses).
    """
    from telethon.crypto import AuthKey
    from telethon.sessions import StringSession

    dc, key = require_key(data)
    check_one_byte_dc(dc, "a Telethon string session")
    try:
        ipaddress.ip_address(dc.address)
    except ValueError:
        raise ValueError(
            f"the server address {dc.address!r} is a host name; a Telethon string session "
            "holds only IP addresses"
        ) from None
    session = StringSession()
    session.set_dc(dc.id, dc.address, dc.port)
    session.auth_key = AuthKey(key)
    string: str = session.save()
    return string


def from_telethon_sqlite(source: Source, *, name: str = "the Telethon session file") -> SessionData:
    """Read a Telethon ``.session`` SQLite file (a path, or the file's bytes).

    ``name`` is how messages call bytes given as the source. The file itself is never
    opened for writing. Keeps the takeout id, the entity cache
    (rows that do not make sense are skipped: it is a cache) and the update state.
    Raises :class:`~tgsession.SessionCorruptError` for a file that is not one.
    For a big file, :func:`open_telethon_sqlite` reads the entities in bounded memory.
    """
    raw, where = read_source(source, name)
    with open_copy(raw, where) as db:
        tables = table_columns(db)
        data = _session_row(db, tables, where)
        data.entities = [row for batch in _entity_batches(db, tables) for row in batch]
    return data


@contextlib.contextmanager
def open_telethon_sqlite(
    path: str | os.PathLike[str], *, name: str | None = None, batch: int = ENTITY_BATCH
) -> Iterator[tuple[SessionData, Iterator[list[EntityRow]]] | None]:
    """Open a Telethon ``.session`` file of any size: yield ``(data, batches)``, where
    ``data`` has ``entities=None`` and ``batches`` yields its entity rows ``batch`` at a
    time, while the block runs. Memory stays bounded whatever the number of entities (the
    file is copied on disk, privately, and never opened for writing).

    Yields ``None`` when the file is an SQLite database but not a Telethon session (a
    Pyrogram one, say). Raises :class:`~tgsession.SessionCorruptError` as
    :func:`from_telethon_sqlite` does.
    """
    where = name or str(path)
    with open_file_copy(path, where) as db:
        tables = table_columns(db)
        if not _looks_like_telethon(tables):
            yield None
            return
        data = _session_row(db, tables, where)
        data.entities = None
        yield data, _entity_batches(db, tables, batch)


def _looks_like_telethon(tables: dict[str, set[str]]) -> bool:
    sessions = tables.get("sessions", set())
    if "api_id" in sessions or "peers" in tables or "is_bot" in sessions:
        return False  # Pyrogram's
    return "entities" in tables or "takeout_id" in sessions


def _session_row(db: sqlite3.Connection, tables: dict[str, set[str]], where: str) -> SessionData:
    needed = {"dc_id", "server_address", "port", "auth_key"}
    if not needed <= tables.get("sessions", set()):
        raise SessionCorruptError(f"{where}: not a Telethon session (no sessions table)")
    takeout = ", takeout_id" if "takeout_id" in tables["sessions"] else ""
    row = db.execute(
        f"SELECT dc_id, server_address, port, auth_key{takeout} FROM sessions"
    ).fetchone()
    if row is None:
        raise SessionCorruptError(f"{where}: the Telethon session holds no session row")
    dc_id, address, port, key = row[:4]
    takeout_id = row[4] if takeout else None
    updates = _updates(db, tables)
    if not isinstance(dc_id, int) or not isinstance(address, str) or not isinstance(port, int):
        raise SessionCorruptError(f"{where}: the session row has an invalid DC, address or port")
    key = checked_key_blob(key, where)
    if not isinstance(takeout_id, int) or not -(2**63) <= takeout_id < 2**63:
        takeout_id = None
    return checked_session(SessionData(
        dc=checked_dc(dc_id, address, port, where),
        auth_key=key,
        takeout_id=takeout_id,
        updates=updates,
        entities=[],
    ), where)


def to_telethon_sqlite(data: SessionData, path: str | os.PathLike[str]) -> Path:
    """Write the session as a Telethon ``.session`` file at exactly ``path``; return it.

    Telethon's ``SQLiteSession`` creates the file (in a temporary name beside ``path``,
    created 0600), the entity cache and update state are added, and the result replaces
    ``path`` atomically (an existing file there is overwritten: check first). Raises
    ValueError when the session has no auth key or DC, OSError when writing fails.
    """
    target = Path(path)
    with telethon_sqlite_writer(data, target) as add_entities:
        if data.entities:
            add_entities(data.entities)
    return target


@contextlib.contextmanager
def telethon_sqlite_writer(
    data: SessionData, path: str | os.PathLike[str]
) -> Iterator[Callable[[Sequence[EntityRow]], None]]:
    """As :func:`to_telethon_sqlite`, with entity rows added batch by batch: the block
    gets a function that adds a batch (so a stored cache of any size is written in
    bounded memory). ``data.entities`` is not written here. The file replaces ``path``
    only when the block ends without an error; otherwise nothing is left."""
    from telethon.crypto import AuthKey
    from telethon.sessions import SQLiteSession
    from telethon.tl import types

    dc, key = require_key(data)
    target = Path(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp.session")
    _remove(temp)
    # Created 0600 before SQLite opens it; SQLite gives its journal the same mode.
    os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        session = SQLiteSession(str(temp))
        try:
            session.set_dc(dc.id, dc.address, dc.port)
            session.auth_key = AuthKey(key)
            session.takeout_id = data.takeout_id
            if data.updates is not None:
                state = data.updates
                session.set_update_state(0, types.updates.State(
                    pts=state.pts, qts=state.qts, seq=state.seq, unread_count=0,
                    date=datetime.datetime.fromtimestamp(state.date, tz=datetime.timezone.utc),
                ))
                now = datetime.datetime.now(tz=datetime.timezone.utc)
                for channel_id, pts in state.channels.items():
                    session.set_update_state(channel_id, types.updates.State(
                        pts=pts, qts=0, date=now, seq=0, unread_count=0))
            session.save()
        finally:
            session.close()
        db = sqlite3.connect(temp)
        try:
            yield functools.partial(_write_entities, db)
        finally:
            db.close()
        os.replace(temp, target)
    except BaseException:
        _remove(temp)
        raise


def _write_entities(db: sqlite3.Connection, rows: Sequence[EntityRow]) -> None:
    # The same statement Telethon's SQLiteSession.process_entities runs.
    now = int(time.time())
    with db:
        db.executemany(
            "insert or replace into entities values (?,?,?,?,?,?)",
            [(*row, now) for row in rows],
        )


def _entity_batches(
    db: sqlite3.Connection, tables: dict[str, set[str]], batch: int = ENTITY_BATCH
) -> Iterator[list[EntityRow]]:
    if not {"id", "hash", "username", "phone", "name"} <= tables.get("entities", set()):
        return
    cursor = db.execute("SELECT id, hash, username, phone, name FROM entities")
    while chunk := cursor.fetchmany(batch):
        rows = cache_rows([row for row in map(_entity_row, chunk) if row is not None])
        if rows:
            yield rows


def _entity_row(values: tuple[Any, ...]) -> EntityRow | None:
    entity_id, hash_, username, phone, name = values
    if not isinstance(entity_id, int) or not isinstance(hash_, int):
        return None
    if isinstance(phone, int):
        phone = str(phone)
    return (
        entity_id,
        hash_,
        username.lower() if isinstance(username, str) else None,
        phone if isinstance(phone, str) else None,
        name if isinstance(name, str) else None,
    )


def _updates(db: sqlite3.Connection, tables: dict[str, set[str]]) -> UpdateState | None:
    if not {"id", "pts", "qts", "date", "seq"} <= tables.get("update_state", set()):
        return None
    main: tuple[int, int, int, int] | None = None
    channels: dict[int, int] = {}
    for entity_id, pts, qts, date, seq in db.execute(
        "SELECT id, pts, qts, date, seq FROM update_state"
    ):
        if not isinstance(entity_id, int) or not counter(pts):
            continue
        if isinstance(date, float) and date == date and 0 <= date <= 2**31 - 1:
            date = int(date)
        if entity_id == 0:
            if counter(qts) and counter(seq) and counter(date):
                main = (pts, qts, date, seq)
        elif 0 < entity_id < 2**63:
            channels[entity_id] = pts
    if main is None:
        return None
    pts, qts, date, seq = main
    return UpdateState(pts=pts, qts=qts, date=date, seq=seq, channels=channels)


def _remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-journal")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
