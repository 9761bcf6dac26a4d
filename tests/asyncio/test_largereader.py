"""Tests for ws13.asyncio.largereader: the rest of a large frame read straight
into its payload, on asyncio's and uvloop's transports, plain and TLS."""

from __future__ import annotations

import asyncio
import os
import unittest
from collections.abc import Coroutine
from typing import Any
from unittest import mock

import uvloop

from tests.asyncio.helpers import (
    TIMEOUT,
    ServerClientTestCase,
    echo,
    encode_frame,
    raw_client,
    read_frame,
    tls_contexts,
    wait,
)
from ws13.asyncio import connect, serve
from ws13.asyncio.largereader import LARGE_READ, LargeFrameReader
from ws13.asyncio.server import ServerConnection

#: Messages that take the reader in both directions: ~1 MiB and ~3 MiB.
LARGE_BINARY = os.urandom(4 * LARGE_READ + 5)
LARGE_TEXT = "κόσμε " * (3 * 2**20 // 11)
SMALL = b"between"


def readers(spy: mock.MagicMock) -> set[str]:
    """The kinds of connection whose frames the spied reader received."""
    return {type(call.args[0]._connection).__name__ for call in spy.call_args_list}


class LargeFrameReaderTests(ServerClientTestCase):
    def spy(self) -> mock.MagicMock:
        """Count the reads that went straight into a payload."""
        patcher = mock.patch.object(
            LargeFrameReader,
            "buffer_updated",
            autospec=True,
            side_effect=LargeFrameReader.buffer_updated,
        )
        self.addCleanup(patcher.stop)
        return patcher.start()

    async def test_echo_of_large_messages_between_small_ones(self) -> None:
        reads = self.spy()
        server = await self.start_server(max_size=None)
        client = await self.connect_to(server, max_size=None)
        for message in (LARGE_BINARY, SMALL, LARGE_TEXT, LARGE_TEXT, SMALL, LARGE_BINARY):
            await client.send(message)
        for message in (LARGE_BINARY, SMALL, LARGE_TEXT, LARGE_TEXT, SMALL, LARGE_BINARY):
            assert await wait(client.recv()) == message
        # Both ends: the server receives masked frames, the client unmasked ones.
        assert readers(reads) == {"ServerConnection", "ClientConnection"}
        server_side = await self.server_side()
        assert client.transport is not None
        assert server_side.transport is not None
        assert client.transport.get_protocol() is client
        assert server_side.transport.get_protocol() is server_side

    async def test_over_tls(self) -> None:
        reads = self.spy()
        # TLS records are decrypted straight into the payload.
        server_context, client_context = tls_contexts()
        server = await self.start_server(max_size=None, ssl=server_context)
        client = await wait(
            connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context, max_size=None)
        )
        self.addAsyncCleanup(self._close_client, client)
        for message in (LARGE_BINARY, SMALL, LARGE_TEXT):
            await client.send(message)
            assert await wait(client.recv()) == message
        assert readers(reads) == {"ServerConnection", "ClientConnection"}

    async def raw_client(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer, _ = await raw_client(port)
        self.addCleanup(writer.close)
        return reader, writer

    async def test_invalid_utf8_fails_before_the_frame_ends(self) -> None:
        # Section 8.1, as Autobahn 6.4.* checks it: the bad byte arrives
        # through the reader, the rest of the frame never does.
        reads = self.spy()
        server = await self.start_server(max_size=None)
        reader, writer = await self.raw_client(server.port)
        payload = b"a" * (2 * LARGE_READ) + b"\xff" + b"b" * LARGE_READ
        frame = encode_frame(0x81, payload, mask=True)
        writer.write(frame[: len(frame) - LARGE_READ])
        fin, opcode, data = await wait(read_frame(reader))
        assert (fin, opcode, data[:2]) == (True, 0x8, (1007).to_bytes(2, "big"))
        assert reads.call_count >= 1
        # The server closed the TCP connection after its Close frame.
        assert await wait(reader.read()) == b""

    async def test_connection_lost_in_the_middle(self) -> None:
        reads = self.spy()
        server = await self.start_server(max_size=None)
        _, writer = await self.raw_client(server.port)
        frame = encode_frame(0x82, LARGE_BINARY, mask=True)
        writer.write(frame[: 2 * LARGE_READ])
        server_side = await self.server_side()
        await asyncio.sleep(0.05)
        writer.transport.abort()
        await wait(server_side.wait_closed())
        assert server_side.close_code == 1006
        assert reads.call_count >= 1

    async def test_eof_in_the_middle(self) -> None:
        server = await self.start_server(max_size=None)
        _, writer = await self.raw_client(server.port)
        frame = encode_frame(0x82, LARGE_BINARY, mask=True)
        writer.write(frame[: 2 * LARGE_READ])
        await writer.drain()
        writer.write_eof()
        server_side = await self.server_side()
        await wait(server_side.wait_closed())
        assert server_side.close_code == 1006

    async def test_reading_paused_by_the_receive_queue(self) -> None:
        # The receive queue is full when a large frame starts: reading stays
        # paused (no reader), and the frame completes once it resumes.
        release = asyncio.Event()

        async def slow(connection: ServerConnection) -> None:
            await release.wait()
            await echo(connection)

        server = await self.start_server(slow, max_size=None, max_queue=1)
        client = await self.connect_to(server, max_size=None)
        messages = [SMALL, SMALL, LARGE_BINARY, SMALL, LARGE_TEXT]
        sending = asyncio.gather(*(client.send(message) for message in messages))
        await asyncio.sleep(0.1)
        release.set()
        await wait(sending)
        for message in messages:
            assert await wait(client.recv()) == message


class UvloopLargeFrameReaderTests(unittest.TestCase):
    """uvloop switches its read callbacks when the protocol changes."""

    def run_on_uvloop(self, coroutine: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(asyncio.wait_for(coroutine, 4 * TIMEOUT))

    def test_echo_of_large_messages(self) -> None:
        async def scenario() -> None:
            with mock.patch.object(
                LargeFrameReader,
                "buffer_updated",
                autospec=True,
                side_effect=LargeFrameReader.buffer_updated,
            ) as reads:
                async with (
                    serve(echo, "127.0.0.1", 0, max_size=None) as server,
                    connect(f"ws://127.0.0.1:{server.port}/", max_size=None) as client,
                ):
                    for message in (LARGE_BINARY, SMALL, LARGE_TEXT, SMALL):
                        await client.send(message)
                        assert await wait(client.recv()) == message
                assert readers(reads) == {"ServerConnection", "ClientConnection"}

        self.run_on_uvloop(scenario())

    def test_over_tls(self) -> None:
        async def scenario() -> None:
            server_context, client_context = tls_contexts()
            async with (
                serve(echo, "127.0.0.1", 0, max_size=None, ssl=server_context) as server,
                connect(
                    f"wss://127.0.0.1:{server.port}/", ssl=client_context, max_size=None
                ) as client,
            ):
                for message in (LARGE_BINARY, SMALL, LARGE_TEXT):
                    await client.send(message)
                    assert await wait(client.recv()) == message

        self.run_on_uvloop(scenario())
