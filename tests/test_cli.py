"""The ``tgsession`` command: ``main()`` in process for most tests, the real program
(``python -m tgsession.cli``) in a subprocess for help, prompts and Ctrl-C; its settings
in a temporary folder and the local Telegram for the commands that connect."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from telethon.sessions import SQLiteSession, StringSession

from tgsession import FileStorage
from tgsession.cli import main
from tgsession.codec import (
    DcAddress,
    SessionData,
    decode_session,
    encode_entity_row,
    encode_session,
    entity_lookup_keys,
)
from tgsession.keys import parse_key
from tgsession.storage._entitylog import HEADER
from tgsession.testing import Account, FakeTelegram

KEY = bytes(range(256))
SETTINGS = ("APP_ID", "APP_HASH", "BOT_TOKEN", "SESSION_FILE", "SESSION_DIR", "SESSION_URL",
            "SESSION_KEY", "TG_PHONE", "TG_PASSWORD", "TG_DC", "TG_PUBLIC_KEYS")
COMMANDS = ("login", "logout", "status", "export", "import", "copy", "keygen",
            "testing-server", "demo")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def tgsession(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: bytes | None = None,
    real: bool = False,
) -> Result:
    """Run the command in ``cwd``, with none of this machine's settings leaking in.

    ``real=True`` runs the installed program (``python -m tgsession.cli``) in a new process;
    otherwise ``main()`` runs in a worker thread of this process with its own environment,
    folder and standard streams (a second faster; one command at a time).
    """
    environ = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    environ.update(env or {})
    if not real:
        return await asyncio.to_thread(_in_process, list(args), cwd, environ, stdin or b"")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tgsession.cli", *args, cwd=cwd, env=environ,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin or b""), 30)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


_ONE_AT_A_TIME = threading.Lock()


def _in_process(args: list[str], cwd: Path, environ: dict[str, str], stdin: bytes) -> Result:
    with _ONE_AT_A_TIME:
        saved_environ, saved_cwd, saved_stdin = dict(os.environ), os.getcwd(), sys.stdin
        out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(2))
        try:
            os.environ.clear()
            os.environ.update(environ)
            os.chdir(cwd)
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(args)
        finally:
            os.environ.clear()
            os.environ.update(saved_environ)
            os.chdir(saved_cwd)
            sys.stdin = saved_stdin
        out.flush()
        err.flush()
        return Result(code, _text(out), _text(err))


def _text(stream: io.TextIOWrapper) -> str:
    raw = stream.buffer
    assert isinstance(raw, io.BytesIO)
    return raw.getvalue().decode()


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tgsession: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def stored(**changes: object) -> SessionData:
    data = SessionData(dc=DcAddress(4, "149.154.167.91", 443), auth_key=KEY, user_id=777,
                       bot=False, entities=[(555, 99, "ann", None, "Ann")])
    for name, value in changes.items():
        setattr(data, name, value)
    return data


async def store(path: Path, data: SessionData) -> None:
    storage = FileStorage(path)
    rows = data.entities or []
    await storage.store_entities(
        [(row[0], encode_entity_row(row), entity_lookup_keys(row)) for row in rows]
    )
    data = SessionData(**{**{f: getattr(data, f) for f in SessionData.__slots__},
                          "entities": None})
    await storage.store_session(encode_session(data))
    await storage.aclose()  # as a process that stored it and exited


async def store_signed_in_user(
    tg: FakeTelegram, session_file: Path
) -> tuple[Account, dict[str, str]]:
    """A user of the local Telegram whose signed-in session is stored in ``session_file``,
    and the settings that point the command at both."""
    user = tg.add_user()
    key = tg.preauthorize(user)
    await store(session_file, stored(dc=DcAddress(key.dc_id, key.host, key.port),
                                     auth_key=key.auth_key, user_id=user.id))
    return user, {**tg.env(), "SESSION_FILE": str(session_file)}


@pytest.fixture
def session_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "session.json"


@pytest.fixture
def env(session_file: Path) -> dict[str, str]:
    return {"SESSION_FILE": str(session_file)}


def telethon_string(key: bytes = KEY) -> str:
    from telethon.crypto import AuthKey

    session = StringSession()
    session.set_dc(4, "149.154.167.91", 443)
    session.auth_key = AuthKey(key)
    value: str = session.save()
    return value


# -- help and usage -----------------------------------------------------------------------


async def test_every_subcommand_has_help(tmp_path: Path) -> None:
    results = await asyncio.gather(
        tgsession("--help", cwd=tmp_path, real=True),
        *(tgsession(command, "--help", cwd=tmp_path) for command in COMMANDS),
    )

    assert all(r.returncode == 0 and "usage:" in r.stdout for r in results), results
    assert all(command in results[0].stdout for command in COMMANDS)


async def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    results = await asyncio.gather(
        tgsession("status", "--no-such-option", cwd=tmp_path),
        tgsession("export", cwd=tmp_path),
        tgsession("frobnicate", cwd=tmp_path),
        tgsession("status", cwd=tmp_path, env={"APP_ID": "not-a-number"}),
        tgsession("status", "--session-url", "ftp://host/x", cwd=tmp_path),
    )

    for result in results:
        assert result.returncode == 2, result
        one_line_error(result)
    assert "APP_ID" in results[3].stderr


async def test_keygen_prints_a_new_session_key(tmp_path: Path) -> None:
    result = await tgsession("keygen", cwd=tmp_path)

    assert result.returncode == 0
    assert parse_key(result.stdout.strip()).kind == "raw"


# -- status -------------------------------------------------------------------------------


async def test_status_shows_the_session_as_a_table_without_secrets(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())

    result = await tgsession("status", cwd=tmp_path, env=env)

    assert result.returncode == 0, result
    table = dict(line.split(None, 1) for line in result.stdout.splitlines()
                 if not line.startswith("last written"))
    assert table["storage"] == str(session_file)
    assert (table["dc"], table["server"], table["port"]) == ("4", "149.154.167.91", "443")
    assert table["account"] == "user 777"
    assert table["entities"] == "1 cached"
    assert table["permissions"] == "0600"
    assert table["lock"] == "free"
    assert "last written" in result.stdout
    assert telethon_string()[1:30] not in result.stdout + result.stderr


async def test_status_json_is_for_scripts(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored(bot=True))

    result = await tgsession("status", "--json", cwd=tmp_path, env=env)

    info = json.loads(result.stdout)
    assert info["stored"] is True and info["dc_id"] == 4 and info["port"] == 443
    assert (info["user_id"], info["bot"], info["entities"]) == (777, True, 1)
    assert info["permissions"] == "0600" and info["lock_holder"] is None


async def test_status_counts_the_cache_without_reading_a_row(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored(entities=[]))
    # Rows no decoder would accept: counting them must not read them.
    storage = FileStorage(session_file)
    await storage.store_entities([(i, b"\xff not a row", ()) for i in range(7000)])
    await storage.aclose()

    result = await tgsession("status", "--json", cwd=tmp_path, env=env)

    assert result.returncode == 0, result
    info = json.loads(result.stdout)
    assert info["entities"] == 7000 and info["entities_error"] is None


@pytest.mark.parametrize("damage", ["mode 0644", "not a database", "old log at 0644"])
async def test_status_says_when_the_entity_cache_cannot_be_read(
    tmp_path: Path, session_file: Path, env: dict[str, str], damage: str
) -> None:
    await store(session_file, stored())
    database = FileStorage(session_file).entities_path
    if damage == "mode 0644":
        database.chmod(0o644)
    elif damage == "not a database":
        for suffix in ("-wal", "-shm"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        database.write_bytes(b"garbage" * 1000)
    else:
        for suffix in ("", "-wal", "-shm"):
            database.with_name(database.name + suffix).unlink(missing_ok=True)
        legacy = FileStorage(session_file).legacy_entities_path
        legacy.write_bytes(HEADER)
        legacy.chmod(0o644)

    table_result = await tgsession("status", cwd=tmp_path, env=env)
    json_result = await tgsession("status", "--json", cwd=tmp_path, env=env)

    assert table_result.returncode == 0, table_result
    table = dict(line.split(None, 1) for line in table_result.stdout.splitlines())
    assert table["entities"].startswith("UNREADABLE: "), table["entities"]
    expected = "not a database" if damage == "not a database" else "chmod 600"
    assert expected in table["entities"]
    info = json.loads(json_result.stdout)
    assert info["entities"] is None and expected in info["entities_error"]


async def test_status_reads_without_taking_the_lock(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())
    lease = await FileStorage(session_file).acquire()
    try:
        result = await tgsession("status", "--json", cwd=tmp_path, env=env)
    finally:
        await lease.release()

    assert result.returncode == 0, result
    assert f"pid {os.getpid()}" in json.loads(result.stdout)["lock_holder"]


async def test_status_without_a_session_exits_1_and_creates_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = await tgsession("status", cwd=tmp_path, env=env)

    assert result.returncode == 1
    assert "none stored" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


async def test_status_check_asks_telegram_whether_the_session_still_works(
    tmp_path: Path, session_file: Path, fake_telegram: FakeTelegram
) -> None:
    user, env = await store_signed_in_user(fake_telegram, session_file)

    valid = await tgsession("status", "--check", cwd=tmp_path, env=env)
    fake_telegram.revoke(user)
    revoked = await tgsession("status", "--check", "--json", cwd=tmp_path, env=env)

    assert valid.returncode == 0 and "yes" in valid.stdout, valid
    assert revoked.returncode == 1 and json.loads(revoked.stdout)["authorized"] is False


# -- import and export --------------------------------------------------------------------


async def test_a_telethon_string_imported_from_stdin_exports_back_identical(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    string = telethon_string()

    imported = await tgsession("import", "-", cwd=tmp_path, env=env, stdin=string.encode())
    exported = await tgsession("export", "--format", "telethon-string", cwd=tmp_path, env=env)

    assert imported.returncode == 0, imported
    assert "Telethon string session" in imported.stdout and string[1:30] not in imported.stdout
    assert exported.stdout.strip() == string
    assert StringSession(exported.stdout.strip()).auth_key.key == KEY
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600


async def test_import_refuses_to_replace_a_stored_session_without_force(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored(user_id=1))
    source = tmp_path / "telethon.txt"
    source.write_text(telethon_string())

    refused = await tgsession("import", str(source), cwd=tmp_path, env=env)
    untouched = decode_session(await FileStorage(session_file).load_session())
    forced = await tgsession("import", str(source), "--force", cwd=tmp_path, env=env)

    assert refused.returncode == 1 and "--force" in one_line_error(refused)
    assert untouched.user_id == 1
    assert forced.returncode == 0
    assert decode_session(await FileStorage(session_file).load_session()).user_id is None


async def test_exports_to_files_are_private_and_read_by_the_peers(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())
    gotd, telethon = tmp_path / "gotd.json", tmp_path / "telethon.session"

    results = await asyncio.gather(
        tgsession("export", "--format", "gotd-json", str(gotd), cwd=tmp_path, env=env),
        tgsession("export", "--format", "telethon-sqlite", str(telethon), cwd=tmp_path, env=env),
    )

    assert all(r.returncode == 0 for r in results), results
    assert stat.S_IMODE(gotd.stat().st_mode) == stat.S_IMODE(telethon.stat().st_mode) == 0o600
    session = SQLiteSession(str(telethon))
    assert session.auth_key.key == KEY and session.dc_id == 4
    assert session.get_entity_rows_by_username("ann") == (555, 99)
    session.close()
    back = await tgsession("import", str(gotd), "--session-file", str(tmp_path / "b.json"),
                           cwd=tmp_path)
    assert back.returncode == 0 and "gotd" in back.stdout


async def test_export_refuses_an_existing_file_without_force(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())
    out = tmp_path / "out.txt"
    out.write_text("keep me")

    result = await tgsession("export", "--format", "telethon-string", str(out), cwd=tmp_path,
                             env=env)

    assert result.returncode == 1 and "--force" in one_line_error(result)
    assert out.read_text() == "keep me"


async def test_a_pyrogram_export_needs_an_api_id(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())

    missing, given = await asyncio.gather(
        tgsession("export", "--format", "pyrogram-string", cwd=tmp_path, env=env),
        tgsession("export", "--format", "pyrogram-string", "--api-id", "12345", cwd=tmp_path,
                  env=env),
    )

    assert missing.returncode == 2 and "APP_ID" in one_line_error(missing)
    assert given.returncode == 0 and len(given.stdout.strip()) == 362


async def test_importing_something_else_is_a_clear_one_line_error(
    tmp_path: Path, env: dict[str, str]
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, this is not a session\n")

    results = await asyncio.gather(
        tgsession("import", str(junk), cwd=tmp_path, env=env),
        tgsession("import", str(tmp_path / "missing.session"), cwd=tmp_path, env=env),
        tgsession("import", "-", "--format", "gotd-json", cwd=tmp_path, env=env,
                  stdin=telethon_string().encode()),
    )

    for result in results:
        assert result.returncode == 1, result
        line = one_line_error(result)
        assert telethon_string()[1:30] not in line
    assert "not a session this tool knows" in results[0].stderr
    assert "no such file" in results[1].stderr


# -- copy and logout ----------------------------------------------------------------------


async def test_copy_moves_the_session_and_refuses_to_overwrite_without_force(
    tmp_path: Path, session_file: Path
) -> None:
    await store(session_file, stored())
    target = tmp_path / "copy" / "session.json"
    src, dst = f"file://{session_file}", f"file://{target}"

    first = await tgsession("copy", src, dst, cwd=tmp_path)
    again = await tgsession("copy", src, dst, cwd=tmp_path)
    forced = await tgsession("copy", src, dst, "--force", cwd=tmp_path)

    assert first.returncode == 0, first
    assert again.returncode == 1 and "--force" in one_line_error(again)
    assert forced.returncode == 0
    copy = FileStorage(target)
    assert decode_session(await copy.load_session()).user_id == 777
    assert await copy.count_entities() == 1
    ann = (555, 99, "ann", None, "Ann")
    assert await copy.find_entity("username:ann") == (555, encode_entity_row(ann))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def many_rows(count: int) -> list[tuple[int, int, str | None, str | None, str | None]]:
    return [(1000 + i, i * 7, f"user{i}", f"1555{i:07d}" if i % 2 else None, f"User {i}")
            for i in range(count)]


async def test_copy_streams_a_cache_bigger_than_a_batch(
    tmp_path: Path, session_file: Path
) -> None:
    rows = many_rows(6_001)
    await store(session_file, stored(entities=rows))
    target = tmp_path / "copy" / "session.json"

    result = await tgsession("copy", f"file://{session_file}", f"file://{target}", cwd=tmp_path)

    assert result.returncode == 0, result
    assert "6001 cached entities" in result.stdout
    copy = FileStorage(target)
    assert await copy.count_entities() == len(rows)
    assert await copy.find_entity("username:user6000") == (7000, encode_entity_row(rows[-1]))
    assert await copy.find_entity("phone:15550000001") == (1001, encode_entity_row(rows[1]))


async def test_telethon_session_export_and_import_stream_the_whole_cache(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    from telethon.sessions import SQLiteSession

    rows = many_rows(6_001)
    await store(session_file, stored(entities=rows))
    exported = tmp_path / "out.session"

    export = await tgsession("export", "--format", "telethon-sqlite", str(exported),
                             cwd=tmp_path, env=env)

    assert export.returncode == 0, export
    telethon = SQLiteSession(str(exported))
    try:
        assert telethon.get_entity_rows_by_username("user6000") == (7000, 6000 * 7)
        assert telethon.get_entity_rows_by_id(1000) == (1000, 0)
        count = telethon._cursor().execute("select count(*) from entities").fetchone()[0]
        assert count == len(rows)
    finally:
        telethon.close()

    target = tmp_path / "imported" / "session.json"
    imported = await tgsession("import", str(exported), cwd=tmp_path,
                               env={**env, "SESSION_FILE": str(target)})

    assert imported.returncode == 0, imported
    assert "6001 cached entities" in imported.stdout
    storage = FileStorage(target)
    assert decode_session(await storage.load_session()).entities is None  # rows kept apart
    assert await storage.count_entities() == len(rows)
    assert await storage.find_entity("username:user7") == (1007, encode_entity_row(rows[7]))


async def test_logout_local_only_removes_the_stored_session(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())

    result = await tgsession("logout", "--local-only", cwd=tmp_path, env=env)

    assert result.returncode == 0, result
    assert not session_file.exists()
    assert await FileStorage(session_file).count_entities() == 0


async def test_logout_ends_the_session_on_telegram(
    tmp_path: Path, session_file: Path, fake_telegram: FakeTelegram
) -> None:
    _, env = await store_signed_in_user(fake_telegram, session_file)

    result = await tgsession("logout", cwd=tmp_path, env=env)

    assert result.returncode == 0, result
    assert fake_telegram.call_count("auth.logOut") == 1
    assert not session_file.exists()


# -- login --------------------------------------------------------------------------------


async def read_until(stream: asyncio.StreamReader, text: str) -> str:
    seen = b""
    while text.encode() not in seen:
        chunk = await asyncio.wait_for(stream.read(200), 15)
        assert chunk, f"output ended before {text!r}: {seen.decode()!r}"
        seen += chunk
    return seen.decode()


async def start_login(tmp_path: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    environ = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tgsession.cli", "login", cwd=tmp_path, env={**environ, **env},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_login_asks_on_the_terminal_once_then_never_again(
    tmp_path: Path, session_file: Path, fake_telegram: FakeTelegram
) -> None:
    user: Account = fake_telegram.add_user(first_name="Ann")
    env = {**fake_telegram.env(), "SESSION_FILE": str(session_file)}
    process = await start_login(tmp_path, env)
    assert process.stdin is not None and process.stdout is not None

    await read_until(process.stdout, "Phone number")
    process.stdin.write(f"+{user.phone}\n".encode())
    await read_until(process.stdout, "Login code")
    process.stdin.write(f"{fake_telegram.login_code(user.phone)}\n".encode())
    out, err = await asyncio.wait_for(process.communicate(), 15)
    again = await tgsession("login", cwd=tmp_path, env=env)

    assert process.returncode == 0, err
    assert f"Signed in as Ann (id {user.id})" in out.decode()
    assert again.returncode == 0 and "Already signed in as Ann" in again.stdout
    assert fake_telegram.call_count("auth.signIn") == 1
    assert fake_telegram.call_count("auth.sendCode") == 1


async def test_login_as_a_bot_uses_the_token_once(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    bot = fake_telegram.add_bot("cli_test_bot")
    env = {**fake_telegram.env(), "BOT_TOKEN": str(bot.token)}

    first = await tgsession("login", "--bot", cwd=tmp_path, env=env)
    second = await tgsession("login", "--bot", cwd=tmp_path, env=env)
    status = await tgsession("status", "--json", cwd=tmp_path, env=env)

    assert first.returncode == 0 and "Signed in as @cli_test_bot" in first.stdout, first
    assert second.returncode == 0 and "Already signed in" in second.stdout
    assert fake_telegram.call_count("auth.importBotAuthorization") == 1
    info = json.loads(status.stdout)
    assert info["storage"].endswith(f"bot-{bot.id}.json") and info["bot"] is True
    assert str(bot.token) not in first.stdout + first.stderr + second.stdout + status.stdout


async def test_ctrl_c_at_a_prompt_exits_130_and_leaves_storage_as_it_was(
    tmp_path: Path, session_file: Path, fake_telegram: FakeTelegram
) -> None:
    env = {**fake_telegram.env(), "SESSION_FILE": str(session_file)}
    process = await start_login(tmp_path, env)
    assert process.stdout is not None

    await read_until(process.stdout, "Phone number")
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 15)

    assert process.returncode == 130
    assert "Traceback" not in err.decode() and "interrupted" in err.decode()
    assert not session_file.exists()


# -- demo ---------------------------------------------------------------------------------


async def test_demo_shows_a_bot_that_logs_in_once(tmp_path: Path) -> None:
    result = await tgsession("demo", cwd=tmp_path)

    assert result.returncode == 0, result
    assert "auth.importBotAuthorization calls: 1" in result.stdout
    assert "calls still 1, the stored session was reused" in result.stdout
    assert "(mode 0600)" in result.stdout
    assert "Demo passed" in result.stdout


async def test_encrypt_seals_a_plain_session_in_place(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())
    plain = session_file.read_bytes()
    key = (await tgsession("keygen", cwd=tmp_path)).stdout.strip()

    refused = await tgsession("status", cwd=tmp_path, env={**env, "SESSION_KEY": key})
    assert refused.returncode != 0 and "tgsession encrypt" in refused.stderr
    assert session_file.read_bytes() == plain  # refused, untouched

    done = await tgsession("encrypt", cwd=tmp_path, env={**env, "SESSION_KEY": key})
    assert done.returncode == 0, done
    assert session_file.read_bytes().startswith(b"TGSE")
    status = await tgsession("status", cwd=tmp_path, env={**env, "SESSION_KEY": key})
    assert status.returncode == 0 and "(encrypted)" in status.stdout


async def test_encrypt_without_a_key_says_how_to_make_one(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = await tgsession("encrypt", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "tgsession keygen" in result.stderr


async def test_logout_local_only_removes_a_damaged_session(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())
    session_file.write_bytes(b"damaged beyond decoding")
    result = await tgsession("logout", "--local-only", cwd=tmp_path, env=env)
    assert result.returncode == 0, result
    assert not session_file.exists()


async def test_telethon_sqlite_export_to_stdout_is_a_usage_error(
    tmp_path: Path, session_file: Path, env: dict[str, str]
) -> None:
    await store(session_file, stored())
    result = await tgsession("export", "--format", "telethon-sqlite", "-", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "writes a file" in one_line_error(result)
