"""A bot written the way Telethon's own examples are: synchronous ``with client:``, then
``add_event_handler`` and ``run_until_disconnected()`` with no ``async def main``."""

import asyncio

from telethon import events

from tgsession import bot_from_environment

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
client = loop.run_until_complete(bot_from_environment(catch_up=True))


async def echo(event: events.NewMessage.Event) -> None:
    await event.respond(f"sync echo: {event.raw_text}")


with client:
    client.add_event_handler(echo, events.NewMessage(incoming=True))
    print("sync bot running", flush=True)
    client.run_until_disconnected()
