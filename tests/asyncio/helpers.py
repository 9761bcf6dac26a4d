"""Peers and helpers for the asyncio tests, over real loopback sockets.

``RawServer`` and ``raw_client()`` speak just enough RFC 6455 by hand to play
a misbehaving peer (one that never answers pings, never answers the close
frame, or stops reading), which ws13's own client and server never do.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import socket
import ssl
import unittest
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import trustme

from tests.utils import MS
from ws13.asyncio.client import ClientConnection, connect
from ws13.asyncio.server import Server, ServerConnection, serve

__all__ = [
    "TIMEOUT",
    "RawServer",
    "ServerClientTestCase",
    "accept_key",
    "echo",
    "encode_frame",
    "raw_client",
    "read_frame",
    "tls_contexts",
    "wait",
    "wait_for_condition",
]

#: A generous bound for anything that should happen "soon".
TIMEOUT = 5000 * MS
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
T = TypeVar("T")


async def wait(awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result, or TimeoutError after ``TIMEOUT``."""
    return await asyncio.wait_for(awaitable, TIMEOUT)


async def echo(connection: ServerConnection) -> None:
    """A handler that sends every message back."""
    async for message in connection:
        await connection.send(message)


async def wait_for_condition(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` until it is true; raise TimeoutError after ``TIMEOUT``."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            if predicate():
                return
            await asyncio.sleep(5 * MS)


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for ``key``, computed here rather than by ws13."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def encode_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = False
) -> bytes:
    """One frame, masked when a client sends it."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    if len(payload) < 126:
        head.append(bit | len(payload))
    elif len(payload) < 2**16:
        head.append(bit | 126)
        head += len(payload).to_bytes(2, "big")
    else:
        head.append(bit | 127)
        head += len(payload).to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        head += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    """Read one frame; return its FIN bit, opcode and unmasked payload."""
    head = await reader.readexactly(2)
    fin, opcode, length = bool(head[0] & 0x80), head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    key = await reader.readexactly(4) if head[1] & 0x80 else None
    payload = await reader.readexactly(length)
    if key is not None:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload


class RawServer:
    """A TCP server on 127.0.0.1 that completes the opening handshake by hand.

    After the handshake it reads frames into ``frames`` and never answers
    anything: no Pong, no Close, no TCP close. Clear ``reading`` to stop
    reading (TCP then pushes back on the client); with ``handshake=False`` it
    never even answers the handshake request.

    Args:
        handshake: whether to answer the handshake request with a 101.
        rcvbuf: SO_RCVBUF for accepted sockets, to fill TCP buffers sooner.
    """

    def __init__(self, *, handshake: bool = True, rcvbuf: int | None = None) -> None:
        self.handshake = handshake
        self.rcvbuf = rcvbuf
        #: (FIN, opcode, payload) of each frame received.
        self.frames: list[tuple[bool, int, bytes]] = []
        self.bytes_received = 0
        self.reading = asyncio.Event()
        self.reading.set()
        #: Set when the client closed the TCP connection (EOF or reset).
        self.disconnected = asyncio.Event()
        self.connected = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def __aenter__(self) -> RawServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        # A small StreamReader limit: when the test stops reading, the
        # transport pauses almost at once.
        self._server = await asyncio.start_server(self._handle, sock=sock, limit=1024)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.abort()
        await self._server.wait_closed()
        # Let the handlers see their transports closed.
        await asyncio.sleep(0)

    def abort(self) -> None:
        """Reset every connection, as a crashed peer would."""
        for writer in self._writers:
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connected.set()
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if not self.handshake:
                await reader.read()  # Until the client gives up.
                return
            match = re.search(rb"(?im)^sec-websocket-key:[ \t]*(\S+)", request)
            assert match is not None, request
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(match[1].decode()).encode() + b"\r\n\r\n"
            )
            while True:
                await self.reading.wait()
                frame = await read_frame(reader)
                self.frames.append(frame)
                self.bytes_received += len(frame[2])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.disconnected.set()


async def raw_client(
    port: int, path: str = "/", *, handshake: bool = True
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a TCP connection to a ws13 server; send a handshake request by hand.

    Returns the streams and the response head (empty without handshake).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if not handshake:
        return reader, writer, b""
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert accept_key(key).encode() in head, head
    return reader, writer, head


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 and localhost from a
    fresh test CA, and a client context that trusts that CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    return server_context, client_context


class ServerClientTestCase(unittest.IsolatedAsyncioTestCase):
    """Start ws13 servers and clients on loopback; clean them all up after the test.

    ``self.handlers`` receives each server-side connection as its handler
    starts, so a test can reach the other end of its client.
    """

    async def asyncSetUp(self) -> None:
        self.handlers: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def start_server(
        self,
        handler: Callable[[ServerConnection], Awaitable[None]] = echo,
        host: str = "127.0.0.1",
        **kwargs: Any,
    ) -> Server:
        async def recording_handler(connection: ServerConnection) -> None:
            self.handlers.put_nowait(connection)
            await handler(connection)

        server = await serve(recording_handler, host, 0, **kwargs)
        self.addAsyncCleanup(self._stop_server, server)
        return server

    async def _stop_server(self, server: Server) -> None:
        server.close()
        await asyncio.wait_for(server.wait_closed(), TIMEOUT)

    async def connect_to(self, server: Server, path: str = "/", **kwargs: Any) -> ClientConnection:
        client = await asyncio.wait_for(
            connect(f"ws://127.0.0.1:{server.port}{path}", **kwargs), TIMEOUT
        )
        self.addAsyncCleanup(self._close_client, client)
        return client

    async def _close_client(self, client: ClientConnection) -> None:
        await asyncio.wait_for(client.close(), TIMEOUT)

    async def server_side(self) -> ServerConnection:
        """The server end of the next connection whose handler started."""
        return await asyncio.wait_for(self.handlers.get(), TIMEOUT)
