"""A user program run in a NEW process: client_from_environment(catch_up=True), signed in by
auth_if_necessary, then handlers, then run. It prints ``GOT <chat id> <text>`` per message."""

import asyncio
import contextlib
import logging
import os

from telethon import events

from tgsession import EnvAuth, auth_if_necessary, client_from_environment


async def main() -> None:
    client = await client_from_environment(catch_up=True)
    async with client:
        me = await auth_if_necessary(client, EnvAuth())
        await asyncio.sleep(0.3)  # more setup before the handlers, as programs do

        @client.on(events.NewMessage(incoming=True))
        async def on_message(event: events.NewMessage.Event) -> None:
            print(f"GOT {event.chat_id} {event.raw_text}", flush=True)

        print(f"{me.id} running", flush=True)
        await client.run_until_disconnected()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("CHILD_LOG_LEVEL", "WARNING"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
