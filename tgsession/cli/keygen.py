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


def register_encrypt(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "encrypt", parents=[common], help="encrypt a session stored before SESSION_KEY was set",
        description="Encrypt, in place, a session that was stored unencrypted, with the key in "
                    "SESSION_KEY (generate one with 'tgsession keygen'). Takes the session's "
                    "lock: stop the program using it first. A session already encrypted with "
                    "that key is left as it is.",
    )
    parser.set_defaults(func=_encrypt)


async def _encrypt(args: argparse.Namespace) -> int:
    from ..storage.encrypted import EncryptedStorage
    from ._context import EXIT_USAGE, CliError, Context
    from ._stored import leased

    context = Context.from_args(args)
    storage = context.storage()
    if not isinstance(storage, EncryptedStorage):
        raise CliError("SESSION_KEY is not set: create a key with 'tgsession keygen', put it "
                       "in SESSION_KEY (in .env or the environment), then run this again",
                       EXIT_USAGE)
    async with leased(storage):
        changed = await storage.encrypt_existing()
    if changed:
        print(f"Encrypted the session in {context.where()}.")
    else:
        print(f"Nothing to do: the session in {context.where()} is already encrypted with "
              "this key, or there is none.")
    return 0
