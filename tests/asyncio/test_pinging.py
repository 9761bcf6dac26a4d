"""Tests for ws13.asyncio.pinging: ping(), pong(), latency and the keepalive.

Every test runs a ws13 server and client (or a hand-written peer from
``helpers``) over real loopback TCP sockets.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.asyncio.helpers import (
    TIMEOUT,
    RawServer,
    ServerClientTestCase,
    wait,
    wait_for_condition,
)
from tests.utils import MS
from ws13.asyncio.client import connect
from ws13.asyncio.server import ServerConnection
from ws13.exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from ws13.frames import Close
from ws13.protocol import CLOSED, OPEN

OP_BINARY, OP_CLOSE, OP_PING = 0x2, 0x8, 0x9


class PingTests(ServerClientTestCase):
    async def test_ping_returns_latency(self) -> None:
        client = await self.connect_to(await self.start_server(), ping_interval=None)
        assert client.latency == 0.0
        waiter = client.ping()
        assert isinstance(waiter, asyncio.Future)
        latency = await wait(waiter)
        assert isinstance(latency, float)
        assert latency >= 0.0
        assert client.latency == latency

    async def test_ping_with_data(self) -> None:
        client = await self.connect_to(await self.start_server(), ping_interval=None)
        assert isinstance(await wait(client.ping("text")), float)
        assert isinstance(await wait(client.ping(b"\x00bytes")), float)

    async def test_ping_same_data_twice(self) -> None:
        async with RawServer() as peer:
            client = await wait(connect(peer.uri, ping_interval=None, close_timeout=50 * MS))
            client.ping(b"same")
            with pytest.raises(ConcurrencyError):
                client.ping(b"same")
            await wait(client.close())

    async def test_several_pings(self) -> None:
        client = await self.connect_to(await self.start_server(), ping_interval=None)
        waiters = [client.ping() for _ in range(5)]
        for latency in await wait(asyncio.gather(*waiters)):  # type: ignore[attr-defined]
            assert isinstance(latency, float)

    async def test_server_pings_client(self) -> None:
        async def ping_then_echo(connection: ServerConnection) -> None:
            await connection.ping()
            await connection.send(f"latency updated: {connection.latency > 0}")

        client = await self.connect_to(await self.start_server(ping_then_echo))
        assert await wait(client.recv()) == "latency updated: True"

    async def test_unsolicited_pong(self) -> None:
        client = await self.connect_to(await self.start_server(), ping_interval=None)
        await client.pong(b"heartbeat")
        await client.pong("text heartbeat")
        await client.send("still fine")
        assert await wait(client.recv()) == "still fine"

    async def test_ping_after_close(self) -> None:
        client = await self.connect_to(await self.start_server())
        await wait(client.close())
        with pytest.raises(ConnectionClosedOK):
            client.ping()
        with pytest.raises(ConnectionClosedOK):
            await client.pong()

    async def test_pending_ping_fails_when_connection_closes(self) -> None:
        async with RawServer() as peer:
            client = await wait(connect(peer.uri, ping_interval=None, close_timeout=50 * MS))
            waiter = client.ping()
            await wait(client.close())  # The peer never answers: aborted.
            with pytest.raises(ConnectionClosedError):
                await wait(waiter)

    async def test_keepalive_updates_latency(self) -> None:
        server = await self.start_server()
        client = await self.connect_to(server, ping_interval=20 * MS, ping_timeout=TIMEOUT)
        await wait_for_condition(lambda: client.latency > 0)
        # Still open: every ping was answered.
        assert client.state is OPEN

    async def test_keepalive_frees_compression_state(self) -> None:
        server = await self.start_server(ping_interval=20 * MS, ping_timeout=TIMEOUT)
        client = await self.connect_to(server, ping_interval=None)
        served = await self.server_side()
        (deflate,) = served.protocol.extensions
        message = "compressible message " * 10
        await client.send(message)
        assert await wait(client.recv()) == message
        # The server's next keepalive ping lets its zlib state go...
        await wait_for_condition(lambda: served.latency > 0)
        assert (deflate._encoder, deflate._decoder) == (None, None)  # type: ignore[attr-defined]
        # ...and context takeover goes on: the client's compressor refers to
        # the first message, which the server's new decoder must know.
        for _ in range(3):
            await client.send(message)
            assert await wait(client.recv()) == message

    async def test_keepalive_timeout(self) -> None:
        async with RawServer() as peer:
            client = await wait(
                connect(
                    peer.uri, ping_interval=20 * MS, ping_timeout=50 * MS, close_timeout=TIMEOUT
                )
            )
            # The peer never answers the ping: the client closes with 1011.
            await wait(client.wait_closed())
            assert client.state is CLOSED
            assert client.protocol.close_sent is not None
            assert client.protocol.close_sent.code == 1011
            assert client.close_code == 1006
            with pytest.raises(ConnectionClosedError) as raised:
                await client.recv()
            assert raised.value.sent == Close(1011, "keepalive ping timeout")
            await wait(peer.disconnected.wait())
            opcodes = [opcode for _, opcode, _ in peer.frames]
            assert opcodes[0] == OP_PING
            assert opcodes[-1] == OP_CLOSE
            assert Close.parse(peer.frames[-1][2]).code == 1011

    async def test_keepalive_without_timeout(self) -> None:
        async with RawServer() as peer:
            client = await wait(
                connect(peer.uri, ping_interval=10 * MS, ping_timeout=None, close_timeout=50 * MS)
            )
            # Pings keep going out though none is answered.
            await wait_for_condition(
                lambda: sum(opcode == OP_PING for _, opcode, _ in peer.frames) >= 3
            )
            assert client.state is OPEN
            await wait(client.close())

    async def test_keepalive_waits_while_reading_is_paused(self) -> None:
        # A handler that doesn't read fills the queue and reading pauses: the
        # pongs then sit unread behind the messages. That is the server's
        # own slowness, not a dead peer: no 1011 for it.
        release = asyncio.Event()

        async def slow(connection: ServerConnection) -> None:
            await release.wait()
            async for message in connection:
                await connection.send(message)

        server = await self.start_server(
            slow, max_queue=2, ping_interval=10 * MS, ping_timeout=20 * MS
        )
        client = await self.connect_to(server)
        server_side = await self.server_side()
        for i in range(4):
            await client.send(str(i))
        await wait_for_condition(lambda: server_side._messages.paused)
        await asyncio.sleep(100 * MS)  # five ping intervals, five timeouts
        assert server_side.state is OPEN
        release.set()
        assert [await wait(client.recv()) for _ in range(4)] == ["0", "1", "2", "3"]
        # Reading again: pings resume and their pongs are read.
        latency = server_side.latency
        await wait_for_condition(lambda: server_side.latency != latency)
        assert server_side.state is OPEN
