"""Groups, supergroups and channels of the offline Telegram, driven by real Telethon clients."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from telethon import TelegramClient, errors, events, functions, types
from telethon.sessions import MemorySession

from tgsession.testing import INLINE_CHANNEL_UPDATES, FakeTelegram, RpcFailure

SignedIn = Callable[..., Awaitable[TelegramClient]]


def collect(client: TelegramClient, **filters: object) -> asyncio.Queue[events.NewMessage.Event]:
    queue: asyncio.Queue[events.NewMessage.Event] = asyncio.Queue()
    client.add_event_handler(queue.put, events.NewMessage(**filters))  # type: ignore[arg-type]
    return queue


async def test_group_of_three_made_by_a_client_delivers_to_every_member(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    ann, bob, bot = tg.add_user(first_name="Ann"), tg.add_user(first_name="Bob"), tg.add_bot(
        "group_bot", privacy=False)
    ann_client, bob_client, bot_client = [await signed_in(a) for a in (ann, bob, bot)]
    bob_inbox, bot_inbox = collect(bob_client), collect(bot_client)

    result = await ann_client(functions.messages.CreateChatRequest(
        users=[types.InputUser(bob.id, bob.access_hash), types.InputUser(bot.id, bot.access_hash)],
        title="Three"))
    chat = result.updates.chats[0]
    await ann_client.send_message(chat, "hello group")

    for inbox in (bob_inbox, bot_inbox):
        event = await asyncio.wait_for(inbox.get(), 5)
        while not event.raw_text:  # the "group created" service message comes first
            event = await asyncio.wait_for(inbox.get(), 5)
        assert event.raw_text == "hello group" and event.chat_id == -chat.id
    participants = await bob_client.get_participants(-chat.id)
    assert sorted(p.id for p in participants) == sorted([ann.id, bob.id, bot.id])
    group = tg.chat(chat.id)
    assert await tg.wait_for_message(to=bob, from_=ann, chat=group) == "hello group"


async def test_bot_in_privacy_mode_sees_commands_and_mentions_only(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    ann, bot = tg.add_user(), tg.add_bot("shy_bot")
    group = tg.create_group("Quiet", ann, bot)
    bot_client = await signed_in(bot)
    inbox = collect(bot_client, incoming=True)

    await tg.send_message(ann, group, "just chatting")
    await tg.send_message(ann, group, "/help@other_bot")
    await tg.send_message(ann, group, "/help")
    await tg.send_message(ann, group, "hey @shy_bot")

    seen = [(await asyncio.wait_for(inbox.get(), 5)).raw_text for _ in range(2)]
    assert seen == ["/help", "hey @shy_bot"]
    assert inbox.empty()


async def test_channel_posts_reach_members_and_only_admins_post(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    owner, reader, bot = tg.add_user(), tg.add_user(), tg.add_bot("channel_bot")
    owner_client, reader_client = await signed_in(owner), await signed_in(reader)
    bot_client = await signed_in(bot)
    reader_inbox, bot_inbox = collect(reader_client), collect(bot_client)

    created = await owner_client(functions.channels.CreateChannelRequest(
        title="News", about="", broadcast=True))
    channel = created.chats[0]
    await owner_client(functions.channels.InviteToChannelRequest(
        channel, [types.InputUser(reader.id, reader.access_hash),
                  types.InputUser(bot.id, bot.access_hash)]))
    await owner_client.send_message(channel, "first post")

    for inbox in (reader_inbox, bot_inbox):
        event = await asyncio.wait_for(inbox.get(), 5)
        assert event.raw_text == "first post" and event.is_channel and event.message.post
    with pytest.raises(errors.ChatAdminRequiredError):
        await reader_client.send_message(types.PeerChannel(channel.id), "me too")
    admins = await owner_client.get_participants(channel, filter=types.ChannelParticipantsAdmins)
    assert {a.id for a in admins} == {owner.id, bot.id}  # a bot joins a channel as an admin


async def test_supergroup_members_talk_and_get_participants_pages(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    members = [tg.add_user(first_name=f"U{i}") for i in range(5)]
    group = tg.create_channel("Big", members[0], *members[1:], megagroup=True)
    client = await signed_in(members[1])
    inbox = collect(client, incoming=True)

    await tg.send_message(members[2], group, "in the supergroup")

    event = await asyncio.wait_for(inbox.get(), 5)
    assert event.raw_text == "in the supergroup" and event.is_group and event.is_channel
    assert event.sender_id == members[2].id
    assert len(await client.get_participants(event.chat_id)) == 5
    assert [m.text for m in await client.get_messages(event.chat_id, limit=1)] == [
        "in the supergroup"]


async def test_channel_updates_missed_while_offline_come_through_channel_difference(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    owner, bot = tg.add_user(), tg.add_bot("reader_bot")
    channel = tg.create_channel("Feed", owner, bot)
    session = MemorySession()
    tg.preauthorize(bot).apply_to(session)
    first = tg.client(session)
    first_inbox = collect(first)
    await first.connect()
    await first.get_me()
    await tg.send_message(owner, channel, "seen live")
    assert (await asyncio.wait_for(first_inbox.get(), 5)).raw_text == "seen live"
    await first.disconnect()  # stores the channel's pts in the session

    posts = [f"post {i}" for i in range(INLINE_CHANNEL_UPDATES + 2)]
    for text in posts:
        await tg.send_message(owner, channel, text)
    tg.reset_counts()
    again = tg.client(session, catch_up=True)
    inbox = collect(again)
    await again.connect()

    got = [(await asyncio.wait_for(inbox.get(), 5)).raw_text for _ in posts]
    assert got == posts
    assert tg.call_count("updates.getChannelDifference") >= 1
    await asyncio.sleep(0.2)
    assert inbox.empty()
    await again.disconnect()


async def test_admins_kick_members_and_members_leave(
    fake_telegram: FakeTelegram, signed_in: SignedIn
) -> None:
    tg = fake_telegram
    owner, spammer, bystander, quitter = (tg.add_user() for _ in range(4))
    group = tg.create_group("Small", owner, spammer, bystander)
    supergroup = tg.create_channel("Large", owner, spammer, quitter, megagroup=True)
    owner_client, quitter_client = await signed_in(owner), await signed_in(quitter)
    await owner_client.get_dialogs()  # learns both chats' access hashes
    await quitter_client.get_dialogs()

    await owner_client.kick_participant(-group.id, types.InputUser(spammer.id,
                                                                   spammer.access_hash))
    await owner_client.kick_participant(supergroup.peer, types.InputUser(
        spammer.id, spammer.access_hash))
    await quitter_client.kick_participant(supergroup.peer, "me")

    assert spammer.id not in group.members and spammer.id not in supergroup.members
    assert list(supergroup.members) == [owner.id]
    removed = [m.action.user_id for m in tg.messages(bystander, group) if isinstance(
        m.action, types.MessageActionChatDeleteUser)]
    assert removed == [spammer.id]
    with pytest.raises(RpcFailure, match="CHAT_WRITE_FORBIDDEN"):
        await tg.send_message(spammer, group, "let me back in")
