"""Invariant 9 in one process: updates that arrived while a program was down reach the
handlers it registers before it starts running, whatever it awaits first."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from telethon import events

from tgsession import ConstantAuth, auth_if_necessary, bot_from_environment, client_from_environment
from tgsession.testing import Account, FakeTelegram


def bot_env(tg: FakeTelegram, bot: Account) -> dict[str, str]:
    assert bot.token is not None
    return {**tg.env(), "BOT_TOKEN": bot.token}


async def run_once(tg: FakeTelegram, bot: Account, path: Path) -> None:
    """A first run of the bot: signs in and stops cleanly, which stores its update state."""
    client = await bot_from_environment(env=bot_env(tg, bot), session_file=path, catch_up=True)
    async with client:
        pass


async def restarted_after_missing(tg: FakeTelegram, name: str, path: Path,
                                  *texts: str) -> tuple[Any, Account, Account]:
    """A bot that ran once and stopped, missed ``texts`` from a user, and is built again."""
    bot, user = tg.add_bot(name), tg.add_user()
    await run_once(tg, bot, path)
    tg.reset_counts()
    for text in texts:
        await tg.send_message(user, bot, text)
    client = await bot_from_environment(env=bot_env(tg, bot), session_file=path, catch_up=True)
    return client, bot, user


async def wait_for_len(items: list[str], n: int) -> None:
    """Give the client up to five seconds to dispatch ``n`` updates."""
    for _ in range(100):
        if len(items) >= n:
            return
        await asyncio.sleep(0.05)


async def slow_setup(client: Any) -> None:
    """What programs do before registering handlers: ask who they are, and more."""
    await client.get_me()
    await asyncio.sleep(0.3)  # long enough for an unheld catch-up to have run and been lost


async def test_bot_that_awaits_before_registering_gets_what_it_missed(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg = fake_telegram
    client, bot, user = await restarted_after_missing(tg, "late_bot", tmp_path / "bot.json",
                                                      "one", "two", "three")
    await slow_setup(client)
    seen: list[str] = []

    @client.on(events.NewMessage(incoming=True))
    async def echo(event: events.NewMessage.Event) -> None:
        seen.append(event.raw_text)
        await event.respond(event.raw_text)

    async with client:
        runner = asyncio.ensure_future(client.run_until_disconnected())
        answers = [await tg.wait_for_message(to=user, from_=bot) for _ in range(3)]
        await client.disconnect()
        await runner
    assert answers == ["one", "two", "three"]
    assert seen == ["one", "two", "three"]


async def test_nothing_is_dispatched_and_the_state_stays_until_the_program_runs(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg, path = fake_telegram, tmp_path / "bot.json"
    client, bot, user = await restarted_after_missing(tg, "held_bot", path, "missed")
    await slow_setup(client)
    await tg.send_message(user, bot, "live, before any handler")
    await asyncio.sleep(0.2)
    assert tg.call_count("updates.getDifference") == 0
    await client.disconnect()  # a program that stops before running: nothing was consumed

    client = await bot_from_environment(env=bot_env(tg, bot), session_file=path, catch_up=True)
    seen: list[str] = []
    client.add_event_handler(lambda e: seen.append(e.raw_text), events.NewMessage(incoming=True))
    await client.catch_up()
    await wait_for_len(seen, 2)
    await client.disconnect()
    assert seen == ["missed", "live, before any handler"]


async def test_user_client_signed_in_by_auth_if_necessary_catches_up(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg, path = fake_telegram, tmp_path / "user.json"
    user, friend = tg.add_user(), tg.add_user()
    phone = user.phone or ""

    async def start() -> Any:
        client = await client_from_environment(env=tg.env(), session_file=path, catch_up=True)
        async def code(sent: Any) -> str:
            return tg.login_code(phone)

        return client, ConstantAuth(phone, code=code)

    client, flow = await start()
    async with client:
        await auth_if_necessary(client, flow)
    await tg.send_message(friend, user, "while you were away")

    client, flow = await start()
    seen: asyncio.Queue[str] = asyncio.Queue()
    async with client:
        await auth_if_necessary(client, flow)
        await slow_setup(client)
        client.add_event_handler(lambda e: seen.put_nowait(e.raw_text),
                                 events.NewMessage(incoming=True))
        runner = asyncio.ensure_future(client.run_until_disconnected())
        assert await asyncio.wait_for(seen.get(), 5) == "while you were away"
        await client.disconnect()
        await runner
    assert tg.call_count("auth.signIn") == 1


async def test_state_is_stored_at_first_login_so_a_killed_first_run_catches_up(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    from tgsession import FileStorage
    from tgsession.codec import decode_session

    tg, path = fake_telegram, tmp_path / "bot.json"
    bot = tg.add_bot("fresh_bot")
    client = await bot_from_environment(env=bot_env(tg, bot), session_file=path, catch_up=True)
    try:
        for _ in range(50):  # the background writer stores it without a disconnect
            data = decode_session(await FileStorage(path).load_session(), source=str(path))
            if data.updates is not None:
                break
            await asyncio.sleep(0.05)
        assert data.updates is not None
    finally:
        await client.disconnect()



async def test_handlers_registered_inside_async_with_release_at_the_next_await(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg = fake_telegram
    client, _, _ = await restarted_after_missing(tg, "inside_bot", tmp_path / "bot.json", "missed")
    seen: list[str] = []
    async with client:
        await slow_setup(client)
        assert seen == [] and tg.call_count("updates.getDifference") == 0
        client.add_event_handler(lambda e: seen.append(e.raw_text),
                                 events.NewMessage(incoming=True))
        await wait_for_len(seen, 1)  # a program that never calls run_until_disconnected()
    assert seen == ["missed"]


async def test_async_with_entered_with_handlers_registered_starts_running(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg = fake_telegram
    client, _, _ = await restarted_after_missing(tg, "entered_bot", tmp_path / "bot.json", "missed")
    await slow_setup(client)
    seen: list[str] = []
    client.add_event_handler(lambda e: seen.append(e.raw_text), events.NewMessage(incoming=True))
    await asyncio.sleep(0.2)
    assert seen == []  # registered, but the program has not started running yet
    async with client:
        await wait_for_len(seen, 1)
    assert seen == ["missed"]


async def test_without_catch_up_nothing_is_held(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg, path = fake_telegram, tmp_path / "bot.json"
    bot, user = tg.add_bot("live_bot"), tg.add_user()
    client = await bot_from_environment(env=bot_env(tg, bot), session_file=path)
    seen: list[str] = []
    client.add_event_handler(lambda e: seen.append(e.raw_text), events.NewMessage(incoming=True))
    await tg.send_message(user, bot, "live")
    await wait_for_len(seen, 1)
    await client.disconnect()
    assert seen == ["live"]


async def test_an_update_whose_handler_a_stop_interrupted_comes_again(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg, path = fake_telegram, tmp_path / "bot.json"
    client, bot, _ = await restarted_after_missing(tg, "busy_bot", path, "slow job")
    started = asyncio.Event()

    async def never_finishes(event: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    client.add_event_handler(never_finishes, events.NewMessage(incoming=True))
    client.handler_drain_timeout = 0.1
    await client.catch_up()
    await asyncio.wait_for(started.wait(), 5)
    await client.disconnect()  # waits 0.1 s, then cancels the handler mid-way

    client = await bot_from_environment(env=bot_env(tg, bot), session_file=path, catch_up=True)
    seen: list[str] = []
    client.add_event_handler(lambda e: seen.append(e.raw_text), events.NewMessage(incoming=True))
    await client.catch_up()
    await wait_for_len(seen, 1)
    await client.disconnect()
    assert seen == ["slow job"]


async def test_a_clean_stop_lets_running_handlers_finish_and_answers_nothing_twice(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg, path = fake_telegram, tmp_path / "bot.json"
    client, bot, user = await restarted_after_missing(tg, "polite_bot", path, "take your time")
    started = asyncio.Event()

    async def slow_answer(event: Any) -> None:
        started.set()
        await asyncio.sleep(0.3)
        await event.respond("done")

    client.add_event_handler(slow_answer, events.NewMessage(incoming=True))
    await client.catch_up()
    await asyncio.wait_for(started.wait(), 5)
    await client.disconnect()  # while the handler sleeps
    assert await tg.wait_for_message(to=user, from_=bot, timeout=0) == "done"

    client = await bot_from_environment(env=bot_env(tg, bot), session_file=path, catch_up=True)
    seen: list[str] = []
    client.add_event_handler(lambda e: seen.append(e.raw_text), events.NewMessage(incoming=True))
    await client.catch_up()
    await tg.send_message(user, bot, "next")
    await wait_for_len(seen, 1)
    await client.disconnect()
    assert seen == ["next"]


async def test_a_handler_that_stops_the_program_is_not_handled_again(
    fake_telegram: FakeTelegram, tmp_path: Path
) -> None:
    tg, path = fake_telegram, tmp_path / "bot.json"
    client, bot, user = await restarted_after_missing(tg, "stop_bot", path, "/stop")

    stopping: list[Any] = []

    async def stop(event: Any) -> None:
        await event.respond("bye")
        stopping.append(event.client.disconnect())
        await stopping[-1]

    client.add_event_handler(stop, events.NewMessage(incoming=True, pattern="/stop"))
    await client.catch_up()
    assert await tg.wait_for_message(to=user, from_=bot) == "bye"
    while not stopping:
        await asyncio.sleep(0.01)
    # The handler's await of disconnect() ends when disconnect cancels it; the disconnect
    # itself goes on (shielded) until the session is closed.
    closing = [t for t in asyncio.all_tasks() if "_disconnect_coro" in repr(t.get_coro())]
    if closing:
        await asyncio.wait(closing, timeout=5)

    client = await bot_from_environment(env=bot_env(tg, bot), session_file=path, catch_up=True)
    seen: list[str] = []
    client.add_event_handler(lambda e: seen.append(e.raw_text), events.NewMessage(incoming=True))
    await client.catch_up()
    await tg.send_message(user, bot, "hello again")
    await wait_for_len(seen, 1)
    await client.disconnect()
    assert seen == ["hello again"]
