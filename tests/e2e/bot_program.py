"""The common bot program, run in a NEW process by the end-to-end tests.

It is written the way bots are: build the client, ask who it is, then register handlers,
then run. With ``catch_up=True`` it must answer what arrived while it was down.

- a text: answered with ``echo: <text>`` in the same chat (private, group or channel);
- ``/start``: answered with an inline keyboard; pressing "Yes" answers and edits the message;
- a file: answered with a file of the same bytes reversed, captioned with their count.
"""

import asyncio
import contextlib
import logging
import os

from telethon import Button, events

from tgsession import bot_from_environment


async def main() -> None:
    bot = await bot_from_environment(catch_up=True)
    me = await bot.get_me()
    await asyncio.sleep(0.3)  # more setup: time enough for an early catch-up to be lost

    @bot.on(events.NewMessage(incoming=True))
    async def on_message(event: events.NewMessage.Event) -> None:
        if event.file is not None:
            data = await event.download_media(file=bytes)
            await event.respond(f"got {len(data)} bytes", file=data[::-1])
        elif event.raw_text == "/start":
            await event.respond("Agree?", buttons=[[Button.inline("Yes", b"yes"),
                                                    Button.inline("No", b"no")]])
        else:
            await event.respond(f"echo: {event.raw_text}")

    @bot.on(events.CallbackQuery(data=b"yes"))
    async def on_yes(event: events.CallbackQuery.Event) -> None:
        await event.answer("Thanks!")
        await event.edit("You said yes")

    async with bot:
        print(f"@{me.username} running", flush=True)
        await bot.run_until_disconnected()


if __name__ == "__main__":
    logging.basicConfig(level=os.environ.get("CHILD_LOG_LEVEL", "WARNING"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
