"""What bots do beyond text: buttons, edits, deletions, files, replies, formatting, commands,
and the rules Telegram holds bots to, against real Telethon clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from telethon import Button, TelegramClient, errors, events, functions, types

from tgsession.testing import FakeTelegram, RpcFailure

SignedIn = Callable[..., Awaitable[TelegramClient]]


def queue_of(client: TelegramClient, event: object) -> asyncio.Queue[object]:
    queue: asyncio.Queue[object] = asyncio.Queue()
    client.add_event_handler(queue.put, event)  # type: ignore[arg-type]
    return queue


async def test_inline_button_press_reaches_the_bot_which_answers_and_edits(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    user, bot = tg.add_user(), tg.add_bot("vote_bot")
    bot_client, user_client = await signed_in(bot), await signed_in(user)

    @bot_client.on(events.CallbackQuery(data=b"yes"))
    async def voted(event: events.CallbackQuery.Event) -> None:
        await event.answer("Thanks!")  # first: Telethon's edit() answers an unanswered query
        await event.edit("You said yes")

    await tg.send_message(user, bot, "/start")
    sent = await bot_client.send_message(user.id, "Agree?", buttons=[
        [Button.inline("Yes", b"yes"), Button.inline("No", b"no")]])
    mine = await tg.wait_for(to=user, from_=bot)
    assert [b.text for b in mine.buttons()] == ["Yes", "No"]

    edited = queue_of(user_client, events.MessageEdited())
    [message] = await user_client.get_messages("vote_bot", ids=[mine.id])
    answer = await message.click(data=b"yes")

    assert answer.message == "Thanks!"
    edit = await asyncio.wait_for(edited.get(), 5)
    assert edit.raw_text == "You said yes" and edit.id == mine.id  # type: ignore[attr-defined]
    assert tg.messages(user, bot)[-1].reply_markup is None  # an edit without buttons drops them
    assert sent.id == tg.messages(bot, user)[-1].id


async def test_press_button_control_and_a_bot_that_never_answers(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    user, bot = tg.add_user(), tg.add_bot("slow_bot")
    bot_client = await signed_in(bot)
    await tg.send_message(user, bot, "/start")
    await tg.send_message(bot, user, "Pick", buttons=[[("A", b"a"), ("B", b"b")]])
    presses = queue_of(bot_client, events.CallbackQuery())

    with pytest.raises(RpcFailure, match="BOT_RESPONSE_TIMEOUT"):
        await tg.press_button(user, bot, text="B", timeout=0.2)
    press = await asyncio.wait_for(presses.get(), 5)
    assert press.data == b"b" and press.sender_id == user.id  # type: ignore[attr-defined]
    with pytest.raises(LookupError):
        await tg.press_button(user, bot, text="C")


async def test_reply_points_at_the_recipients_own_copy_and_formatting_survives(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    user, bot = tg.add_user(), tg.add_bot("reply_bot")
    await tg.send_message(user, bot, "/start")  # shifts the ids of the two boxes apart
    await tg.send_message(bot, user, "welcome")
    await tg.wait_for(to=user, from_=bot)
    bot_client, user_client = await signed_in(bot), await signed_in(user)
    inbox = queue_of(bot_client, events.NewMessage(incoming=True))

    question = await user_client.send_message("reply_bot", "**bold** question")
    event = await asyncio.wait_for(inbox.get(), 5)
    assert isinstance(event.message.entities[0], types.MessageEntityBold)  # type: ignore[attr-defined]
    await event.reply("answer")  # type: ignore[attr-defined]

    answer = await tg.wait_for(to=user, from_=bot)
    assert answer.reply_to_msg_id == question.id
    [again] = await bot_client.get_messages(user.id, ids=[event.id])  # type: ignore[attr-defined]
    assert again.raw_text == "bold question"


async def test_deleting_for_everyone_removes_both_copies(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    user, bot = tg.add_user(), tg.add_bot("tidy_bot")
    user_client = await signed_in(user)
    bot_client = await signed_in(bot)
    deleted = queue_of(bot_client, events.MessageDeleted())
    message = await user_client.send_message("tidy_bot", "oops")
    bot_copy = await tg.wait_for(to=bot, from_=user)

    await user_client.delete_messages("tidy_bot", [message.id])

    event = await asyncio.wait_for(deleted.get(), 5)
    assert event.deleted_ids == [bot_copy.id]  # type: ignore[attr-defined]
    assert tg.messages(user, bot) == [] and tg.messages(bot, user) == []


async def test_a_file_goes_up_and_comes_down_byte_for_byte(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    user, bot = tg.add_user(), tg.add_bot("file_bot")
    user_client, bot_client = await signed_in(user), await signed_in(bot)
    inbox = queue_of(bot_client, events.NewMessage(incoming=True))
    payload = bytes(range(256)) * 1200  # 300 KiB: more than one upload part

    await user_client.send_file("file_bot", payload, caption="report",
                                attributes=[types.DocumentAttributeFilename("report.bin")])
    event = await asyncio.wait_for(inbox.get(), 5)
    downloaded = await bot_client.download_media(event.message, file=bytes)  # type: ignore[attr-defined]
    await bot_client.send_file(user.id, b"\x89PNG fake image", caption="back")

    assert downloaded == payload
    assert event.file.name == "report.bin" and event.raw_text == "report"  # type: ignore[attr-defined]
    back = await tg.wait_for(to=user, from_=bot)
    assert tg.file_of(back) == b"\x89PNG fake image" and back.text == "back"


async def test_bot_commands_typing_and_users_by_id_alone(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    user, bot = tg.add_user(first_name="Ann"), tg.add_bot("cmd_bot")
    bot_client, user_client = await signed_in(bot), await signed_in(user)
    typing = queue_of(user_client, events.UserUpdate())
    await tg.send_message(user, bot, "/start")

    await bot_client(functions.bots.SetBotCommandsRequest(
        scope=types.BotCommandScopeDefault(), lang_code="",
        commands=[types.BotCommand("start", "Start"), types.BotCommand("help", "Help")]))
    [found] = await bot_client(functions.users.GetUsersRequest([types.InputUser(user.id, 0)]))
    await bot_client(functions.messages.SetTypingRequest(
        types.InputPeerUser(user.id, 0), types.SendMessageTypingAction()))

    assert tg.bot_commands(bot) == [("start", "Start"), ("help", "Help")]
    assert found.first_name == "Ann"
    status = await asyncio.wait_for(typing.get(), 5)
    assert status.typing and status.user_id == bot.id  # type: ignore[attr-defined]


async def test_forward_pin_and_contacts(fake_telegram: FakeTelegram, signed_in: SignedIn) -> None:
    tg = fake_telegram
    ann, bob, bot = tg.add_user(), tg.add_user(first_name="Bob"), tg.add_bot("fwd_bot")
    ann_client = await signed_in(ann)
    await tg.send_message(ann, bot, "/start")
    original = await tg.send_message(bot, ann, "forward me")

    await ann_client(functions.contacts.ImportContactsRequest([types.InputPhoneContact(
        client_id=1, phone="+" + (bob.phone or ""), first_name="Bob", last_name="")]))
    contacts = await ann_client(functions.contacts.GetContactsRequest(hash=0))
    await ann_client.forward_messages(bob.id, original, "fwd_bot")
    await ann_client.pin_message("fwd_bot", original)

    assert [u.id for u in contacts.users] == [bob.id]
    forwarded = await tg.wait_for(to=bob, from_=ann)
    assert forwarded.text == "forward me" and forwarded.fwd_from.from_id.user_id == bot.id
    assert tg.messages(bot, ann)[-1].pinned and tg.messages(ann, bot)[-1].pinned


async def test_bot_may_not_write_first_nor_read_history(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    user, bot = tg.add_user(), tg.add_bot("pushy_bot")
    bot_client = await signed_in(bot)

    with pytest.raises(errors.PeerIdInvalidError):
        await bot_client.send_message(types.InputPeerUser(user.id, user.access_hash), "hi")
    await tg.send_message(user, bot, "/start")
    await bot_client.send_message(user.id, "now I may")
    with pytest.raises(errors.BotMethodInvalidError):
        await bot_client.get_messages(user.id, limit=5)
    tg.block(user, bot)
    with pytest.raises(errors.UserIsBlockedError):
        await bot_client.send_message(user.id, "still there?")


async def test_a_method_the_server_lacks_is_logged_once_by_name(
    fake_telegram: FakeTelegram, signed_in: SignedIn, caplog: pytest.LogCaptureFixture
) -> None:
    client = await signed_in(fake_telegram.add_user())
    caplog.set_level(logging.WARNING, logger="tgsession.testing")

    for _ in range(2):
        with pytest.raises(errors.InputMethodInvalidError):
            await client(functions.account.GetAuthorizationsRequest())

    warnings = [r.getMessage() for r in caplog.records if "account.getAuthorizations" in
                r.getMessage()]
    assert len(warnings) == 1
    assert fake_telegram.unimplemented_calls == {"account.getAuthorizations"}


async def test_edit_delete_and_post_controls_reach_live_clients(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    owner, bot = tg.add_user(), tg.add_bot("watch_bot")
    channel = tg.create_channel("Announcements", owner, bot)
    bot_client = await signed_in(bot)
    new, edited, deleted = (queue_of(bot_client, e) for e in (
        events.NewMessage(), events.MessageEdited(), events.MessageDeleted()))

    post_id = await tg.post(channel, "draft")
    await tg.edit_message(owner, channel, post_id, "final")
    await tg.delete_messages(owner, channel, post_id)

    assert (await asyncio.wait_for(new.get(), 5)).raw_text == "draft"  # type: ignore[attr-defined]
    assert (await asyncio.wait_for(edited.get(), 5)).raw_text == "final"  # type: ignore[attr-defined]
    gone = await asyncio.wait_for(deleted.get(), 5)
    assert gone.deleted_ids == [post_id]  # type: ignore[attr-defined]
    assert tg.messages(bot, channel)[-1].id != post_id
