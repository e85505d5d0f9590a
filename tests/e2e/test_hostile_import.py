"""Imports that used to crash every start: a Telethon session file with an update date
far in the future, and a tgsession document with an entity id outside int64. The import
runs as the real command in a new process, then a real client starts in another."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.test_cli import one_line_error, tgsession
from tgsession.codec import DcAddress, SessionData, encode_session
from tgsession.formats import to_telethon_sqlite
from tgsession.testing import FakeTelegram

from .conftest import start_program


async def test_telethon_file_with_a_far_future_date_imports_and_the_client_starts(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user = tg.add_user()
    key = tg.preauthorize(user)
    telethon_file = tmp_path / "old.session"
    to_telethon_sqlite(SessionData(dc=DcAddress(key.dc_id, key.host, key.port),
                                   auth_key=key.auth_key), telethon_file)
    db = sqlite3.connect(telethon_file)
    with db:  # what a hostile or broken file can hold
        db.execute("insert into update_state values (0, 5, 0, 1000000000000, 1)")
        db.execute("insert into update_state values (77, 4294967296, 0, 0, 0)")
        db.execute("insert into entities values (5, 'not a hash', 'x', NULL, NULL, 0)")
    db.close()
    session_file = tmp_path / "session.json"
    env = {"SESSION_FILE": str(session_file)}

    imported = await tgsession("import", str(telethon_file), cwd=tmp_path, env=env, real=True)
    assert imported.returncode == 0, imported.stderr
    status = await tgsession("status", "--json", cwd=tmp_path, env=env, real=True)
    assert status.returncode == 0, status.stderr

    client = await start_program({**tg.env(), "SESSION_FILE": str(session_file)}, "user")
    assert (await client.result())["id"] == user.id
    code, stderr = await client.finish()
    assert code == 0, stderr
    assert tg.call_count("auth.sendCode") == 0


async def test_entity_id_outside_int64_is_a_one_line_refusal(tmp_path: Path) -> None:
    doc = json.loads(encode_session(SessionData(
        dc=DcAddress(2, "149.154.167.51", 443), auth_key=bytes(256), user_id=1, bot=False,
        entities=[(1, 2, None, None, None)])))
    doc["entities"]["rows"][0][0] = 2**64
    source = tmp_path / "crafted.json"
    source.write_text(json.dumps(doc))
    env = {"SESSION_FILE": str(tmp_path / "session.json")}
    result = await tgsession("import", str(source), cwd=tmp_path, env=env, real=True)
    assert result.returncode != 0
    assert "entities.rows item id must be at most" in one_line_error(result)
    assert not (tmp_path / "session.json").exists()
