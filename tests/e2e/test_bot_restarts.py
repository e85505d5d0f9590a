"""Invariant 9 and the offline Telegram end to end: the common bot program, in new processes,
against real groups, channels, buttons and files.

The program (tests/e2e/bot_program.py) awaits ``get_me()`` and more before it registers its
handlers, as real bots do.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from tgsession.testing import INLINE_CHANNEL_UPDATES, Account, Chat, FakeTelegram

from .conftest import ROOT, Program, start_program
from .test_mission import store_signed_in, stored

PROGRAM = ROOT / "tests" / "e2e" / "bot_program.py"


class World:
    """A bot in a private chat with its owner, in a group and in a channel."""

    def __init__(self, tg: FakeTelegram, tmp_path: Path) -> None:
        self.tg = tg
        self.owner = tg.add_user(first_name="Owner")
        self.bot = tg.add_bot("restart_bot", privacy=False)
        self.group = tg.create_group("Group", self.owner, self.bot)
        self.channel = tg.create_channel("Channel", self.owner, self.bot)
        self.session_file = tmp_path / "bot.json"
        self.env = {**tg.env(), "SESSION_FILE": str(self.session_file),
                    "BOT_TOKEN": self.bot.token or ""}

    def chats(self) -> list[Account | Chat]:
        return [self.bot, self.group, self.channel]

    async def start(self) -> Program:
        program = await start_program(self.env, script=PROGRAM)
        await program.expect("@restart_bot running", timeout=30)
        return program

    async def send(self, text: str, to: Account | Chat) -> None:
        await self.tg.send_message(self.owner, to, text)

    def answers(self) -> Counter[str]:
        """How often the bot answered each text, in every chat."""
        count: Counter[str] = Counter()
        for chat in self.chats():
            for message in self.tg.messages(self.owner, chat):
                if message.sender_id == self.bot.id and message.text.startswith("echo: "):
                    count[message.text.removeprefix("echo: ")] += 1
        return count

    async def wait_answered(self, texts: list[str], timeout: float = 30) -> None:
        await self.tg.wait_until(lambda: all(self.answers()[t] for t in texts), timeout)

    async def first_run(self) -> Program:
        """Sign in from a stored key, start, and get one answer in each chat."""
        await store_signed_in(self.tg, self.bot, self.session_file)
        program = await self.start()
        for text, chat in zip(["p0", "g0", "c0"], self.chats(), strict=True):
            await self.send(text, chat)
        await self.wait_answered(["p0", "g0", "c0"])
        return program

    async def restart_after(self, missed: dict[str, Account | Chat]) -> None:
        """Send ``missed`` while the bot is down, start it again, wait for the answers and
        stop it cleanly."""
        for text, chat in missed.items():
            await self.send(text, chat)
        program = await self.start()
        await self.wait_answered(list(missed))
        assert await stop(program) == 0


async def stop(program: Program) -> int:
    program.process.send_signal(signal.SIGINT)
    code, _ = await program.finish()
    return code


async def test_killed_bot_answers_everything_sent_while_it_was_down(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    world = World(tg, tmp_path)
    program = await world.first_run()
    program.process.kill()  # SIGKILL: nothing is flushed, nothing is cleaned up
    await program.process.wait()

    missed: dict[str, Account | Chat] = {"p1": world.bot, "p2": world.bot, "g1": world.group,
                                         "c1": world.channel, "c2": world.channel}
    await world.restart_after(missed)

    answers = world.answers()
    assert all(answers[text] >= 1 for text in missed)  # at least once after a kill
    assert tg.call_count("auth.importBotAuthorization") == 0


async def test_cleanly_stopped_bot_answers_what_it_missed_exactly_once(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    world = World(tg, tmp_path)
    assert await stop(await world.first_run()) == 0

    missed: dict[str, Account | Chat] = {"p1": world.bot, "g1": world.group, "g2": world.group,
                                         "c1": world.channel}
    await world.restart_after(missed)

    assert world.answers() == Counter({t: 1 for t in ["p0", "g0", "c0", *missed]})


async def test_inline_keyboard_callback_edits_the_message(tg: FakeTelegram, tmp_path: Path) -> None:
    world = World(tg, tmp_path)
    await store_signed_in(tg, world.bot, world.session_file)
    program = await world.start()

    await world.send("/start", world.bot)
    keyboard = await tg.wait_for(to=world.owner, from_=world.bot, timeout=20)
    answer = await tg.press_button(world.owner, world.bot, text="Yes")
    edited = await tg.wait_until(
        lambda: next((m for m in tg.messages(world.owner, world.bot)
                      if m.id == keyboard.id and m.edit_date), None))
    assert await stop(program) == 0

    assert [text for text, _ in keyboard.callback_buttons()] == ["Yes", "No"]
    assert answer == "Thanks!"
    assert edited.text == "You said yes" and edited.reply_markup is None


async def test_file_sent_to_the_bot_comes_back_reversed(tg: FakeTelegram, tmp_path: Path) -> None:
    world = World(tg, tmp_path)
    await store_signed_in(tg, world.bot, world.session_file)
    program = await world.start()
    payload = bytes(range(256)) * 2000  # 500 KiB: several parts each way

    await tg.send_file(world.owner, world.bot, payload, name="data.bin")
    reply = await tg.wait_for(to=world.owner, from_=world.bot, timeout=20)
    assert await stop(program) == 0

    assert reply.text == f"got {len(payload)} bytes"
    assert tg.file_of(reply) == payload[::-1]


async def test_group_of_three_members_sees_the_bots_answer(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    world = World(tg, tmp_path)
    friend = tg.add_user(first_name="Friend")
    team = tg.create_group("Team", world.owner, friend, world.bot)
    await store_signed_in(tg, world.bot, world.session_file)
    program = await world.start()

    await tg.send_message(friend, team, "hello team")
    seen_by_owner = await tg.wait_for(to=world.owner, from_=world.bot, chat=team, timeout=20)
    seen_by_friend = await tg.wait_for(to=friend, from_=world.bot, chat=team)
    assert await stop(program) == 0

    assert len(team.members) == 3
    assert seen_by_owner.text == seen_by_friend.text == "echo: hello team"
    assert await tg.wait_for_message(to=world.owner, from_=friend, chat=team) == "hello team"


async def test_channel_state_survives_a_restart_and_drives_channel_difference(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    world = World(tg, tmp_path)
    await store_signed_in(tg, world.bot, world.session_file)
    program = await world.start()
    await world.send("c0", world.channel)
    await world.wait_answered(["c0"])
    assert await stop(program) == 0
    stored_pts = stored(world.session_file).updates
    assert stored_pts is not None and world.channel.id in stored_pts.channels

    posts = [f"c{i}" for i in range(1, INLINE_CHANNEL_UPDATES + 3)]  # too many to come inline
    for text in posts:
        await world.send(text, world.channel)
    tg.reset_counts()
    program = await world.start()
    await world.wait_answered(posts)
    assert await stop(program) == 0

    assert tg.call_count("updates.getChannelDifference") >= 1
    assert world.answers() == Counter({t: 1 for t in ["c0", *posts]})


async def test_groups_and_channels_resolve_after_a_restart_without_the_network(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user, other = tg.add_user(), tg.add_user()
    group = tg.create_group("Cached group", other, user)
    channel = tg.create_channel("Cached channel", other, user)
    session_file = tmp_path / "user.json"
    await store_signed_in(tg, user, session_file)
    env = {**tg.env(), "SESSION_FILE": str(session_file)}
    first = await start_program(env, "dialogs")
    await first.result()
    assert set((await first.result())["dialogs"]) >= {-group.id, -1_000_000_000_000 - channel.id}
    assert (await first.finish())[0] == 0

    tg.reset_counts()
    marked = {-group.id: "InputPeerChat", -1_000_000_000_000 - channel.id: "InputPeerChannel"}
    program = await start_program(env, "resolve", *map(str, marked))
    await program.result()
    found = [await program.result() for _ in marked]
    code, stderr = await program.finish()
    assert code == 0, stderr
    assert [(f["peer"], f["kind"]) for f in found] == list(marked.items())
    for method in ("channels.getChannels", "messages.getChats", "messages.getDialogs",
                   "contacts.resolveUsername", "channels.getFullChannel"):
        assert tg.call_count(method) == 0, method


async def test_killed_user_client_gets_what_arrived_while_it_was_down(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    user, friend = tg.add_user(), tg.add_user()
    group = tg.create_group("Friends", friend, user)
    channel = tg.create_channel("Friend's channel", friend, user)
    session_file = tmp_path / "user.json"
    await store_signed_in(tg, user, session_file)
    env = {**tg.env(), "SESSION_FILE": str(session_file), "TG_PHONE": user.phone or ""}
    script = ROOT / "tests" / "e2e" / "user_program.py"

    program = await start_program(env, script=script)
    await program.expect(f"{user.id} running", timeout=30)
    await tg.send_message(friend, channel, "live post")
    await program.expect("GOT ", timeout=20)
    program.process.kill()
    await program.process.wait()

    sent = {"in private": user, "in the group": group, "in the channel": channel}
    for text, chat in sent.items():
        await tg.send_message(friend, chat, text)
    program = await start_program(env, script=script)
    got: set[str] = set()
    while not set(sent) <= got:
        got.add((await program.expect("GOT ", timeout=20)).split(" ", 2)[2])
    assert await stop(program) == 0
    assert tg.call_count("auth.signIn") == 0
