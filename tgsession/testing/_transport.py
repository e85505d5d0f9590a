"""MTProto TCP transports (full, abridged, intermediate), as seen from the server.

The server tells them apart by the first bytes of a connection, like Telegram: ``0xef`` is
abridged, ``0xeeeeeeee`` intermediate, ``0xdddddddd`` padded intermediate, anything else is the
length field of a full-transport packet. Obfuscated transports are not supported.
"""

from __future__ import annotations

import asyncio
import struct
from zlib import crc32


class TransportError(Exception):
    """The peer broke the framing (bad checksum or length); the connection must be dropped."""

class Transport:
    """Reads and writes packets of one transport on one connection."""

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        """One packet's payload; raises ``asyncio.IncompleteReadError`` at end of stream."""
        raise NotImplementedError

    def encode_packet(self, payload: bytes) -> bytes:
        """The bytes that carry ``payload`` to the client."""
        raise NotImplementedError

    def encode_error(self, code: int) -> bytes:
        """A transport error such as -404 (unknown auth key): a 4-byte payload."""
        return self.encode_packet(struct.pack("<i", code))


class FullTransport(Transport):
    """length, sequence number, payload, crc32."""

    def __init__(self, first_length: bytes) -> None:
        self._pending_length: bytes | None = first_length
        self._send_seq = 0
        self._recv_seq = 0

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        if self._pending_length is not None:
            head, self._pending_length = self._pending_length, None
        else:
            head = await reader.readexactly(4)
        (length,) = struct.unpack("<i", head)
        if length < 12 or length > 16 * 1024 * 1024:
            raise TransportError(f"bad full-transport length {length}")
        rest = await reader.readexactly(length - 4)
        packet, (checksum,) = head + rest[:-4], struct.unpack("<I", rest[-4:])
        if crc32(packet) != checksum:
            raise TransportError("bad full-transport checksum")
        (seq,) = struct.unpack("<i", packet[4:8])
        if seq != self._recv_seq:
            raise TransportError(f"full-transport sequence {seq}, expected {self._recv_seq}")
        self._recv_seq += 1
        return packet[8:]

    def encode_packet(self, payload: bytes) -> bytes:
        data = struct.pack("<ii", len(payload) + 12, self._send_seq) + payload
        self._send_seq += 1
        return data + struct.pack("<I", crc32(data))


class AbridgedTransport(Transport):
    """One length byte (in 4-byte words), or 0x7f and three more."""

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        length = (await reader.readexactly(1))[0]
        if length >= 0x7F:
            length = int.from_bytes(await reader.readexactly(3), "little")
        return await reader.readexactly(length * 4)

    def encode_packet(self, payload: bytes) -> bytes:
        words = len(payload) // 4
        if words < 0x7F:
            return bytes([words]) + payload
        return b"\x7f" + words.to_bytes(3, "little") + payload


class IntermediateTransport(Transport):
    """A 4-byte length, then the payload (with up to 3 padding bytes when ``padded``)."""

    def __init__(self, *, padded: bool = False) -> None:
        self._padded = padded

    async def read_packet(self, reader: asyncio.StreamReader) -> bytes:
        (length,) = struct.unpack("<i", await reader.readexactly(4))
        if length < 0 or length > 16 * 1024 * 1024:
            raise TransportError(f"bad intermediate-transport length {length}")
        payload = await reader.readexactly(length)
        if self._padded and len(payload) % 4:
            payload = payload[: -(len(payload) % 4)]
        return payload

    def encode_packet(self, payload: bytes) -> bytes:
        return struct.pack("<i", len(payload)) + payload


async def detect_transport(reader: asyncio.StreamReader) -> Transport:
    """Read the first bytes of a connection and return the transport the client speaks."""
    first = await reader.readexactly(1)
    if first == b"\xef":
        return AbridgedTransport()
    head = first + await reader.readexactly(3)
    if head == b"\xee\xee\xee\xee":
        return IntermediateTransport()
    if head == b"\xdd\xdd\xdd\xdd":
        return IntermediateTransport(padded=True)
    return FullTransport(head)
