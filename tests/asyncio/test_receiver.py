"""Tests for ``Connection.data_received``: one ``Protocol.receive()`` per read.

The same tests run with the C speedups and in pure Python
(``scripts/test.sh`` runs the suite twice), each written as a peer would
see it: bytes from a hand-written client over loopback TCP,
in one write so that they arrive in one read, and what the server answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import zlib

from tests.asyncio.helpers import (
    ServerClientTestCase,
    accept_key,
    encode_frame,
    raw_client,
    read_frame,
    wait,
    wait_for_condition,
)
from ws13.asyncio.server import ServerConnection
from ws13.exceptions import ConnectionClosedError

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def close_code(payload: bytes) -> int:
    return int.from_bytes(payload[:2], "big")


async def deflate_client(
    port: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client that negotiates permessage-deflate (no context takeover)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
        "\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert accept_key(key).encode() in head, head
    assert b"permessage-deflate" in head, head
    return reader, writer


def compressed(opcode: int, data: bytes) -> bytes:
    """A masked, compressed, single-frame message (RFC 7692 section 7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    payload = (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    frame = bytearray(encode_frame(opcode, payload, mask=True))
    frame[0] |= 0x40  # RSV1: compressed
    return bytes(frame)


class ReadTests(ServerClientTestCase):
    async def test_messages_and_a_ping_in_one_read(self) -> None:
        server = await self.start_server()
        reader, writer, _ = await raw_client(server.port)
        writer.write(
            encode_frame(OP_TEXT, "one ☃".encode(), mask=True)
            + encode_frame(OP_PING, b"are you there", mask=True)
            + encode_frame(OP_BINARY, b"two", mask=True)
            + encode_frame(OP_TEXT, b"three", mask=True)
        )
        frames = [await wait(read_frame(reader)) for _ in range(4)]
        # RFC 6455 section 5.5.2: the Pong carries the Ping's data. The core
        # queues it as it parses the Ping, and data_received() writes it
        # before delivering the messages of that read.
        assert frames == [
            (True, OP_PONG, b"are you there"),
            (True, OP_TEXT, "one ☃".encode()),
            (True, OP_BINARY, b"two"),
            (True, OP_TEXT, b"three"),
        ]
        writer.close()

    async def test_a_frame_split_across_reads(self) -> None:
        server = await self.start_server()
        reader, writer, _ = await raw_client(server.port)
        frame = encode_frame(OP_BINARY, bytes(range(200)), mask=True)
        for piece in (frame[:1], frame[1:5], frame[5:100], frame[100:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        assert await wait(read_frame(reader)) == (True, OP_BINARY, bytes(range(200)))
        writer.close()

    async def test_messages_queued_while_the_handler_is_busy(self) -> None:
        # No reader waits: the messages go to the queue, in order.
        started = asyncio.Event()
        go_on = asyncio.Event()
        received: list[str | bytes] = []

        async def handler(ws: ServerConnection) -> None:
            started.set()
            await go_on.wait()
            async for message in ws:
                received.append(message)

        server = await self.start_server(handler)
        _, writer, _ = await raw_client(server.port)
        await wait(started.wait())
        writer.write(b"".join(encode_frame(OP_BINARY, bytes([n]), mask=True) for n in range(5)))
        await writer.drain()
        await asyncio.sleep(0.05)
        go_on.set()
        writer.write(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big"), mask=True))
        await wait_for_condition(lambda: len(received) == 5)
        assert received == [bytes([n]) for n in range(5)]
        writer.close()

    async def test_a_reader_in_a_task_of_a_task_subclass(self) -> None:
        # A custom task factory's tasks read like any other.
        class OtherTask(asyncio.Task[str | bytes]):
            pass

        async def handler(ws: ServerConnection) -> None:
            while True:
                message = await OtherTask(ws.recv())
                await ws.send(message)

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        for message in ("first", b"second"):
            await client.send(message)
            assert await wait(client.recv()) == message


class FailureTests(ServerClientTestCase):
    async def test_a_handler_that_raises_closes_with_1011(self) -> None:
        calls: list[str | bytes] = []

        async def handler(ws: ServerConnection) -> None:
            def on_message(message: str | bytes) -> None:
                calls.append(message)
                raise ValueError("bad message")

            ws.set_message_handler(on_message)
            await ws.wait_closed()

        server = await self.start_server(handler)
        reader, writer, _ = await raw_client(server.port)
        with self.assertLogs("ws13", "ERROR"):
            writer.write(
                encode_frame(OP_TEXT, b"first", mask=True)
                + encode_frame(OP_TEXT, b"dropped", mask=True)
            )
            _, opcode, payload = await wait(read_frame(reader))
        assert (opcode, close_code(payload)) == (OP_CLOSE, 1011)
        # The messages after the failure are dropped, not handled.
        assert calls == ["first"]
        writer.close()

    async def test_a_compressed_message_that_does_not_inflate_fails_with_1002(self) -> None:
        received: list[str | bytes] = []

        async def handler(ws: ServerConnection) -> None:
            with contextlib.suppress(ConnectionClosedError):
                async for message in ws:
                    received.append(message)

        server = await self.start_server(handler, compression="deflate")
        reader, writer = await deflate_client(server.port)
        bad = bytearray(encode_frame(OP_BINARY, b"\xff\xff\xff", mask=True))
        bad[0] |= 0x40
        writer.write(compressed(OP_TEXT, b"good " * 20) + bytes(bad))
        _, opcode, payload = await wait(read_frame(reader))
        assert (opcode, close_code(payload)) == (OP_CLOSE, 1002)
        # The message before it in the same read is still delivered.
        await wait_for_condition(lambda: received == ["good " * 20])
        writer.close()

    async def test_compressed_text_that_is_not_utf8_fails_with_1007(self) -> None:
        server = await self.start_server(compression="deflate")
        reader, writer = await deflate_client(server.port)
        writer.write(compressed(OP_TEXT, b"caf\xe9"))
        _, opcode, payload = await wait(read_frame(reader))
        assert (opcode, close_code(payload)) == (OP_CLOSE, 1007)
        writer.close()
