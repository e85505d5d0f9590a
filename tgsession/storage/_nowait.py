"""File syscalls that never wait for the disk, so an event loop may call them.

Opening a session runs on every start. Done in a worker thread, its few syscalls cost
well under 0.1 ms, but the hop to a new process's first worker thread and back costs
0.8 to 1.5 ms on a loaded 2-core VM: more than the rest of the open. Linux can say in
advance whether a call would wait for the disk:

* ``openat2(..., RESOLVE_CACHED)`` (Linux 5.12) resolves a path only from the kernel's
  caches and fails with ``EAGAIN`` where a lookup needs I/O or revalidation (a cold
  cache, NFS). A missing file also gives ``EAGAIN``: a negative lookup is not trusted.
* ``preadv2(..., RWF_NOWAIT)`` (Linux 4.14) reads only what is in the page cache and
  fails with ``EAGAIN`` otherwise.

Each function here raises :class:`WouldBlock` where the call would have waited, or where
the platform cannot tell (not Linux, an older kernel, another architecture, a file
system without ``RWF_NOWAIT``); the caller then does the same work in a worker thread.
So the event loop never waits for storage I/O (DESIGN invariant 3), and a restart with
warm caches, the common case, costs no thread hop.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from typing import Any

from ._sys import libc

__all__ = ["WouldBlock", "open_cached", "read_cached"]

_SYS_OPENAT2 = 437  # the same number on every architecture with the unified table
_ARCHES = frozenset({"x86_64", "amd64", "aarch64", "arm64"})
_RESOLVE_CACHED = 0x20
_AT_FDCWD = -100
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", None)


class WouldBlock(Exception):
    """The call would wait for the disk (or cannot promise not to): use a worker thread."""


def _libc_syscall() -> Any:
    """libc's ``syscall(2)`` (ctypes: Telethon imports it already, so no import time)."""
    import ctypes

    function = libc().syscall
    function.restype = ctypes.c_long
    return function


def _openat2(path: str | os.PathLike[str], flags: int) -> int:
    global _syscall
    import ctypes

    if _syscall is None:
        _syscall = _libc_syscall()
    how = struct.pack("=QQQ", flags | os.O_CLOEXEC, 0, _RESOLVE_CACHED)  # struct open_how
    fd = int(_syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(_AT_FDCWD),
                      os.fsencode(path), how, ctypes.c_size_t(len(how))))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), os.fspath(path))
    return fd


_syscall: Any = None
_usable = (sys.platform.startswith("linux") and _RWF_NOWAIT is not None
           and os.uname().machine.lower() in _ARCHES)


def open_cached(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_CLOEXEC)`` if every part of ``path`` is in the kernel's
    caches; :class:`WouldBlock` otherwise, and for a missing file. ``flags`` must not
    create or truncate (``O_CREAT``/``O_TRUNC`` always give ``EAGAIN``). Other errors
    (``EACCES``, ``ELOOP``, ...) raise ``OSError`` as ``os.open`` would."""
    global _usable
    if not _usable:
        raise WouldBlock
    try:
        return _openat2(path, flags)
    except OSError as error:
        if error.errno == errno.EAGAIN:
            raise WouldBlock from None
        if error.errno in (errno.ENOSYS, errno.EINVAL, errno.EPERM, errno.E2BIG):
            _usable = False  # no openat2 here (an older kernel, a seccomp filter)
            raise WouldBlock from None
        raise
    except (AttributeError, ImportError):  # no libc syscall(): never try again
        _usable = False
        raise WouldBlock from None


def read_cached(fd: int, size: int) -> bytes:
    """The first ``size`` bytes of ``fd``, which must be exactly ``size`` long, read only
    from the page cache; :class:`WouldBlock` if any of it would come from the disk (or
    the file's length is not ``size`` any more)."""
    global _usable
    assert _RWF_NOWAIT is not None
    buffer = bytearray(size + 1)
    try:
        count = os.preadv(fd, [buffer], 0, _RWF_NOWAIT)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            _usable = False  # the file system cannot promise: never ask again
        if error.errno in (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise WouldBlock from None
        raise
    if count != size:  # a short read (partly cached) or a file that grew since fstat
        raise WouldBlock
    return bytes(memoryview(buffer)[:size])
