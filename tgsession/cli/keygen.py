"""``tgsession keygen``: a new SESSION_KEY."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "keygen", help="print a new SESSION_KEY (session encryption key)",
        description="Print a new random 256-bit key for SESSION_KEY (base64). Keep it "
                    "secret and apart from the session: anyone with both can use the account.",
    )
    parser.set_defaults(func=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    from ..keys import generate_key

    print(generate_key())
    return 0
