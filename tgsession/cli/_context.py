"""What every subcommand shares: the global options turned into settings and a storage,
and the one exception type that ends a command with a message and an exit status."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..environment import Settings
    from ..storage.base import Storage

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CliError", "Context", "err"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """Ends the command: ``message`` goes to stderr as one line, ``status`` is the exit code."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def err(message: str) -> None:
    """A note for the user on stderr (stdout stays clean for exports and --json)."""
    print(f"tgsession: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Context:
    """The global options (``--session-file``, ``--session-url``, ``--env-file``) and the
    subcommand's ``--bot``; settings are read once, on first use."""

    session_file: str | None = None
    session_url: str | None = None
    env_file: str | None = None
    bot: bool = False
    _settings: Settings | None = None

    @classmethod
    def from_args(cls, args: Any) -> Context:
        return cls(
            session_file=getattr(args, "session_file", None),
            session_url=getattr(args, "session_url", None),
            env_file=getattr(args, "env_file", None),
            bot=bool(getattr(args, "bot", False)),
        )

    def settings(self) -> Settings:
        """The environment's settings (``.env`` loaded), with the session's place resolved
        the way the factories resolve it; ConfigError for an invalid setting."""
        if self._settings is None:
            self._settings = self._resolve()
        return self._settings

    def _resolve(self) -> Settings:
        from ..environment import bot_session_name, read_settings

        settings = read_settings(dotenv=self.env_file)
        if self.session_url:
            return dataclasses.replace(settings, session_url=self.session_url)
        if self.session_file:
            path = Path(self.session_file).expanduser().absolute()
            return dataclasses.replace(settings, session_url=None, session_file=path)
        bot_name = bot_session_name(settings.bot_token)
        if settings.session_url is not None or os.environ.get("SESSION_FILE", "").strip():
            return settings
        if bot_name is None:
            if self.bot:
                from .._errors import ConfigError

                raise ConfigError("BOT_TOKEN is not set (or not a bot token): get one from "
                                  "@BotFather; see .env.example")
            return settings
        # SESSION_FILE is unset here: the bot's file sits where session.json would.
        bot_settings = dataclasses.replace(
            settings, session_file=settings.session_file.with_name(bot_name)
        )
        # Without --bot, a bot's session is still found when it is the only one there.
        if self.bot or (not settings.session_file.exists()
                        and bot_settings.session_file.exists()):
            return bot_settings
        return settings

    def storage(self) -> Storage:
        """A new storage object for the session (wrapped by SESSION_KEY when it is set)."""
        from ..environment import storage_from_environment

        return storage_from_environment(self.settings())

    def where(self) -> str:
        """The session's place for messages: the file, or the URL with its password masked."""
        settings = self.settings()
        if settings.session_url is not None:
            from ..storage.url import redact_url

            place = redact_url(settings.session_url)
        else:
            place = str(settings.session_file)
        return place + (" (encrypted)" if settings.session_key else "")

    def factory_overrides(self) -> dict[str, Any]:
        """Keyword arguments that make ``client_from_environment`` use this session."""
        settings = self.settings()
        return {
            "session_file": settings.session_file,
            "session_url": settings.session_url,
            "dotenv": self.env_file,
        }
