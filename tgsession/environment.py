"""Configuration in, wired objects out: clients built from environment variables.

Reads ``.env`` (python-dotenv; real environment variables win) and the variables listed
in ``docs/configuration.md``, builds the storage and the session, and returns a
:class:`~tgsession.Client`.
Every missing or invalid setting raises :class:`~tgsession.ConfigError` naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import find_dotenv, load_dotenv

from ._errors import ConfigError
from .auth import BotToken, auth_if_necessary
from .client import Client
from .entities import DEFAULT_ENTITY_CACHE_SIZE
from .session import StorageSession
from .storage.base import Storage

__all__ = [
    "BotFromEnvironment",
    "ClientFromEnvironment",
    "Settings",
    "bot_from_environment",
    "client_from_environment",
    "read_settings",
    "storage_from_environment",
]

_SEE = "see .env.example"
_DC = re.compile(r"^(\d+)@(\[[0-9A-Fa-f:.]+\]|[^:@\s]+):(\d+)$")


@dataclass(frozen=True, slots=True)
class Settings:
    """The settings the factories read; ``repr`` hides the secrets."""

    api_id: int | None
    api_hash: str | None
    bot_token: str | None
    session_file: Path
    session_url: str | None
    session_key: str | None
    dc: tuple[int, str, int] | None
    public_keys: Path | None

    def __repr__(self) -> str:
        return (
            f"Settings(api_id={self.api_id}, api_hash={'<set>' if self.api_hash else None}, "
            f"bot_token={'<set>' if self.bot_token else None}, "
            f"session_file={str(self.session_file)!r}, "
            f"session_url={'<set>' if self.session_url else None}, "
            f"session_key={'<set>' if self.session_key else None}, dc={self.dc})"
        )


def _load_dotenv(dotenv: str | os.PathLike[str] | bool | None) -> Path | None:
    """Load ``.env`` without overriding real variables; return the folder it was found in."""
    if dotenv is False:
        return None
    path = str(dotenv) if dotenv not in (None, True) else find_dotenv(usecwd=True)
    if not path:
        return None
    if not os.path.isfile(path):
        raise ConfigError(f"the .env file {path} does not exist")
    try:
        load_dotenv(path, override=False)
    except UnicodeDecodeError:
        raise ConfigError(f"the .env file {path} is not UTF-8 text; save it as UTF-8") from None
    return Path(path).resolve().parent


def bot_session_name(token: str | None) -> str | None:
    """The default session file name of a bot, ``bot-<id>.json`` (the id is public)."""
    head = (token or "").split(":", 1)[0]
    return f"bot-{head}.json" if token and ":" in token and head.isdigit() else None


def read_settings(
    env: Mapping[str, str] | None = None,
    *,
    dotenv: str | os.PathLike[str] | bool | None = None,
    for_bot: bool = False,
    bot_token: str | None = None,
) -> Settings:
    """Read and validate the variables (``env`` defaults to ``os.environ`` after ``.env``).

    The default session file is ``.tgsession/session.json`` in the folder of the ``.env``
    file, or in the current folder when there is none: two projects never share a session.
    ``for_bot`` names it after the bot instead (:func:`bot_session_name`), so two bots never
    share one either. ``bot_token`` overrides ``BOT_TOKEN``.
    """
    project = _load_dotenv(dotenv) if env is None else None
    source: Mapping[str, str] = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = source.get(name, "").strip()
        return value or None

    bot_token = bot_token or get("BOT_TOKEN")
    default_name = (bot_session_name(bot_token) if for_bot else None) or "session.json"

    api_id: int | None = None
    raw_id = get("APP_ID")
    if raw_id is not None:
        if not raw_id.isdigit():
            raise ConfigError(f"APP_ID must be the number from my.telegram.org, got {raw_id!r}; "
                              f"{_SEE}")
        api_id = int(raw_id)
    api_hash = get("APP_HASH")
    if api_hash is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", api_hash):
        raise ConfigError("APP_HASH must be the 32 hexadecimal characters from my.telegram.org "
                          f"(the value given is not); {_SEE}")

    base = project or Path.cwd()
    session_file_raw = get("SESSION_FILE")
    session_dir_raw = get("SESSION_DIR")
    if session_file_raw is not None:
        session_file = Path(session_file_raw).expanduser()
    elif session_dir_raw is not None:
        session_file = Path(session_dir_raw).expanduser() / default_name
    else:
        session_file = base / ".tgsession" / default_name
    if not session_file.is_absolute():
        session_file = base / session_file

    return Settings(
        api_id=api_id,
        api_hash=api_hash,
        bot_token=bot_token,
        session_file=session_file,
        session_url=get("SESSION_URL"),
        session_key=get("SESSION_KEY"),
        dc=_parse_dc(get("TG_DC")),
        public_keys=_public_keys_path(get("TG_PUBLIC_KEYS")),
    )


def _parse_dc(value: str | None) -> tuple[int, str, int] | None:
    if value is None:
        return None
    match = _DC.match(value)
    if match is None:
        raise ConfigError(f"TG_DC must look like 2@149.154.167.40:443 (ID@HOST:PORT), got "
                          f"{value!r}; {_SEE}")
    dc_id, host, port = int(match[1]), match[2].strip("[]"), int(match[3])
    if not 1 <= port <= 65535 or not 1 <= dc_id <= 10_000:  # what the session format holds
        raise ConfigError(f"TG_DC has an invalid DC id or port: {value!r}; {_SEE}")
    return dc_id, host, port


def _public_keys_path(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"TG_PUBLIC_KEYS names {path}, which is not a file; {_SEE}")
    return path


def trust_public_keys(path: Path) -> int:
    """Make Telethon trust every RSA public key in the PEM file; return how many."""
    import rsa
    from telethon.crypto import rsa as telethon_rsa

    text = path.read_text(encoding="ascii", errors="replace")
    pems = re.finditer(r"-----BEGIN (RSA )?PUBLIC KEY-----.*?-----END (?:RSA )?PUBLIC KEY-----",
                       text, flags=re.S)
    count = 0
    for match in pems:
        pem = match[0].encode("ascii")
        try:
            if match[1]:
                telethon_rsa.add_key(pem.decode("ascii"), old=False)
            else:
                key = rsa.PublicKey.load_pkcs1_openssl_pem(pem)
                telethon_rsa.add_key(key.save_pkcs1().decode("ascii"), old=False)
        except Exception as exc:
            raise ConfigError(f"TG_PUBLIC_KEYS: {path} holds a key that cannot be read "
                              f"({type(exc).__name__})") from None
        count += 1
    if count == 0:
        raise ConfigError(f"TG_PUBLIC_KEYS: {path} holds no PEM public key")
    return count


def storage_from_environment(settings: Settings | None = None) -> Storage:
    """The storage the settings name: SESSION_URL, else the session file; encrypted with
    SESSION_KEY when it is set.

    ``settings`` defaults to the environment and the nearest ``.env``. Nothing is
    connected or read yet. Raises :class:`~tgsession.ConfigError` naming the variable
    for a bad ``SESSION_URL`` or ``SESSION_KEY``, or a missing extra (``redis``,
    ``postgres``, ``crypto``).
    """
    settings = settings or read_settings()
    storage: Storage
    if settings.session_url is not None:
        try:
            from .storage.url import storage_from_url
        except ImportError:
            raise ConfigError("SESSION_URL is not supported yet by this tgsession; "
                              "use SESSION_FILE or SESSION_DIR") from None
        try:
            storage = storage_from_url(settings.session_url)
        except ConfigError as exc:
            raise ConfigError(f"SESSION_URL: {exc}") from None
        except ImportError as exc:  # the driver of that scheme is not installed
            if "telethon-tgsession[" not in str(exc):
                raise
            raise ConfigError(f"SESSION_URL is set, but {exc}") from None
    else:
        from .storage.file import FileStorage

        storage = FileStorage(settings.session_file)
    if settings.session_key is not None:
        try:
            from .storage.encrypted import EncryptedStorage
        except ImportError as exc:
            if "tgsession" in str(exc) and "crypto" in str(exc):
                raise ConfigError(f"SESSION_KEY is set but {exc}") from None
            raise ConfigError("SESSION_KEY is not supported yet by this tgsession") from None
        try:
            storage = EncryptedStorage(storage, settings.session_key)
        except (ValueError, TypeError):
            raise ConfigError("SESSION_KEY is not a valid key: generate one with "
                              "`tgsession keygen`") from None
    return storage


_OPTIONS = ("api_id", "api_hash", "bot_token", "session_file", "session_url", "session_key",
            "dc", "public_keys")


async def _build(
    kind: str, overrides: dict[str, Any]
) -> tuple[Client, Settings]:
    storage_override: Storage | None = overrides.pop("storage", None)
    env: Mapping[str, str] | None = overrides.pop("env", None)
    dotenv = overrides.pop("dotenv", None)
    lock_wait: float | None = overrides.pop("lock_wait", None)
    cache_size: int = overrides.pop("entity_cache_size", DEFAULT_ENTITY_CACHE_SIZE)
    given = {key: overrides.pop(key) for key in _OPTIONS if key in overrides}
    settings = read_settings(env, dotenv=dotenv, for_bot=kind == "bot",
                             bot_token=given.pop("bot_token", None))
    fields = {name: getattr(settings, name) for name in _OPTIONS}
    for name, value in given.items():
        if name == "session_file" and value is not None:
            value = Path(value)
        if name == "dc" and isinstance(value, str):
            value = _parse_dc(value)
        fields[name] = value
    settings = Settings(**fields)
    if settings.api_id is None:
        raise ConfigError(f"APP_ID is not set: get it at https://my.telegram.org; {_SEE}")
    if settings.api_hash is None:
        raise ConfigError(f"APP_HASH is not set: get it at https://my.telegram.org; {_SEE}")
    if kind == "bot" and settings.bot_token is None:
        raise ConfigError(f"BOT_TOKEN is not set: get one from @BotFather; {_SEE}")
    if settings.public_keys is not None:
        trust_public_keys(settings.public_keys)

    storage = storage_override or storage_from_environment(settings)
    # A storage we built is ours to close; one passed in belongs to the caller.
    session = await StorageSession.open(storage, lock_wait=lock_wait,
                                        close_storage=storage_override is None,
                                        entity_cache_size=cache_size)
    try:
        if not session.server_address and settings.dc is not None:
            session.set_dc(*settings.dc)
        client = Client(session, settings.api_id, settings.api_hash, **overrides)
    except BaseException:
        await session.release()
        raise
    return client, settings


async def client_from_environment(**overrides: Any) -> Client:
    """A client for a user account, configured from the environment; not yet signed in.

    Keyword overrides: ``api_id``, ``api_hash``, ``session_file``, ``session_url``,
    ``session_key``, ``dc`` (``"ID@HOST:PORT"``), ``public_keys``, ``storage`` (a Storage
    object), ``env`` (a mapping used instead of the environment and ``.env``), ``dotenv``
    (a path, or False to skip), ``lock_wait`` (seconds to wait for another holder; default:
    the storage's, e.g. ``SESSION_URL=...?lock_wait=30``, else fail fast),
    ``entity_cache_size`` (entity rows held in memory, see
    :meth:`~tgsession.StorageSession.open`); anything else goes to ``TelegramClient``.
    Sign in with :func:`~tgsession.auth_if_necessary`.
    Raises :class:`~tgsession.ConfigError` and :class:`~tgsession.SessionLockedError`.
    """
    client, _ = await _build("user", overrides)
    return client


async def bot_from_environment(**overrides: Any) -> Client:
    """A connected client signed in as the bot of ``BOT_TOKEN`` (only if not already).

    Takes the same overrides as :func:`client_from_environment`, plus ``bot_token``.
    Without a session file setting, the session is ``.tgsession/bot-<bot id>.json``.
    Raises :class:`~tgsession.ConfigError` (``BOT_TOKEN`` or another setting missing or
    invalid), :class:`~tgsession.SessionLockedError` (another holder has the session) and
    :class:`~tgsession.AuthError` (Telegram refused the token); on any error the client
    is disconnected and the lock released.
    """
    client, settings = await _build("bot", overrides)
    assert settings.bot_token is not None
    try:
        await auth_if_necessary(client, BotToken(settings.bot_token))
    except BaseException:
        await client.disconnect()
        raise
    return client


#: Aliases for readers coming from gotd (``telegram.ClientFromEnvironment``).
ClientFromEnvironment = client_from_environment
BotFromEnvironment = bot_from_environment
