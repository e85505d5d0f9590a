"""``tgsession login`` and ``tgsession logout``: signing in once, and signing out for good."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .._errors import ConfigError
from ._context import CliError, Context

__all__ = ["register"]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    login = subparsers.add_parser(
        "login", parents=[common], help="sign in interactively (only if needed)",
        description="Sign in with the same settings your program uses (APP_ID, APP_HASH, "
                    "the session's place), asking on the terminal. With a valid session it "
                    "only says who is signed in and asks nothing.",
    )
    login.add_argument("--bot", action="store_true",
                       help="sign in as the bot of BOT_TOKEN (its session: bot-<id>.json)")
    login.set_defaults(func=_login)

    logout = subparsers.add_parser(
        "logout", parents=[common], help="log the session out on Telegram and delete it",
        description="End the session on Telegram's side (auth.logOut), then remove it from "
                    "storage. The auth key is useless afterwards, wherever copies of it are.",
    )
    logout.add_argument("--bot", action="store_true", help="the bot session of BOT_TOKEN")
    logout.add_argument("--local-only", action="store_true",
                        help="only delete the stored session; do not contact Telegram")
    logout.set_defaults(func=_logout)


def describe_user(me: Any) -> str:
    """``@name (id 123, bot)``: who a session belongs to, without the phone number."""
    name = f"@{me.username}" if getattr(me, "username", None) else " ".join(
        part for part in (getattr(me, "first_name", None), getattr(me, "last_name", None)) if part
    ) or "an account"
    return f"{name} (id {me.id}{', bot' if getattr(me, 'bot', False) else ''})"


async def _login(args: argparse.Namespace) -> int:
    from ..auth import BotToken, TerminalAuth, auth_if_necessary
    from ..environment import client_from_environment
    from ._stored import raw_session, restore_raw

    ctx = Context.from_args(args)
    settings = ctx.settings()
    flow: Any = TerminalAuth()
    if args.bot:
        if settings.bot_token is None:
            raise ConfigError("BOT_TOKEN is not set: get one from @BotFather; see .env.example")
        flow = BotToken(settings.bot_token)
    where = ctx.where()
    before = await raw_session(ctx.storage())
    client = await client_from_environment(**ctx.factory_overrides())
    try:
        try:
            await client.connect()
            me = await _signed_in_as(client)
            wanted = getattr(flow, "bot_id", None)
            if me is not None and (wanted is None or me.id == wanted):
                print(f"Already signed in as {describe_user(me)}; nothing to do.")
                print(f"Session: {where}")
                return 0
            me = await auth_if_necessary(client, flow)
        finally:
            await client.disconnect()
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Interrupted half-way (at a prompt): leave the stored session as it was.
        await restore_raw(ctx.storage(), before)
        raise
    print(f"Signed in as {describe_user(me)}.")
    print(f"Session stored in {where}: programs with these settings now start without "
          "logging in.")
    return 0


async def _signed_in_as(client: Any) -> Any:
    try:
        return await client.get_me()
    except Exception:
        return None  # a dead key: auth_if_necessary says why and replaces it


async def _logout(args: argparse.Namespace) -> int:
    from ._stored import read_stored, remove_session

    ctx = Context.from_args(args)
    where = ctx.where()
    if args.local_only:
        # Deleting needs no decoding: a damaged session is removed too.
        if await remove_session(ctx.storage()):
            print(f"Removed the session from {where}.")
        else:
            print(f"No session is stored in {where}; nothing to log out.")
        return 0
    data = await read_stored(ctx.storage())
    if data is None:
        print(f"No session is stored in {where}; nothing to log out.")
        return 0
    if data.auth_key is not None:
        print(await _log_out_on_server(ctx))
    await remove_session(ctx.storage())
    print(f"Removed the session from {where}.")
    return 0


async def _log_out_on_server(ctx: Context) -> str:
    from telethon import errors, functions

    from ..environment import client_from_environment

    client = await client_from_environment(**ctx.factory_overrides(), connection_retries=1)
    try:
        try:
            await client.connect()
        except (OSError, ConnectionError) as exc:
            address = f"{client.session.server_address}:{client.session.port}"
            raise CliError(
                f"cannot reach Telegram at {address} ({type(exc).__name__}); the session "
                "was kept. Use --local-only to delete it without logging out"
            ) from None
        try:
            await client(functions.auth.LogOutRequest())
        except (errors.UnauthorizedError, errors.AuthKeyError):
            return "Telegram had already ended this session."
        return "Logged out on Telegram: the auth key no longer works anywhere."
    finally:
        await client.disconnect()
