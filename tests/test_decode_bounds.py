"""Decoding refuses whatever the rest of tgsession could not hold, so that nothing it
accepts can crash a later open, store, ``tgsession status`` or export.

Bounds are Telethon's: ids, access hashes and takeout ids are TL ``long`` (int64); pts,
qts, seq and date are TL ``int`` (int32, and a date must also be a datetime). The fuzz
tests follow a document through the whole path: decode, store, open, ``status``; and the
same for every importer in :mod:`tgsession.formats`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import sqlite3
import struct
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.test_cli import _in_process, one_line_error
from tgsession import FileStorage, SessionCorruptError, StorageSession
from tgsession.codec import (
    DcAddress,
    SessionData,
    UpdateState,
    decode_entity_row,
    decode_session,
    encode_session,
)
from tgsession.formats import load, to_telethon_sqlite

KEY = bytes(range(256))
VALID: dict[str, Any] = json.loads(encode_session(SessionData(
    dc=DcAddress(2, "149.154.167.51", 443), auth_key=KEY, takeout_id=None, user_id=777,
    bot=False, self_access_hash=5, updates=UpdateState(10, 0, 1_700_000_000, 3, {1001234: 55}),
    entities=[(1, 2, "name", None, "Display")],
)))

FUZZ = settings(deadline=timedelta(seconds=5), max_examples=80,
                suppress_health_check=[HealthCheck.too_slow])


def with_value(path: tuple[Any, ...], value: Any) -> bytes:
    doc = copy.deepcopy(VALID)
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("path", "value", "field"), [
    (("updates", "date"), 1_000_000_000_000, "updates.date"),
    (("updates", "date"), 2**31, "updates.date"),
    (("updates", "pts"), 2**31, "updates.pts"),
    (("updates", "qts"), 2**31, "updates.qts"),
    (("updates", "seq"), 2**31, "updates.seq"),
    (("updates", "channels", "1001234"), 2**31, "updates.channels pts"),
    (("updates", "channels"), {str(2**63): 1}, "updates.channels key"),
    (("updates", "channels"), {"1_0": 1}, "updates.channels keys"),
    (("updates", "channels"), {" 10": 1}, "updates.channels keys"),
    (("updates", "channels"), {"0": 1}, "updates.channels keys"),
    (("entities", "rows", 0, 0), 2**63, "entities.rows item id"),
    (("entities", "rows", 0, 0), -(2**63) - 1, "entities.rows item id"),
    (("entities", "rows", 0, 1), 2**64, "entities.rows item hash"),
    (("entities", "rows", 0, 4), "x" * 5000, "entities.rows item name"),
    (("takeout_id",), 2**63, "takeout_id"),
    (("user", "id"), 2**63, "user.id"),
    (("user", "id"), 0, "user.id"),
    (("user", "access_hash"), -(2**63) - 1, "user.access_hash"),
    (("dc", "id"), 10_001, "dc.id"),
    (("dc", "address"), "not a host!", "dc.address"),
    (("dc", "address"), "a" * 300, "dc.address"),
])
def test_out_of_range_fields_are_corrupt_naming_the_field(
    path: tuple[Any, ...], value: Any, field: str
) -> None:
    with pytest.raises(SessionCorruptError, match=f"^here: {field}"):
        decode_session(with_value(path, value), source="here")


def test_bounds_themselves_are_accepted() -> None:
    for path, value in [(("updates", "date"), 2**31 - 1), (("takeout_id",), -(2**63)),
                        (("entities", "rows", 0, 0), 2**63 - 1), (("dc", "address"), "::1"),
                        (("dc", "address"), "dc4.example.org")]:
        decode_session(with_value(path, value))
    assert decode_entity_row(b'[-9223372036854775808,9223372036854775807,null,null,null]')


# -- the whole path, fuzzed --------------------------------------------------------------

EDGES = [-(2**63) - 1, -(2**63), -(2**31) - 1, -1, 0, 1, 2**31 - 1, 2**31, 2**53,
         2**63 - 1, 2**63, 2**64, 10**12, 10**30]
edge_ints = st.sampled_from(EDGES) | st.integers()
# Mostly edges: a wrong type is refused early, an out-of-range integer is what slips through.
odd_values = st.one_of(
    st.sampled_from(EDGES), st.sampled_from(EDGES), st.sampled_from(EDGES), st.integers(),
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8),
)
FIELDS = [("dc", "id"), ("dc", "port"), ("dc", "address"), ("takeout_id",), ("user", "id"),
          ("user", "access_hash"), ("updates", "pts"), ("updates", "qts"),
          ("updates", "date"), ("updates", "seq"), ("updates", "channels", "1001234"),
          ("entities", "rows", 0, 0), ("entities", "rows", 0, 1), ("entities", "rows", 0, 2)]


def survives_the_whole_path(raw: bytes) -> None:
    """``tgsession import`` of ``raw`` either refuses it in one line, or stores it so that
    it opens and shows in ``tgsession status``."""
    with tempfile.TemporaryDirectory() as folder:
        source, path = Path(folder) / "source.json", Path(folder) / "session.json"
        source.write_bytes(raw)
        env = {"SESSION_FILE": str(path)}
        imported = _in_process(["import", str(source)], Path(folder), env, b"")
        assert "Traceback" not in imported.stderr, imported.stderr
        if imported.returncode != 0:
            assert imported.stderr.startswith("tgsession: error: "), imported.stderr
            with pytest.raises(SessionCorruptError):
                decode_session(raw)
            return

        async def open_it() -> None:
            session = await StorageSession.open(FileStorage(path), wait_for_entities=True)
            session.get_update_states()
            await session.release()

        asyncio.run(open_it())
        result = _in_process(["status", "--json"], Path(folder), env, b"")
        assert result.returncode == 0, result.stderr


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(FIELDS), odd_values), min_size=1, max_size=3))
@example([(("updates", "date"), 10**12)])  # crashed every open and status
@example([(("entities", "rows", 0, 0), 2**64)])  # crashed import with struct.error
def test_any_accepted_document_stores_opens_and_shows(
    changes: list[tuple[tuple[Any, ...], Any]]
) -> None:
    doc = copy.deepcopy(VALID)
    for path, value in changes:
        target = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    survives_the_whole_path(json.dumps(doc).encode())


def survives_import(raw: bytes, fmt: str) -> None:
    try:
        _, data = load(raw, format=fmt)
    except SessionCorruptError:
        return
    survives_the_whole_path(encode_session(data))


@FUZZ
@given(dc=edge_ints, addr=st.sampled_from(["", "1.2.3.4:443", "[::1]:80", "x:1", None]),
       option=st.fixed_dictionaries({"ID": edge_ints, "IPAddress": odd_values,
                                     "Port": edge_ints, "Ipv6": st.booleans()}))
def test_gotd_imports_store_open_and_show(dc: int, addr: Any, option: dict[str, Any]) -> None:
    doc = {"Version": 1, "Data": {"Config": {"DCOptions": [option]}, "DC": dc, "Addr": addr,
                                  "AuthKey": base64.b64encode(KEY).decode(), "Salt": 0}}
    survives_import(json.dumps(doc).encode(), "gotd-json")


@FUZZ
@given(dc=st.integers(0, 255), user_id=st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]),
       test_mode=st.booleans())
def test_pyrogram_strings_store_open_and_show(dc: int, user_id: int, test_mode: bool) -> None:
    packed = struct.pack(">BI?256sQ?", dc, 1, test_mode, KEY, user_id, False)
    survives_import(base64.urlsafe_b64encode(packed).rstrip(b"="), "pyrogram-string")


@FUZZ
@given(date=edge_ints | st.floats(allow_nan=False, allow_infinity=False),
       pts=edge_ints, channel=edge_ints,
       entity=st.tuples(edge_ints,  # an INTEGER PRIMARY KEY: SQLite takes only integers
                        edge_ints | st.floats(allow_nan=False) | st.text(max_size=4),
                        st.text(max_size=8) | st.none()))
def test_telethon_sqlite_imports_store_open_and_show(
    date: Any, pts: int, channel: int, entity: tuple[Any, Any, Any]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.session"
        to_telethon_sqlite(SessionData(dc=DcAddress(2, "149.154.167.51", 443), auth_key=KEY),
                           path)
        db = sqlite3.connect(path)
        with db:
            for value in (date, pts, channel, *entity):
                if isinstance(value, int) and not -(2**63) <= value < 2**63:
                    return  # SQLite itself cannot hold it
            db.execute("insert into update_state values (0, ?, 0, ?, 0)", (pts, date))
            db.execute("insert or ignore into update_state values (?, ?, 0, 0, 0)", (channel, pts))
            db.execute("insert into entities values (?, ?, ?, NULL, NULL, 0)", entity)
        db.close()
        survives_import(path.read_bytes(), "telethon-sqlite")


def test_a_stored_out_of_range_session_is_one_line_in_status_and_left_as_it_is(
    tmp_path: Path,
) -> None:
    raw = with_value(("updates", "date"), 1_000_000_000_000)
    path = tmp_path / "session.json"
    asyncio.run(FileStorage(path).store_session(raw))  # written before the bound existed
    result = _in_process(["status"], tmp_path, {"SESSION_FILE": str(path)}, b"")
    assert result.returncode == 1
    assert one_line_error(result).endswith("updates.date must be at most 2147483647")
    assert path.read_bytes() == raw
