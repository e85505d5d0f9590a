"""Reading a foreign SQLite session file without touching it.

The bytes are copied into a private temporary folder and opened from there, so the
original is never written (SQLite may roll back a hot journal on open) and arbitrary
bytes can be inspected safely. Every SQLite error becomes
:class:`~tgsession.SessionCorruptError`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Union

from .._errors import SessionCorruptError

__all__ = [
    "SQLITE_MAGIC", "Source", "open_copy", "open_file_copy", "read_source", "table_columns",
]

SQLITE_MAGIC = b"SQLite format 3\x00"
_COPY_CHUNK = 1 << 20

#: A session file given as a path, or as its bytes.
Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


def read_source(source: Source, what: str) -> tuple[bytes, str]:
    """The bytes of ``source`` and how messages name it (the path, or ``what``)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), what
    path = Path(source)
    try:
        return path.read_bytes(), str(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        # A long "path" may be a session string passed by mistake: never quote it.
        shown = str(path) if len(str(path)) < 100 else "the given path"
        raise SessionCorruptError(f"{shown}: cannot read the file ({reason})") from None


@contextlib.contextmanager
def open_copy(data: bytes, where: str) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a private copy of ``data``.

    Raises :class:`~tgsession.SessionCorruptError` if ``data`` is not an SQLite database,
    or if any SQLite error happens inside the ``with`` block.
    """
    if not data.startswith(SQLITE_MAGIC):
        raise SessionCorruptError(f"{where}: not an SQLite database")

    def write(file: BinaryIO) -> None:
        file.write(data)

    with _open_private_copy(write, where) as connection:
        yield connection


@contextlib.contextmanager
def open_file_copy(path: str | os.PathLike[str], where: str) -> Iterator[sqlite3.Connection]:
    """As :func:`open_copy`, for a file copied chunk by chunk: a file of any size is
    read in bounded memory (the copy is on disk, in a private temporary folder)."""
    try:
        source = open(path, "rb")  # noqa: SIM115 - closed below
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SessionCorruptError(f"{where}: cannot read the file ({reason})") from None
    with source:
        if source.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise SessionCorruptError(f"{where}: not an SQLite database")

        def write(file: BinaryIO) -> None:
            source.seek(0)
            shutil.copyfileobj(source, file, _COPY_CHUNK)

        with _open_private_copy(write, where) as connection:
            yield connection


@contextlib.contextmanager
def _open_private_copy(
    write: Callable[[BinaryIO], None], where: str
) -> Iterator[sqlite3.Connection]:
    with tempfile.TemporaryDirectory(prefix="tgsession-import-") as folder:
        path = Path(folder) / "copy.sqlite"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            write(file)
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise SessionCorruptError(f"{where}: cannot open the SQLite database") from exc
        try:
            yield connection
        except (sqlite3.Error, OverflowError, MemoryError, ValueError) as exc:
            raise SessionCorruptError(
                f"{where}: the SQLite database is damaged or not a session "
                f"({type(exc).__name__})"
            ) from exc
        finally:
            connection.close()


def table_columns(connection: sqlite3.Connection) -> dict[str, set[str]]:
    """Every table of the database, with its column names."""
    names = [row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    )]
    tables: dict[str, set[str]] = {}
    for name in names:
        if isinstance(name, str):
            quoted = name.replace('"', '""')
            info = connection.execute(f'PRAGMA table_info("{quoted}")')
            tables[name] = {str(row[1]) for row in info}
    return tables
