"""The session format: exact round trips, and one clear error for each malformed input."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tgsession import SessionCorruptError, SessionVersionError
from tgsession.codec import (
    DcAddress,
    SessionData,
    UpdateState,
    decode_entity_row,
    decode_session,
    encode_entity_row,
    encode_session,
)

KEY = bytes(range(256))


def full() -> SessionData:
    return SessionData(
        dc=DcAddress(4, "149.154.167.91", 443), auth_key=KEY, takeout_id=9, user_id=777,
        bot=True, self_access_hash=-5,
        updates=UpdateState(pts=10, qts=2, date=1_700_000_000, seq=3, channels={1001: 55}),
        entities=[(777, 5, "me", "15550001", "Me Myself"), (-1001, 0, None, None, "Group")],
    )


@pytest.mark.parametrize("data", [full(), SessionData(), SessionData(entities=None)],
                         ids=["everything", "empty", "entities-in-storage"])
def test_round_trip_is_exact(data: SessionData) -> None:
    assert decode_session(encode_session(data)) == data


def test_entity_row_round_trip_is_exact() -> None:
    row = (-1000000000031, 311, "newschan", None, "News ✓")
    assert decode_entity_row(encode_entity_row(row)) == row


def document(**changes: Any) -> bytes:
    doc = json.loads(encode_session(full()))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = doc
        for name in parents:
            target = target[name]
        if value is KeyError:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(doc).encode()


MALFORMED = [
    (b"", "invalid JSON"),
    (b"\xff\xfe", "invalid JSON"),
    (b"[1, 2]", "JSON object"),
    (b"TGSE\x01\x00" + b"\x00" * 40, "encrypted; set SESSION_KEY"),
    (document(format="telethon"), "not a tgsession session"),
    (document(version=2), "newer tgsession"),
    (document(version="1"), "version must be an integer"),
    (document(auth_key=base64.b64encode(KEY[:255]).decode()), "auth_key must be 256 bytes"),
    (document(auth_key="***"), "auth_key is not valid base64"),
    (document(dc__port=0), "dc.port must be at least 1"),
    (document(dc__port=65536), "dc.port must be at most 65535"),
    (document(dc__address=""), "dc.address"),
    (document(dc__id=True), "dc.id must be an integer"),
    (document(user__bot="yes"), "user.bot"),
    (document(updates__pts=-1), "updates.pts"),
    (document(updates__channels={"x": 1}), "updates.channels"),
    (document(entities__location="elsewhere"), "entities.location"),
    (document(entities__rows=[[1, 2, 3]]), "[id, hash, username, phone, name]"),
    (document(takeout_id="9"), "takeout_id"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED)
def test_malformed_input_is_one_clear_error_naming_the_source(raw: bytes, message: str) -> None:
    with pytest.raises(SessionCorruptError) as caught:
        decode_session(raw, source="/srv/bot/session.json")
    text = str(caught.value)
    assert text.startswith("/srv/bot/session.json: ")
    assert message in text
    assert base64.b64encode(KEY).decode()[:20] not in text  # never quotes the data


def test_newer_version_is_a_version_error() -> None:
    with pytest.raises(SessionVersionError, match="pip install -U telethon-tgsession"):
        decode_session(document(version=99))
