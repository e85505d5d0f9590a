"""gotd/td sessions: the JSON its ``session.FileStorage`` and ``session.Loader`` write.

::

    {"Version": 1,
     "Data": {"Config": {..., "ThisDC": 2, "DCOptions": [{"ID": 2, "IPAddress": "...",
                                                          "Port": 443, "Ipv6": false,
                                                          "MediaOnly": false, "CDN": false,
                                                          ...}, ...]},
              "DC": 2, "Addr": "",
              "AuthKey": "<base64 of 256 bytes>", "AuthKeyID": "<base64 of 8 bytes>",
              "Salt": 0}}

``AuthKeyID`` is ``sha1(AuthKey)[12:20]``. gotd's client leaves ``Addr`` empty: the
address of ``DC`` is in ``Config.DCOptions`` (Telegram's ``help.getConfig`` list); only
gotd's converters from other formats fill ``Addr``. Import takes ``Addr`` when set, else
the DC's option that is not media-only, not CDN and not obfuscated-only, IPv4 first, else
Telegram's well-known address for the DC. Export writes both ``Addr`` and one
``DCOptions`` entry, typed as gotd's ``tg.DCOption`` so that its ``session.Loader`` reads
it. The rest of ``Config`` is not kept: Telethon asks for it again when it connects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from .._errors import SessionCorruptError
from ..codec import AUTH_KEY_LENGTH, DcAddress, SessionData
from ._validate import checked_dc, checked_session, require_key
from .datacenters import dc_address, is_test_address

__all__ = ["from_gotd_json", "to_gotd_json"]

_VERSION = 1


def from_gotd_json(
    raw: str | bytes | bytearray | memoryview, *, source: str = "the gotd session"
) -> SessionData:
    """Read a gotd session JSON document.

    Raises :class:`~tgsession.SessionCorruptError` naming ``source`` for malformed JSON,
    an unknown version, a bad key, or an ``AuthKeyID`` that does not match the key.
    """
    try:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
        doc = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SessionCorruptError(f"{source}: not a gotd session (invalid JSON)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Data"), dict):
        raise SessionCorruptError(f"{source}: not a gotd session (no \"Data\" object)")
    version = doc.get("Version")
    if version != _VERSION or isinstance(version, bool):
        raise SessionCorruptError(
            f"{source}: gotd session version {version!r} is not supported (only {_VERSION})"
        )
    data: dict[str, Any] = doc["Data"]
    config = data.get("Config")
    if not isinstance(config, dict):
        config = {}
    raw_dc = data.get("DC")
    if raw_dc == 0 and _is_int(config.get("ThisDC")):
        raw_dc = config["ThisDC"]  # gotd's client also falls back to its configured DC
    if not isinstance(raw_dc, int) or isinstance(raw_dc, bool):
        raise SessionCorruptError(f"{source}: Data.DC must be an integer")
    dc_id = raw_dc
    test_mode = config.get("TestMode") is True
    key = _bytes(data.get("AuthKey"), "Data.AuthKey", source)
    if key is not None and len(key) != AUTH_KEY_LENGTH:
        raise SessionCorruptError(
            f"{source}: Data.AuthKey is {len(key)} bytes, not {AUTH_KEY_LENGTH}"
        )
    key_id = _bytes(data.get("AuthKeyID"), "Data.AuthKeyID", source)
    if key is not None and key_id is not None and key_id != _key_id(key):
        raise SessionCorruptError(f"{source}: Data.AuthKeyID does not match Data.AuthKey")
    return checked_session(SessionData(
        dc=_dc(dc_id, data.get("Addr"), config.get("DCOptions"), test_mode, source),
        auth_key=key,
        entities=[],
    ), source)


def to_gotd_json(data: SessionData) -> bytes:
    """The session as gotd session JSON (what ``session.FileStorage`` reads).

    Raises ValueError when the session has no auth key.
    """
    dc, key = require_key(data)
    host = f"[{dc.address}]" if ":" in dc.address else dc.address
    ipv6 = ":" in dc.address
    option = {
        # tg.DCOption as Go's encoding/json writes it; Flags bit 0 is ipv6.
        "Flags": 1 if ipv6 else 0,
        "Ipv6": ipv6,
        "MediaOnly": False,
        "TCPObfuscatedOnly": False,
        "CDN": False,
        "Static": False,
        "ThisPortOnly": False,
        "ID": dc.id,
        "IPAddress": dc.address,
        "Port": dc.port,
        "Secret": None,
    }
    doc = {
        "Version": _VERSION,
        "Data": {
            "Config": {
                "ThisDC": dc.id,
                "TestMode": is_test_address(dc.address),
                "DCOptions": [option],
            },
            "DC": dc.id,
            "Addr": f"{host}:{dc.port}",
            "AuthKey": base64.b64encode(key).decode("ascii"),
            "AuthKeyID": base64.b64encode(_key_id(key)).decode("ascii"),
            "Salt": 0,
        },
    }
    return json.dumps(doc, indent=2).encode("utf-8") + b"\n"


def _key_id(key: bytes) -> bytes:
    return hashlib.sha1(key).digest()[12:20]


def _bytes(value: Any, name: str, source: str) -> bytes | None:
    # Go marshals []byte as standard base64, and a nil slice as null.
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SessionCorruptError(f"{source}: {name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SessionCorruptError(f"{source}: {name} is not valid base64") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dc(dc_id: int, addr: Any, options: Any, test_mode: bool, source: str) -> DcAddress:
    if addr is None or addr == "":
        option = _primary_option(dc_id, options, source)
        if option is not None:
            return option
        known = dc_address(dc_id, test_mode=test_mode)
        if known is None:
            raise SessionCorruptError(f"{source}: names DC {dc_id} without an address")
        return known
    if not isinstance(addr, str):
        raise SessionCorruptError(f"{source}: Data.Addr must be a string")
    host, colon, port_text = addr.rpartition(":")
    if not colon or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
        raise SessionCorruptError(f"{source}: Data.Addr must be HOST:PORT")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return checked_dc(dc_id, host, int(port_text), source)


def _primary_option(dc_id: int, options: Any, source: str) -> DcAddress | None:
    """The best of ``Config.DCOptions`` for ``dc_id``: not media-only, not CDN, not
    obfuscated-only (Telethon speaks plain MTProto), IPv4 before IPv6, static first."""
    if options is None:
        return None
    if not isinstance(options, list):
        raise SessionCorruptError(f"{source}: Data.Config.DCOptions must be a list")
    candidates = []
    for option in options:
        if not isinstance(option, dict) or option.get("ID") != dc_id:
            continue
        if option.get("MediaOnly") is True or option.get("CDN") is True:
            continue
        if option.get("TCPObfuscatedOnly") is True:
            continue
        address, port = option.get("IPAddress"), option.get("Port")
        if not isinstance(address, str) or not address or not isinstance(port, int):
            continue
        rank = (option.get("Ipv6") is True or ":" in address, option.get("Static") is not True)
        candidates.append((rank, address, port))
    if not candidates:
        return None
    _, address, port = min(candidates, key=lambda c: c[0])
    return checked_dc(dc_id, address, port, source)
