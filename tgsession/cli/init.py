"""``tgsession init [DIR]``: the skeleton of a project, with a test that passes offline.

Writes a bot built on ``bot_from_environment()`` (or, with ``--user``, a user client built
on ``client_from_environment()`` and ``auth_if_necessary()``), a test that runs it against
the offline Telegram, ``conftest.py`` for the pytest plugin, ``pyproject.toml``,
``.env.example`` (every setting, commented) and ``.gitignore``. Never overwrites a file.
"""

from __future__ import annotations

import argparse
import os
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ._context import CliError

__all__ = ["DISTRIBUTION", "ProjectFile", "project_files", "register", "write_project"]

#: The name of tgsession on the package index (the import name stays ``tgsession``).
DISTRIBUTION = "telethon-tgsession"


@dataclass(frozen=True)
class ProjectFile:
    """One file ``init`` writes: its name in the project, its text, what it is for."""

    name: str
    text: str
    purpose: str


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "init", help="start a project: a bot, its offline test, .env.example, .gitignore",
        description="Write a new project into DIR (default: the current folder): a bot built "
                    "on bot_from_environment() (or with --user a user client), a test that "
                    "runs it against the offline Telegram, conftest.py, pyproject.toml, "
                    ".env.example and .gitignore. Existing files are never overwritten. "
                    "Afterwards 'python -m pytest' in DIR passes offline.",
    )
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR",
                        help="the project folder (created if missing; default: .)")
    parser.add_argument("--user", action="store_true",
                        help="a user client that signs in on the terminal, instead of a bot")
    parser.set_defaults(func=_init)


def _template(name: str) -> str:
    return (resources.files("tgsession.cli") / "templates" / name).read_text(encoding="utf-8")


def project_files(project_name: str, *, user: bool = False) -> list[ProjectFile]:
    """The files of a new project named ``project_name``, in the order they are listed."""
    program, test = ("user.py", "test_user.py") if user else ("bot.py", "test_bot.py")
    pyproject = string.Template(_template("pyproject.toml.in")).substitute(
        name=project_name, distribution=DISTRIBUTION, version=__version__,
        module=program.removesuffix(".py"),
    )
    what = ("a user client: signs in on the terminal once (client_from_environment)" if user
            else "an echo bot: signs in once with BOT_TOKEN (bot_from_environment)")
    return [
        ProjectFile(program, _template(program), what),
        ProjectFile(test, _template(test), "its test, against the offline Telegram"),
        ProjectFile("conftest.py", _template("conftest.py"), "turns on tgsession's pytest plugin"),
        ProjectFile("pyproject.toml", pyproject,
                    f"needs {DISTRIBUTION}; its [testing] extra for the tests"),
        ProjectFile(".env.example", _template("env.example"), "every setting, commented"),
        ProjectFile(".gitignore", _template("gitignore"), "keeps .env and .tgsession/ out of git"),
    ]


def project_name_for(folder: Path) -> str:
    """A valid project name from the folder's name (``my bot`` -> ``my-bot``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name).strip("-._")
    return name or "mybot"


def write_project(folder: Path, files: list[ProjectFile]) -> None:
    """Write ``files`` into ``folder`` (created if missing), or none of them if any exists.

    Raises :class:`CliError` naming the files that exist; a file that appears meanwhile is
    not overwritten either (each is created exclusively).
    """
    existing = [f.name for f in files if (folder / f.name).exists()]
    if existing:
        raise CliError(f"{folder} already has {', '.join(existing)}; init never overwrites "
                       "files: choose an empty or new folder")
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        fd = os.open(folder / file.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(file.text)


def _init(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    files = project_files(project_name_for(folder), user=args.user)
    try:
        write_project(folder, files)
    except FileExistsError as exc:
        raise CliError(f"{exc.filename} appeared while writing; init never overwrites files "
                       "(the files written before it are kept)") from None
    program = files[0].name
    width = max(len(f.name) for f in files)
    print(f"Wrote a new project in {folder}:")
    for file in files:
        print(f"  {file.name:<{width}}  {file.purpose}")
    steps = [] if folder == Path(".") else [(f"cd {folder}", "")]
    steps += [
        ("python -m pytest", f"{program} against the offline Telegram "
                             f"(needs {DISTRIBUTION}[testing])"),
        ("cp .env.example .env", "then fill in APP_ID, APP_HASH"
                                 + ("" if args.user else " and BOT_TOKEN")),
        (f"python {program}", ""),
    ]
    width = max(len(command) for command, _ in steps)
    print("Next:")
    for command, note in steps:
        print(f"  {command:<{width}}  # {note}" if note else f"  {command}")
    return 0
