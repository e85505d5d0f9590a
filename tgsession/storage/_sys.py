"""Small system helpers shared by the file storage's modules."""

from __future__ import annotations

import errno
import functools
import os
from typing import Any

__all__ = ["libc", "pwrite_all"]


@functools.cache
def libc() -> Any:
    """The C library through ctypes (errno kept for ``ctypes.get_errno()``), loaded once.

    ctypes is imported here, on first use, so that importing tgsession stays light
    (Telethon imports it anyway). Raises OSError where there is no C library to load.
    """
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def pwrite_all(fd: int, data: bytes, offset: int = 0) -> None:
    """Write all of ``data`` at ``offset`` (``pwrite`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view, offset = view[written:], offset + written
