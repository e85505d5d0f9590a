"""``tgsession testing-server``: the offline Telegram, run by hand."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "testing-server", add_help=False,
        help="run a local offline Telegram for tests (see 'testing-server --help')",
        description="Run a local MTProto server that Telethon clients can log in to.",
    )
    # Everything after the name goes to tgsession.testing's own parser (--help included).
    parser.set_defaults(func=_serve, passthrough=True, extra=[])


def _serve(args: argparse.Namespace) -> int:
    from ..testing import main

    return main(["--help" if a == "-h" else a for a in args.extra])
