"""The ``tgsession`` command: sign in, inspect, move and convert sessions.

Each subcommand lives in its own module with a ``register(subparsers, common)`` function;
this module builds the parser, runs the command and turns every error into one line on
stderr and an exit status: 0 ok, 1 operational failure, 2 usage or configuration error,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn

from .. import __version__
from .._errors import ConfigError, TgSessionError
from ._context import EXIT_FAILURE, EXIT_USAGE, CliError

__all__ = ["main"]

EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line: ``tgsession: error: ...``."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        print(f"tgsession: error: {message}{hint}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE)


def _add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    group = parser.add_argument_group("where the session is (default: as the factories find it)")
    group.add_argument("--session-file", metavar="PATH", default=default,
                       help="the session file (instead of SESSION_FILE / SESSION_DIR)")
    group.add_argument("--session-url", metavar="URL", default=default,
                       help="a storage URL such as redis://host/0 (instead of SESSION_URL)")
    group.add_argument("--env-file", metavar="PATH", default=default,
                       help="read settings from this file (default: the nearest .env)")


def build_parser() -> argparse.ArgumentParser:
    """The full parser; subcommands set ``func`` (a coroutine function or a plain one)."""
    from . import demo, init, keygen, login, server, status, transfer

    parser = _Parser(
        prog="tgsession",
        description="Telethon sessions that survive restarts: sign in once, inspect, move "
                    "and convert sessions.",
        epilog="Run 'tgsession demo' to see it work offline, with no credentials, and "
               "'tgsession init mybot' to start a project.",
    )
    parser.add_argument("--version", action="version", version=f"tgsession {__version__}")
    _add_global_options(parser, default=None)
    # Subcommands accept the global options too, after their name.
    common = _Parser(add_help=False)
    _add_global_options(common, default=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (login, status, transfer, keygen, server, demo, init):
        module.register(subparsers, common)
    keygen.register_encrypt(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(args_list)
        if getattr(args, "passthrough", False):
            args.extra = extra
        elif extra:
            command = f"tgsession {args.command}" if args.command else "tgsession"
            shown = " ".join(a if len(a) < 100 else "<a long argument>" for a in extra)
            print(f"tgsession: error: unrecognized arguments: {shown} "
                  f"(see '{command} --help')", file=sys.stderr, flush=True)
            return EXIT_USAGE
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        result = args.func(args)
        if asyncio.iscoroutine(result):
            return _run(result)
        return int(result)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        _interrupted()
        return EXIT_INTERRUPTED
    except CliError as exc:
        _error(str(exc))
        return exc.status
    except (ConfigError, ImportError) as exc:
        # (An ImportError is a backend whose extra is missing: it names the extra.)
        _error(str(exc))
        return EXIT_USAGE
    except (TgSessionError, OSError) as exc:
        _error(str(exc) or type(exc).__name__)
        return EXIT_FAILURE


def _error(message: str) -> None:
    line = " ".join(message.split())
    print(f"tgsession: error: {line}", file=sys.stderr, flush=True)


def _interrupted() -> None:
    print("\ntgsession: interrupted", file=sys.stderr, flush=True)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run the command's coroutine; Ctrl-C cancels it at an await point, so its cleanup
    (disconnecting, releasing the lease) runs and nothing half-written is stored."""
    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        try:
            return loop.run_until_complete(task)
        except KeyboardInterrupt:  # where signal handlers are not supported
            interrupted = True
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
            raise
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
    except KeyboardInterrupt:
        # A prompt may still block a worker thread in input(); waiting for it would hang,
        # and everything that matters has been cleaned up by now.
        _interrupted()
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
