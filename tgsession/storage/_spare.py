"""The spare file: a temporary file kept and reused, swapped in by ``RENAME_EXCHANGE``.

FileStorage replaces its session by temp file + fsync + rename + folder fsync. Creating a
new inode for every write is what costs: on ext4 that sequence measured 3.9x one fsync'd
1 KiB write in place (0.235 ms), while writing a kept file in place + ``fdatasync`` +
``renameat2(RENAME_EXCHANGE)`` + the same folder fsync measured 2.2x (2.25x with the old
copy zeroed afterwards): two cache flushes (the data, then the folder's journal commit)
instead of the floor's one. A whole ``store_session`` under the lease, thread hop
included, went from 1.8 ms to 0.9 ms on a quiet disk (``python -m bench --only
storage_latency``, a loaded 2-core VM), and to 0.61x-0.68x on a busy one. The design
stays the same, a fully written and synced file swapped in by one atomic rename; only
the file is reused.

So ``.<name>.spare`` sits beside the session: written and synced, exchanged with the
session file (the old session takes the spare's name), then the old copy is overwritten
with zeros so an old auth key, or the plaintext an encryption just replaced, does not stay
readable there. Only one writer may ever use a spare (FileStorage uses it only while it
holds its lease), and the spare is never read back as a session: a crash anywhere leaves
the old or the new session at the session's name.

Linux only (``renameat2`` through ctypes, looked up on first use); elsewhere, or on a file
system without exchange support, FileStorage keeps its new-temp-file path.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._filelock import _O_CLOEXEC, _O_NOFOLLOW
from ._sys import libc, pwrite_all

__all__ = [
    "SPARE_SUPPORTED",
    "ExchangeUnsupportedError",
    "exchange",
    "holds_only_zeros",
    "spare_path",
    "write_spare",
    "zero_out",
]

#: Whether this platform may have ``renameat2`` (the call itself may still be refused).
SPARE_SUPPORTED = sys.platform.startswith("linux")

_RENAME_EXCHANGE = 2  # <linux/fs.h>
_AT_FDCWD = -100
# A FIFO or a device planted at the spare's name must not block the writer, or be a tty.
_OPEN_FLAGS = _O_NOFOLLOW | _O_CLOEXEC | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_UNSUPPORTED = frozenset({errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})
_READ_LIMIT = 1 << 20


class ExchangeUnsupportedError(OSError):
    """This kernel, C library or file system cannot exchange two names atomically."""


def spare_path(target: Path) -> Path:
    """The spare beside ``target``: ``.session.json.spare`` for ``session.json``."""
    return target.with_name(f".{target.name}.spare")


def write_spare(spare: Path, data: bytes) -> bool:
    """Write ``data`` into the spare (created 0600 if missing) and ``fdatasync`` it.

    Returns False, writing nothing, when something else is at the spare's name (a symlink,
    a hard link, a file others may read or another user owns, not a regular file): the
    caller removes that name and writes another way. Raises OSError for an I/O failure.
    """
    created = False
    try:
        fd = os.open(spare, os.O_WRONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        try:
            fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
        except FileExistsError:
            return False  # appeared meanwhile: not ours
        created = True
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EACCES, errno.EPERM):
            return False  # a symlink (O_NOFOLLOW), a FIFO, a folder, someone else's file
        raise
    try:
        if created:
            os.fchmod(fd, 0o600)  # whatever the umask did
        info = os.fstat(fd)
        if not _is_own_private_file(info):
            return False
        pwrite_all(fd, data)
        if info.st_size != len(data):
            os.ftruncate(fd, len(data))
        os.fdatasync(fd)  # the data and its size; the exchange is made durable by the folder
    finally:
        os.close(fd)
    return True


def exchange(a: Path, b: Path) -> None:
    """Swap the names ``a`` and ``b`` atomically (both must exist).

    Raises :class:`ExchangeUnsupportedError` when the platform or the file system cannot,
    OSError for any other failure (nothing was swapped then).
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        raise ExchangeUnsupportedError(errno.ENOSYS, "renameat2 is not in the C library")
    import ctypes  # already imported by Telethon; here so that a plain import stays light

    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return
    code = ctypes.get_errno()
    kind = ExchangeUnsupportedError if code in _UNSUPPORTED else OSError
    raise kind(code, os.strerror(code), str(a), None, str(b))


def zero_out(spare: Path, previous: os.stat_result) -> None:
    """Overwrite the old session, now at the spare's name, with zeros (no sync: the next
    lock holder removes a spare that still holds anything else, see :func:`holds_only_zeros`).

    Only the file that was the session (``previous``, its lstat before the exchange) is
    touched, and only while it has no other name; if it has one, the spare name is removed
    instead. Best effort: any failure removes the spare's name.
    """
    try:
        fd = os.open(spare, os.O_WRONLY | _OPEN_FLAGS)
    except OSError:
        return
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (previous.st_dev, previous.st_ino):
            return  # not the file we swapped out: leave it alone
        if _is_own_private_file(info):
            pwrite_all(fd, bytes(info.st_size))
            return
    except OSError:
        pass
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(spare)


def holds_only_zeros(spare: Path) -> bool | None:
    """Whether the spare holds nothing but zeros; ``None`` when there is none. A symlink,
    a folder or anything unreadable counts as not zeros."""
    try:
        fd = os.open(spare, os.O_RDONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _READ_LIMIT:
            return False
        data = os.pread(fd, info.st_size + 1, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return not data.strip(b"\0")


def _is_own_private_file(info: os.stat_result) -> bool:
    """A regular file with one name, owned by this user, that nobody else may use."""
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_nlink == 1
        and info.st_uid == os.geteuid()
        and not stat.S_IMODE(info.st_mode) & 0o077
    )


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """The C library's ``renameat2``, or ``None`` (glibc < 2.28, another C library)."""
    import ctypes

    try:
        function: Any = libc().renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint)
    function.restype = ctypes.c_int
    exchange: Callable[..., int] = function
    return exchange
