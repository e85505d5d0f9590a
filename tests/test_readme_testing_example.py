"""The README's "Testing your bot offline" example, as a user would write it; a last test
checks that the README still shows this very code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from telethon import Button, events

from tgsession import MemoryStorage, bot_from_environment
from tgsession.testing import Account, FakeTelegram

README = Path(__file__).resolve().parents[1] / "README.md"


async def start_bot(tg: FakeTelegram, bot: Account) -> Any:
    client = await bot_from_environment(env={**tg.env(), "BOT_TOKEN": bot.token},
                                        storage=MemoryStorage())

    @client.on(events.NewMessage(pattern="/start"))
    async def start(event: Any) -> None:
        await event.respond("Agree?", buttons=[Button.inline("Yes", b"yes")])

    @client.on(events.CallbackQuery(data=b"yes"))
    async def yes(event: Any) -> None:
        await event.answer("Thanks!")
        await event.edit("You said yes")

    @client.on(events.NewMessage(func=lambda event: event.file))
    async def size(event: Any) -> None:
        data = await event.download_media(file=bytes)
        await event.reply(f"{len(data)} bytes")

    return client


async def test_buttons_groups_and_files(fake_telegram: FakeTelegram) -> None:
    tg = fake_telegram
    bot = tg.add_bot("my_bot")
    ann, bob = tg.add_user(username="ann"), tg.add_user(username="bob")
    client = await start_bot(tg, bot)

    await tg.send_message(ann, bot, "/start")  # a private chat
    assert await tg.wait_for_message(to=ann, from_=bot) == "Agree?"
    assert await tg.press_button(ann, bot, text="Yes") == "Thanks!"
    await tg.wait_until(lambda: tg.messages(ann, bot)[-1].text == "You said yes")

    group = tg.create_group("Team", ann, bob, bot)  # a group of three
    await tg.send_message(bob, group, "/start")
    assert await tg.wait_for_message(to=ann, from_=bot, chat=group) == "Agree?"

    await tg.send_file(ann, bot, b"%PDF-1.7 ...", name="report.pdf")
    assert await tg.wait_for_message(to=ann, from_=bot) == "12 bytes"
    assert tg.call_count("auth.importBotAuthorization") == 1
    await client.disconnect()


def _code_lines(text: str) -> list[str]:
    """Lines of code without type hints, comments or blank lines, for a comparison."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\s*#.*$", "", line).strip()
        line = re.sub(r": (FakeTelegram|Account|Any)(?=[,)])", "", line)
        line = line.replace(" -> Any:", ":").replace(" -> None:", ":")
        if line:
            lines.append(line)
    return lines


def test_readme_shows_this_code() -> None:
    readme = README.read_text(encoding="utf-8")
    section = readme.split("## Testing your bot offline", 1)[1]
    block = section.split("```python", 1)[1].split("```", 1)[0]
    shown = block.split("# test_bot.py", 1)[1]
    here = _code_lines(Path(__file__).read_text(encoding="utf-8"))
    missing = [line for line in _code_lines(shown) if line not in here]
    assert missing == []
