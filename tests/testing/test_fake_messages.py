"""Messages between accounts: live delivery, replies, catch-up after being offline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from telethon import TelegramClient, events
from telethon.sessions import MemorySession, StringSession

from tgsession.testing import FakeTelegram

MakeClient = Callable[..., TelegramClient]
SignedIn = Callable[..., Awaitable[TelegramClient]]


async def test_bot_receives_a_user_message_and_the_user_gets_the_reply(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550201", first_name="Ann", username="ann")
    bot = fake_telegram.add_bot("echo_bot")
    bot_client = await signed_in(bot)
    user_client = await signed_in(user)
    replies: asyncio.Queue[str] = asyncio.Queue()

    async def echo(event: events.NewMessage.Event) -> None:
        assert (await event.get_sender()).username == "ann"
        await event.reply(f"echo: {event.raw_text}")

    bot_client.add_event_handler(echo, events.NewMessage(incoming=True))
    user_client.add_event_handler(
        lambda event: replies.put(event.raw_text), events.NewMessage(from_users=bot.id)
    )

    await user_client.send_message("echo_bot", "hello")

    assert await asyncio.wait_for(replies.get(), 5) == "echo: hello"
    assert await fake_telegram.wait_for_message(to=bot, from_=user) == "hello"
    assert await fake_telegram.wait_for_message(to=user, from_=bot) == "echo: hello"


async def test_server_side_message_reaches_a_live_client(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550202")
    bot = fake_telegram.add_bot("news_bot")
    bot_client = await signed_in(bot)
    received: asyncio.Queue[str] = asyncio.Queue()
    bot_client.add_event_handler(
        lambda event: received.put(event.raw_text), events.NewMessage(incoming=True)
    )

    await fake_telegram.send_message(user, "news_bot", "ping")

    assert await asyncio.wait_for(received.get(), 5) == "ping"


async def test_messages_missed_while_offline_arrive_with_catch_up(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550203")
    bot = fake_telegram.add_bot("late_bot")
    session = MemorySession()
    fake_telegram.preauthorize(bot).apply_to(session)
    first = make_client(session)
    await first.connect()  # learns the update state, saved into the session on disconnect
    await first.disconnect()

    await fake_telegram.send_message(user, bot, "while you were away")
    await fake_telegram.send_message(user, bot, "and this too")

    received: asyncio.Queue[str] = asyncio.Queue()
    again = make_client(session, catch_up=True)
    again.add_event_handler(lambda event: received.put(event.raw_text), events.NewMessage())
    await again.connect()

    assert await asyncio.wait_for(received.get(), 5) == "while you were away"
    assert await asyncio.wait_for(received.get(), 5) == "and this too"
    assert fake_telegram.call_count("updates.getDifference") >= 1


async def test_explicit_catch_up_after_reconnecting_the_same_client(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550204")
    bot = fake_telegram.add_bot("sleepy_bot")
    client = await signed_in(bot)
    received: asyncio.Queue[str] = asyncio.Queue()
    client.add_event_handler(lambda event: received.put(event.raw_text), events.NewMessage())
    await client.disconnect()

    await fake_telegram.send_message(user, bot, "missed")
    await client.connect()
    await client.catch_up()

    assert await asyncio.wait_for(received.get(), 5) == "missed"


async def test_username_resolves_to_the_account(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550205")
    bot = fake_telegram.add_bot("lookup_bot", first_name="Lookup")
    client = await signed_in(user)

    entity = await client.get_entity("@lookup_bot")

    assert entity.id == bot.id and entity.bot and entity.first_name == "Lookup"
    with pytest.raises(ValueError):
        await client.get_entity("nobody_here")


async def test_history_lists_the_conversation_newest_first(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550206")
    bot = fake_telegram.add_bot("history_bot")
    client = await signed_in(user)
    await client.send_message("history_bot", "one")
    await fake_telegram.send_message(bot, user, "two")

    messages = await client.get_messages("history_bot", limit=10)

    assert [m.text for m in messages] == ["two", "one"]
    assert [m.out for m in messages] == [False, True]


async def test_wait_for_message_times_out(fake_telegram: FakeTelegram) -> None:
    user = fake_telegram.add_user(phone="+15550207")

    with pytest.raises(asyncio.TimeoutError):
        await fake_telegram.wait_for_message(to=user, timeout=0.05)


async def test_user_restarted_from_a_string_session_sees_history(
    fake_telegram: FakeTelegram, make_client: MakeClient
) -> None:
    user = fake_telegram.add_user(phone="+15550208")
    bot = fake_telegram.add_bot("memory_bot")
    await fake_telegram.send_message(user, bot, "/start")
    await fake_telegram.send_message(bot, user, "remember me")

    client = make_client(StringSession(fake_telegram.preauthorize(user).string_session()))
    await client.connect()
    [message] = await client.get_messages("memory_bot", limit=1)

    assert message.text == "remember me"


async def test_dialogs_list_each_conversation_once_newest_first(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    user = fake_telegram.add_user(phone="+15550209")
    old_bot = fake_telegram.add_bot("old_bot")
    new_bot = fake_telegram.add_bot("new_bot")
    client = await signed_in(user)
    await client.send_message("old_bot", "first")
    await client.send_message("new_bot", "second")
    await fake_telegram.send_message(new_bot, user, "third")

    dialogs = await client.get_dialogs()
    await client.send_read_acknowledge(dialogs[0].entity)

    assert [d.entity.id for d in dialogs] == [new_bot.id, old_bot.id]
    assert dialogs[0].message.text == "third"
