"""``python -m tgsession.testing``: run a fake Telegram by hand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from ._server import FakeTelegram


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
    Raises ValueError for a bad user spec.
    """
    stream = out if out is not None else sys.stdout
    stop = stop if stop is not None else asyncio.Event()
    listener = (
        (lambda phone, code: _print(stream, f"code for +{phone}: {code}")) if print_codes else None
    )
    ports = None if base_port is None else {dc: base_port + dc - 1 for dc in range(1, 6)}
    async with FakeTelegram(host=host, ports=ports, code_listener=listener) as tg:
        for dc in tg.dc_ids:
            host_, port = tg.dc_address(dc)
            _print(stream, f"DC {dc} listening on {host_}:{port}")
        for key, value in tg.env(dc_id).items():
            _print(stream, f"{key}={value}")
        for spec in users:
            phone, _, rest = spec.partition(":")
            username, _, password = rest.partition(":")
            user = tg.add_user(
                phone, username=username or None, password=password or None, dc_id=dc_id
            )
            name = f" @{user.username}" if user.username else ""
            _print(stream, f"user +{user.phone}{name} id={user.id}{' (2FA)' if password else ''}")
        for username in bots:
            bot = tg.add_bot(username, dc_id=dc_id)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 after Ctrl-C or SIGTERM)."""
    parser = argparse.ArgumentParser(
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
        help="register a bot and print its token (repeatable)",
    )
    parser.add_argument("--print-codes", action="store_true", help="print login codes as sent")
    parser.add_argument("--dc", type=int, default=2, help="home DC of the accounts, and TG_DC")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        metavar="BASE",
        help="DC N listens on BASE+N-1 (default: ephemeral ports)",
    )
    args = parser.parse_args(argv)
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
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
