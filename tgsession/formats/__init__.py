"""Moving sessions in and out of Telethon, Pyrogram / kurigram and gotd formats.

Each foreign format has its own module; every importer returns a
:class:`~tgsession.SessionData` and raises only :class:`~tgsession.SessionCorruptError`
(naming the source, never quoting a secret) on bad input. Exporters raise ValueError for
a session they cannot express (no auth key, a host the format cannot hold).

=====================  ==============================  ===============================
format name            import                          export
=====================  ==============================  ===============================
``telethon-string``    :func:`from_telethon_string`    :func:`to_telethon_string`
``telethon-sqlite``    :func:`from_telethon_sqlite`    :func:`to_telethon_sqlite`
``pyrogram-string``    :func:`from_pyrogram_string`    :func:`to_pyrogram_string`
``pyrogram-sqlite``    :func:`from_pyrogram_sqlite`    (not supported)
``gotd-json``          :func:`from_gotd_json`          :func:`to_gotd_json`
``tgsession-json``     ``codec.decode_session``        ``codec.encode_session``
=====================  ==============================  ===============================

:func:`detect` names the format of some content; :func:`load` detects and imports.
"""

from __future__ import annotations

from ..codec import SessionData, decode_session
from ._sqlite import Source, read_source
from .detect import detect
from .gotd import from_gotd_json, to_gotd_json
from .pyrogram import from_pyrogram_sqlite, from_pyrogram_string, to_pyrogram_string
from .telethon import (
    from_telethon_sqlite,
    from_telethon_string,
    to_telethon_sqlite,
    to_telethon_string,
)

__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "detect",
    "from_gotd_json",
    "from_pyrogram_sqlite",
    "from_pyrogram_string",
    "from_telethon_sqlite",
    "from_telethon_string",
    "load",
    "to_gotd_json",
    "to_pyrogram_string",
    "to_telethon_sqlite",
    "to_telethon_string",
]

IMPORT_FORMATS: dict[str, str] = {
    "telethon-string": "a Telethon string session",
    "telethon-sqlite": "a Telethon .session file",
    "pyrogram-string": "a Pyrogram session string",
    "pyrogram-sqlite": "a Pyrogram .session file",
    "gotd-json": "a gotd session",
    "tgsession-json": "a tgsession session",
}
"""Format names that can be imported, with a description for messages."""

EXPORT_FORMATS = ("telethon-string", "telethon-sqlite", "pyrogram-string", "gotd-json",
                  "tgsession-json")
"""Format names that can be exported."""


def load(source: Source, *, format: str | None = None, name: str = "the session") -> tuple[
    str, SessionData
]:
    """Import a session from its content (``bytes``) or a path; return (format, data).

    ``format`` forces one of :data:`IMPORT_FORMATS`; otherwise it is detected. Raises
    :class:`~tgsession.SessionCorruptError` naming ``name`` (or the path), and ValueError
    for an unknown ``format`` name.
    """
    raw, where = read_source(source, name)
    if format is None:
        format = detect(raw, name=where)
    if format == "telethon-string":
        return format, from_telethon_string(raw, source=where)
    if format == "telethon-sqlite":
        return format, from_telethon_sqlite(raw, name=where)
    if format == "pyrogram-string":
        return format, from_pyrogram_string(raw, source=where)
    if format == "pyrogram-sqlite":
        return format, from_pyrogram_sqlite(raw, name=where)
    if format == "gotd-json":
        return format, from_gotd_json(raw, source=where)
    if format == "tgsession-json":
        return format, decode_session(raw, source=where)
    raise ValueError(f"unknown session format {format!r}; use one of {', '.join(IMPORT_FORMATS)}")
