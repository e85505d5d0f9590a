"""A user client: asks for the phone number and the code on the first run, nothing afterwards.

    cp .env.example .env     # fill in APP_ID and APP_HASH
    python user.py
"""

import asyncio
import contextlib
import sys

from tgsession import TerminalAuth, TgSessionError, auth_if_necessary, client_from_environment


async def main() -> None:
    client = await client_from_environment()
    async with client:  # leaving the block stores the session and releases its lock
        me = await auth_if_necessary(client, TerminalAuth())  # prompts only when needed
        print(f"Signed in as {me.first_name} (id {me.id})", flush=True)
        # Your code here: the client is signed in.


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, even at a prompt: nothing stored
        try:
            asyncio.run(main())
        except TgSessionError as exc:  # a missing setting, a session in use elsewhere, ...
            sys.exit(f"error: {exc}")
