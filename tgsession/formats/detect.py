"""Telling session formats apart by their content."""

from __future__ import annotations

import json
import re

from .._errors import SessionCorruptError
from ._sqlite import SQLITE_MAGIC, Source, open_copy, read_source, table_columns
from .pyrogram import STRING_LENGTHS

__all__ = ["detect"]

_URLSAFE = re.compile(r"[A-Za-z0-9_=-]+")
_TELETHON_LENGTHS = (353, 369)  # "1" + base64 of an IPv4 / IPv6 session

_EXPECTED = (
    "expected a Telethon string session or .session file, a Pyrogram session string or "
    ".session file, gotd session JSON or tgsession JSON"
)


def detect(source: Source, *, name: str = "the session") -> str:
    """The format of a session: ``"telethon-string"``, ``"telethon-sqlite"``,
    ``"pyrogram-string"``, ``"pyrogram-sqlite"``, ``"gotd-json"`` or ``"tgsession-json"``.

    ``source`` is the content (``bytes``) or a path (``str`` or ``PathLike``). Raises
    :class:`~tgsession.SessionCorruptError` naming ``name`` (or the path) when it is none
    of them; the message never quotes the content.
    """
    raw, where = read_source(source, name)
    if raw.startswith(SQLITE_MAGIC):
        return _sqlite_format(raw, where)
    try:
        text = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise SessionCorruptError(f"{where}: not a session this tool knows ({_EXPECTED})") from None
    if text.startswith("{"):
        return _json_format(text, where)
    if _URLSAFE.fullmatch(text):
        if text.startswith("1") and len(text) in _TELETHON_LENGTHS:
            return "telethon-string"
        if len(text) in STRING_LENGTHS:
            return "pyrogram-string"
    if not text:
        raise SessionCorruptError(f"{where}: is empty")
    raise SessionCorruptError(f"{where}: not a session this tool knows ({_EXPECTED})")


def _sqlite_format(raw: bytes, where: str) -> str:
    with open_copy(raw, where) as db:
        tables = table_columns(db)
    sessions = tables.get("sessions", set())
    if "api_id" in sessions or "peers" in tables or "is_bot" in sessions:
        return "pyrogram-sqlite"
    if "entities" in tables or "takeout_id" in sessions:
        return "telethon-sqlite"
    raise SessionCorruptError(
        f"{where}: an SQLite database, but neither a Telethon nor a Pyrogram session"
    )


def _json_format(text: str, where: str) -> str:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise SessionCorruptError(f"{where}: looks like JSON but is not valid JSON") from None
    if isinstance(doc, dict):
        if doc.get("format") == "tgsession":
            return "tgsession-json"
        if "Version" in doc and "Data" in doc:
            return "gotd-json"
    raise SessionCorruptError(
        f"{where}: a JSON document, but neither a tgsession nor a gotd session"
    )
