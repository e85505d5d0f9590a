"""The on-disk format of :class:`~tgsession.FileStorage`'s entity log (pure, no I/O).

The log is a header followed by records appended one batch at a time::

    header  b"TGSENT" + version (u16, big-endian)                       8 bytes
    record  id (i64) | length (u32) | crc32 (u32) | value (length bytes)  little-endian

The CRC32 covers the id, the length and the value, so a record torn by a crash (or any
later garbage) fails its check. Replay keeps the last value per id and stops at the first
record that is incomplete or fails its check: what follows it is discarded, which is safe
because the log is a cache.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from .._errors import SessionCorruptError, SessionVersionError

__all__ = ["HEADER", "Replay", "encode_records", "replay"]

VERSION = 1
_MAGIC = b"TGSENT"
HEADER = _MAGIC + VERSION.to_bytes(2, "big")

_PREFIX = struct.Struct("<qI")  # id, length: the part the CRC covers with the value
_RECORD = struct.Struct("<qII")  # id, length, crc32


@dataclass(frozen=True)
class Replay:
    """What a replay found: the live rows, how many records, and where valid data ends."""

    rows: dict[int, bytes]
    records: int
    valid_end: int


def encode_records(rows: Iterable[tuple[int, bytes]]) -> bytes:
    """Encode rows as log records (without the header). Raises ``struct.error`` for an id
    outside the signed 64-bit range."""
    parts: list[bytes] = []
    prefix, pack_record, crc32 = _PREFIX.pack, _RECORD.pack, zlib.crc32
    for key, value in rows:
        value = bytes(value)
        crc = crc32(value, crc32(prefix(key, len(value))))
        parts.append(pack_record(key, len(value), crc))
        parts.append(value)
    return b"".join(parts)


def replay(data: bytes, where: str) -> Replay:
    """Replay a whole log; ``where`` names the file in errors.

    An empty log, or a header torn while the file was first written, replays as empty.
    Raises :class:`~tgsession.SessionVersionError` for a log written by a newer format and
    :class:`~tgsession.SessionCorruptError` for a file that is not an entity log at all.
    """
    if len(data) < len(HEADER):
        if HEADER.startswith(data):
            return Replay({}, 0, 0)
        raise SessionCorruptError(f"{where} is not a tgsession entity log (bad header)")
    if data[: len(_MAGIC)] != _MAGIC:
        raise SessionCorruptError(f"{where} is not a tgsession entity log (bad header)")
    version = int.from_bytes(data[len(_MAGIC) : len(HEADER)], "big")
    if version != VERSION:
        raise SessionVersionError(
            f"{where} is an entity log of format {version}; this tgsession reads format "
            f"{VERSION} (upgrade tgsession, or delete the file: it is only a cache)"
        )

    # The hot loop of opening a session with a large cache: per record one unpack, two
    # CRC calls (the CRC field sits between the prefix and the value it covers, so one
    # contiguous CRC is not possible in this format), the value slice and a dict store.
    # Slicing the 12-byte prefix out of ``data`` is cheaper than a memoryview slice.
    rows: dict[int, bytes] = {}
    size = len(data)
    pos = len(HEADER)
    records = 0
    unpack, head, crc32 = _RECORD.unpack_from, _PREFIX.size, zlib.crc32
    record_size = _RECORD.size
    last_start = size - record_size  # a record header must fit
    while pos <= last_start:
        key, length, crc = unpack(data, pos)
        start = pos + record_size
        end = start + length
        if end > size:
            break
        value = data[start:end]
        if crc32(value, crc32(data[pos : pos + head])) != crc:
            break
        rows[key] = value
        records += 1
        pos = end
    return Replay(rows, records, pos)
