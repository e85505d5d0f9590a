"""The documentation's examples run, and every public name has a reference entry.

A fenced Python block in ``docs/**/*.md`` or ``README.md`` is runnable when the line before
it is an HTML comment (invisible on the site and on GitHub)::

    <!-- runnable: program [restart] [expect="text"] -->
    <!-- runnable: pytest -->

``program``: the block is a whole program. It runs as a new process in an empty folder,
against an offline Telegram running in this test, with the settings a user's ``.env`` would
hold (``APP_ID``, ``APP_HASH``, ``TG_DC``, ``TG_PUBLIC_KEYS``, ``BOT_TOKEN`` of the bot
``@docs_bot``, ``TG_PHONE`` of the user Ann, +15550001). Whatever it asks on the terminal is
answered: the phone number first, then the login code once the server has sent one. It must
exit 0 and print ``expect``. With ``restart`` it runs a second time on the same folder and
must not sign in again (no auth.sendCode, auth.signIn or auth.importBotAuthorization).

``pytest``: the block is a test module of the user's project; it runs with ``python -m
pytest`` in a folder holding only the ``conftest.py`` line the Testing guide shows (no pytest
configuration: the plugin runs async tests), and must pass with no warning in the output.

A block whose only line is ``--8<-- "path"`` (pymdownx.snippets) runs the file it includes.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import tgsession
import tgsession.formats
import tgsession.testing
from tgsession.testing import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_MARKER = re.compile(r"^<!--\s*runnable:\s*(.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(`{3,})\s*(python|py)\s*$")
_SNIPPET = re.compile(r'^--8<--\s+"([^"]+)"\s*$')
_SIGN_IN = ("auth.sendCode", "auth.signIn", "auth.importBotAuthorization")
#: Settings of the developer's own environment that must not reach the examples.
_SETTINGS = ("APP_ID", "APP_HASH", "BOT_TOKEN", "SESSION_FILE", "SESSION_DIR", "SESSION_URL",
             "SESSION_KEY", "TG_PHONE", "TG_PASSWORD", "TG_DC", "TG_PUBLIC_KEYS")
_RUN_TIMEOUT = 60.0
_PHONE = "+15550001"


@dataclass(frozen=True)
class Example:
    where: str  # "docs/testing.md:42"
    kind: str
    restart: bool
    expect: str | None
    code: str


def _markdown_files() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]


def _parse(path: Path) -> list[Example]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for i, line in enumerate(lines):
        marker = _MARKER.match(line)
        if not marker:
            continue
        where = f"{path.relative_to(ROOT)}:{i + 1}"
        fence = _FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None:
            raise AssertionError(f"{where}: a runnable marker must precede a ```python fence")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == fence[1]), None)
        if end is None:
            raise AssertionError(f"{where}: the fenced block is never closed")
        words = shlex.split(marker[1])
        options = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        flags = {word for word in words[1:] if "=" not in word}
        if not words or words[0] not in ("program", "pytest") or flags - {"restart"} or (
            set(options) - {"expect"}
        ):
            raise AssertionError(f"{where}: unknown runnable marker {marker[1]!r}")
        code = "\n".join(lines[i + 2:end]) + "\n"
        snippet = _SNIPPET.match(code.strip())
        if snippet:
            code = (ROOT / snippet[1]).read_text(encoding="utf-8")
        found.append(Example(where, words[0], "restart" in flags, options.get("expect"), code))
    return found


EXAMPLES = [example for path in _markdown_files() for example in _parse(path)]


def test_the_docs_have_runnable_examples_of_both_kinds() -> None:
    kinds = {example.kind for example in EXAMPLES}
    assert kinds == {"program", "pytest"}, kinds
    assert any("docs/testing.md" in example.where for example in EXAMPLES)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SETTINGS}
    env.update(extra)
    # The example must import this checkout's tgsession, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


async def _run(argv: list[str], cwd: Path, env: dict[str, str], tg: FakeTelegram | None,
               where: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdin is not None
    # Answers for a terminal prompt: the phone now, the code once the server sent one.
    process.stdin.write(f"{_PHONE}\n".encode())

    async def answer_code() -> None:
        assert tg is not None and process.stdin is not None
        while True:
            try:
                code = tg.login_code(_PHONE)
            except LookupError:
                await asyncio.sleep(0.05)
                continue
            process.stdin.write(f"{code}\n".encode())
            return

    async def finish() -> bytes:
        # Not communicate(): it would close standard input before the code is known.
        assert process.stdout is not None
        output = await process.stdout.read()
        await process.wait()
        return output

    answering = asyncio.ensure_future(answer_code()) if tg is not None else None
    try:
        output = await asyncio.wait_for(finish(), _RUN_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{where}: still running after {_RUN_TIMEOUT:.0f} s") from None
    finally:
        if answering is not None:
            answering.cancel()
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{where}: exit status {process.returncode}\n{text}"
    return text


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "program"],
                         ids=lambda e: e.where)
async def test_program_example_runs(example: Example, tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(example.code, encoding="utf-8")
    async with FakeTelegram() as tg:
        tg.add_user(phone=_PHONE, first_name="Ann", username="ann")
        bot = tg.add_bot("docs_bot")
        env = _child_env({**tg.env(), "BOT_TOKEN": str(bot.token), "TG_PHONE": _PHONE})
        runs = 2 if example.restart else 1
        for run in range(runs):
            before = {method: tg.call_count(method) for method in _SIGN_IN}
            output = await _run([sys.executable, "example.py"], tmp_path, env, tg, example.where)
            expect = example.expect
            if expect is not None:
                assert expect in output, f"{example.where}: no {expect!r} in\n{output}"
            if run == 1:
                after = {method: tg.call_count(method) for method in _SIGN_IN}
                assert after == before, f"{example.where}: signed in again on restart: {after}"


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "pytest"],
                         ids=lambda e: e.where)
async def test_pytest_example_passes(example: Example, tmp_path: Path) -> None:
    # The setup the Testing guide tells users to write: the conftest line, and no pytest
    # configuration at all (the plugin makes pytest-asyncio run the async tests).
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["tgsession.testing.pytest_plugin"]\n', encoding="utf-8")
    (tmp_path / "test_example.py").write_text(example.code, encoding="utf-8")
    output = await _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
         "test_example.py"],
        tmp_path, _child_env({}), None, example.where,
    )
    assert re.search(r"\b[1-9]\d* passed", output), f"{example.where}: nothing passed\n{output}"
    assert "warning" not in output.lower(), f"{example.where}: warnings reach the user\n{output}"


# --- the API reference ----------------------------------------------------------------------


def _resolve(identifier: str) -> object:
    """What ``::: identifier`` names, the way griffe sees it: a module wins over an attribute."""
    parts = identifier.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            value = getattr(value, name)
        return value
    raise AssertionError(f"cannot import {identifier}")


def _reference_entries() -> dict[str, object]:
    entries = {}
    for page in sorted((DOCS / "reference").glob("*.md")):
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("::: "):
                identifier = line[4:].strip()
                entries[identifier] = _resolve(identifier)
    return entries


@pytest.mark.parametrize("module", [tgsession, tgsession.testing, tgsession.formats],
                         ids=lambda m: m.__name__)
def test_every_public_name_has_a_reference_entry(module: object) -> None:
    entries = _reference_entries()
    missing = []
    for name in module.__all__:  # type: ignore[attr-defined]
        value = getattr(module, name)
        by_name = f"{module.__name__}.{name}"  # type: ignore[attr-defined]
        if by_name in entries and entries[by_name] is value:
            continue
        # Constants (numbers, strings) compare by name only; objects by identity.
        if not any(v is value for v in entries.values()) or isinstance(value, (int, str)):
            missing.append(name)
    assert not missing, f"no '::: ' entry in docs/reference/*.md for {missing}"
