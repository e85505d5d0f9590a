"""Signing in only when necessary, and the flows that answer Telegram's questions.

:func:`auth_if_necessary` returns the signed-in user. With a valid stored session it sends
no auth.sendCode / auth.signIn / auth.importBotAuthorization and prompts nothing. With no
session it runs the flow; with a dead one (revoked, AUTH_KEY_DUPLICATED, a key the server
no longer knows) it says so in the log, discards the key, makes a fresh one and runs the
flow. The new session is stored before it returns.

A user flow is any object with three async methods::

    class MyFlow:
        async def phone(self) -> str: ...
        async def code(self, sent_code: SentCode) -> str: ...
        async def password(self) -> str: ...
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from telethon import TelegramClient, errors
from telethon.tl import types

from ._errors import AuthError, ConfigError
from .client import DEAD_KEY_ERRORS

__all__ = [
    "BotToken",
    "ConstantAuth",
    "EnvAuth",
    "TerminalAuth",
    "UserAuthFlow",
    "auth_if_necessary",
]

log = logging.getLogger("tgsession")

#: A code given as text, or an async function that receives the sent code and returns it.
CodeSource = str | int | Callable[[Any], Awaitable[str]]


@runtime_checkable
class UserAuthFlow(Protocol):
    """What signing in a user asks: the phone number, the code sent to it, the 2FA password.

    :func:`auth_if_necessary` calls these only when the stored session is missing or dead.
    ``code`` and ``password`` are asked again after a wrong answer, up to
    ``auth_if_necessary(max_attempts=...)`` times. An exception raised by a method ends the
    sign-in and propagates out of ``auth_if_necessary`` unchanged; nothing is stored.
    """

    async def phone(self) -> str:
        """The account's phone number, international format; asked once, first."""
        ...

    async def code(self, sent_code: Any) -> str:
        """The login code, after Telegram sent it (``sent_code`` is its ``auth.SentCode``)."""
        ...

    async def password(self) -> str:
        """The two-step verification password; asked only when the account has one."""
        ...


class BotToken:
    """Sign in as a bot with the token from @BotFather.

    Raises :class:`~tgsession.ConfigError` for a token that does not look like one
    (``123456:ABC-DEF...``); a token Telegram refuses makes :func:`auth_if_necessary`
    raise :class:`~tgsession.AuthError`. The token is kept out of ``repr``.
    """

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or ":" not in token:
            raise ConfigError(
                "the bot token must look like 123456:ABC-DEF... (from @BotFather); "
                "check BOT_TOKEN, see .env.example"
            )
        self._token = token

    @property
    def token(self) -> str:
        """The token itself (a secret)."""
        return self._token

    @property
    def bot_id(self) -> int | None:
        """The bot's user id, the public part before the colon."""
        head = self._token.split(":", 1)[0]
        return int(head) if head.isdigit() else None

    def __repr__(self) -> str:
        return f"BotToken(bot_id={self.bot_id})"


class TerminalAuth:
    """Asks on the terminal, without blocking the event loop; the password is not echoed.

    ``phone`` skips the phone prompt. Each answer is one line of standard input; when
    standard input is closed, the method raises :class:`~tgsession.AuthError`.
    Ctrl-C at a prompt cancels the waiting task at once, like Ctrl-C anywhere else in an
    ``asyncio.run`` program: ``async with client:`` disconnects (nothing new is signed in
    or stored), and ``asyncio.run`` raises ``KeyboardInterrupt`` (catch it around
    ``asyncio.run`` to exit without a traceback, as tgsession's examples do).
    """

    def __init__(self, phone: str | None = None) -> None:
        self._phone = phone
        self._codes_asked = 0
        self._passwords_asked = 0

    def __repr__(self) -> str:
        return "TerminalAuth()"

    async def phone(self) -> str:
        if self._phone:
            return self._phone
        return await _ask("Phone number (international format, e.g. +15551234567): ")

    async def code(self, sent_code: Any) -> str:
        self._codes_asked += 1
        where = _code_destination(sent_code)
        prompt = f"Login code sent {where}: " if self._codes_asked == 1 else (
            "That code was not accepted. Login code: "
        )
        return await _ask(prompt)

    async def password(self) -> str:
        self._passwords_asked += 1
        prompt = "Two-step verification password: " if self._passwords_asked == 1 else (
            "That password was not accepted. Two-step verification password: "
        )
        return await _ask(prompt, secret=True)


class ConstantAuth:
    """Fixed answers, for scripts and tests. ``code`` may be an async function of the sent code.

    ``password()`` raises :class:`~tgsession.AuthError` when the account has two-step
    verification and no ``password`` was given. Answers are kept out of ``repr``.
    """

    def __init__(self, phone: str, code: CodeSource, password: str | None = None) -> None:
        self._phone = phone
        self._code = code
        self._password = password

    def __repr__(self) -> str:
        return "ConstantAuth(phone=<hidden>, code=<hidden>, password=<hidden>)"

    async def phone(self) -> str:
        return self._phone

    async def code(self, sent_code: Any) -> str:
        if callable(self._code):
            return str(await self._code(sent_code))
        return str(self._code)

    async def password(self) -> str:
        if self._password is None:
            raise AuthError(
                "this account has two-step verification, but no password was given to "
                "ConstantAuth(password=...)"
            )
        return self._password


class EnvAuth:
    """Phone and password from the environment (``TG_PHONE``, ``TG_PASSWORD`` by default).

    The code cannot be known in advance: pass ``code=`` (text or an async function of the
    sent code); without it the code is asked on the terminal. ``phone()`` raises
    :class:`~tgsession.ConfigError` when ``<prefix>PHONE`` is unset, and ``password()``
    when the account has two-step verification and ``<prefix>PASSWORD`` is unset. The
    variables are read from ``os.environ`` when asked (the factories load ``.env`` into it).
    """

    def __init__(self, prefix: str = "TG_", code: CodeSource | None = None) -> None:
        self._prefix = prefix
        self._code = code
        self._terminal = TerminalAuth()

    def __repr__(self) -> str:
        return f"EnvAuth(prefix={self._prefix!r})"

    async def phone(self) -> str:
        name = f"{self._prefix}PHONE"
        value = os.environ.get(name, "").strip()
        if not value:
            raise ConfigError(f"{name} is not set: put the account's phone number in it "
                              "(see .env.example)")
        return value

    async def code(self, sent_code: Any) -> str:
        if self._code is None:
            return await self._terminal.code(sent_code)
        if callable(self._code):
            return str(await self._code(sent_code))
        return str(self._code)

    async def password(self) -> str:
        name = f"{self._prefix}PASSWORD"
        value = os.environ.get(name)
        if not value:
            raise ConfigError(f"the account has two-step verification but {name} is not set "
                              "(see .env.example)")
        return value


async def _ask(prompt: str, *, secret: bool = False) -> str:
    """One line from the terminal, without blocking the event loop.

    On a terminal the line is read as the event loop sees standard input become readable,
    so a prompt cancelled by Ctrl-C (``asyncio.run`` cancels the main task) ends at once and
    leaves no worker thread for the interpreter to wait for; ``secret`` turns echo off until
    the prompt ends, however it ends. Elsewhere (a pipe, a file) a worker thread reads it.
    Raises :class:`~tgsession.AuthError` when standard input is closed.
    """
    fd = _terminal_fd()
    if fd is not None:
        try:
            return await _ask_terminal(fd, prompt, secret)
        except NotImplementedError:  # an event loop that cannot watch file descriptors
            pass
    if secret:
        return await asyncio.to_thread(getpass.getpass, prompt)
    return await asyncio.to_thread(_read_line, prompt)


def _read_line(prompt: str) -> str:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        raise AuthError("no answer: standard input is closed")
    return line.strip()


def _terminal_fd() -> int | None:
    """The file descriptor of standard input when it is a terminal."""
    if sys.platform == "win32":  # (the proactor loop watches no console handles)
        return None
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if os.isatty(fd) else None


async def _ask_terminal(fd: int, prompt: str, secret: bool) -> str:
    """Read up to a newline, a byte at a time when the loop says one is there. Reads nothing
    past the newline, so ``input()`` still works afterwards. NotImplementedError when the
    event loop cannot watch ``fd`` (nothing was written then)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes | None] = loop.create_future()
    line = bytearray()

    def readable() -> None:
        try:
            byte = os.read(fd, 1)
        except OSError as exc:  # e.g. EIO: the terminal went away
            loop.remove_reader(fd)
            done.set_exception(exc)
            return
        if byte and byte != b"\n":
            line.extend(byte)
            return
        loop.remove_reader(fd)
        done.set_result(bytes(line) if byte or line else None)  # None: end of input

    loop.add_reader(fd, readable)
    echo = None
    answer: bytes | None = None
    try:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        if secret:
            echo = _echo_off(fd)
        answer = await done
    finally:
        loop.remove_reader(fd)
        if echo is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSAFLUSH, echo)
        if echo is not None or not done.done() or done.cancelled():
            # The Enter was not echoed, or the prompt was interrupted (the program ends):
            # what follows, the shell's prompt included, starts on a line of its own.
            sys.stdout.write("\n")
            sys.stdout.flush()
    if answer is None:
        raise AuthError("no answer: standard input is closed")
    return answer.decode(sys.stdin.encoding or "utf-8", "replace").strip()


def _echo_off(fd: int) -> list[Any]:
    """Turn the terminal's echo off (as getpass does); return the settings to restore."""
    import termios

    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    return saved


def _code_destination(sent_code: Any) -> str:
    kind = getattr(sent_code, "type", None)
    if isinstance(kind, types.auth.SentCodeTypeApp):
        return "to your Telegram app"
    if isinstance(kind, types.auth.SentCodeTypeSms):
        return "by SMS"
    return "to you"


async def auth_if_necessary(
    client: TelegramClient,
    flow: UserAuthFlow | BotToken,
    *,
    max_attempts: int = 3,
) -> types.User:
    """Return the signed-in user, signing in with ``flow`` only if the session needs it.

    Connects the client if needed. With a valid stored session it sends no
    auth.sendCode, auth.signIn or auth.importBotAuthorization and calls nothing on ``flow``.
    A dead stored key (revoked, AUTH_KEY_DUPLICATED, unknown to the server) is logged,
    discarded and replaced by a fresh one before the flow runs. The new session is stored
    (flushed) before it returns.

    Raises :class:`~tgsession.AuthError` when the flow cannot finish (wrong code or
    password ``max_attempts`` times, an expired code, an invalid phone number, a phone
    number with no account: Telethon 1.x cannot sign up, a refused bot token); whatever
    the flow's own methods raise (:class:`~tgsession.ConfigError` from ``EnvAuth``, for
    example) propagates unchanged. Network errors are Telethon's own.
    """
    me = await _current_user(client, flow)
    if me is not None:
        _remember_user(client, me)
        return me
    if isinstance(flow, BotToken):
        me = await _sign_in_bot(client, flow)
    else:
        me = await _sign_in_user(client, flow, max_attempts)
    _remember_user(client, me)
    flush = getattr(client.session, "flush", None)
    if flush is not None:
        await flush()
    log.info("signed in as %s (id %d)", "a bot" if me.bot else "a user", me.id)
    return me


async def _current_user(client: TelegramClient, flow: UserAuthFlow | BotToken) -> Any:
    """The user the stored session is signed in as, or None; dead keys are replaced."""
    dead: BaseException | None = getattr(client, "dead_key_error", None)
    if dead is not None:
        client.dead_key_error = None
        await _replace_dead_key(client, _explain(dead))
        return None
    try:
        if not client.is_connected():
            await client.connect()
        me = await client.get_me()
    except DEAD_KEY_ERRORS as exc:
        await _replace_dead_key(client, _explain(exc))
        return None
    if me is None:
        if getattr(client.session, "user_id", None) is not None:
            await _replace_dead_key(client, "Telegram no longer accepts it (revoked or expired)")
        return None
    if isinstance(flow, BotToken) and flow.bot_id is not None and me.id != flow.bot_id:
        await _replace_dead_key(
            client, f"it belongs to bot {me.id} but the token is for bot {flow.bot_id}"
        )
        return None
    return me


def _explain(exc: BaseException) -> str:
    if isinstance(exc, errors.AuthKeyDuplicatedError):
        return ("Telegram saw its key used from two places at once (AUTH_KEY_DUPLICATED) "
                "and burned it; make sure only one process uses a session")
    if isinstance(exc, errors.AuthKeyNotFound):
        return "the server does not know its key any more"
    return f"Telegram refused it ({type(exc).__name__})"


async def _replace_dead_key(client: TelegramClient, reason: str) -> None:
    log.warning("The stored Telegram session is no longer usable: %s. Discarding it and "
                "signing in again with a new key.", reason)
    # Telethon's own DC switch does the same: drop the connection without closing the
    # session (which would release our lease), forget the key, connect again.
    await client._disconnect()
    client._sender.auth_key.key = None
    client.session.auth_key = None
    forget = getattr(client.session, "forget_account", None)
    if forget is not None:
        await forget()
    client._authorized = None
    await client.connect()


def _remember_user(client: TelegramClient, me: Any) -> None:
    set_user = getattr(client.session, "set_user", None)
    if set_user is not None and (
        getattr(client.session, "user_id", None) != me.id
        or getattr(client.session, "bot", None) != bool(me.bot)
    ):
        set_user(me.id, bool(me.bot))


async def _sign_in_bot(client: TelegramClient, flow: BotToken) -> Any:
    try:
        return await client.sign_in(bot_token=flow.token)
    except (errors.AccessTokenInvalidError, errors.AccessTokenExpiredError) as exc:
        raise AuthError(
            f"Telegram refused the bot token for bot {flow.bot_id} ({type(exc).__name__}); "
            "check BOT_TOKEN against @BotFather"
        ) from None


async def _sign_in_user(client: TelegramClient, flow: UserAuthFlow, max_attempts: int) -> Any:
    phone = (await flow.phone()).strip()
    try:
        sent = await client.send_code_request(phone)
    except errors.PhoneNumberInvalidError:
        raise AuthError("Telegram says the phone number is invalid; use the international "
                        "format, e.g. +15551234567") from None
    for attempt in range(1, max_attempts + 1):
        code = (await flow.code(sent)).strip()
        try:
            return await client.sign_in(phone=phone, code=code,
                                        phone_code_hash=sent.phone_code_hash)
        except errors.SessionPasswordNeededError:
            return await _check_password(client, flow, max_attempts)
        except (errors.PhoneCodeInvalidError, errors.PhoneCodeEmptyError):
            log.warning("the login code was not accepted (attempt %d of %d)",
                        attempt, max_attempts)
        except errors.PhoneCodeExpiredError:
            raise AuthError("the login code expired; run the program again for a new one") from None
        except errors.PhoneNumberUnoccupiedError:
            raise AuthError(
                "this phone number has no Telegram account; create it with an official "
                "Telegram app first (Telethon 1.x cannot sign up)"
            ) from None
    raise AuthError(f"the login code was wrong {max_attempts} times; run the program again")


async def _check_password(client: TelegramClient, flow: UserAuthFlow, max_attempts: int) -> Any:
    for attempt in range(1, max_attempts + 1):
        password = await flow.password()
        try:
            return await client.sign_in(password=password)
        except errors.PasswordHashInvalidError:
            log.warning("the two-step verification password was not accepted "
                        "(attempt %d of %d)", attempt, max_attempts)
    raise AuthError(f"the two-step verification password was wrong {max_attempts} times")
