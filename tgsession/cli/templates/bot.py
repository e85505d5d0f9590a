"""An echo bot that signs in once: restart it as often as you like.

    cp .env.example .env     # fill in APP_ID, APP_HASH and BOT_TOKEN
    python bot.py
"""

import asyncio
import contextlib
import logging
import sys

from telethon import events

from tgsession import TgSessionError, bot_from_environment


async def main() -> None:
    # Signs in with BOT_TOKEN only when the stored session needs it. catch_up=True: what
    # arrived while the bot was stopped is delivered after it starts.
    bot = await bot_from_environment(catch_up=True)
    me = await bot.get_me()

    @bot.on(events.NewMessage(incoming=True))
    async def echo(event: events.NewMessage.Event) -> None:
        if event.text:
            await event.respond(event.text)

    async with bot:  # leaving the block stores the session and releases its lock
        print(f"@{me.username} is running; press Ctrl-C to stop", flush=True)
        await bot.run_until_disconnected()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: leaving main() stored the session
        try:
            asyncio.run(main())
        except TgSessionError as exc:  # a missing setting, a session in use elsewhere, ...
            sys.exit(f"error: {exc}")
