"""A gotd session as gotd's client writes it (``Addr`` empty, the address in
``Config.DCOptions``) imports and connects to that address: here the offline Telegram on
loopback, where the production table would time out."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from tests.test_cli import tgsession
from tgsession.testing import FakeTelegram

from .conftest import start_program


async def test_gotd_session_connects_to_the_address_in_its_dc_options(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user = tg.add_user()
    key = tg.preauthorize(user)
    option = {"Flags": 0, "Ipv6": False, "MediaOnly": False, "TCPObfuscatedOnly": False,
              "CDN": False, "Static": False, "ThisPortOnly": False, "ID": key.dc_id,
              "IPAddress": key.host, "Port": key.port, "Secret": None}
    media = {**option, "MediaOnly": True, "Flags": 2, "Port": 1}
    document = {"Version": 1, "Data": {
        "Config": {"ThisDC": key.dc_id, "TestMode": False, "DCOptions": [media, option]},
        "DC": key.dc_id, "Addr": "",
        "AuthKey": base64.b64encode(key.auth_key).decode(),
        "AuthKeyID": base64.b64encode(hashlib.sha1(key.auth_key).digest()[12:20]).decode(),
        "Salt": 0}}
    source = tmp_path / "gotd.json"
    source.write_text(json.dumps(document))
    session_file = tmp_path / "session.json"

    imported = await tgsession("import", str(source), cwd=tmp_path,
                               env={"SESSION_FILE": str(session_file)}, real=True)
    assert imported.returncode == 0, imported.stderr
    assert f"at {key.host}:{key.port}" in imported.stdout

    client = await start_program({**tg.env(), "SESSION_FILE": str(session_file)}, "user")
    assert (await client.result())["id"] == user.id
    assert (await client.finish())[0] == 0
    assert tg.call_count("auth.sendCode") == 0
