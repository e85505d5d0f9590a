"""The server's share of a PostgreSQL restart: one connection made with no driver.

A new process needs a new connection, and PostgreSQL forks a backend for each one. This
times that alone, on the server of ``BENCH_POSTGRES_URL``: connect (TCP, or the unix socket
of a ``?host=/dir`` URL), the startup packet, the server's answer under trust
authentication, until its first ReadyForQuery; then Terminate. No TLS, no driver, no
statement: whatever library opens the session pays at least this. Trust authentication
only: a server that asks for a password gives :class:`NoFloor`.
"""

from __future__ import annotations

import getpass
import socket
import struct
import time
import urllib.parse
from dataclasses import dataclass

_PROTOCOL_3 = 196608
_TERMINATE = b"X\x00\x00\x00\x04"


class NoFloor(Exception):
    """Why the floor is not measured (a password asked, a URL this does not read)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect: ``address`` is ``(host, port)`` or a socket path."""

    address: tuple[str, int] | str
    user: str
    database: str

    def __str__(self) -> str:
        where = self.address
        if not isinstance(where, str):
            where = f"{where[0]}:{where[1]}"
        return f"{self.user}@{where}/{self.database}"


def endpoint(url: str) -> Endpoint:
    """The host, port, user and database of a ``postgresql://`` URL, as asyncpg reads them
    (user: the OS user by default; database: the user's name by default)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    try:
        port = int(query.get("port") or parts.port or 5432)
    except ValueError as error:
        raise NoFloor(f"cannot read the port of the URL ({error})") from None
    host = query.get("host") or parts.hostname or "localhost"
    if "," in host or "," in parts.netloc:
        raise NoFloor("the URL names several hosts")
    user = urllib.parse.unquote(query.get("user") or parts.username or getpass.getuser())
    database = urllib.parse.unquote(
        query.get("dbname") or query.get("database") or parts.path.lstrip("/") or user
    )
    address: tuple[str, int] | str = (
        f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
    )
    return Endpoint(address, user, database)


def connect_once(where: Endpoint, timeout: float = 5.0) -> float:
    """Seconds from connect() until the server is ready for a first query.

    Raises :class:`NoFloor` if the server asks for a password or refuses the connection
    with an error message, ``OSError`` if it cannot be reached.
    """
    params = b"".join(
        name + b"\0" + value.encode() + b"\0"
        for name, value in ((b"user", where.user), (b"database", where.database))
    ) + b"\0"
    startup = struct.pack("!ii", 8 + len(params), _PROTOCOL_3) + params
    start = time.perf_counter()
    if isinstance(where.address, str):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(where.address)
    else:
        sock = socket.create_connection(where.address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.sendall(startup)
        _read_until_ready(sock)
        elapsed = time.perf_counter() - start
        sock.sendall(_TERMINATE)
    finally:
        sock.close()
    return elapsed


def _read_until_ready(sock: socket.socket) -> None:
    buffer = b""
    while True:
        while len(buffer) < 5 or len(buffer) < 1 + struct.unpack_from("!i", buffer, 1)[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise NoFloor("the server closed the connection during startup")
            buffer += chunk
        kind, length = buffer[:1], struct.unpack_from("!i", buffer, 1)[0]
        body, buffer = buffer[5 : 1 + length], buffer[1 + length :]
        if kind == b"Z":
            return
        if kind == b"R" and struct.unpack_from("!i", body)[0] != 0:
            raise NoFloor("the server asks for a password (this floor supports trust "
                          "authentication only)")
        if kind == b"E":
            fields = dict((f[:1], f[1:].decode(errors="replace")) for f in body.split(b"\0") if f)
            raise NoFloor(f"the server refused the connection: {fields.get(b'M', '?')}")
        # AuthenticationOk, ParameterStatus, BackendKeyData, notices: read on.
