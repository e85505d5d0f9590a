"""One client TCP connection: transport, handshake, then the encrypted MTProto session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from typing import Any

from telethon.errors import TypeNotFoundError
from telethon.extensions import BinaryReader
from telethon.tl import functions, types
from telethon.tl.core import GzipPacked, MessageContainer
from telethon.tl.tlobject import TLRequest

from . import _mtproto
from ._handshake import Handshake, HandshakeError
from ._methods import Call, invoke
from ._transport import Transport, TransportError, detect_transport
from ._world import AuthKeyRecord, RpcFailure, World

_log = logging.getLogger("tgsession.testing")

# How long a second holder of a key waits for the first one's connection to finish closing
# before the key counts as used twice at once (Telethon closes, then reconnects).
_DUPLICATE_GRACE = 0.05
# How long the server waits for a client to hang up after a transport error.
_LINGER = 1.0


class ClientConnection:
    """Serves one connection until the client leaves or the server stops."""

    def __init__(
        self,
        world: World,
        dc_id: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ids: _mtproto.MessageIds,
        *,
        allow_short_keys: bool,
    ) -> None:
        self.session_id: int | None = None
        self._world = world
        self._dc_id = dc_id
        self._reader = reader
        self._writer = writer
        self._ids = ids
        self._handshake = Handshake(allow_short_keys=allow_short_keys)
        self._transport: Transport | None = None
        self._record: AuthKeyRecord | None = None
        self._seq = 0
        self._pending: set[asyncio.Task[None]] = set()

    # --- LiveConnection -------------------------------------------------------------------

    def is_alive(self) -> bool:
        return not self._writer.is_closing() and not self._reader.at_eof()

    def push(self, updates: Any) -> None:
        self._send([bytes(updates)], response=False)

    # --- loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            self._transport = await detect_transport(self._reader)
            while True:
                packet = await self._transport.read_packet(self._reader)
                if len(packet) < 8:
                    break
                key_id = _mtproto.key_id_of(packet)
                if key_id == 0:
                    self._on_plain(packet)
                elif not await self._on_encrypted(key_id, packet):
                    break
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            TransportError,
            HandshakeError,
            _mtproto.DecryptionError,
        ) as e:
            _log.debug("connection on DC %d ends: %r", self._dc_id, e)
        except Exception:
            _log.exception("fake Telegram dropped a connection on DC %d", self._dc_id)
        finally:
            for task in self._pending:
                task.cancel()
            if self._record is not None:
                self._record.connections.discard(self)
            self._writer.close()

    def _on_plain(self, packet: bytes) -> None:
        (length,) = struct.unpack("<i", packet[16:20])
        with BinaryReader(packet[20 : 20 + length]) as reader:
            request = reader.tgread_object()
        response, key_bytes = self._handshake.answer(request)
        if key_bytes is not None:
            self._world.register_key(self._dc_id, key_bytes)
            self._world.handshakes += 1
        self._write(_mtproto.plain_message(self._ids.next(), bytes(response)))

    async def _on_encrypted(self, key_id: int, packet: bytes) -> bool:
        record = self._world.find_key(self._dc_id, key_id)
        if record is None:
            assert self._transport is not None
            self._writer.write(self._transport.encode_error(-404))
            await self._linger()
            return False
        message = _mtproto.decrypt_client_message(record.key, packet)
        if record is not self._record or message.session_id != self.session_id:
            await self._claim(record, message.session_id)
        out: list[bytes] = []
        self._handle(message.msg_id, self._parse(message.msg_id, message.body, out), out)
        self._send(out, response=True)
        return True

    async def _linger(self) -> None:
        """Let the client hang up first: closing with its data unread would reset the socket."""
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(self._reader.read(), _LINGER)

    async def _claim(self, record: AuthKeyRecord, session_id: int) -> None:
        """Bind this connection to ``record``; burn the key if another session holds it now."""
        if self._record is not None and self._record is not record:
            self._record.connections.discard(self)
        self._record = record
        self.session_id = session_id

        def rivals() -> list[Any]:
            return [
                c
                for c in record.connections
                if c is not self and c.session_id != session_id and c.is_alive()
            ]

        if rivals():
            await asyncio.sleep(_DUPLICATE_GRACE)
            if rivals():
                _log.info("auth key used by two sessions at once on DC %d: burned", self._dc_id)
                record.burned = True
        record.connections.add(self)

    # --- messages -------------------------------------------------------------------------

    @staticmethod
    def _parse(msg_id: int, body: bytes, out: list[bytes]) -> Any:
        try:
            with BinaryReader(body) as reader:
                return reader.tgread_object()
        except TypeNotFoundError:
            out.append(_mtproto.rpc_error(msg_id, 400, "INPUT_CONSTRUCTOR_INVALID"))
            return None

    def _handle(self, msg_id: int, obj: Any, out: list[bytes]) -> None:
        if obj is None or isinstance(obj, types.MsgsAck):
            return
        if isinstance(obj, MessageContainer):
            for inner in obj.messages:
                self._handle(inner.msg_id, inner.obj, out)
        elif isinstance(obj, GzipPacked):
            self._handle(msg_id, self._parse(msg_id, obj.data, out), out)
        elif isinstance(obj, (functions.PingRequest, functions.PingDelayDisconnectRequest)):
            out.append(bytes(types.Pong(msg_id=msg_id, ping_id=obj.ping_id)))
        elif isinstance(obj, TLRequest):
            answer = self._rpc(msg_id, obj)
            if answer is not None:
                out.append(answer)

    def _rpc(self, msg_id: int, request: Any) -> bytes | None:
        """The answer to ``request``, or None when it comes later (a method that waits)."""
        assert self._record is not None
        call = Call(self._world, self._dc_id, self._record, self)
        try:
            result = invoke(call, request)
        except Exception as exc:
            return self._failure(msg_id, request, exc)
        if isinstance(result, bytes):
            return _mtproto.rpc_result(msg_id, result)
        task = asyncio.ensure_future(self._answer_later(msg_id, request, result))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return None

    async def _answer_later(self, msg_id: int, request: Any, pending: Any) -> None:
        try:
            answer = _mtproto.rpc_result(msg_id, await pending)
        except Exception as exc:
            answer = self._failure(msg_id, request, exc)
        self._send([answer], response=True)

    @staticmethod
    def _failure(msg_id: int, request: Any, exc: Exception) -> bytes:
        if isinstance(exc, RpcFailure):
            return _mtproto.rpc_error(msg_id, exc.code, exc.message)
        _log.error("fake Telegram failed on %s", type(request).__name__, exc_info=exc)
        return _mtproto.rpc_error(msg_id, 500, "INTERNAL_SERVER_ERROR")

    def _send(self, bodies: list[bytes], *, response: bool) -> None:
        """Encrypt and write ``bodies`` (in a container when there are several)."""
        record, session_id = self._record, self.session_id
        if not bodies or record is None or session_id is None or self._writer.is_closing():
            return
        inner = [(self._ids.next(response=response), self._next_seq(True), b) for b in bodies]
        if len(inner) == 1:
            msg_id, seq_no, body = inner[0]
        else:
            body = _mtproto.container(inner)
            msg_id, seq_no = self._ids.next(response=response), self._next_seq(False)
        self._write(_mtproto.encrypt_server_message(record.key, session_id, msg_id, seq_no, body))

    def _next_seq(self, content_related: bool) -> int:
        if content_related:
            self._seq += 1
            return self._seq * 2 - 1
        return self._seq * 2

    def _write(self, payload: bytes) -> None:
        assert self._transport is not None
        if not self._writer.is_closing():
            self._writer.write(self._transport.encode_packet(payload))
