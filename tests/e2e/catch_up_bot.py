"""An echo bot started with catch_up=True: it answers messages sent while it was down."""

import asyncio
import contextlib

from telethon import events

from tgsession import bot_from_environment


async def main() -> None:
    bot = await bot_from_environment(catch_up=True)

    @bot.on(events.NewMessage(incoming=True))
    async def echo(event: events.NewMessage.Event) -> None:
        await event.respond(event.text)

    async with bot:
        print("@ running", flush=True)
        await bot.catch_up()
        await bot.run_until_disconnected()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leaving main() stored the session
        asyncio.run(main())
