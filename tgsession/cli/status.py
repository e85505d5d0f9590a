"""``tgsession status``: where the session is and what it holds, without taking its lock."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import stat
from typing import TYPE_CHECKING, Any

from .._errors import SessionLockedError, TgSessionError
from ._context import Context

if TYPE_CHECKING:
    from ..codec import SessionData
    from ..storage.base import Storage

__all__ = ["register"]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "status", parents=[common], help="show where the session is stored and what it holds",
        description="Show the session's place, DC, signed-in account, size of the entity "
                    "cache, file mode and lock holder. Reads without locking and without "
                    "connecting (unless --check). Exit status 1 when no session is stored, "
                    "or with --check when it is no longer authorized.",
    )
    parser.add_argument("--bot", action="store_true", help="the bot session of BOT_TOKEN")
    parser.add_argument("--check", action="store_true",
                        help="connect and check that Telegram still accepts the session")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_status)


async def _status(args: argparse.Namespace) -> int:
    from ._stored import read_stored

    ctx = Context.from_args(args)
    settings = ctx.settings()
    storage = ctx.storage()
    data = await read_stored(storage)
    entities, entities_error = await _entity_count(storage, data)
    info: dict[str, Any] = {
        "storage": ctx.where(),
        "encrypted": settings.session_key is not None,
        "stored": data is not None,
        "dc_id": data.dc.id if data and data.dc else None,
        "server_address": data.dc.address if data and data.dc else None,
        "port": data.dc.port if data and data.dc else None,
        "auth_key": bool(data and data.auth_key),
        "user_id": data.user_id if data else None,
        "bot": data.bot if data else None,
        "entities": entities,
        "entities_error": entities_error,
        **await _file_facts(storage),
    }
    ok = data is not None
    if args.check:
        info["authorized"] = authorized = await _check(ctx) if data and data.auth_key else False
        ok = ok and authorized
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_table(info)
    return 0 if ok else 1


async def _entity_count(
    storage: Storage, data: SessionData | None
) -> tuple[int | None, str | None]:
    """The number of cached entities, counted by the storage (no row is read), or why the
    cache cannot be read: an unreadable cache is reported, never shown as empty."""
    from ._stored import count_stored_rows

    if data is None:
        return None, None
    try:
        return await count_stored_rows(storage, data), None
    except TgSessionError as exc:
        return None, str(exc)


async def _file_facts(storage: Storage) -> dict[str, Any]:
    """Modification time and mode of the session file, and the lock holder, when the
    storage (or the one it wraps) is a file."""
    facts: dict[str, Any] = {"last_written": None, "permissions": None, "lock_holder": None}
    inner: Any = storage
    while not hasattr(inner, "lock_holder") and hasattr(inner, "inner"):
        inner = inner.inner
    path = getattr(inner, "path", None)
    if path is not None:
        try:
            info = os.stat(path)
        except OSError:
            pass
        else:
            written = datetime.datetime.fromtimestamp(info.st_mtime, tz=datetime.timezone.utc)
            facts["last_written"] = written.astimezone().isoformat(timespec="seconds")
            facts["permissions"] = f"{stat.S_IMODE(info.st_mode):04o}"
    lock_holder = getattr(inner, "lock_holder", None)
    if lock_holder is not None:
        facts["lock_holder"] = await lock_holder()
    return facts


async def _check(ctx: Context) -> bool:
    from ..environment import client_from_environment
    from ._context import CliError

    try:
        client = await client_from_environment(**ctx.factory_overrides(), connection_retries=1)
    except SessionLockedError as exc:
        raise CliError(f"cannot check while another program uses the session: {exc}") from None
    try:
        try:
            await client.connect()
        except (OSError, ConnectionError) as exc:
            raise CliError(f"cannot reach Telegram ({type(exc).__name__})") from None
        try:
            me = await client.get_me()
        except Exception:
            me = None
        return me is not None
    finally:
        await client.disconnect()


def _print_table(info: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = [("storage", info["storage"])]
    if not info["stored"]:
        rows.append(("session", "none stored (sign in with 'tgsession login')"))
    else:
        if info["dc_id"] is not None:
            rows += [("dc", str(info["dc_id"])), ("server", str(info["server_address"])),
                     ("port", str(info["port"]))]
        else:
            rows.append(("dc", "not chosen yet"))
        rows.append(("account", _account(info)))
        if info["entities_error"] is not None:
            rows.append(("entities", f"UNREADABLE: {info['entities_error']}"))
        else:
            rows.append(("entities", f"{info['entities']} cached"))
    if info["last_written"] is not None:
        rows.append(("last written", info["last_written"]))
    if info["permissions"] is not None:
        rows.append(("permissions", info["permissions"]))
    if info["lock_holder"] or info["permissions"] is not None:
        rows.append(("lock", f"held by {info['lock_holder']}" if info["lock_holder"] else "free"))
    if "authorized" in info:
        rows.append(("authorized", "yes (checked with Telegram)" if info["authorized"]
                     else "NO: sign in again with 'tgsession login'"))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _account(info: dict[str, Any]) -> str:
    if not info["auth_key"]:
        return "not signed in (no auth key)"
    if info["user_id"] is None:
        return "has an auth key; account not known yet (recorded on the next start)"
    return f"{'bot' if info['bot'] else 'user'} {info['user_id']}"
