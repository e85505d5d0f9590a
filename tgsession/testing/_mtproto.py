"""MTProto 2.0 message layer, server side: ids, encryption, and the hand-written envelopes.

Telethon's TL classes serialize requests and results; what Telethon never needs to write (the
server's ``rpc_result``, ``msg_container`` and bare vectors) is written here.
"""

from __future__ import annotations

import gzip
import os
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha256

from telethon.crypto import AES, AuthKey
from telethon.network.mtprotostate import MTProtoState
from telethon.tl.tlobject import TLObject

RPC_RESULT_ID = 0xF35C6D01
RPC_ERROR_ID = 0x2144CA19
CONTAINER_ID = 0x73F1F8DC
GZIP_PACKED_ID = 0x3072CFA1
VECTOR_ID = 0x1CB5C415

_GZIP_THRESHOLD = 512


class MessageIds:
    """Server message ids: time-based, odd, strictly increasing across the whole server.

    Telethon drops messages whose id is more than 300 s old or 30 s ahead of its clock, so the
    ids follow the real clock.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self, *, response: bool = True) -> int:
        """A new id: ``id % 4 == 1`` for responses, ``== 3`` for messages the server starts."""
        remainder = 1 if response else 3
        now = time.time()
        candidate = (int(now) << 32) | (int((now % 1) * 2**32) & ~3) | remainder
        if candidate <= self._last:
            candidate = ((self._last + 4) & ~3) | remainder
        self._last = candidate
        return candidate


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One decrypted client packet: its session and the top-level message it carries."""

    session_id: int
    msg_id: int
    seq_no: int
    body: bytes


class DecryptionError(Exception):
    """The packet does not decrypt with the key it names (wrong msg_key or length)."""


def key_id_of(packet: bytes) -> int:
    """The auth key id that starts every packet (0 for the plain, handshake messages)."""
    value: int = struct.unpack("<Q", packet[:8])[0]
    return value


def decrypt_client_message(key: AuthKey, packet: bytes) -> ClientMessage:
    """Decrypt a client-to-server packet (msg_key with x = 0)."""
    if len(packet) < 24 + 32 or (len(packet) - 24) % 16:
        raise DecryptionError("encrypted packet has a bad length")
    msg_key = packet[8:24]
    aes_key, aes_iv = MTProtoState._calc_key(key.key, msg_key, True)
    plain = AES.decrypt_ige(packet[24:], aes_key, aes_iv)
    if sha256(key.key[88:120] + plain).digest()[8:24] != msg_key:
        raise DecryptionError("msg_key does not match")
    _salt, session_id, msg_id, seq_no, length = struct.unpack("<qqqii", plain[:32])
    if length < 0 or 32 + length > len(plain):
        raise DecryptionError("message length out of range")
    return ClientMessage(session_id, msg_id, seq_no, plain[32 : 32 + length])


def encrypt_server_message(
    key: AuthKey, session_id: int, msg_id: int, seq_no: int, body: bytes
) -> bytes:
    """Encrypt a server-to-client message (msg_key with x = 8)."""
    data = struct.pack("<qqqii", 0, session_id, msg_id, seq_no, len(body)) + body
    padding = os.urandom(-(len(data) + 12) % 16 + 12)
    msg_key = sha256(key.key[96:128] + data + padding).digest()[8:24]
    aes_key, aes_iv = MTProtoState._calc_key(key.key, msg_key, False)
    encrypted: bytes = AES.encrypt_ige(data + padding, aes_key, aes_iv)
    return struct.pack("<Q", key.key_id) + msg_key + encrypted


def plain_message(msg_id: int, body: bytes) -> bytes:
    """An unencrypted message (handshake): auth_key_id 0, msg_id, length, body."""
    return struct.pack("<qqi", 0, msg_id, len(body)) + body


def rpc_result(req_msg_id: int, result: bytes) -> bytes:
    """``rpc_result`` around a serialized result, gzipped when that makes it smaller."""
    if len(result) > _GZIP_THRESHOLD:
        packed = struct.pack("<I", GZIP_PACKED_ID) + TLObject.serialize_bytes(gzip.compress(result))
        if len(packed) < len(result):
            result = packed
    return struct.pack("<Iq", RPC_RESULT_ID, req_msg_id) + result


def rpc_error(req_msg_id: int, code: int, message: str) -> bytes:
    """``rpc_result`` carrying ``rpc_error code message``."""
    text: bytes = TLObject.serialize_bytes(message)
    return struct.pack("<IqIi", RPC_RESULT_ID, req_msg_id, RPC_ERROR_ID, code) + text


def vector(items: Iterable[TLObject]) -> bytes:
    """A bare top-level ``Vector<T>`` of boxed objects."""
    parts = [bytes(item) for item in items]
    return struct.pack("<Ii", VECTOR_ID, len(parts)) + b"".join(parts)


def container(messages: Iterable[tuple[int, int, bytes]]) -> bytes:
    """``msg_container`` of (msg_id, seq_no, body) messages."""
    items = list(messages)
    out = [struct.pack("<Ii", CONTAINER_ID, len(items))]
    for msg_id, seq_no, body in items:
        out.append(struct.pack("<qii", msg_id, seq_no, len(body)) + body)
    return b"".join(out)
