"""``tgsession init``: a project whose tests pass offline straight away, and that never
overwrites a file. (The Testing guide's examples run in a folder with no pytest configuration
in tests/test_docs_examples.py.)"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from tgsession.cli import main
from tgsession.cli.init import project_files
from tgsession.testing import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("APP_ID", "APP_HASH", "BOT_TOKEN", "SESSION_FILE", "SESSION_DIR", "SESSION_URL",
            "SESSION_KEY", "TG_PHONE", "TG_PASSWORD", "TG_DC", "TG_PUBLIC_KEYS")


def clean_environment() -> dict[str, str]:
    """This machine's environment without tgsession's settings or pytest's own variables."""
    return {k: v for k, v in os.environ.items()
            if k not in SETTINGS and not k.startswith("PYTEST_")}


async def pytest_in(folder: Path) -> tuple[int, str]:
    """``python -m pytest`` in ``folder``, as a user runs it there."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", cwd=folder,
        env=clean_environment(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode()


def init(*args: str) -> int:
    return main(["init", *args])


@pytest.mark.parametrize("kind", ["bot", "user"])
async def test_the_new_projects_tests_pass_offline_with_no_configuration(
    tmp_path: Path, kind: str
) -> None:
    folder = tmp_path / "mybot"
    assert init(str(folder), *(["--user"] if kind == "user" else [])) == 0

    status, output = await pytest_in(folder)

    program = "bot.py" if kind == "bot" else "user.py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".env.example", ".gitignore", "conftest.py", "pyproject.toml", program,
         f"test_{program}"])
    assert status == 0, output
    assert re.search(r"\b1 passed\b", output), output
    assert "warning" not in output.lower(), output  # none of Telethon's or pytest-asyncio's


def test_the_project_names_the_package_and_keeps_secrets_out_of_git(tmp_path: Path) -> None:
    assert init(str(tmp_path / "My Bot")) == 0
    folder = tmp_path / "My Bot"

    pyproject = (folder / "pyproject.toml").read_text()
    assert 'name = "My-Bot"' in pyproject
    assert '"telethon-tgsession[testing]>=' in pyproject
    assert {".env", ".tgsession/"} <= set((folder / ".gitignore").read_text().split())
    example = (folder / ".env.example").read_text()
    for name in SETTINGS:  # the whole configuration table, each commented
        assert re.search(rf"^# .+\n(?:#.*\n|[A-Z_]+=\n)*{name}=$", example, re.M), name


def test_the_repositorys_env_example_is_the_one_init_writes() -> None:
    [example] = [f for f in project_files("x") if f.name == ".env.example"]
    assert (ROOT / ".env.example").read_text() == example.text


def test_init_never_overwrites_and_writes_nothing_when_a_file_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bot.py").write_text("my own bot\n")

    status = init(str(tmp_path))

    assert status == 1
    assert "bot.py" in capsys.readouterr().err
    assert (tmp_path / "bot.py").read_text() == "my own bot\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bot.py"]


async def test_the_bot_starts_and_stops_without_telethons_noise(
    tmp_path: Path, fake_telegram: FakeTelegram
) -> None:
    assert init(str(tmp_path)) == 0
    bot = fake_telegram.add_bot("quiet_bot")
    env = {**clean_environment(), **fake_telegram.env(), "BOT_TOKEN": str(bot.token)}
    for _ in range(2):  # a first start that signs in, a restart that does not
        process = await asyncio.create_subprocess_exec(
            sys.executable, "bot.py", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        seen = b""
        while b"is running" not in seen:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, seen.decode()
            seen += line
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
        output = (seen + rest).decode()
        assert process.returncode == 0, output
        assert "already connected" not in output
        assert "WARNING" not in output and "ERROR" not in output, output


def test_the_repositorys_echo_bot_is_the_bot_init_writes() -> None:
    # The same program twice on purpose (the wheel ships the template; the docs include the
    # example): only the line saying how to run it may differ.
    [bot] = [f for f in project_files("x") if f.name == "bot.py"]
    example = (ROOT / "examples" / "echo_bot.py").read_text()
    assert example == bot.text.replace("python bot.py", "python examples/echo_bot.py", 1)
