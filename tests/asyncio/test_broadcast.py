"""Tests for ws13.asyncio.broadcast: one message to many connections, without waiting.

Real servers and clients on loopback: ws13's own, the websockets package's,
and a hand-written client that stops reading.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

import pytest
import websockets.asyncio.client

from tests.asyncio.helpers import ServerClientTestCase, wait, wait_for_condition
from tests.utils import MS
from ws13.asyncio import ClientConnection, broadcast
from ws13.asyncio.broadcast import BroadcastSkipped
from ws13.asyncio.server import ServerConnection
from ws13.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from ws13.protocol import OPEN


async def hold(connection: ServerConnection) -> None:
    """A handler that keeps the connection open until the client closes."""
    await connection.wait_closed()


class BroadcastTests(ServerClientTestCase):
    async def clients(self, count: int, **kwargs: Any) -> list[ClientConnection]:
        server = await self.start_server(hold, **kwargs)
        clients = [await self.connect_to(server) for _ in range(count)]
        await wait_for_condition(lambda: len(server.connections) == count)
        self.server_connections = list(server.connections)
        return clients

    async def test_every_client_gets_the_message(self) -> None:
        # Default compression: permessage-deflate with context takeover on
        # two clients, none on the third: the uncompressed frame goes to all.
        clients = await self.clients(2)
        plain = await self.connect_to(self.server_connections[0].server, compression=None)
        await wait_for_condition(lambda: len(self.server_connections[0].server.connections) == 3)
        server = self.server_connections[0].server
        assert broadcast(server.connections, "hello", compress=False) == []
        assert broadcast(server.connections, b"\x00\x01") == []
        for client in [*clients, plain]:
            assert await wait(client.recv()) == "hello"
            assert await wait(client.recv()) == b"\x00\x01"

    async def test_text_option(self) -> None:
        clients = await self.clients(2)
        broadcast(self.server_connections, "é as binary", text=False)
        broadcast(self.server_connections, "é as text".encode(), text=True)
        for client in clients:
            assert await wait(client.recv()) == "é as binary".encode()
            assert await wait(client.recv()) == "é as text"

    async def test_large_message(self) -> None:
        clients = await self.clients(2, max_size=None)
        message = os.urandom(300_000)
        assert broadcast(self.server_connections, message, compress=False) == []
        for client in clients:
            assert await wait(client.recv()) == message

    async def test_tracer_sees_whole_frames(self) -> None:
        clients = await self.clients(1, max_size=None)
        [server_side] = self.server_connections
        traced: list[tuple[bytes, int]] = []
        server_side.protocol.tracer = lambda out, header, payload: traced.append(
            (header, len(payload))
        )
        broadcast(self.server_connections, b"x" * 70_000, compress=False)
        broadcast(self.server_connections, b"", compress=False)
        assert await wait(clients[0].recv()) == b"x" * 70_000
        assert await wait(clients[0].recv()) == b""
        assert traced == [(b"\x82\x7f" + (70_000).to_bytes(8, "big"), 70_000), (b"\x82\x00", 0)]

    async def test_compressed_once_without_context_takeover(self) -> None:
        factory = ServerPerMessageDeflateFactory(server_no_context_takeover=True)
        clients = await self.clients(3, extensions=[factory])
        seen: list[int] = []
        for client in clients:
            client.protocol.tracer = lambda out, header, payload: seen.append(header[0])
        message = "compressible " * 200
        for _ in range(2):
            assert broadcast(self.server_connections, message) == []
        for client in clients:
            assert await wait(client.recv()) == message
            assert await wait(client.recv()) == message
        # RSV1 (0x40) on every frame received: compressed.
        assert seen == [0xC1] * 6

    async def test_websockets_clients(self) -> None:
        server = await self.start_server(hold)
        uri = f"ws://127.0.0.1:{server.port}/"
        async with (
            websockets.asyncio.client.connect(uri) as deflating,
            websockets.asyncio.client.connect(uri, compression=None) as plain,
        ):
            await wait_for_condition(lambda: len(server.connections) == 2)
            for compress in (True, False):
                assert broadcast(server.connections, "to websockets", compress=compress) == []
                assert await wait(deflating.recv()) == "to websockets"
                assert await wait(plain.recv()) == "to websockets"

    async def test_client_connections(self) -> None:
        # A client masks each frame with its own key: each encodes its own.
        servers = [await self.start_server() for _ in range(2)]
        clients = [await self.connect_to(server) for server in servers]
        assert broadcast(clients, "echo me") == []
        for client in clients:
            assert await wait(client.recv()) == "echo me"

    async def test_skips_connections_that_are_not_open(self) -> None:
        clients = await self.clients(2)
        await clients[0].close()
        closed = next(c for c in self.server_connections if c.state is not OPEN)
        with self.assertNoLogs("ws13.server", "WARNING"):
            skipped = broadcast(self.server_connections, "still here")
        assert skipped == [closed]
        assert await wait(clients[1].recv()) == "still here"

    async def test_skips_a_fragmented_send_in_progress(self) -> None:
        clients = await self.clients(2)
        busy, idle = self.server_connections
        release = asyncio.Event()

        async def fragments() -> Any:
            yield "first "
            yield "second "  # the first frame goes out when the next item comes
            await release.wait()
            yield "last"

        sending = asyncio.ensure_future(busy.send(fragments()))
        await wait_for_condition(lambda: busy.protocol.sending_fragments)
        with self.assertLogs("ws13.server", "WARNING") as logs:
            assert broadcast(self.server_connections, "news") == [busy]
        assert [r.getMessage() for r in logs.records] == [
            "skipped broadcast: sending a fragmented message"
        ]
        with pytest.raises(ExceptionGroup) as raised:
            broadcast(self.server_connections, "more news", raise_exceptions=True)
        [error] = raised.value.exceptions
        assert isinstance(error, BroadcastSkipped)
        assert (error.connection, error.reason) == (busy, "sending a fragmented message")
        release.set()
        await wait(sending)
        # The idle connection got both; the busy one, its own message only.
        idle_client = next(c for c in clients if c.local_address == idle.remote_address)
        busy_client = next(c for c in clients if c is not idle_client)
        assert await wait(idle_client.recv()) == "news"
        assert await wait(idle_client.recv()) == "more news"
        assert await wait(busy_client.recv()) == "first second last"

    async def test_skips_a_client_that_does_not_read(self) -> None:
        server = await self.start_server(hold, max_size=None)
        reader = await self.connect_to(server, max_size=None, max_queue=None)
        await wait_for_condition(lambda: len(server.connections) == 1)
        # A client that completes the handshake and never reads again, with
        # small TCP buffers on both ends so the server's write buffer fills.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.send(
            f"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.addCleanup(sock.close)
        await wait_for_condition(lambda: len(server.connections) == 2)
        await wait_for_condition(lambda: all(c.state is OPEN for c in server.connections))
        slow = next(c for c in server.connections if c.remote_address == sock.getsockname())
        assert slow.transport is not None
        slow.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        message = b"x" * 65536
        sent = 0
        with self.assertLogs("ws13.server", "WARNING") as logs:
            for _ in range(200):
                skipped = broadcast(server.connections, message)
                sent += 1
                if skipped:
                    break
                await asyncio.sleep(MS)
        assert skipped == [slow]
        assert [r.getMessage() for r in logs.records] == [
            "skipped broadcast: write buffer above write_limit"
        ]
        # An explicit limit: any byte waiting is too many.
        assert broadcast(server.connections, b"!", write_limit=0) == [slow]
        sent += 1
        # The reading client got every message, the skipped one included.
        for _ in range(sent - 1):
            assert await wait(reader.recv()) == message
        assert await wait(reader.recv()) == b"!"
        slow.transport.abort()

    async def test_bad_message(self) -> None:
        await self.clients(1)
        with pytest.raises(TypeError, match="not int"):
            broadcast(self.server_connections, 42)  # type: ignore[arg-type]
