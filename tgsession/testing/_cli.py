"""``python -m tgsession.testing``: run a fake Telegram by hand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

from ._server import FakeTelegram
from ._world import normalize_phone


def _print(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


async def serve(
    *,
    users: Sequence[str] = (),
    bots: Sequence[str] = (),
    print_codes: bool = False,
    dc_id: int = 2,
    host: str = "127.0.0.1",
    base_port: int | None = None,
    out: TextIO | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a fake Telegram until ``stop`` is set (or the task is cancelled, or SIGTERM).

    ``users`` are ``PHONE[:USERNAME[:PASSWORD]]`` specs, ``bots`` usernames. Prints where each
    DC listens, the ``TG_DC``/``TG_PUBLIC_KEYS``/``APP_ID``/``APP_HASH`` lines for clients,
    each account (bot tokens included) and, with ``print_codes``, every login code sent.
    Raises ValueError for a bad user spec or bot username, before printing anything.
    """
    stream = out if out is not None else sys.stdout
    stop = stop if stop is not None else asyncio.Event()
    listener = (
        (lambda phone, code: _print(stream, f"code for +{phone}: {code}")) if print_codes else None
    )
    ports = None if base_port is None else {dc: base_port + dc - 1 for dc in range(1, 6)}
    async with FakeTelegram(host=host, ports=ports, code_listener=listener) as tg:
        # Accounts first: a bad spec raises before anything is printed.
        accounts = []
        for spec in users:
            phone, username, password = _user_spec(spec)
            user = tg.add_user(phone, username=username, password=password, dc_id=dc_id)
            accounts.append((user, bool(password)))
        bot_accounts = [tg.add_bot(username, dc_id=dc_id) for username in bots]
        for dc in tg.dc_ids:
            host_, port = tg.dc_address(dc)
            _print(stream, f"DC {dc} listening on {host_}:{port}")
        for key, value in tg.env(dc_id).items():
            _print(stream, f"{key}={value}")
        if bot_accounts:  # ready to paste into .env, like the lines above
            _print(stream, f"BOT_TOKEN={bot_accounts[0].token}")
        for user, has_password in accounts:
            name = f" @{user.username}" if user.username else ""
            _print(stream, f"user +{user.phone}{name} id={user.id}"
                           f"{' (2FA)' if has_password else ''}")
        for bot in bot_accounts:
            _print(stream, f"bot @{bot.username} id={bot.id} token={bot.token}")
        _print(stream, "Fake Telegram ready (Ctrl-C to stop)")
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGTERM)


def _user_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``PHONE[:USERNAME[:PASSWORD]]`` split; ValueError when the phone is not one."""
    phone, _, rest = spec.partition(":")
    username, _, password = rest.partition(":")
    normalize_phone(phone)
    return phone, username or None, password or None


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line: ``tgsession: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"tgsession: error: {message} (see '{self.prog} --help')", file=sys.stderr,
              flush=True)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 after Ctrl-C or SIGTERM).

    Arguments are checked before anything is started or printed; errors are one line on
    stderr (``tgsession: error: ...``) with exit status 2.
    """
    parser = _Parser(
        prog="python -m tgsession.testing",
        description="Run an offline Telegram (a local MTProto server) for Telethon clients.",
    )
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="PHONE[:USERNAME[:PASSWORD]]",
        help="register a user (repeatable)",
    )
    parser.add_argument(
        "--bot",
        action="append",
        default=[],
        metavar="USERNAME",
        help="register a bot (its username ends in 'bot') and print its token (repeatable); "
             "the first one's is printed as a BOT_TOKEN= line too",
    )
    parser.add_argument("--print-codes", action="store_true", help="print login codes as sent")
    parser.add_argument("--dc", type=int, default=2, choices=range(1, 6), metavar="{1..5}",
                        help="home DC of the accounts, and TG_DC (default: 2)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        metavar="BASE",
        help="DC N listens on BASE+N-1 (default: ephemeral ports)",
    )
    args = parser.parse_args(argv)
    for spec in args.user:
        try:
            _user_spec(spec)
        except ValueError:
            parser.error(f"--user {spec!r}: expected PHONE[:USERNAME[:PASSWORD]] with a phone "
                         "number such as +15550001")
    for username in args.bot:
        if not username.lower().endswith("bot"):
            parser.error(f"--bot {username!r}: a bot's username ends in 'bot', e.g. echo_bot")
    if args.port is not None and not 1 <= args.port <= 65535 - 4:
        parser.error(f"--port {args.port}: the five DCs need ports BASE to BASE+4 in 1..65535")
    try:
        asyncio.run(
            serve(
                users=args.user,
                bots=args.bot,
                print_codes=args.print_codes,
                dc_id=args.dc,
                host=args.host,
                base_port=args.port,
            )
        )
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    except (ValueError, OSError) as e:
        print(f"tgsession: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    return 0
