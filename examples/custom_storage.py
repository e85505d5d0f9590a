"""Your own storage: any object with async load_session() and store_session().

This one keeps the session in a dict standing in for your key-value store.
"""

import asyncio

from tgsession import (
    SessionNotFoundError,
    StorageSession,
    TerminalAuth,
    auth_if_necessary,
    client_from_environment,
)

SHELF: dict[str, bytes] = {}


class ShelfStorage:
    def __init__(self, key: str) -> None:
        self.key = key

    async def load_session(self) -> bytes:
        data = SHELF.get(self.key)
        if not data:
            raise SessionNotFoundError(f"no session under {self.key!r}")
        return data

    async def store_session(self, data: bytes) -> None:
        SHELF[self.key] = data


async def main() -> None:
    client = await client_from_environment(storage=ShelfStorage("my-bot"))
    async with client:
        me = await auth_if_necessary(client, TerminalAuth())
        print(f"Signed in as {me.first_name}; the session is {len(SHELF['my-bot'])} bytes")
    # The same storage works without the factories too:
    session = await StorageSession.open(ShelfStorage("my-bot"))
    print(f"Stored session for DC {session.dc_id}")


if __name__ == "__main__":
    asyncio.run(main())
