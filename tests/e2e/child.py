"""A program run in a NEW process by the end-to-end tests: a restart is a new process.

    python child.py user         client_from_environment + auth_if_necessary(StdioFlow)
    python child.py bot          bot_from_environment
    python child.py hold         like user, then waits for a line on stdin before exiting
    python child.py resolve NAME...  like user, then resolves each NAME and prints what it found
    python child.py resolve-hold NAME   both
    python child.py hold-until-lost     like user, then holds until its lease is lost
    python child.py dialogs      like user, then lists its dialogs (which caches their entities)

NAME may be a marked peer id (``-100…`` for a channel, ``-…`` for a group).

It asks through stdout lines ``ASK phone`` / ``ASK code`` / ``ASK password`` and reads the
answers from stdin, and reports with ``RESULT {json}`` lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Any

from telethon import utils

from tgsession import (
    SessionLockedError,
    auth_if_necessary,
    bot_from_environment,
    client_from_environment,
)


class StdioFlow:
    async def _ask(self, what: str) -> str:
        print(f"ASK {what}", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        return line.strip()

    async def phone(self) -> str:
        return await self._ask("phone")

    async def code(self, sent_code: Any) -> str:
        return await self._ask("code")

    async def password(self) -> str:
        return await self._ask("password")


def report(**fields: Any) -> None:
    print("RESULT " + json.dumps(fields), flush=True)


async def main(mode: str, args: list[str]) -> int:
    try:
        if mode == "bot":
            client = await bot_from_environment()
        else:
            client = await client_from_environment()
    except SessionLockedError as exc:
        report(locked=str(exc))
        return 3
    async with client:
        if mode == "bot":
            me = await client.get_me()
        else:
            me = await auth_if_necessary(client, StdioFlow())
        report(id=me.id, bot=bool(me.bot), phone=me.phone)
        for arg in args if mode.startswith("resolve") else ():
            name: str | int = int(arg) if arg.lstrip("-").isdigit() else arg
            entity = await client.get_input_entity(name)
            report(resolved=getattr(entity, "user_id", None), kind=type(entity).__name__,
                   peer=utils.get_peer_id(entity))
        if mode == "dialogs":
            report(dialogs=[d.id for d in await client.get_dialogs()])
        if mode == "reveal":
            # Everything a careless program might print about its objects.
            session = client.session
            for obj in (client, session, session.storage, session.snapshot(), StdioFlow()):
                print("REVEAL", repr(obj), str(obj), flush=True)
            try:
                await client.send_message("nobody_with_this_name", "x")
            except Exception as exc:
                print("REVEAL", type(exc).__name__, exc, repr(exc), flush=True)
        if mode.endswith("hold"):
            print("HOLDING", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        if mode == "hold-until-lost":
            # Holds until the Client disconnects by itself (its lease was lost).
            print("HOLDING", flush=True)
            with contextlib.suppress(Exception):
                await client.disconnected
            print(f"STOPPED lease_lost={client.session.lease_lost}", flush=True)
    return 0


if __name__ == "__main__":
    level = os.environ.get("CHILD_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2:])))
