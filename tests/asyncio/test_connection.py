"""Tests for ws13.asyncio.connection: messages, closing, timeouts, flow control.

Every test runs a ws13 server and client (or a hand-written peer from
``helpers``) over real loopback TCP sockets.
"""

from __future__ import annotations

import asyncio
import socket
import unittest
from collections.abc import Coroutine
from typing import Any

import pytest
import uvloop

from tests.asyncio.helpers import (
    TIMEOUT,
    RawServer,
    ServerClientTestCase,
    echo,
    raw_client,
    read_frame,
    wait,
    wait_for_condition,
)
from tests.utils import MS
from ws13.asyncio import connection as connection_module
from ws13.asyncio.client import connect
from ws13.asyncio.connection import Connection
from ws13.asyncio.server import ServerConnection, serve
from ws13.exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from ws13.frames import Close
from ws13.protocol import CLOSED, COPY_MAX, OPEN

OP_BINARY, OP_CLOSE, OP_PING = 0x2, 0x8, 0x9


async def read_all(connection: Connection) -> list[str | bytes]:
    """Every message until the connection closes (normally, or it raises)."""
    return [message async for message in connection]


class SendRecvTests(ServerClientTestCase):
    async def test_text(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.send("hello ☃")
        assert await wait(client.recv()) == "hello ☃"

    async def test_bytes_like(self) -> None:
        client = await self.connect_to(await self.start_server())
        for message in (b"\x00\xff", bytearray(b"ba"), memoryview(b"xmvx")[1:3]):
            with self.subTest(type=type(message).__name__):
                await client.send(message)
                received = await wait(client.recv())
                assert isinstance(received, bytes)
                assert received == bytes(message)

    async def test_empty_messages(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.send("")
        await client.send(b"")
        assert await wait(client.recv()) == ""
        assert await wait(client.recv()) == b""

    async def test_sizes_around_the_copy_limit(self) -> None:
        # The echo server's frames: one copied buffer up to COPY_MAX, a header
        # and the payload as two buffers above it (RFC 6455 section 5.2
        # lengths: 7-bit, 16-bit and 64-bit).
        client = await self.connect_to(await self.start_server())
        for size in (125, COPY_MAX, COPY_MAX + 1, 65535, 65536, 200_000):
            for message in ("é" * (size // 2), b"\x01" * size):
                with self.subTest(size=size, type=type(message).__name__):
                    await client.send(message)
                    assert await wait(client.recv()) == message

    async def test_large_send_as_the_transport_closes(self) -> None:
        # The transport is closing but the connection isn't lost yet (the core
        # is still OPEN): a large send() goes through write(), which knows
        # the transport is closing; nothing raises, the peer sees the loss.
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def close_then_send(connection: ServerConnection) -> None:
            assert connection.transport is not None
            connection.transport.close()
            await connection.send(b"x" * (COPY_MAX + 1))
            sent.set_result(None)

        client = await self.connect_to(await self.start_server(close_then_send))
        await wait(sent)
        with pytest.raises(ConnectionClosedError):
            await wait(client.recv())

    async def test_order_is_kept(self) -> None:
        client = await self.connect_to(await self.start_server())
        for i in range(100):
            await client.send(str(i))
        for i in range(100):
            assert await wait(client.recv()) == str(i)

    async def test_async_for_ends_on_normal_close(self) -> None:
        async def three_then_return(connection: ServerConnection) -> None:
            for word in ("a", "b", "c"):
                await connection.send(word)
            # Returning closes with 1000.

        client = await self.connect_to(await self.start_server(three_then_return))
        received = []
        async with asyncio.timeout(TIMEOUT):
            async for message in client:
                received.append(message)
        assert received == ["a", "b", "c"]
        assert client.close_code == 1000

    async def test_messages_received_before_close_are_read_first(self) -> None:
        async def two_then_return(connection: ServerConnection) -> None:
            await connection.send("one")
            await connection.send(b"two")

        client = await self.connect_to(await self.start_server(two_then_return))
        await wait(client.wait_closed())
        assert await client.recv() == "one"
        assert await client.recv() == b"two"
        with pytest.raises(ConnectionClosedOK):
            await client.recv()

    async def test_concurrent_recv(self) -> None:
        client = await self.connect_to(await self.start_server())
        first = asyncio.ensure_future(client.recv())
        await asyncio.sleep(0)
        with pytest.raises(ConcurrencyError):
            await client.recv()
        await client.send("x")
        assert await wait(first) == "x"

    async def test_send_wrong_type(self) -> None:
        client = await self.connect_to(await self.start_server())
        with pytest.raises(TypeError):
            await client.send(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.send([1, 2])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            # Iterable, but sending its keys as fragments would be a surprise.
            await client.send({"key": "value"})  # type: ignore[arg-type]
        # Nothing was sent: the connection is fine.
        assert client.state is OPEN
        await client.send("still open")
        assert await wait(client.recv()) == "still open"

    async def test_send_after_close(self) -> None:
        client = await self.connect_to(await self.start_server())
        await wait(client.close())
        with pytest.raises(ConnectionClosedOK):
            await client.send("too late")
        with pytest.raises(ConnectionClosedOK):
            await client.recv()


class CloseTests(ServerClientTestCase):
    async def test_close_codes_are_none_while_open(self) -> None:
        client = await self.connect_to(await self.start_server())
        assert client.close_code is None
        assert client.close_reason is None

    async def test_client_closes_with_code_and_reason(self) -> None:
        outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        async def record(connection: ServerConnection) -> None:
            try:
                async for message in connection:
                    await connection.send(message)
            except BaseException as exc:
                outcome.set_result(exc)
                raise
            outcome.set_result(None)

        server = await self.start_server(record)
        client = await self.connect_to(server)
        server_side = await self.server_side()
        await wait(client.close(4000, "bye"))
        assert client.state is CLOSED
        # The server echoed the code without the reason (RFC 6455 5.5.1).
        assert client.close_code == 4000
        assert client.close_reason == ""
        await wait(server_side.wait_closed())
        assert server_side.close_code == 4000
        assert server_side.close_reason == "bye"
        # 4000 isn't a normal closure: `async for` raises.
        exc = await wait(outcome)
        assert isinstance(exc, ConnectionClosedError)
        assert isinstance(exc, ConnectionClosedError)
        assert exc.rcvd == Close(4000, "bye")
        assert exc.rcvd_then_sent

    async def test_server_closes_with_code_and_reason(self) -> None:
        async def close_going_away(connection: ServerConnection) -> None:
            await connection.close(1001, "going")

        client = await self.connect_to(await self.start_server(close_going_away))
        server_side = await self.server_side()
        with pytest.raises(ConnectionClosedOK) as raised:
            await wait(client.recv())
        assert raised.value.code == 1001
        assert raised.value.reason == "going"
        await wait(client.wait_closed())
        assert client.close_code == 1001
        assert client.close_reason == "going"
        assert server_side.state is CLOSED
        assert server_side.close_code == 1001

    async def test_normal_close_ends_async_for_on_server(self) -> None:
        ended: asyncio.Future[list[str | bytes]] = asyncio.get_running_loop().create_future()

        async def collect(connection: ServerConnection) -> None:
            received = [message async for message in connection]
            ended.set_result(received)

        client = await self.connect_to(await self.start_server(collect))
        await client.send("x")
        await client.send(b"y")
        await wait(client.close())
        assert await wait(ended) == ["x", b"y"]

    async def test_close_without_code(self) -> None:
        client = await self.connect_to(await self.start_server())
        server_side = await self.server_side()
        client.protocol.send_close()
        client._flush()
        await wait(client.wait_closed())
        await wait(server_side.wait_closed())
        assert server_side.close_code == 1005
        assert client.close_code == 1005

    async def test_close_is_idempotent(self) -> None:
        client = await self.connect_to(await self.start_server())
        await wait(asyncio.gather(client.close(), client.close()))
        await wait(client.close(4001))
        assert client.close_code == 1000

    async def test_close_invalid_code(self) -> None:
        client = await self.connect_to(await self.start_server())
        with pytest.raises(ValueError, match="invalid close code"):
            await client.close(1006)
        assert client.state is OPEN

    async def test_wait_closed(self) -> None:
        async def close_soon(connection: ServerConnection) -> None:
            await connection.recv()

        client = await self.connect_to(await self.start_server(close_soon))
        waiter = asyncio.ensure_future(client.wait_closed())
        await asyncio.sleep(10 * MS)
        assert not waiter.done()
        await client.send("done")
        await wait(waiter)
        assert client.close_code == 1000
        # Waiting again returns at once; cancelling a waiter doesn't break others.
        await wait(client.wait_closed())

    async def test_client_aborts(self) -> None:
        outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        async def iterate(connection: ServerConnection) -> None:
            try:
                async for _ in connection:
                    pass
            except ConnectionClosedError as exc:
                outcome.set_result(exc)

        client = await self.connect_to(await self.start_server(iterate))
        server_side = await self.server_side()
        assert client.transport is not None
        client.transport.abort()
        exc = await wait(outcome)
        assert isinstance(exc, ConnectionClosedError)
        assert exc.code == 1006
        assert exc.rcvd is None
        await wait(server_side.wait_closed())
        assert server_side.close_code == 1006
        assert client.close_code == 1006

    async def test_server_aborts(self) -> None:
        async def abort(connection: ServerConnection) -> None:
            assert connection.transport is not None
            connection.transport.abort()

        client = await self.connect_to(await self.start_server(abort))
        with pytest.raises(ConnectionClosedError) as raised:
            await wait(read_all(client))
        assert raised.value.code == 1006
        assert client.close_code == 1006
        assert client.close_reason == ""

    async def test_close_timeout(self) -> None:
        async with RawServer() as peer:
            client = await wait(connect(peer.uri, ping_interval=None, close_timeout=50 * MS))
            # The peer never answers the Close frame nor closes TCP.
            await wait(client.close())
            assert client.state is CLOSED
            assert client.close_code == 1006
            with pytest.raises(ConnectionClosedError) as raised:
                await client.recv()
            assert raised.value.sent == Close(1000, "")
            await wait(peer.disconnected.wait())
            assert peer.frames[-1][1] == OP_CLOSE

    async def test_server_close_timeout(self) -> None:
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def close(connection: ServerConnection) -> None:
            await connection.close()
            closed.set_result(None)

        server = await self.start_server(close, close_timeout=50 * MS)
        reader, writer, _ = await raw_client(server.port)
        try:
            # The server's Close frame arrives; the raw client never answers.
            _, opcode, payload = await wait(read_frame(reader))
            assert (opcode, Close.parse(payload).code) == (OP_CLOSE, 1000)
            # After close_timeout the server gives up and drops the connection.
            await wait(closed)
            try:
                assert await wait(reader.read()) == b""
            except ConnectionResetError:
                pass
        finally:
            writer.close()

    async def test_close_timeouts_share_one_deadline_per_server(self) -> None:
        # Every connection of a server waits on the same close_timeout
        # deadlines (one loop timer), not on a timer of its own.
        server = await self.start_server(close_timeout=5)
        await self.connect_to(server)
        await self.connect_to(server)
        first, second = list(server.connections)
        assert first._closing is second._closing
        assert first.close_timeout == second.close_timeout == 5
        # Setting it on one connection leaves the others alone.
        first.close_timeout = 1
        assert (first.close_timeout, second.close_timeout) == (1, 5)
        first.close_timeout = None
        assert first.close_timeout is None

    async def test_close_timeout_must_be_positive(self) -> None:
        for value in (0, -1):
            with pytest.raises(ValueError, match="close_timeout must be positive"):
                serve(echo, "127.0.0.1", 0, close_timeout=value)
            with pytest.raises(ValueError, match="close_timeout must be positive"):
                connect("ws://127.0.0.1:1/", close_timeout=value)
        # A bad value set on a connection changes nothing.
        client = await self.connect_to(await self.start_server(), close_timeout=5)
        with pytest.raises(ValueError, match="close_timeout must be positive"):
            client.close_timeout = 0
        assert client.close_timeout == 5


class AttributeTests(ServerClientTestCase):
    async def test_attributes_on_both_sides(self) -> None:
        server = await self.start_server()
        client = await self.connect_to(server, "/path?query=1")
        server_side = await self.server_side()
        for connection in (client, server_side):
            assert connection.state is OPEN
            assert connection.request is not None
            assert connection.response is not None
            assert connection.request.path == "/path?query=1"
            assert connection.response.status_code == 101
            assert connection.subprotocol is None
        assert client.local_address == server_side.remote_address
        assert client.remote_address == server_side.local_address
        assert client.remote_address == ("127.0.0.1", server.port)
        await wait(client.close())
        assert client.state is CLOSED
        assert client.local_address is None
        assert client.remote_address is None

    async def test_tcp_nodelay_on_both_sides(self) -> None:
        # Small messages must not wait for Nagle's algorithm: the event loop
        # sets TCP_NODELAY on every TCP socket, and ws13 relies on it.
        client = await self.connect_to(await self.start_server())
        server_side = await self.server_side()
        for connection in (client, server_side):
            assert connection.transport is not None
            sock = connection.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


class FreeIdleMemoryTests(ServerClientTestCase):
    async def test_idle_connections_let_compression_state_go(self) -> None:
        # FREE_IDLE_AFTER is read when the server and the client are made.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(connection_module, "FREE_IDLE_AFTER", 50 * MS)
            server = await self.start_server(ping_interval=None)
            client = await self.connect_to(server, ping_interval=None)
        server_side = await self.server_side()
        message = "a compressible message, " * 10
        for _ in range(3):
            await client.send(message)
            assert await wait(client.recv()) == message
            # Both ends compressed and inflated; once idle, both let go.
            for connection in (client, server_side):
                (deflate,) = connection.protocol.extensions
                await wait_for_condition(
                    lambda d=deflate: (d._encoder, d._decoder) == (None, None)  # type: ignore[misc]
                )
        # Context takeover went on across each free: the messages came back whole.
        assert client.protocol.messages_received == 3

    async def test_without_extensions_nothing_waits(self) -> None:
        server = await self.start_server(compression=None)
        client = await self.connect_to(server, compression=None)
        await client.send("hello")
        assert await wait(client.recv()) == "hello"
        assert client._idle is not None
        assert len(client._idle) == 0


class BackpressureTests(ServerClientTestCase):
    async def test_reading_pauses_when_queue_is_full(self) -> None:
        release = asyncio.Event()
        reading: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        async def slow_reader(connection: ServerConnection) -> None:
            await release.wait()
            for _ in range(10):
                await connection.send(await connection.recv())
            assert connection.transport is not None
            reading.set_result(connection.transport.is_reading())

        server = await self.start_server(slow_reader, max_queue=4)
        client = await self.connect_to(server)
        server_side = await self.server_side()
        transport = server_side.transport
        assert transport is not None
        assert transport.is_reading()
        for i in range(10):
            await client.send(str(i))
        # The handler reads nothing: once 4 messages wait, reading pauses.
        await wait_for_condition(lambda: not transport.is_reading())
        release.set()
        for i in range(10):
            assert await wait(client.recv()) == str(i)
        # Every message was read: reading resumed.
        assert await wait(reading)

    async def test_close_while_reading_is_paused(self) -> None:
        async def flood(connection: ServerConnection) -> None:
            for i in range(10):
                await connection.send(str(i))
            await connection.wait_closed()

        server = await self.start_server(flood)
        # close_timeout is far beyond TIMEOUT: close() must not wait for it.
        client = await self.connect_to(server, max_queue=2, close_timeout=100 * TIMEOUT)
        assert client.transport is not None
        transport = client.transport
        await wait_for_condition(lambda: not transport.is_reading())
        await wait(client.close())
        assert client.close_code == 1000
        # What was queued before the close can still be read.
        assert await client.recv() == "0"

    async def test_no_max_queue(self) -> None:
        release = asyncio.Event()

        async def slow_reader(connection: ServerConnection) -> None:
            await release.wait()
            async for message in connection:
                await connection.send(message)

        server = await self.start_server(slow_reader, max_queue=None)
        client = await self.connect_to(server)
        server_side = await self.server_side()
        for i in range(100):
            await client.send(str(i))
        await client.send("last")
        await wait_for_condition(lambda: len(server_side._messages) == 101)
        assert server_side.transport is not None
        assert server_side.transport.is_reading()
        release.set()
        assert await wait(client.recv()) == "0"

    async def test_send_waits_while_the_peer_does_not_read(self) -> None:
        async with RawServer(rcvbuf=4096) as peer:
            # A small send buffer too, so TCP pushes back sooner.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", peer.port))
            client = await wait(connect(peer.uri, sock=sock, write_limit=16384, ping_interval=None))
            assert client.transport is not None
            peer.reading.clear()
            message = b"x" * 65536
            sent = 0
            blocked = False
            for _ in range(1000):
                try:
                    await asyncio.wait_for(client.send(message), 100 * MS)
                except TimeoutError:
                    blocked = True
                    break
                finally:
                    # A send cancelled while it waits has still queued its frame.
                    sent += 1
            assert blocked, "send() never waited for the peer"
            assert client.transport.get_write_buffer_size() > 16384 // 4
            # The peer reads again: the buffer drains and send() goes on.
            peer.reading.set()
            await wait(client.send(b"last"))
            await wait_for_condition(lambda: len(peer.frames) == sent + 1)
            assert peer.frames[-1] == (True, OP_BINARY, b"last")
            assert peer.bytes_received == sent * len(message) + 4
            client.close_timeout = 50 * MS
            await wait(client.close())

    async def test_blocked_send_fails_when_the_peer_goes_away(self) -> None:
        async with RawServer(rcvbuf=4096) as peer:
            client = await wait(connect(peer.uri, write_limit=16384, ping_interval=None))
            peer.reading.clear()
            blocked: asyncio.Future[None] | None = None
            for _ in range(1000):
                sending = asyncio.ensure_future(client.send(b"x" * 65536))
                await asyncio.wait([sending], timeout=100 * MS)
                if not sending.done():
                    blocked = sending
                    break
            assert blocked is not None, "send() never waited for the peer"
            peer.abort()
            with pytest.raises(ConnectionClosedError) as raised:
                await wait(blocked)
            assert raised.value.code == 1006
            assert client.close_code == 1006


class UvloopTests(unittest.TestCase):
    """The same glue on uvloop, whose transports don't subclass asyncio.Transport.

    ``ws13 serve`` runs on uvloop when it is installed (the ``speed`` extra).
    """

    def run_on_uvloop(self, coroutine: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(asyncio.wait_for(coroutine, 4 * TIMEOUT))

    def test_messages_pings_and_close(self) -> None:
        async def scenario() -> None:
            server_sides: asyncio.Queue[ServerConnection] = asyncio.Queue()

            async def handler(connection: ServerConnection) -> None:
                server_sides.put_nowait(connection)
                async for message in connection:
                    await connection.send(message)

            async with serve(handler, "127.0.0.1", 0) as server:
                async with connect(f"ws://127.0.0.1:{server.port}/") as client:
                    for message in ("text", b"bytes", ["frag", "ments"]):
                        await client.send(message)
                    assert [await wait(client.recv()) for _ in range(3)] == [
                        "text",
                        b"bytes",
                        "fragments",
                    ]
                    assert isinstance(await wait(client.ping()), float)
                    server_side = await wait(server_sides.get())
                    assert server_side.remote_address == client.local_address
                    for connection in (client, server_side):
                        assert connection.transport is not None
                        sock = connection.transport.get_extra_info("socket")
                        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                await wait(server_side.wait_closed())
                assert (client.close_code, server_side.close_code) == (1000, 1000)

        self.run_on_uvloop(scenario())

    def test_reading_pauses_and_resumes(self) -> None:
        async def scenario() -> None:
            release = asyncio.Event()
            transports: asyncio.Queue[asyncio.Transport] = asyncio.Queue()

            async def slow(connection: ServerConnection) -> None:
                assert connection.transport is not None
                transports.put_nowait(connection.transport)
                await release.wait()
                async for message in connection:
                    await connection.send(message)

            async with (
                serve(slow, "127.0.0.1", 0, max_queue=2) as server,
                connect(f"ws://127.0.0.1:{server.port}/") as client,
            ):
                transport = await wait(transports.get())
                for i in range(5):
                    await client.send(str(i))
                await wait_for_condition(lambda: not transport.is_reading())
                release.set()
                for i in range(5):
                    assert await wait(client.recv()) == str(i)
                assert transport.is_reading()

        self.run_on_uvloop(scenario())


class MessageOptionTests(ServerClientTestCase):
    async def test_send_text_option(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.send("é as binary", text=False)
        assert await wait(client.recv()) == "é as binary".encode()
        await client.send("é as text".encode(), text=True)
        assert await wait(client.recv()) == "é as text"
        await client.send(bytearray(b"plain"), text=True)
        assert await wait(client.recv()) == "plain"
        await client.send([b"frag", b"ments"], text=True)
        assert await wait(client.recv()) == "fragments"
        await client.send(["frag", "ments"], text=False)
        assert await wait(client.recv()) == b"fragments"

    async def test_recv_decode(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.send("☃")
        assert await wait(client.recv(decode=False)) == "☃".encode()
        await client.send("☃".encode())
        assert await wait(client.recv(decode=True)) == "☃"
        await client.send(b"kept")
        assert await wait(client.recv(decode=False)) == b"kept"
        await client.send(b"\xff")
        with pytest.raises(UnicodeDecodeError):
            await wait(client.recv(decode=True))
        # The message is gone; the connection goes on.
        await client.send("next")
        assert await wait(client.recv(decode=None)) == "next"

    async def test_recv_decode_while_waiting(self) -> None:
        client = await self.connect_to(await self.start_server())
        receiving = asyncio.ensure_future(client.recv(decode=False))
        await asyncio.sleep(0)
        await client.send("waited")
        assert await wait(receiving) == b"waited"

    async def test_compress_opt_out(self) -> None:
        client = await self.connect_to(await self.start_server())
        first_bytes: list[int] = []
        client.protocol.tracer = lambda out, header, payload: out and first_bytes.append(header[0])
        message = "compressible " * 100
        await client.send(message)
        await client.send(message, compress=False)
        await client.send([message, message], compress=False)
        await client.send([message, message])
        for _ in range(4):
            await wait(client.recv())
        # RSV1 (0x40) marks a compressed message's first frame.
        assert first_bytes == [0xC1, 0x81, 0x01, 0x80, 0x41, 0x80]

    async def test_send_nowait_options(self) -> None:
        client = await self.connect_to(await self.start_server())
        client.send_nowait("binary", text=False, compress=False)
        assert await wait(client.recv()) == b"binary"
