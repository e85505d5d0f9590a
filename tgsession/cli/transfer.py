"""``tgsession import``, ``export`` and ``copy``: sessions in and out of other formats
and between storages."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from .._errors import SessionCorruptError
from ..codec import EntityRow, SessionData, encode_session
from ._context import EXIT_USAGE, CliError, Context, err

__all__ = ["register"]

_NOT_A_PATH_LENGTH = 100  # longer arguments may be session strings: never quote them


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    from ..formats import EXPORT_FORMATS, IMPORT_FORMATS

    export = subparsers.add_parser(
        "export", parents=[common], help="write the session in another library's format",
        description="Write the stored session as a Telethon string session or .session file, "
                    "a Pyrogram session string, gotd JSON or tgsession JSON. The output is "
                    "a secret: it signs in as the account. Files are created 0600.",
    )
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                        help="the output format")
    export.add_argument("out", nargs="?", metavar="OUT",
                        help="output file (default: standard output; required for "
                             "telethon-sqlite)")
    export.add_argument("--api-id", type=int, metavar="ID",
                        help="app id to put in a Pyrogram session string (default: APP_ID)")
    export.add_argument("--force", action="store_true", help="replace OUT if it exists")
    export.add_argument("--bot", action="store_true", help="the bot session of BOT_TOKEN")
    export.set_defaults(func=_export)

    imp = subparsers.add_parser(
        "import", parents=[common], help="store a session from Telethon, Pyrogram or gotd",
        description="Store a session made by another library: a Telethon string session or "
                    ".session file, a Pyrogram / kurigram session string or .session file, "
                    "gotd session JSON, or tgsession JSON. The format is detected. SOURCE is "
                    "a file, or - for standard input (keeps a session string out of your "
                    "shell history).",
    )
    imp.add_argument("source", metavar="SOURCE", help="a file, - for standard input, or a "
                                                      "session string")
    imp.add_argument("--format", choices=list(IMPORT_FORMATS),
                     help="the source's format (default: detected)")
    imp.add_argument("--force", action="store_true", help="replace a session stored already")
    imp.add_argument("--bot", action="store_true", help="the bot session of BOT_TOKEN")
    imp.set_defaults(func=_import)

    copy = subparsers.add_parser(
        "copy", help="copy a session from one storage to another",
        description="Copy the session (and its entity cache) between storages given as URLs "
                    "(file:///path, file:relative/path, redis://..., postgresql://...). When "
                    "SESSION_KEY is set, both sides are encrypted with it. Both storages are "
                    "locked during the copy. Use only one copy at a time: Telegram burns a key "
                    "used from two places at once.",
    )
    copy.add_argument("src", metavar="SRC_URL", help="storage URL to copy from")
    copy.add_argument("dst", metavar="DST_URL", help="storage URL to copy to")
    copy.add_argument("--force", action="store_true", help="replace a session stored at DST")
    copy.add_argument("--env-file", metavar="PATH", default=argparse.SUPPRESS,
                      help="read SESSION_KEY from this file (default: the nearest .env)")
    copy.set_defaults(func=_copy)


# -- export -------------------------------------------------------------------------------


async def _export(args: argparse.Namespace) -> int:
    from ._stored import read_stored, stored_rows

    ctx = Context.from_args(args)
    where = ctx.where()
    if args.format == "telethon-sqlite" and args.out in (None, "-"):
        raise CliError("--format telethon-sqlite writes a file: give OUT, e.g. "
                       "'tgsession export --format telethon-sqlite bot.session'", EXIT_USAGE)
    api_id = args.api_id if args.api_id is not None else ctx.settings().api_id
    if args.format == "pyrogram-string" and api_id is None:
        raise CliError("a Pyrogram session string holds the app's api_id: set APP_ID or "
                       "pass --api-id", EXIT_USAGE)
    out = Path(args.out) if args.out not in (None, "-") else None
    if out is not None and out.exists() and not args.force:
        raise CliError(f"{out} exists; add --force to replace it")
    storage = ctx.storage()
    data = await read_stored(storage)
    if data is None:
        raise CliError(f"no session is stored in {where}; sign in with 'tgsession login'")
    if data.auth_key is None:
        raise CliError(f"the session in {where} is not signed in (no auth key): nothing to "
                       "export")
    try:
        if args.format == "telethon-sqlite":
            assert out is not None
            from ..formats.telethon import telethon_sqlite_writer

            # The entity cache goes over batch by batch: bounded memory at any size.
            with telethon_sqlite_writer(data, out) as add_entities:
                async for rows in stored_rows(storage, data):
                    add_entities(rows)
        else:
            if args.format == "tgsession-json" and data.entities is None:
                # A tgsession document on its own holds its entity rows inline.
                inline = [row async for rows in stored_rows(storage, data) for row in rows]
                data = dataclasses.replace(data, entities=inline)
            _write_output(_render(args.format, data, api_id), out)
    except ValueError as exc:
        raise CliError(f"cannot export as {args.format}: {exc}") from None
    if out is not None:
        err(f"wrote the session as {args.format} to {out} (mode 0600); it is a secret")
    return 0


def _render(fmt: str, data: SessionData, api_id: int | None) -> bytes:
    from ..formats import to_gotd_json, to_pyrogram_string, to_telethon_string

    if fmt == "telethon-string":
        return to_telethon_string(data).encode("ascii") + b"\n"
    if fmt == "pyrogram-string":
        assert api_id is not None
        return to_pyrogram_string(data, api_id).encode("ascii") + b"\n"
    if fmt == "gotd-json":
        return to_gotd_json(data)
    return encode_session(data) + b"\n"


def _write_output(payload: bytes, out: Path | None) -> None:
    if out is None:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    from ..storage.file import write_private_file

    write_private_file(out, payload)


# -- import -------------------------------------------------------------------------------


async def _import(args: argparse.Namespace) -> int:
    from ..formats import IMPORT_FORMATS, load

    ctx = Context.from_args(args)
    if _is_sqlite_file(args.source) and args.format in (None, "telethon-sqlite"):
        # A .session file may hold a million entities: stream them, never load them.
        from ..formats.telethon import open_telethon_sqlite

        try:
            with open_telethon_sqlite(args.source) as opened:
                if opened is not None:
                    data, rows = opened
                    count = await _store_imported(ctx, args, data, str(args.source), rows)
                    _report_import(IMPORT_FORMATS["telethon-sqlite"], data, count, ctx.where())
                    return 0
        except SessionCorruptError as exc:
            raise CliError(str(exc)) from None
    content, name = _read_source(args.source)
    try:
        fmt, data = load(content, format=args.format, name=name)
    except SessionCorruptError as exc:
        raise CliError(str(exc)) from None
    count = await _store_imported(ctx, args, data, name, None)
    _report_import(IMPORT_FORMATS[fmt], data, count, ctx.where())
    return 0


async def _store_imported(
    ctx: Context,
    args: argparse.Namespace,
    data: SessionData,
    name: str,
    rows: Iterator[list[EntityRow]] | None,
) -> int:
    from ._stored import replace_session

    if data.auth_key is None:
        raise CliError(f"{name} holds no auth key (it is not signed in): nothing to import")
    return await replace_session(
        ctx.storage(), data, force=args.force, where=ctx.where(),
        rows=None if rows is None else _as_async(rows),
    )


async def _as_async(batches: Iterator[list[EntityRow]]) -> AsyncIterator[list[EntityRow]]:
    for batch in batches:  # a batch read from a local file: a short, bounded block
        yield batch


def _report_import(kind: str, data: SessionData, count: int, where: str) -> None:
    account = (f"{'bot' if data.bot else 'user'} {data.user_id}" if data.user_id is not None
               else "account recorded on first use")
    dc = f"DC {data.dc.id} at {data.dc.address}:{data.dc.port}" if data.dc else "no DC"
    print(f"Imported {kind} ({dc}, {account}, {count} cached entities) into {where}.")
    print("Stop using the original: Telegram burns a key used from two places at once.")


def _is_sqlite_file(source: str) -> bool:
    from ..formats._sqlite import SQLITE_MAGIC

    if source == "-" or len(source) >= _NOT_A_PATH_LENGTH:
        return False
    try:
        with open(source, "rb") as file:
            return file.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except (OSError, ValueError):
        return False


def _read_source(source: str) -> tuple[bytes, str]:
    if source == "-":
        return sys.stdin.buffer.read(), "standard input"
    path = Path(source)
    try:
        if path.is_file():
            return path.read_bytes(), str(path)
    except OSError as exc:
        if len(source) < _NOT_A_PATH_LENGTH:
            raise CliError(f"cannot read {source}: {exc.strerror}") from None
    if len(source) >= _NOT_A_PATH_LENGTH:
        return source.encode("utf-8", "replace"), "the session string given"
    raise CliError(f"{source}: no such file (give a session file, - for standard input, or "
                   "a session string)")


# -- copy ---------------------------------------------------------------------------------


async def _copy(args: argparse.Namespace) -> int:
    from ..environment import read_settings
    from ..storage.url import redact_url, storage_from_url
    from ._stored import leased, read_stored, replace_session, stored_rows

    settings = read_settings(dotenv=args.env_file)
    src_where, dst_where = redact_url(args.src), redact_url(args.dst)
    src, dst = storage_from_url(args.src), storage_from_url(args.dst)
    if settings.session_key is not None:
        from ..storage.encrypted import EncryptedStorage

        src = EncryptedStorage(src, settings.session_key)
        dst = EncryptedStorage(dst, settings.session_key)
    if src_where == dst_where:
        raise CliError("SRC_URL and DST_URL name the same storage", EXIT_USAGE)
    async with leased(src):
        data = await read_stored(src)
        if data is None:
            raise CliError(f"no session is stored in {src_where}")
        # Rows stream from one storage to the other, a batch in memory at a time.
        count = await replace_session(dst, data, force=args.force, where=dst_where,
                                      rows=stored_rows(src, data))
    print(f"Copied the session ({count} cached entities) from {src_where} "
          f"to {dst_where}.")
    print("Use only one of them at a time: Telegram burns a key used from two places at once.")
    return 0
