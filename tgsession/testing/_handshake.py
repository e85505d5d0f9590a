"""Server side of the auth-key handshake (req_pq_multi, req_DH_params, set_client_DH_params).

Uses the old RSA scheme Telethon speaks (sha1 + data + padding, raw RSA) and Telegram's standard
2048-bit DH prime with g = 3. The key is ``g^ab`` in minimal big-endian bytes, as Telethon builds
it, so about 1 key in 256 is 255 bytes long; unless short keys are allowed the server answers
``dh_gen_retry`` for those (Telethon then starts over), so every key fits the 256-byte field of
a StringSession.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from hashlib import sha1
from typing import Any

from telethon import helpers
from telethon.crypto import AES, AuthKey
from telethon.crypto.rsa import get_byte_array
from telethon.extensions import BinaryReader
from telethon.tl import functions, types

from . import _rsa
from ._srp import PRIME, PRIME_BYTES, G

# A fixed pq (the example of Telegram's documentation): Telethon factorizes it in microseconds.
_P, _Q = 1229739323, 1402015859
_PQ = (_P * _Q).to_bytes(8, "big")
_SAFETY = 2 ** (2048 - 64)


class HandshakeError(Exception):
    """The client broke the protocol; the connection is dropped."""


@dataclass
class _Progress:
    nonce: int
    server_nonce: int
    new_nonce: int | None = None
    a: int | None = None


def _is_full_length(key: bytes) -> bool:
    return len(key) == 256


class Handshake:
    """One connection's handshake state; ``answer`` handles each plain request in turn."""

    def __init__(self, *, allow_short_keys: bool = False) -> None:
        self._allow_short_keys = allow_short_keys
        self._progress: _Progress | None = None

    def answer(self, request: Any) -> tuple[Any, bytes | None]:
        """The response to one plain request, and the new auth key once one is agreed."""
        if isinstance(request, (functions.ReqPqMultiRequest, functions.ReqPqRequest)):
            return self._req_pq(request), None
        if isinstance(request, functions.ReqDHParamsRequest):
            return self._req_dh_params(request), None
        if isinstance(request, functions.SetClientDHParamsRequest):
            return self._set_client_dh_params(request)
        raise HandshakeError(f"unexpected plain message {type(request).__name__}")

    def _req_pq(self, request: Any) -> Any:
        server_nonce = int.from_bytes(os.urandom(16), "big", signed=True)
        self._progress = _Progress(request.nonce, server_nonce)
        return types.ResPQ(
            nonce=request.nonce,
            server_nonce=server_nonce,
            pq=_PQ,
            server_public_key_fingerprints=[_rsa.fingerprint()],
        )

    def _check_nonces(self, request: Any) -> _Progress:
        progress = self._progress
        if (
            progress is None
            or request.nonce != progress.nonce
            or request.server_nonce != progress.server_nonce
        ):
            raise HandshakeError("nonce mismatch")
        return progress

    def _req_dh_params(self, request: Any) -> Any:
        progress = self._check_nonces(request)
        if request.public_key_fingerprint != _rsa.fingerprint():
            raise HandshakeError("unknown RSA fingerprint")
        plain = _rsa.decrypt(request.encrypted_data)
        with BinaryReader(plain[20:]) as reader:
            inner = reader.tgread_object()
        if not isinstance(inner, types.PQInnerData) or sha1(bytes(inner)).digest() != plain[:20]:
            raise HandshakeError("bad p_q_inner_data")
        if inner.nonce != progress.nonce or inner.server_nonce != progress.server_nonce:
            raise HandshakeError("nonce mismatch in p_q_inner_data")
        progress.new_nonce = inner.new_nonce
        while True:
            progress.a = int.from_bytes(os.urandom(256), "big")
            g_a = pow(G, progress.a, PRIME)
            if _SAFETY <= g_a <= PRIME - _SAFETY:
                break
        answer = bytes(
            types.ServerDHInnerData(
                nonce=progress.nonce,
                server_nonce=progress.server_nonce,
                g=G,
                dh_prime=PRIME_BYTES,
                g_a=get_byte_array(g_a),
                server_time=int(time.time()),
            )
        )
        with_hash = sha1(answer).digest() + answer
        with_hash += os.urandom(-len(with_hash) % 16)
        key, iv = helpers.generate_key_data_from_nonce(progress.server_nonce, inner.new_nonce)
        return types.ServerDHParamsOk(
            nonce=progress.nonce,
            server_nonce=progress.server_nonce,
            encrypted_answer=AES.encrypt_ige(with_hash, key, iv),
        )

    def _set_client_dh_params(self, request: Any) -> tuple[Any, bytes | None]:
        progress = self._check_nonces(request)
        if progress.new_nonce is None or progress.a is None:
            raise HandshakeError("set_client_DH_params before req_DH_params")
        key, iv = helpers.generate_key_data_from_nonce(progress.server_nonce, progress.new_nonce)
        plain = AES.decrypt_ige(request.encrypted_data, key, iv)
        with BinaryReader(plain[20:]) as reader:
            inner = reader.tgread_object()
        if not isinstance(inner, types.ClientDHInnerData):
            raise HandshakeError("bad client_DH_inner_data")
        g_b = int.from_bytes(inner.g_b, "big")
        if not _SAFETY <= g_b <= PRIME - _SAFETY:
            raise HandshakeError("g_b out of range")
        key_bytes = get_byte_array(pow(g_b, progress.a, PRIME))
        auth_key = AuthKey(key_bytes)
        self._progress = None
        if not _is_full_length(key_bytes) and not self._allow_short_keys:
            retry = types.DhGenRetry(
                nonce=progress.nonce,
                server_nonce=progress.server_nonce,
                new_nonce_hash2=auth_key.calc_new_nonce_hash(progress.new_nonce, 2),
            )
            return retry, None
        ok = types.DhGenOk(
            nonce=progress.nonce,
            server_nonce=progress.server_nonce,
            new_nonce_hash1=auth_key.calc_new_nonce_hash(progress.new_nonce, 1),
        )
        return ok, key_bytes
