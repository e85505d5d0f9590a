"""A user client: asks for phone and code on the first run, nothing afterwards.

    cp .env.example .env     # fill in APP_ID and APP_HASH
    python examples/user_client.py
"""

import asyncio
import contextlib
import sys

from tgsession import TerminalAuth, TgSessionError, auth_if_necessary, client_from_environment


async def main() -> None:
    client = await client_from_environment()
    async with client:
        me = await auth_if_necessary(client, TerminalAuth())
        print(f"Signed in as {me.first_name} (id {me.id})")
        async for dialog in client.iter_dialogs(limit=5):
            print(f"  {dialog.name}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leaving main() stored the session
        try:
            asyncio.run(main())
        except TgSessionError as exc:  # a missing setting, a session in use elsewhere, ...
            sys.exit(f"error: {exc}")
