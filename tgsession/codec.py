"""The session format: :class:`SessionData` <-> bytes. Pure: no I/O, no Telethon.

Version 1 is UTF-8 JSON (``docs/storages.md`` documents every field)::

    {
      "format": "tgsession",
      "version": 1,
      "dc": {"id": 2, "address": "149.154.167.51", "port": 443},   # or null
      "auth_key": "<base64 of 256 bytes>",                         # or null
      "takeout_id": null,
      "user": {"id": 777, "bot": false, "access_hash": 123},       # or null
      "updates": {"pts": 10, "qts": 0, "date": 1700000000, "seq": 3,
                  "channels": {"1001234": 55}},                    # or null
      "entities": {"location": "inline", "rows": [[id, hash, username, phone, name]]}
    }

``entities.location`` is ``"inline"`` (rows in this document, for storages that only keep
one blob) or ``"storage"`` (rows kept row by row by an
:class:`~tgsession.storage.EntityStorage`, so a save writes only the rows that changed).
Each such row is encoded alone by :func:`encode_entity_row`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ._errors import SessionCorruptError, SessionVersionError
from .storage.base import ENCRYPTED_MAGIC

__all__ = [
    "FORMAT_VERSION",
    "DcAddress",
    "EntityRow",
    "SessionData",
    "UpdateState",
    "decode_entity_row",
    "decode_session",
    "encode_entity_row",
    "encode_session",
    "entity_lookup_keys",
    "lookup_key",
]

FORMAT_VERSION = 1
AUTH_KEY_LENGTH = 256

# Bounds: what Telethon packs each field as (TL ``long``/``int``), so that nothing decoded
# can fail later, when the session is opened, stored row by row or exported.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: pts, qts, seq and date go into updates.getDifference as TL ``int`` (int32); dates also
#: become datetimes, which this range always can.
INT32_MAX = 2**31 - 1
#: Highest DC id kept (TG_DC takes the same); the string exports, which pack it in one
#: byte, refuse ids over 255 themselves.
DC_ID_MAX = 10_000
#: Longest text field kept (usernames are 32 characters, names 128, phones 32).
TEXT_MAX = 1024
#: Longest server address (a DNS name is at most 253 characters).
ADDRESS_MAX = 253

#: (marked peer id, access hash, lowercase username, phone, display name)
EntityRow = tuple[int, int, "str | None", "str | None", "str | None"]


@dataclass(frozen=True, slots=True)
class DcAddress:
    """Where the session's home data centre listens."""

    id: int
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class UpdateState:
    """The account's update state: Telethon's ``updates.State`` plus channel pts."""

    pts: int
    qts: int
    date: int
    seq: int
    channels: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class SessionData:
    """Everything a session holds. ``auth_key`` is secret: it is kept out of ``repr``."""

    dc: DcAddress | None = None
    auth_key: bytes | None = field(default=None, repr=False)
    takeout_id: int | None = None
    user_id: int | None = None
    bot: bool | None = None
    #: The signed-in user's own access hash, so a restart needs no entity cache to start.
    self_access_hash: int | None = None
    updates: UpdateState | None = None
    #: Inline entity rows; ``None`` when they live in an EntityStorage.
    entities: list[EntityRow] | None = None

    def __repr__(self) -> str:
        return (
            f"SessionData(dc={self.dc!r}, auth_key={'<set>' if self.auth_key else None}, "
            f"user_id={self.user_id!r}, bot={self.bot!r}, takeout_id={self.takeout_id!r}, "
            f"updates={self.updates!r}, "
            f"entities={'storage' if self.entities is None else len(self.entities)})"
        )


def encode_session(data: SessionData) -> bytes:
    """Encode ``data`` as version-1 JSON bytes."""
    doc: dict[str, Any] = {
        "format": "tgsession",
        "version": FORMAT_VERSION,
        "dc": None
        if data.dc is None
        else {"id": data.dc.id, "address": data.dc.address, "port": data.dc.port},
        "auth_key": None
        if data.auth_key is None
        else base64.b64encode(data.auth_key).decode("ascii"),
        "takeout_id": data.takeout_id,
        "user": None if data.user_id is None else _user_object(data),
        "updates": None
        if data.updates is None
        else {
            "pts": data.updates.pts,
            "qts": data.updates.qts,
            "date": data.updates.date,
            "seq": data.updates.seq,
            "channels": {str(k): v for k, v in data.updates.channels.items()},
        },
        "entities": {"location": "storage"}
        if data.entities is None
        else {"location": "inline", "rows": [list(row) for row in data.entities]},
    }
    return _dump(doc)


def _user_object(data: SessionData) -> dict[str, Any]:
    user: dict[str, Any] = {"id": data.user_id, "bot": bool(data.bot)}
    if data.self_access_hash is not None:
        user["access_hash"] = data.self_access_hash
    return user


def decode_session(raw: bytes, *, source: str = "session data") -> SessionData:
    """Decode and validate bytes from :func:`encode_session`.

    Raises :class:`SessionCorruptError` naming ``source`` for anything malformed or out
    of the range the rest of the library can hold (ids and hashes int64, pts/qts/seq/date
    int32, DC id 1-10000, text without lone surrogates); the message
    never quotes the data. :class:`SessionVersionError` for a newer version.
    """
    raw = bytes(raw)
    if raw.startswith(ENCRYPTED_MAGIC):
        raise SessionCorruptError(
            f"{source}: the session is encrypted; set SESSION_KEY to the key it was "
            "encrypted with"
        )
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SessionCorruptError(f"{source}: not a tgsession session (invalid JSON)") from exc
    reader = _Reader(source)
    obj = reader.mapping(doc, "the document")
    if obj.get("format") != "tgsession":
        raise SessionCorruptError(f'{source}: not a tgsession session (no "format": "tgsession")')
    version = reader.integer(obj.get("version"), "version", minimum=1)
    if version > FORMAT_VERSION:
        raise SessionVersionError(
            f"{source}: written by a newer tgsession (format version {version}; this one reads "
            f"up to {FORMAT_VERSION}). Upgrade tgsession: pip install -U telethon-tgsession"
        )
    user_id, bot, self_access_hash = reader.user(obj.get("user"))
    return SessionData(
        dc=reader.dc(obj.get("dc")),
        auth_key=reader.auth_key(obj.get("auth_key")),
        takeout_id=reader.optional_int64(obj.get("takeout_id"), "takeout_id"),
        user_id=user_id,
        bot=bot,
        self_access_hash=self_access_hash,
        updates=reader.updates(obj.get("updates")),
        entities=reader.entities(obj.get("entities")),
    )


def encode_entity_row(row: EntityRow) -> bytes:
    """One entity row as compact JSON, for :class:`~tgsession.storage.EntityStorage`."""
    return _dump(row)


def _dump(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (which JSON's \uXXXX escapes can carry in) has no UTF-8 form;
        # escaped ASCII JSON keeps it, so what decodes always encodes again.
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def decode_entity_row(raw: bytes, *, source: str = "entity row") -> EntityRow:
    """Decode one row from :func:`encode_entity_row`; :class:`SessionCorruptError` if bad."""
    try:
        value = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SessionCorruptError(f"{source}: invalid entity row") from exc
    return _Reader(source).entity_row(value, "entity row")


def is_host(address: str) -> bool:
    """Whether ``address`` is an IP address or a DNS host name (what a DC address can be)."""
    # The pattern first: it takes every IPv4 address and host name, in a fraction of what
    # ipaddress costs (opening a session checks the DC address), leaving it IPv6.
    if len(address) <= ADDRESS_MAX and _HOST_NAME.fullmatch(address) is not None:
        return True
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False


# A host name as resolvers take it (underscores too, as container names have them): ASCII,
# no space, nothing that means something else in HOST:PORT or a URL.
_HOST_NAME = re.compile(r"[A-Za-z0-9._~-]+")


class _Reader:
    """Validates decoded JSON field by field; every failure names the source and field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, what: str) -> SessionCorruptError:
        return SessionCorruptError(f"{self.source}: {what}")

    def mapping(self, value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"{name} must be a JSON object")
        return value

    def integer(
        self, value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"{name} must be an integer")
        if minimum is not None and value < minimum:
            raise self.error(f"{name} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise self.error(f"{name} must be at most {maximum}")
        return value

    def int64(self, value: Any, name: str, *, minimum: int = INT64_MIN) -> int:
        return self.integer(value, name, minimum=minimum, maximum=INT64_MAX)

    def int32(self, value: Any, name: str) -> int:
        return self.integer(value, name, minimum=0, maximum=INT32_MAX)

    def optional_int64(self, value: Any, name: str) -> int | None:
        return None if value is None else self.int64(value, name)

    def optional_string(self, value: Any, name: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(f"{name} must be a string or null")
        if len(value) > TEXT_MAX:
            raise self.error(f"{name} is longer than {TEXT_MAX} characters")
        self.text(value, name)
        return value

    def text(self, value: str, name: str) -> None:
        """Refuse lone surrogates (JSON escapes can make them): they have no UTF-8 form, so
        SQLite exports and lookup keys could not hold them. Telethon never makes them."""
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.error(f"{name} is not valid Unicode text") from None

    def user(self, value: Any) -> tuple[int | None, bool | None, int | None]:
        """(id, bot, own access hash), or all None when no user is recorded."""
        if value is None:
            return None, None, None
        user = self.mapping(value, "user")
        user_id = self.int64(user.get("id"), "user.id", minimum=1)
        bot = user.get("bot")
        if not isinstance(bot, bool):
            raise self.error("user.bot must be true or false")
        return user_id, bot, self.optional_int64(user.get("access_hash"), "user.access_hash")

    def dc(self, value: Any) -> DcAddress | None:
        if value is None:
            return None
        dc = self.mapping(value, "dc")
        address = dc.get("address")
        if not isinstance(address, str) or not address or len(address) > ADDRESS_MAX:
            raise self.error(f"dc.address must be a host of 1 to {ADDRESS_MAX} characters")
        if not is_host(address):
            raise self.error("dc.address must be an IP address or a host name")
        return DcAddress(
            id=self.integer(dc.get("id"), "dc.id", minimum=1, maximum=DC_ID_MAX),
            address=address,
            port=self.integer(dc.get("port"), "dc.port", minimum=1, maximum=65535),
        )

    def auth_key(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error("auth_key must be a base64 string")
        try:
            key = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.error("auth_key is not valid base64") from exc
        if len(key) != AUTH_KEY_LENGTH:
            raise self.error(f"auth_key must be {AUTH_KEY_LENGTH} bytes, found {len(key)}")
        return key

    def updates(self, value: Any) -> UpdateState | None:
        if value is None:
            return None
        obj = self.mapping(value, "updates")
        channels_obj = self.mapping(obj.get("channels", {}), "updates.channels")
        channels: dict[int, int] = {}
        for key, pts in channels_obj.items():
            # Canonical decimal only: int() would also take " 1", "+1", "1_0" or "١".
            if not (key.isascii() and key.isdigit() and len(key) <= 19 and key[0] != "0"):
                raise self.error("updates.channels keys must be channel ids")
            channel_id = self.int64(int(key), "updates.channels key", minimum=1)
            channels[channel_id] = self.int32(pts, "updates.channels pts")
        return UpdateState(
            pts=self.int32(obj.get("pts"), "updates.pts"),
            qts=self.int32(obj.get("qts"), "updates.qts"),
            date=self.int32(obj.get("date"), "updates.date"),
            seq=self.int32(obj.get("seq"), "updates.seq"),
            channels=channels,
        )

    def entities(self, value: Any) -> list[EntityRow] | None:
        if value is None:
            return []
        obj = self.mapping(value, "entities")
        location = obj.get("location")
        if location == "storage":
            return None
        if location != "inline":
            raise self.error('entities.location must be "inline" or "storage"')
        rows = obj.get("rows", [])
        if not isinstance(rows, list):
            raise self.error("entities.rows must be a list")
        return [self.entity_row(row, "entities.rows item") for row in rows]

    def entity_row(self, value: Any, name: str) -> EntityRow:
        if not isinstance(value, list) or len(value) != 5:
            raise self.error(f"{name} must be [id, hash, username, phone, name]")
        return (
            self.int64(value[0], f"{name} id"),
            self.int64(value[1], f"{name} hash"),
            self.optional_string(value[2], f"{name} username"),
            self.optional_string(value[3], f"{name} phone"),
            self.optional_string(value[4], f"{name} name"),
        )


#: The kinds of lookup key an entity row has, in :func:`entity_lookup_keys` order.
LOOKUP_KINDS = ("username", "phone", "name")


def lookup_key(kind: str, value: str) -> str:
    """The opaque lookup key under which a storage finds a row: ``username:alice``,
    ``phone:15550001`` or ``name:Ann Lee`` (``value`` as the row holds it)."""
    return f"{kind}:{value}"


def entity_lookup_keys(row: EntityRow) -> tuple[str, ...]:
    """The lookup keys of ``row``: one per username, phone and name it has."""
    return tuple(
        lookup_key(kind, value)
        for kind, value in zip(LOOKUP_KINDS, row[2:], strict=True)
        if value is not None
    )
