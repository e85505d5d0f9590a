"""Hostile input: whatever bytes or JSON the codec and EncryptedStorage are given, the only
errors that escape are tgsession's own, promptly; and valid sessions round-trip exactly."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tgsession import (
    EncryptedStorage,
    MemoryStorage,
    SessionCorruptError,
    SessionDecryptError,
    SessionNotFoundError,
)
from tgsession.codec import (
    DcAddress,
    EntityRow,
    SessionData,
    UpdateState,
    decode_entity_row,
    decode_session,
    encode_entity_row,
    encode_session,
)
from tgsession.keys import generate_key

ALLOWED = (SessionCorruptError, SessionNotFoundError, SessionDecryptError)
KEY = generate_key()
PASSPHRASE = "hostile input passphrase"

# A hang shows up as a deadline failure rather than a stuck test run.
FAST = settings(deadline=timedelta(milliseconds=500), max_examples=200)
FEW = settings(deadline=timedelta(milliseconds=500), max_examples=40)

# -- strategies -------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=10), inner, max_size=5),
    ),
    max_leaves=30,
)

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
positive64 = st.integers(min_value=1, max_value=2**63 - 1)
int32 = st.integers(min_value=0, max_value=2**31 - 1)  # pts, qts, seq, date: TL int
# Any str but lone surrogates (which JSON's \uXXXX escapes can carry in: they are refused).
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
names = st.none() | any_text
entity_rows: st.SearchStrategy[EntityRow] = st.tuples(int64, int64, names, names, names)

hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
)
dc_addresses = st.builds(
    DcAddress,
    id=st.integers(min_value=1, max_value=10_000),
    address=hosts,
    port=st.integers(min_value=1, max_value=65535),
)
update_states = st.builds(
    UpdateState,
    pts=int32,
    qts=int32,
    date=int32,
    seq=int32,
    channels=st.dictionaries(positive64, int32, max_size=5),
)


@st.composite
def sessions(draw: st.DrawFn) -> SessionData:
    # The format keeps "bot" inside "user": a bot flag without a user id is not a session.
    user_id = draw(st.none() | positive64)
    return SessionData(
        dc=draw(st.none() | dc_addresses),
        auth_key=draw(st.none() | st.binary(min_size=256, max_size=256)),
        takeout_id=draw(st.none() | int64),
        user_id=user_id,
        bot=None if user_id is None else draw(st.booleans()),
        updates=draw(st.none() | update_states),
        entities=draw(st.none() | st.lists(entity_rows, max_size=5)),
    )


def sealed_looking(key_kind: int) -> st.SearchStrategy[bytes]:
    """Bytes that get past the magic, so the header parser and cipher are exercised."""
    scrypt_part = (
        st.tuples(
            st.binary(min_size=16, max_size=16),
            st.sampled_from([14, 15]) | st.integers(0, 255),
            st.just(8) | st.integers(0, 255),
            st.just(1) | st.integers(0, 255),
        ).map(lambda t: t[0] + bytes([t[1], t[2], t[3]]))
        if key_kind == 1
        else st.just(b"")
    )
    return st.tuples(
        st.sampled_from([1, 1, 1, 0, 2, 255]),
        st.sampled_from([key_kind, key_kind, key_kind, 0, 1, 2]),
        scrypt_part,
        st.binary(max_size=80),
    ).map(lambda t: b"TGSE" + bytes([t[0], t[1]]) + t[2] + t[3])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- the codec --------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=2000))
def test_codec_arbitrary_bytes_raise_only_corrupt(raw: bytes) -> None:
    with pytest.raises(SessionCorruptError):
        decode_session(raw)
    with contextlib.suppress(SessionCorruptError):
        decode_entity_row(raw)


@FAST
@given(json_values)
def test_codec_arbitrary_json_raises_only_corrupt(value: Any) -> None:
    raw = json.dumps(value).encode()
    with pytest.raises(SessionCorruptError):
        decode_session(raw)
    with contextlib.suppress(SessionCorruptError):
        decode_entity_row(raw)


@FAST
@given(json_values, st.sampled_from(["dc", "auth_key", "user", "updates", "entities", "x"]))
def test_codec_tgsession_shaped_json_raises_only_corrupt(value: Any, field: str) -> None:
    doc = {"format": "tgsession", "version": 1, field: value}
    with contextlib.suppress(SessionCorruptError):
        decode_session(json.dumps(doc).encode())


@FAST
@given(sessions())
def test_valid_sessions_round_trip_exactly(data: SessionData) -> None:
    assert decode_session(encode_session(data)) == data


@FAST
@given(entity_rows)
def test_entity_rows_round_trip_exactly(row: EntityRow) -> None:
    assert decode_entity_row(encode_entity_row(row)) == row


def test_lone_surrogates_are_refused_as_corrupt() -> None:
    # JSON may escape a lone surrogate; no UTF-8 export or lookup key could hold it.
    with pytest.raises(SessionCorruptError, match="username is not valid Unicode"):
        decode_entity_row(b'[1,2,"\\ud800",null,null]')


def test_deeply_nested_json_is_corrupt_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(SessionCorruptError):
        decode_session(deep)
    with pytest.raises(SessionCorruptError):
        decode_entity_row(deep)


def test_huge_integers_are_corrupt_not_a_crash() -> None:
    with pytest.raises(SessionCorruptError):
        decode_session(b'{"format":"tgsession","version":' + b"9" * 10_000 + b"}")


# -- near-valid documents name the field that is wrong ----------------------------------

VALID: dict[str, Any] = json.loads(
    encode_session(
        SessionData(
            dc=DcAddress(2, "149.154.167.51", 443),
            auth_key=bytes(256),
            takeout_id=None,
            user_id=777,
            bot=False,
            updates=UpdateState(10, 0, 1_700_000_000, 3, {1001234: 55}),
            entities=[(1, 2, "name", None, "Display")],
        )
    )
)

not_int = st.one_of(
    st.text(max_size=5),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
not_int_or_null = not_int | st.none()
negative = st.integers(max_value=-1)

# (path into the document, strategy of wrong values, what the message must name)
MUTATIONS: list[tuple[tuple[str | int, ...], st.SearchStrategy[Any], str]] = [
    (("format",), json_values.filter(lambda v: v != "tgsession"), "format"),
    (("version",), not_int_or_null | st.integers(max_value=0), "version"),
    (("version",), st.integers(min_value=2), "version"),
    (("dc",), not_int.filter(lambda v: not isinstance(v, dict)), "dc"),
    (("dc", "id"), not_int_or_null | st.integers(max_value=0) | st.integers(10_001), "dc.id"),
    (("dc", "port"), not_int_or_null | negative | st.integers(65536), "dc.port"),
    (("dc", "address"), st.just("") | st.integers() | st.none() | st.booleans(), "dc.address"),
    (("auth_key",), st.integers() | st.booleans() | st.text(max_size=50), "auth_key"),
    (("takeout_id",), not_int, "takeout_id"),
    (("user",), st.integers() | st.text() | st.lists(st.integers()), "user"),
    (("user", "id"), not_int_or_null, "user.id"),
    (("user", "bot"), st.integers() | st.text() | st.none(), "user.bot"),
    (("updates", "pts"), not_int_or_null | negative, "updates.pts"),
    (("updates", "qts"), not_int_or_null | negative, "updates.qts"),
    (("updates", "date"), not_int_or_null | negative, "updates.date"),
    (("updates", "seq"), not_int_or_null | negative, "updates.seq"),
    (("updates", "channels"), st.integers() | st.text() | st.lists(st.integers()), "channels"),
    (("updates", "channels", "1001234"), not_int_or_null | negative, "channels"),
    (
        ("entities", "location"),
        json_values.filter(lambda v: v not in ("inline", "storage")),
        "entities.location",
    ),
    (
        ("entities", "rows"),
        st.integers() | st.text() | st.dictionaries(st.text(), st.integers()),
        "entities.rows",
    ),
    (
        ("entities", "rows", 0),
        st.integers() | st.text() | st.lists(st.integers(), max_size=4),
        "entities.rows",
    ),
    (("entities", "rows", 0, 0), not_int_or_null, "id"),
    (("entities", "rows", 0, 1), not_int_or_null, "hash"),
    (("entities", "rows", 0, 2), st.integers() | st.booleans() | st.lists(st.text()), "username"),
    (("entities", "rows", 0, 3), st.integers() | st.booleans() | st.lists(st.text()), "phone"),
    (("entities", "rows", 0, 4), st.integers() | st.booleans() | st.lists(st.text()), "name"),
]


@FEW
@given(st.data())
@pytest.mark.parametrize(
    ("path", "values", "named"),
    MUTATIONS,
    ids=[".".join(map(str, path)) + f"~{named}" for path, _, named in MUTATIONS],
)
def test_one_wrong_field_is_named(
    path: tuple[str | int, ...], values: st.SearchStrategy[Any], named: str, data: st.DataObject
) -> None:
    doc = json.loads(json.dumps(VALID))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = data.draw(values)
    with pytest.raises(SessionCorruptError, match=named) as raised:
        decode_session(json.dumps(doc).encode(), source="session.json")
    assert str(raised.value).startswith("session.json: ")


def test_the_valid_document_decodes() -> None:
    decode_session(json.dumps(VALID).encode())


# -- EncryptedStorage -------------------------------------------------------------------


async def load(storage: EncryptedStorage, blob: bytes) -> None:
    await storage.inner.store_session(blob)
    with contextlib.suppress(*ALLOWED):
        await storage.load_session()


@FAST
@given(st.binary(max_size=200) | sealed_looking(0))
def test_encrypted_arbitrary_bytes_raise_only_tgsession_errors(blob: bytes) -> None:
    run(load(EncryptedStorage(MemoryStorage(), KEY), blob))


@settings(
    deadline=timedelta(seconds=5),
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(sealed_looking(1))
def test_encrypted_hostile_passphrase_headers_raise_only_tgsession_errors(blob: bytes) -> None:
    run(load(EncryptedStorage(MemoryStorage(), PASSPHRASE), blob))


@FAST
@given(st.dictionaries(int64, st.binary(max_size=60) | sealed_looking(0), max_size=5))
def test_encrypted_arbitrary_rows_raise_only_tgsession_errors(rows: dict[int, bytes]) -> None:
    async def scenario() -> None:
        inner = MemoryStorage()
        await inner.store_entities([(peer, row, ("username:x",)) for peer, row in rows.items()])
        storage = EncryptedStorage(inner, KEY)
        # Nothing here was sealed with KEY: every row is a miss, never an error.
        for peer in rows:
            assert await storage.get_entity(peer) is None  # type: ignore[attr-defined]
        assert await storage.find_entity("username:x") is None  # type: ignore[attr-defined]
        assert [b async for b in storage.iter_entities()] == []  # type: ignore[attr-defined]

    run(scenario())


@FAST
@given(st.binary(min_size=1, max_size=3000))
def test_encrypted_arbitrary_values_round_trip_exactly(value: bytes) -> None:
    async def scenario() -> bytes:
        inner = MemoryStorage()
        await EncryptedStorage(inner, KEY).store_session(value)
        loaded: bytes = await EncryptedStorage(inner, KEY).load_session()
        return loaded

    assert run(scenario()) == value
