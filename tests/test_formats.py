"""Sessions in and out of Telethon, Pyrogram / kurigram and gotd formats, proven with the
peers' own code: their classes write what we import and read what we export."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from pyrogram.storage import SQLiteStorage
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession, StringSession
from telethon.tl import types

from tgsession import MemoryStorage, SessionCorruptError, StorageSession
from tgsession.codec import DcAddress, SessionData, UpdateState, encode_session
from tgsession.formats import (
    detect,
    from_gotd_json,
    from_pyrogram_sqlite,
    from_pyrogram_string,
    from_telethon_sqlite,
    from_telethon_string,
    load,
    to_gotd_json,
    to_pyrogram_string,
    to_telethon_sqlite,
    to_telethon_string,
)
from tgsession.testing import FakeTelegram

KEY = bytes(range(256))
DC4 = DcAddress(4, "149.154.167.91", 443)


def signed_in(**changes: object) -> SessionData:
    data = SessionData(dc=DC4, auth_key=KEY, user_id=777, bot=False, entities=[])
    for name, value in changes.items():
        setattr(data, name, value)
    return data


def telethon_string(dc_id: int, address: str, port: int, key: bytes = KEY) -> str:
    session = StringSession()
    session.set_dc(dc_id, address, port)
    session.auth_key = AuthKey(key)
    value: str = session.save()
    return value


async def pyrogram_string(
    tmp_path: Path, *, dc_id: int = 4, test_mode: bool = False, user_id: int = 777,
    is_bot: bool = False, api_id: int = 12345,
) -> str:
    storage = SQLiteStorage("made-by-pyrogram", workdir=tmp_path, in_memory=True)
    await storage.open()
    await storage.dc_id(dc_id)
    await storage.api_id(api_id)
    await storage.test_mode(test_mode)
    await storage.auth_key(KEY)
    await storage.user_id(user_id)
    await storage.is_bot(is_bot)
    value: str = await storage.export_session_string()
    await storage.close()
    return value


# -- Telethon -----------------------------------------------------------------------------


def test_a_telethon_string_session_is_imported_with_its_dc_and_key() -> None:
    data = from_telethon_string(telethon_string(4, "149.154.167.91", 443))

    assert data.dc == DC4
    assert data.auth_key == KEY
    assert data.user_id is None and data.entities == []


def test_an_ipv6_telethon_string_session_is_imported() -> None:
    data = from_telethon_string(telethon_string(2, "2001:67c:4e8:f002::a", 443))

    assert data.dc == DcAddress(2, "2001:67c:4e8:f002::a", 443)
    assert data.auth_key == KEY


def test_a_telethon_string_without_a_key_imports_as_not_signed_in() -> None:
    data = from_telethon_string(telethon_string(2, "149.154.167.51", 443, key=bytes(256)))

    assert data.auth_key is None


def test_an_exported_telethon_string_is_read_back_by_telethon() -> None:
    session = StringSession(to_telethon_string(signed_in()))

    assert (session.dc_id, session.server_address, session.port) == (4, "149.154.167.91", 443)
    assert session.auth_key.key == KEY


def test_a_telethon_string_cannot_hold_a_host_name() -> None:
    with pytest.raises(ValueError, match="host name"):
        to_telethon_string(signed_in(dc=DcAddress(2, "dc2.example", 443)))


def test_a_telethon_sqlite_file_is_imported_with_entities_and_update_state(
    tmp_path: Path,
) -> None:
    session = SQLiteSession(str(tmp_path / "bot"))
    session.set_dc(4, "149.154.167.91", 443)
    session.auth_key = AuthKey(KEY)
    session.takeout_id = 42
    session.process_entities(types.contacts.ResolvedPeer(
        peer=types.PeerUser(555), chats=[],
        users=[types.User(id=555, access_hash=99, first_name="Ann", last_name="Lee",
                          username="Ann", phone="15550001")],
    ))
    when = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
    session.set_update_state(0, types.updates.State(10, 2, when, 3, 0))
    session.set_update_state(1001, types.updates.State(55, 0, when, 0, 0))
    session.save()
    session.close()

    data = from_telethon_sqlite(tmp_path / "bot.session")

    assert data.dc == DC4 and data.auth_key == KEY and data.takeout_id == 42
    assert data.entities == [(555, 99, "ann", "15550001", "Ann Lee")]
    assert data.updates == UpdateState(10, 2, int(when.timestamp()), 3, {1001: 55})


def test_importing_a_telethon_sqlite_file_leaves_it_untouched(tmp_path: Path) -> None:
    session = SQLiteSession(str(tmp_path / "bot"))
    session.set_dc(4, "149.154.167.91", 443)
    session.auth_key = AuthKey(KEY)
    session.save()
    session.close()
    path = tmp_path / "bot.session"
    before = (path.read_bytes(), path.stat().st_mtime_ns)

    from_telethon_sqlite(path)

    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(os.listdir(tmp_path)) == ["bot.session"]


def test_an_exported_telethon_sqlite_file_is_read_back_by_telethon(tmp_path: Path) -> None:
    data = signed_in(
        takeout_id=7,
        updates=UpdateState(10, 2, 1_700_000_000, 3, {1001: 55}),
        entities=[(555, 99, "ann", "15550001", "Ann Lee")],
    )
    out = tmp_path / "exported.db"  # no .session suffix: written at exactly this path

    to_telethon_sqlite(data, out)

    assert sorted(os.listdir(tmp_path)) == ["exported.db"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    os.rename(out, tmp_path / "exported.session")
    session = SQLiteSession(str(tmp_path / "exported.session"))
    assert (session.dc_id, session.server_address, session.port) == (4, "149.154.167.91", 443)
    assert session.auth_key.key == KEY and session.takeout_id == 7
    assert session.get_input_entity("ann") == types.InputPeerUser(555, 99)
    assert session.get_update_state(0).pts == 10
    assert session.get_update_state(1001).pts == 55
    session.close()


# -- Pyrogram / kurigram ------------------------------------------------------------------


async def test_a_pyrogram_session_string_is_imported_with_the_dc_address(
    tmp_path: Path,
) -> None:
    data = from_pyrogram_string(await pyrogram_string(tmp_path, is_bot=True))

    assert data.dc == DC4
    assert data.auth_key == KEY
    assert (data.user_id, data.bot) == (777, True)


async def test_a_test_mode_pyrogram_session_points_at_the_test_dcs(tmp_path: Path) -> None:
    data = from_pyrogram_string(await pyrogram_string(tmp_path, dc_id=2, test_mode=True))

    assert data.dc == DcAddress(2, "149.154.167.40", 443)


async def test_an_exported_pyrogram_string_is_read_back_by_kurigram(tmp_path: Path) -> None:
    string = to_pyrogram_string(signed_in(bot=True), api_id=12345)

    storage = SQLiteStorage("read-by-pyrogram", workdir=tmp_path, session_string=string,
                            in_memory=True)
    await storage.open()
    assert await storage.dc_id() == 4
    assert await storage.api_id() == 12345
    assert await storage.auth_key() == KEY
    assert await storage.server_address() == "149.154.167.91"
    assert (await storage.user_id(), await storage.is_bot()) == (777, True)
    assert not await storage.test_mode()
    await storage.close()


def test_a_session_on_a_local_server_cannot_become_a_pyrogram_string() -> None:
    with pytest.raises(ValueError, match="local server"):
        to_pyrogram_string(signed_in(dc=DcAddress(2, "127.0.0.1", 4000)), api_id=1)


async def test_a_pyrogram_sqlite_file_is_imported_with_its_peers(tmp_path: Path) -> None:
    storage = SQLiteStorage("account", workdir=tmp_path)
    await storage.open()
    await storage.dc_id(4)
    await storage.server_address("149.154.167.91")
    await storage.api_id(12345)
    await storage.test_mode(False)
    await storage.auth_key(KEY)
    await storage.user_id(777)
    await storage.is_bot(False)
    await storage.update_peers([(555, 99, "user", "15550001"), (-1001234, 77, "channel", None)])
    await storage.update_usernames([(555, ["Ann"])])
    await storage.save()
    await storage.close()

    data = from_pyrogram_sqlite(tmp_path / "account.session")

    assert data.dc == DC4 and data.auth_key == KEY
    assert (data.user_id, data.bot) == (777, False)
    assert sorted(data.entities or []) == [
        (-1001234, 77, None, None, None), (555, 99, "ann", "15550001", None)
    ]


# -- gotd ---------------------------------------------------------------------------------


def gotd_document(key: bytes = KEY, **data: object) -> bytes:
    doc = {"Version": 1, "Data": {
        "Config": {"ThisDC": 4}, "DC": 4, "Addr": "149.154.167.91:443",
        "AuthKey": base64.b64encode(key).decode(),
        "AuthKeyID": base64.b64encode(hashlib.sha1(key).digest()[12:20]).decode(),
        "Salt": 123, **data,
    }}
    return json.dumps(doc).encode()


def test_a_gotd_session_is_imported() -> None:
    data = from_gotd_json(gotd_document())

    assert data.dc == DC4 and data.auth_key == KEY


def test_a_gotd_session_with_an_ipv6_address_is_imported() -> None:
    data = from_gotd_json(gotd_document(Addr="[2001:67c:4e8:f004::a]:443"))

    assert data.dc == DcAddress(4, "2001:67c:4e8:f004::a", 443)


def test_a_gotd_key_id_that_does_not_match_the_key_is_refused() -> None:
    document = gotd_document(AuthKeyID=base64.b64encode(b"12345678").decode())

    with pytest.raises(SessionCorruptError, match="AuthKeyID does not match"):
        from_gotd_json(document)


def test_an_exported_gotd_session_has_the_documented_shape() -> None:
    doc = json.loads(to_gotd_json(signed_in()))

    assert doc["Version"] == 1
    assert doc["Data"]["DC"] == 4 and doc["Data"]["Addr"] == "149.154.167.91:443"
    assert base64.b64decode(doc["Data"]["AuthKey"]) == KEY
    assert base64.b64decode(doc["Data"]["AuthKeyID"]) == hashlib.sha1(KEY).digest()[12:20]
    assert from_gotd_json(to_gotd_json(signed_in())).auth_key == KEY


# gotd's client writes "Addr": "" and keeps the addresses in Config.DCOptions, each a
# tg.DCOption as Go's encoding/json writes it.
def dc_option(dc_id: int, address: str, port: int = 443, **flags: bool) -> dict[str, object]:
    option: dict[str, object] = {
        "Flags": 0, "Ipv6": ":" in address, "MediaOnly": False, "TCPObfuscatedOnly": False,
        "CDN": False, "Static": False, "ThisPortOnly": False, "ID": dc_id,
        "IPAddress": address, "Port": port, "Secret": None,
    }
    option.update(flags)
    return option


def as_gotd_writes_it(*options: dict[str, object], dc: int = 4) -> bytes:
    return gotd_document(DC=dc, Addr="", Config={
        "BlockedMode": False, "ForceTryIpv6": False, "Date": 1700000000,
        "Expires": 1700003600, "TestMode": False, "ThisDC": dc, "DCOptions": list(options),
        "DCTxtDomainName": "apv3.stel.com", "TmpSessions": 0, "WebfileDCID": 4,
    })


def test_a_gotd_session_takes_its_address_from_the_dc_options() -> None:
    document = as_gotd_writes_it(
        dc_option(2, "149.154.167.50"),
        dc_option(4, "149.154.167.92", MediaOnly=True),
        dc_option(4, "2001:67c:4e8:f004::b", Ipv6=True),
        dc_option(4, "149.154.165.10", 8443, CDN=True),
        dc_option(4, "149.154.167.11", 5222, TCPObfuscatedOnly=True),
        dc_option(4, "10.0.0.4", 4443),
    )

    assert from_gotd_json(document).dc == DcAddress(4, "10.0.0.4", 4443)


def test_a_gotd_session_with_only_ipv6_options_takes_ipv6() -> None:
    document = as_gotd_writes_it(dc_option(4, "2001:67c:4e8:f004::b", Ipv6=True))

    assert from_gotd_json(document).dc == DcAddress(4, "2001:67c:4e8:f004::b", 443)


def test_a_gotd_session_without_options_for_its_dc_uses_the_known_address() -> None:
    document = as_gotd_writes_it(dc_option(2, "149.154.167.50"))

    assert from_gotd_json(document).dc == DC4


def test_a_gotd_session_with_dc_0_uses_this_dc_of_its_config() -> None:
    document = json.loads(as_gotd_writes_it(dc_option(4, "10.0.0.4")))
    document["Data"]["DC"] = 0

    assert from_gotd_json(json.dumps(document).encode()).dc == DcAddress(4, "10.0.0.4", 443)


# The types of gotd's session.Data, field by field (read from gotd/td session/session.go
# and tg/tl_dc_option_gen.go): Go's encoding/json refuses a value of another JSON type.
GO_DC_OPTION = {"Flags": int, "Ipv6": bool, "MediaOnly": bool, "TCPObfuscatedOnly": bool,
                "CDN": bool, "Static": bool, "ThisPortOnly": bool, "ID": int,
                "IPAddress": str, "Port": int, "Secret": (str, type(None))}
GO_CONFIG = {"BlockedMode": bool, "ForceTryIpv6": bool, "Date": int, "Expires": int,
             "TestMode": bool, "ThisDC": int, "DCOptions": list, "DCTxtDomainName": str,
             "TmpSessions": int, "WebfileDCID": int}
GO_DATA = {"Config": dict, "DC": int, "Addr": str, "AuthKey": (str, type(None)),
           "AuthKeyID": (str, type(None)), "Salt": int}


def assert_go_types(value: dict[str, object], schema: dict[str, object]) -> None:
    for name, item in value.items():
        assert name in schema, f"gotd has no field {name}"
        assert isinstance(item, schema[name]) and not (  # type: ignore[arg-type]
            isinstance(item, bool) and schema[name] is int), name


@pytest.mark.parametrize("address", ["149.154.167.91", "2001:67c:4e8:f004::a", "127.0.0.1"])
def test_an_exported_gotd_session_is_what_gotds_loader_reads(address: str) -> None:
    doc = json.loads(to_gotd_json(signed_in(dc=DcAddress(4, address, 8443))))

    assert doc["Version"] == 1
    assert_go_types(doc["Data"], GO_DATA)
    assert_go_types(doc["Data"]["Config"], GO_CONFIG)
    (option,) = doc["Data"]["Config"]["DCOptions"]
    assert_go_types(option, GO_DC_OPTION)
    assert (option["ID"], option["IPAddress"], option["Port"]) == (4, address, 8443)
    assert option["Ipv6"] == (option["Flags"] & 1 == 1) == (":" in address)
    # gotd rewrites the document with "Addr": "" once connected: the option still leads back.
    doc["Data"]["Addr"] = ""
    assert from_gotd_json(json.dumps(doc).encode()).dc == DcAddress(4, address, 8443)


# -- detection and bad input --------------------------------------------------------------


async def test_every_format_is_detected(tmp_path: Path) -> None:
    session = SQLiteSession(str(tmp_path / "telethon"))
    session.close()
    storage = SQLiteStorage("pyrogram", workdir=tmp_path)
    await storage.open()
    await storage.close()

    assert detect(telethon_string(2, "149.154.167.51", 443).encode()) == "telethon-string"
    assert detect(tmp_path / "telethon.session") == "telethon-sqlite"
    assert detect((await pyrogram_string(tmp_path)).encode()) == "pyrogram-string"
    assert detect(str(tmp_path / "pyrogram.session")) == "pyrogram-sqlite"
    assert detect(gotd_document()) == "gotd-json"
    assert detect(encode_session(signed_in())) == "tgsession-json"


def test_load_detects_and_imports() -> None:
    fmt, data = load(b"  " + telethon_string(4, "149.154.167.91", 443).encode() + b"\n")

    assert fmt == "telethon-string" and data.auth_key == KEY


@pytest.mark.parametrize("content", [
    b"", b"hello", b"\xff\xfe\x00", b"{}", b"[1, 2]", b'{"Version": 1, "Data": 5}',
    b"SQLite format 3\x00" + b"\x00" * 200, b"1" + b"A" * 352, b"A" * 362,
])
def test_anything_else_is_a_session_corrupt_error(content: bytes) -> None:
    with pytest.raises(SessionCorruptError):
        load(content)


def test_an_sqlite_file_that_is_no_session_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("create table sessions (x text)")
    db.commit()
    db.close()

    with pytest.raises(SessionCorruptError, match="neither a Telethon nor a Pyrogram"):
        detect(path)
    with pytest.raises(SessionCorruptError, match="not a Telethon session"):
        from_telethon_sqlite(path)


def test_errors_never_quote_the_secret() -> None:
    string = telethon_string(2, "149.154.167.51", 443)
    broken = string[:200] + "!" + string[201:]

    with pytest.raises(SessionCorruptError) as caught:
        from_telethon_string(broken)

    assert string[1:40] not in str(caught.value)


def test_a_session_without_a_key_cannot_be_exported() -> None:
    with pytest.raises(ValueError, match="no auth key"):
        to_gotd_json(signed_in(auth_key=None))


# -- with the local Telegram --------------------------------------------------------------


async def test_an_imported_telethon_session_signs_in_as_the_same_user_without_a_login(
    fake_telegram: FakeTelegram,
) -> None:
    user = fake_telegram.add_user(first_name="Ann")
    telethon = fake_telegram.client(StringSession())
    await telethon.connect()
    await telethon.send_code_request(user.phone)
    await telethon.sign_in(user.phone, fake_telegram.login_code(user.phone))
    exported = telethon.session.save()
    await telethon.disconnect()
    sign_ins = fake_telegram.call_count("auth.signIn")

    storage = MemoryStorage(encode_session(from_telethon_string(exported)))
    client = fake_telegram.client(await StorageSession.open(storage))
    await client.connect()
    me = await client.get_me()
    await client.disconnect()

    assert me.id == user.id
    assert fake_telegram.call_count("auth.signIn") == sign_ins
