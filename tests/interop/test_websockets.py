"""Interoperability with the ``websockets`` library (its asyncio API, v14+), both ways.

Their client talks to our server, and our client to their server, over real
loopback sockets: text, binary, large and fragmented messages, ping/pong, and
the close codes and reasons each side sees.
"""

from __future__ import annotations

import asyncio
import os
import unittest
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as their_connect
from websockets.asyncio.server import ServerConnection as TheirServerConnection
from websockets.asyncio.server import serve as their_serve

from tests.interop.echo import stop_server
from tests.utils import MS
from ws13.asyncio.client import connect
from ws13.asyncio.server import ServerConnection, serve
from ws13.exceptions import ConnectionClosedError, ConnectionClosedOK

TIMEOUT = 5000 * MS
BIG = 2**20  # 1 MiB
MAX_SIZE = 2**21


async def wait(awaitable: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(awaitable, TIMEOUT)


async def our_echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def their_echo(connection: TheirServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


class TheirClientOurServerTests(unittest.IsolatedAsyncioTestCase):
    """websockets.asyncio.client.connect → ws13.asyncio.serve."""

    async def start(self, handler: Callable[[ServerConnection], Awaitable[None]] = our_echo) -> str:
        server = await serve(handler, "127.0.0.1", 0, max_size=MAX_SIZE)
        self.addAsyncCleanup(stop_server, server, TIMEOUT)
        return f"ws://127.0.0.1:{server.port}/"

    async def test_text_and_binary(self) -> None:
        uri = await self.start()
        async with their_connect(uri) as ws:
            await ws.send("héllo ☃")
            assert await wait(ws.recv()) == "héllo ☃"
            await ws.send(b"\x00\x01\xff")
            assert await wait(ws.recv()) == b"\x00\x01\xff"
            assert ws.close_code is None

    async def test_one_mebibyte(self) -> None:
        uri = await self.start()
        text = "x" * BIG
        data = os.urandom(BIG)
        async with their_connect(uri, max_size=MAX_SIZE) as ws:
            await ws.send(text)
            assert await wait(ws.recv()) == text
            await ws.send(data)
            assert await wait(ws.recv()) == data

    async def test_fragmented_from_their_client(self) -> None:
        uri = await self.start()
        async with their_connect(uri) as ws:
            await ws.send(["frag", "ment", "ed ☃"])
            assert await wait(ws.recv()) == "fragmented ☃"
            await ws.send([b"ab", b"cd"])
            assert await wait(ws.recv()) == b"abcd"

    async def test_fragmented_from_our_server(self) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield bytes([i]) * 4

        async def send_fragmented(connection: ServerConnection) -> None:
            await connection.send(["one ", "message"])
            await connection.send(chunks())

        uri = await self.start(send_fragmented)
        async with their_connect(uri) as ws:
            assert await wait(ws.recv()) == "one message"
            assert await wait(ws.recv()) == b"\x00" * 4 + b"\x01" * 4 + b"\x02" * 4

    async def test_their_ping_our_pong(self) -> None:
        uri = await self.start()
        async with their_connect(uri) as ws:
            pong_waiter = await ws.ping(b"theirs")
            latency = await wait(pong_waiter)
            assert isinstance(latency, float)

    async def test_our_ping_their_pong(self) -> None:
        latencies: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        async def ping(connection: ServerConnection) -> None:
            latencies.set_result(await connection.ping(b"ours"))
            await connection.send("pinged")

        uri = await self.start(ping)
        async with their_connect(uri) as ws:
            assert await wait(ws.recv()) == "pinged"
        latency = await wait(latencies)
        assert isinstance(latency, float)
        assert latency >= 0

    async def test_their_client_closes(self) -> None:
        closed: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

        async def wait_for_close(connection: ServerConnection) -> None:
            await connection.wait_closed()
            closed.set_result(connection)

        uri = await self.start(wait_for_close)
        ws = await wait(their_connect(uri))
        await wait(ws.close(4000, "their reason"))
        server_side = await wait(closed)
        assert server_side.close_code == 4000
        assert server_side.close_reason == "their reason"
        # We echoed the code (without the reason).
        assert ws.close_code == 4000

    async def test_their_client_closes_normally(self) -> None:
        outcome: asyncio.Future[list[str | bytes]] = asyncio.get_running_loop().create_future()

        async def collect(connection: ServerConnection) -> None:
            outcome.set_result([message async for message in connection])

        uri = await self.start(collect)
        async with their_connect(uri) as ws:
            await ws.send("only")
        # A 1000 close from their side ends our `async for` normally.
        assert await wait(outcome) == ["only"]
        assert ws.close_code == 1000

    async def test_our_server_closes(self) -> None:
        async def close(connection: ServerConnection) -> None:
            await connection.close(4001, "our reason")

        uri = await self.start(close)
        async with their_connect(uri) as ws:
            with pytest.raises(websockets.ConnectionClosedError) as raised:
                await wait(ws.recv())
        assert raised.value.rcvd is not None
        assert raised.value.rcvd.code == 4001
        assert raised.value.rcvd.reason == "our reason"
        assert ws.close_code == 4001
        assert ws.close_reason == "our reason"

    async def test_our_server_shuts_down(self) -> None:
        server = await serve(our_echo, "127.0.0.1", 0)
        try:
            ws = await wait(their_connect(f"ws://127.0.0.1:{server.port}/"))
        finally:
            # Shutting the server down closes every connection with 1001.
            server.close()
            await wait(server.wait_closed())
        with pytest.raises(websockets.ConnectionClosedOK):
            await wait(ws.recv())
        assert ws.close_code == 1001
        assert ws.close_reason == "server shutting down"

    async def test_max_size_exceeded(self) -> None:
        uri = await self.start()
        async with their_connect(uri, max_size=MAX_SIZE) as ws:
            await ws.send(b"x" * (MAX_SIZE + 1))
            with pytest.raises(websockets.ConnectionClosedError) as raised:
                await wait(ws.recv())
        assert raised.value.rcvd is not None
        assert raised.value.rcvd.code == 1009


class OurClientTheirServerTests(unittest.IsolatedAsyncioTestCase):
    """ws13.asyncio.connect → websockets.asyncio.server.serve."""

    async def start(
        self, handler: Callable[[TheirServerConnection], Awaitable[None]] = their_echo
    ) -> str:
        server = await their_serve(handler, "127.0.0.1", 0, max_size=MAX_SIZE)
        self.addAsyncCleanup(stop_server, server, TIMEOUT)
        port = server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    async def test_text_and_binary(self) -> None:
        uri = await self.start()
        async with connect(uri) as ws:
            await ws.send("héllo ☃")
            assert await wait(ws.recv()) == "héllo ☃"
            await ws.send(b"\x00\x01\xff")
            assert await wait(ws.recv()) == b"\x00\x01\xff"
            await ws.send(bytearray(b"ba"))
            assert await wait(ws.recv()) == b"ba"
            await ws.send(memoryview(b"mv"))
            assert await wait(ws.recv()) == b"mv"
        assert ws.close_code == 1000

    async def test_one_mebibyte(self) -> None:
        uri = await self.start()
        text = "é" * (BIG // 2)  # 1 MiB once UTF-8 encoded
        data = os.urandom(BIG)
        async with connect(uri, max_size=MAX_SIZE) as ws:
            await ws.send(text)
            assert await wait(ws.recv()) == text
            await ws.send(data)
            assert await wait(ws.recv()) == data

    async def test_fragmented_from_our_client(self) -> None:
        async def chunks() -> AsyncIterator[str]:
            for word in ("async ", "frag", "ments"):
                yield word

        uri = await self.start()
        async with connect(uri) as ws:
            await ws.send(["frag", "ment", "ed ☃"])
            assert await wait(ws.recv()) == "fragmented ☃"
            await ws.send(chunks())
            assert await wait(ws.recv()) == "async fragments"
            await ws.send([b"ab", bytearray(b"cd")])
            assert await wait(ws.recv()) == b"abcd"

    async def test_fragmented_from_their_server(self) -> None:
        async def send_fragmented(connection: TheirServerConnection) -> None:
            await connection.send(["their ", "fragments"])
            await connection.send([b"\x01", b"\x02"])

        uri = await self.start(send_fragmented)
        async with connect(uri) as ws:
            assert await wait(ws.recv()) == "their fragments"
            assert await wait(ws.recv()) == b"\x01\x02"

    async def test_our_ping_their_pong(self) -> None:
        uri = await self.start()
        async with connect(uri) as ws:
            latency = await wait(ws.ping(b"ours"))
            assert isinstance(latency, float)
            assert ws.latency == latency

    async def test_their_ping_our_pong(self) -> None:
        latencies: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        async def ping(connection: TheirServerConnection) -> None:
            pong_waiter = await connection.ping(b"theirs")
            latencies.set_result(await pong_waiter)
            await connection.send("pinged")
            await connection.wait_closed()

        uri = await self.start(ping)
        async with connect(uri) as ws:
            assert await wait(ws.recv()) == "pinged"
        assert isinstance(await wait(latencies), float)

    async def test_our_client_closes(self) -> None:
        closed: asyncio.Future[TheirServerConnection] = asyncio.get_running_loop().create_future()

        async def wait_for_close(connection: TheirServerConnection) -> None:
            await connection.wait_closed()
            closed.set_result(connection)

        uri = await self.start(wait_for_close)
        ws = await wait(connect(uri))
        await wait(ws.close(4000, "our reason"))
        server_side = await wait(closed)
        assert server_side.close_code == 4000
        assert server_side.close_reason == "our reason"
        assert ws.close_code == 4000

    async def test_their_server_closes(self) -> None:
        async def close(connection: TheirServerConnection) -> None:
            await connection.close(4001, "their reason")

        uri = await self.start(close)
        async with connect(uri) as ws:
            with pytest.raises(ConnectionClosedError) as raised:
                await wait(ws.recv())
        assert raised.value.code == 4001
        assert raised.value.reason == "their reason"
        assert ws.close_code == 4001
        assert ws.close_reason == "their reason"

    async def test_their_server_closes_normally(self) -> None:
        async def send_and_return(connection: TheirServerConnection) -> None:
            await connection.send("bye")

        uri = await self.start(send_and_return)
        async with connect(uri) as ws:
            received = [message async for message in ws]
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
        # Their handler returned: a 1000 close ends our `async for` normally.
        assert received == ["bye"]
        assert ws.close_code == 1000

    async def test_their_server_rejects_big_message(self) -> None:
        uri = await self.start()
        async with connect(uri, max_size=None) as ws:
            await ws.send(b"x" * (MAX_SIZE + 1))
            with pytest.raises(ConnectionClosedError) as raised:
                await wait(ws.recv())
        assert raised.value.code == 1009
        assert ws.close_code == 1009

    async def test_their_big_message_rejected_by_us(self) -> None:
        async def send_big(connection: TheirServerConnection) -> None:
            await connection.send(b"x" * 2000)
            await connection.wait_closed()

        uri = await self.start(send_big)
        ws = await wait(connect(uri, max_size=1000))
        await wait(ws.wait_closed())
        assert ws.protocol.close_sent is not None
        assert ws.protocol.close_sent.code == 1009


class CompressionTests(unittest.IsolatedAsyncioTestCase):
    """permessage-deflate (RFC 7692), on by default on both sides, and off."""

    async def test_their_client_our_server(self) -> None:
        server = await serve(our_echo, "127.0.0.1", 0, max_size=MAX_SIZE)
        try:
            uri = f"ws://127.0.0.1:{server.port}/"
            for compression in ("deflate", None):
                with self.subTest(compression=compression):
                    async with their_connect(uri, compression=compression, max_size=MAX_SIZE) as ws:
                        assert ws.response is not None
                        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
                        if compression is None:
                            assert extensions is None
                        else:
                            assert extensions is not None
                            assert extensions.startswith("permessage-deflate")
                        for message in ("compressible " * 50_000, os.urandom(1000), "", b""):
                            await ws.send(message)
                            assert await wait(ws.recv()) == message
                        await ws.send(["frag " * 1000, "ment " * 1000])
                        assert await wait(ws.recv()) == "frag " * 1000 + "ment " * 1000
        finally:
            server.close()
            await wait(server.wait_closed())

    async def test_their_incompressible_message_at_our_max_size(self) -> None:
        # Their client deflates random bytes into a frame over MAX_SIZE on
        # the wire: our max_size bounds the message, so it arrives; one byte
        # more is refused with 1009.
        async def sizes(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(str(len(message)))

        server = await serve(sizes, "127.0.0.1", 0, max_size=MAX_SIZE)
        self.addAsyncCleanup(stop_server, server, TIMEOUT)
        async with their_connect(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send(os.urandom(MAX_SIZE))
            assert await wait(ws.recv()) == str(MAX_SIZE)
            await ws.send(os.urandom(MAX_SIZE + 1))
            with pytest.raises(websockets.ConnectionClosedError) as raised:
                await wait(ws.recv())
        assert raised.value.rcvd is not None
        assert raised.value.rcvd.code == 1009

    async def test_our_client_their_server(self) -> None:
        async with their_serve(their_echo, "127.0.0.1", 0, max_size=MAX_SIZE) as server:
            port = server.sockets[0].getsockname()[1]
            for compression in ("deflate", None):
                with self.subTest(compression=compression):
                    async with connect(
                        f"ws://127.0.0.1:{port}/", compression=compression, max_size=MAX_SIZE
                    ) as ws:
                        assert ws.response is not None
                        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
                        if compression is None:
                            assert extensions is None
                        else:
                            assert extensions is not None
                            assert extensions.startswith("permessage-deflate")
                        for message in ("compressible " * 50_000, os.urandom(1000), "", b""):
                            await ws.send(message)
                            assert await wait(ws.recv()) == message
                        await ws.send(["frag " * 1000, "ment " * 1000])
                        assert await wait(ws.recv()) == "frag " * 1000 + "ment " * 1000
