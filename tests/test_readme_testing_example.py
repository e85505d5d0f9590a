"""The README's "Testing your bot offline" example, as a user would write it."""

from __future__ import annotations

from telethon import events

from tgsession import MemoryStorage, bot_from_environment
from tgsession.testing import FakeTelegram


async def test_bot_answers_hi(fake_telegram: FakeTelegram) -> None:
    bot = fake_telegram.add_bot("echo_bot")
    user = fake_telegram.add_user(username="ann")
    assert bot.token is not None
    client = await bot_from_environment(env={**fake_telegram.env(), "BOT_TOKEN": bot.token},
                                        storage=MemoryStorage())

    @client.on(events.NewMessage(incoming=True))
    async def echo(event: events.NewMessage.Event) -> None:
        await event.respond(event.text)

    await fake_telegram.send_message(user, bot, "hi")
    assert await fake_telegram.wait_for_message(to=user, from_=bot) == "hi"
    assert fake_telegram.call_count("auth.importBotAuthorization") == 1
    await client.disconnect()
