"""Tests for ws13.asyncio.streaming: recv_streaming(), and recv() on a streaming connection.

A ws13 or websockets client sends fragmented messages over loopback; the
server reads them as they arrive.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets.asyncio.client

from tests.asyncio.helpers import ServerClientTestCase, raw_client, wait, wait_for_condition
from tests.interop.test_node_ws import NODE_DIR, install_ws
from tests.utils import memory_kib
from ws13.asyncio.connection import Connection
from ws13.asyncio.server import ServerConnection, serve
from ws13.exceptions import ConcurrencyError, ConnectionClosedError
from ws13.largeframes import LARGE_FRAME
from ws13.utils import apply_mask


def masked(opcode: int, payload: bytes) -> bytes:
    """A final frame as a client sends it (64-bit length), masked."""
    mask = os.urandom(4)
    header = bytes([0x80 | opcode, 0x80 | 127]) + len(payload).to_bytes(8, "big")
    return header + mask + apply_mask(payload, mask)


async def pieces(connection: Connection, decode: bool | None = None) -> list[str | bytes]:
    return [piece async for piece in connection.recv_streaming(decode)]


async def slowly(items: list[Any], gate: asyncio.Event | None = None) -> AsyncIterator[Any]:
    """The items, with the last one held back until ``gate`` is set."""
    for index, item in enumerate(items):
        if gate is not None and index == len(items) - 1:
            await gate.wait()
        yield item


class RecvStreamingTests(ServerClientTestCase):
    async def handlerless(self, **kwargs: Any) -> tuple[Any, ServerConnection]:
        async def hold(connection: ServerConnection) -> None:
            await connection.wait_closed()

        # Uncompressed: a small max_size then counts the bytes as sent.
        server = await self.start_server(hold, **kwargs)
        client = await self.connect_to(server, compression=None)
        return client, await self.server_side()

    async def test_pieces_come_before_the_message_ends(self) -> None:
        client, server = await self.handlerless()
        gate = asyncio.Event()
        sending = asyncio.ensure_future(client.send(slowly(["one ", "two ", "three"], gate)))
        stream = server.recv_streaming()
        # A frame goes out when the next item comes (to know which is the
        # last): "one " is sent, "two " waits for the gate.
        assert await wait(anext(stream)) == "one "
        gate.set()
        assert await wait(anext(stream)) == "two "
        assert await wait(anext(stream)) == "three"
        with pytest.raises(StopAsyncIteration):
            await wait(anext(stream))
        await wait(sending)

    async def test_binary_and_single_frame_messages(self) -> None:
        client, server = await self.handlerless()
        await client.send([b"\x00", b"\x01\x02"])
        await client.send(b"whole")
        await client.send("whole text")
        assert await wait(pieces(server)) == [b"\x00", b"\x01\x02"]
        assert await wait(pieces(server)) == [b"whole"]
        assert await wait(pieces(server)) == ["whole text"]

    async def test_a_character_cut_between_frames(self) -> None:
        client, server = await self.handlerless()
        snowman = "☃".encode()
        await client.send([b"a" + snowman[:1], snowman[1:] + b"b"], text=True)
        assert await wait(pieces(server)) == ["a", "☃b"]

    async def test_decode(self) -> None:
        client, server = await self.handlerless()
        snowman = "☃".encode()
        await client.send(["x", "☃"])
        await client.send([snowman[:2], snowman[2:]])
        await client.send([b"\xff", b"\xfe"])
        assert await wait(pieces(server, decode=False)) == [b"x", snowman]
        assert await wait(pieces(server, decode=True)) == ["", "☃"]
        with pytest.raises(UnicodeDecodeError):
            await wait(pieces(server, decode=True))

    async def test_recv_and_async_for_still_join(self) -> None:
        client, server = await self.handlerless()
        await client.send(["a", "b"])
        await client.send([b"c", b"d"])
        await client.send(["e", "f"])
        await client.send("last")
        assert await wait(pieces(server)) == ["a", "b"]
        assert await wait(server.recv()) == b"cd"
        assert await wait(server.recv(decode=False)) == b"ef"
        await client.close()
        assert [m async for m in server] == ["last"]

    async def test_max_size_bounds_the_whole_message(self) -> None:
        client, server = await self.handlerless(max_size=10)
        stream = server.recv_streaming()  # streaming is on from here
        await client.send(["12345", "67890", "X"])
        assert await wait(anext(stream)) == "12345"
        assert await wait(anext(stream)) == "67890"
        with pytest.raises(ConnectionClosedError) as raised:
            await wait(anext(stream))
        assert raised.value.sent is not None
        assert raised.value.sent.code == 1009

    async def test_leaving_the_loop_keeps_the_rest(self) -> None:
        client, server = await self.handlerless()
        await client.send(["first ", "second ", "third"])
        await client.send("next")
        async for piece in server.recv_streaming():
            assert piece == "first "
            break
        with pytest.raises(ConcurrencyError, match="left a message unfinished"):
            await wait(server.recv())
        # Nothing was lost: the fragment recv() took is the next piece.
        assert await wait(pieces(server)) == ["second ", "third"]
        assert await wait(server.recv()) == "next"

    async def test_cancelled_recv_loses_nothing(self) -> None:
        client, server = await self.handlerless()
        gate = asyncio.Event()
        server.recv_streaming()  # turns streaming on, reads nothing
        sending = asyncio.ensure_future(client.send(slowly(["a", "b", "c"], gate)))
        receiving = asyncio.ensure_future(server.recv())
        await asyncio.sleep(0.05)
        receiving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await receiving
        gate.set()
        await wait(sending)
        assert await wait(server.recv()) == "abc"

    async def test_waiting_readers_get_whole_messages(self) -> None:
        client, server = await self.handlerless()
        server.recv_streaming()  # turns streaming on, reads nothing
        gate = asyncio.Event()
        receiving = asyncio.ensure_future(anext(aiter(server)))
        sending = asyncio.ensure_future(client.send(slowly([b"x", b"y", b"z"], gate)))
        await asyncio.sleep(0.05)
        assert not receiving.done()
        gate.set()
        assert await wait(receiving) == b"xyz"
        await wait(sending)

    async def test_waiting_recv_after_an_unfinished_stream(self) -> None:
        client, server = await self.handlerless()
        gate = asyncio.Event()
        sending = asyncio.ensure_future(client.send(slowly(["1", "2", "3"], gate)))
        async for piece in server.recv_streaming():
            assert piece == "1"
            break
        receiving = asyncio.ensure_future(server.recv())
        await asyncio.sleep(0)
        gate.set()
        with pytest.raises(ConcurrencyError, match="left a message unfinished"):
            await wait(receiving)
        await wait(sending)
        assert await wait(pieces(server)) == ["2", "3"]

    async def test_message_handler_gets_whole_messages(self) -> None:
        client, server = await self.handlerless()
        server.recv_streaming()
        await client.send(["queued ", "before"])
        await wait(client.ping())  # its pong comes after the fragments were read
        got: list[str | bytes] = []
        server.set_message_handler(got.append)
        await client.send(["after ", "set"])
        await wait_for_condition(lambda: len(got) == 2)
        assert got == ["queued before", "after set"]

    async def test_websockets_sender(self) -> None:
        async def stream_back(connection: ServerConnection) -> None:
            # Each piece is sent back as its own message.
            async for piece in connection.recv_streaming():
                await connection.send(piece)

        server = await self.start_server(stream_back)
        uri = f"ws://127.0.0.1:{server.port}/"
        async with websockets.asyncio.client.connect(uri) as client:
            await client.send(["frag", "ment", "ed ☃"])
            assert [await wait(client.recv()) for _ in range(3)] == ["frag", "ment", "ed ☃"]


class LargeFrameTests(ServerClientTestCase):
    """A large message sent in one frame streams read by read (browsers,
    websockets and Node's ws never fragment what they send)."""

    async def test_pieces_come_before_the_frame_ends(self) -> None:
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def collect(connection: ServerConnection) -> None:
            async for piece in connection.recv_streaming():
                assert isinstance(piece, bytes)
                received.put_nowait(piece)
            received.put_nowait(b"end")

        server = await self.start_server(collect)
        _, writer, _ = await raw_client(server.port)
        payload = os.urandom(LARGE_FRAME * 4)
        wire = masked(0x2, payload)
        half = len(wire) // 2
        writer.write(wire[:half])
        # Half of the frame is out and the rest held back: pieces arrive.
        got = [await wait(received.get())]
        while sum(map(len, got)) < half - 14:
            got.append(await wait(received.get()))
        writer.write(wire[half:])
        while (piece := await wait(received.get())) != b"end":
            got.append(piece)
        assert b"".join(got) == payload
        writer.close()

    async def test_websockets_sends_one_large_frame(self) -> None:
        async def digest(connection: ServerConnection) -> None:
            # Streaming is on from the first recv_streaming(), before anything arrives.
            while True:
                count, size = 0, 0
                async for piece in connection.recv_streaming():
                    count += 1
                    size += len(piece)
                await connection.send(json.dumps([count, size]))

        server = await self.start_server(digest, max_size=2**23)
        uri = f"ws://127.0.0.1:{server.port}/"
        for compression in ("deflate", None):
            with self.subTest(compression=compression):
                async with websockets.asyncio.client.connect(
                    uri, compression=compression
                ) as client:
                    await client.send(os.urandom(2**22))
                    count, size = json.loads(await wait(client.recv()))
                    assert size == 2**22
                    assert count > 1  # in pieces, as it arrived


class NodeSenderTests(unittest.IsolatedAsyncioTestCase):
    """Node's ws sends a message in frames, each after the previous one was streamed back."""

    @classmethod
    def setUpClass(cls) -> None:
        install_ws()

    async def test_node_ws_fragments(self) -> None:
        async def stream_back(connection: ServerConnection) -> None:
            async for piece in connection.recv_streaming():
                await connection.send(piece)

        for deflate in (True, False):
            server = await serve(stream_back, "127.0.0.1", 0)
            try:
                process = await asyncio.create_subprocess_exec(
                    "node",
                    os.path.join(NODE_DIR, "client.mjs"),
                    f"ws://127.0.0.1:{server.port}/",
                    "fragments",
                    json.dumps(deflate),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                try:
                    stdout, stderr = await wait(process.communicate())
                finally:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
            finally:
                server.close()
                await wait(server.wait_closed())
            assert process.returncode == 0, stderr.decode(errors="replace")
            # Each piece came back before Node sent the next: streamed.
            assert json.loads(stdout)["results"] == ["frag", "ment", "ed ☃"]


def contents(path: str) -> bytes:
    return Path(path).read_bytes()


class UploadExampleTests(unittest.IsolatedAsyncioTestCase):
    """examples/upload.py: uploads stream to files; memory doesn't grow with their size."""

    async def asyncSetUp(self) -> None:
        self.directory = self.enterContext(tempfile.TemporaryDirectory())
        example = Path(__file__).parents[2] / "examples" / "upload.py"
        self.server = await asyncio.create_subprocess_exec(
            sys.executable,
            str(example),
            self.directory,
            "--port",
            "0",
            stdout=subprocess.PIPE,
        )
        assert self.server.stdout is not None
        line = (await wait(self.server.stdout.readline())).decode()
        self.uri = re.search(r"ws://\S+/", line)[0]  # type: ignore[index]

    async def asyncTearDown(self) -> None:
        self.server.terminate()
        await self.server.wait()

    async def upload(self, data: bytes, compression: str | None) -> dict[str, Any]:
        async with websockets.asyncio.client.connect(self.uri, compression=compression) as ws:
            await ws.send(data)
            return json.loads(await wait(ws.recv()))  # type: ignore[no-any-return]

    async def test_a_large_upload_streams_to_a_file(self) -> None:
        before = memory_kib(self.server.pid, "VmHWM")
        data = os.urandom(64 * 2**20)  # websockets sends it in one frame
        answer = await self.upload(data, None)
        assert answer["bytes"] == len(data)
        assert answer["sha256"] == hashlib.sha256(data).hexdigest()
        assert contents(answer["file"]) == data
        # Gathered whole, the message alone would add 64 MiB.
        assert memory_kib(self.server.pid, "VmHWM") - before < 16 * 1024

    async def test_compressed_uploads_and_text(self) -> None:
        data = b"compressible " * 500_000
        answer = await self.upload(data, "deflate")
        assert (answer["bytes"], contents(answer["file"])) == (len(data), data)
        answer = await self.upload("héllo", "deflate")  # type: ignore[arg-type]
        assert contents(answer["file"]) == "héllo".encode()

    async def test_an_interrupted_upload_leaves_no_file(self) -> None:
        _, writer, _ = await raw_client(int(self.uri.rsplit(":", 1)[1].strip("/")))
        writer.write(masked(0x2, bytes(LARGE_FRAME * 4))[: LARGE_FRAME * 2])
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()
        for _ in range(100):
            if not os.listdir(self.directory):
                break
            await asyncio.sleep(0.05)
        assert os.listdir(self.directory) == []
