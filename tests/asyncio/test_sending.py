"""Tests for ws13.asyncio.sending: fragmented sends and pre-encoded frames.

Every test runs a ws13 server and client (or a hand-written peer from
``helpers``) over real loopback TCP sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.asyncio.helpers import (
    RawServer,
    ServerClientTestCase,
    wait,
    wait_for_condition,
)
from tests.utils import MS
from ws13.asyncio.client import connect
from ws13.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
)
from ws13.protocol import OPEN
from ws13.utils import encode_header

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2


class FragmentTests(ServerClientTestCase):
    async def test_iterable_of_str_is_one_message(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.send(["hel", "lo", " ☃"])
        assert await wait(client.recv()) == "hello ☃"

    async def test_iterable_of_bytes_like_is_one_message(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.send([b"ab", bytearray(b"cd"), memoryview(b"ef")])
        assert await wait(client.recv()) == b"abcdef"

    async def test_generator(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.send(str(i) for i in range(10))
        assert await wait(client.recv()) == "0123456789"

    async def test_async_iterable(self) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(5):
                await asyncio.sleep(0)
                yield bytes([i]) * 3

        client = await self.connect_to(await self.start_server())
        await client.send(chunks())
        assert (
            await wait(client.recv()) == b"\x00\x00\x00\x01\x01\x01\x02\x02\x02"
            b"\x03\x03\x03\x04\x04\x04"
        )

    async def test_frames_on_the_wire(self) -> None:
        async def chunks() -> AsyncIterator[str]:
            yield "a"
            yield "b"

        async with RawServer() as peer:
            client = await wait(connect(peer.uri, ping_interval=None, close_timeout=100 * MS))
            await client.send(["hel", "lo"])
            await client.send(chunks())
            await client.send([b"single"])
            await wait_for_condition(lambda: len(peer.frames) == 5)
            assert peer.frames == [
                (False, OP_TEXT, b"hel"),
                (True, OP_CONT, b"lo"),
                (False, OP_TEXT, b"a"),
                (True, OP_CONT, b"b"),
                (True, OP_BINARY, b"single"),
            ]
            await wait(client.close())

    async def test_empty_iterable_sends_nothing(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.send([])
        await client.send("after")
        assert await wait(client.recv()) == "after"

    async def test_mixing_str_and_bytes_before_sending(self) -> None:
        client = await self.connect_to(await self.start_server())
        with pytest.raises(TypeError):
            await client.send(["text", b"bytes"])
        # The type error was caught before the first frame went out.
        assert client.state is OPEN
        await client.send("ok")
        assert await wait(client.recv()) == "ok"

    async def test_mixing_str_and_bytes_after_first_frame(self) -> None:
        client = await self.connect_to(await self.start_server())
        with pytest.raises(TypeError):
            await client.send(["a", "b", b"c"])
        # Half a message went out: the connection is failed with 1011.
        await wait(client.wait_closed())
        assert client.protocol.close_sent is not None
        assert client.protocol.close_sent.code == 1011
        with pytest.raises(ConnectionClosedError):
            await client.recv()

    async def test_async_iterable_mixing_types(self) -> None:
        async def chunks() -> AsyncIterator[str | bytes]:
            yield b"bytes"
            yield "text"

        client = await self.connect_to(await self.start_server())
        with pytest.raises(TypeError):
            await client.send(chunks())
        assert client.state is OPEN

    async def test_send_waits_for_fragmented_message(self) -> None:
        go_on = asyncio.Event()

        async def slow_chunks() -> AsyncIterator[str]:
            yield "frag"
            yield "mented"
            await go_on.wait()
            yield "!"

        client = await self.connect_to(await self.start_server())
        fragmented = asyncio.ensure_future(client.send(slow_chunks()))
        await asyncio.sleep(0)
        single = asyncio.ensure_future(client.send("single"))
        await asyncio.sleep(10 * MS)
        # "single" can't go out in the middle of the fragmented message.
        assert not single.done()
        go_on.set()
        await wait(fragmented)
        await wait(single)
        assert await wait(client.recv()) == "fragmented!"
        assert await wait(client.recv()) == "single"

    async def test_close_during_fragmented_send(self) -> None:
        go_on = asyncio.Event()

        async def stuck_chunks() -> AsyncIterator[str]:
            yield "a"
            yield "b"
            await go_on.wait()
            yield "c"

        client = await self.connect_to(await self.start_server())
        sending = asyncio.ensure_future(client.send(stuck_chunks()))
        await asyncio.sleep(10 * MS)
        await wait(client.close())
        # A half-sent message can't be finished cleanly: 1011.
        assert client.protocol.close_sent is not None
        assert client.protocol.close_sent.code == 1011
        go_on.set()
        with pytest.raises(ConnectionClosed):
            await wait(sending)


class PreEncodedFrameTests(ServerClientTestCase):
    """send_frame_nowait / send_frames_nowait: one encoding for many connections."""

    async def test_one_frame(self) -> None:
        client = await self.connect_to(await self.start_server())
        server_side = await self.server_side()
        assert server_side.writable
        server_side.send_frame_nowait(encode_header(0x81, 5, None) + b"hello")
        assert await wait(client.recv()) == "hello"

    async def test_several_frames_in_one_write(self) -> None:
        client = await self.connect_to(await self.start_server())
        server_side = await self.server_side()
        frames = [encode_header(0x81, 1, None) + c.encode() for c in "abc"]
        frames.append(encode_header(0x82, 2, None) + b"\x00\xff")
        server_side.send_frames_nowait(frames)
        assert [await wait(client.recv()) for _ in range(4)] == ["a", "b", "c", b"\x00\xff"]

    async def test_refused_on_client_side(self) -> None:
        client = await self.connect_to(await self.start_server())
        with self.assertRaises(InvalidState):
            client.send_frame_nowait(encode_header(0x81, 0, None))
        with self.assertRaises(InvalidState):
            client.send_frames_nowait([encode_header(0x81, 0, None)])

    async def test_refused_after_close(self) -> None:
        client = await self.connect_to(await self.start_server())
        server_side = await self.server_side()
        await wait(client.close())
        await wait(server_side.wait_closed())
        assert not server_side.writable
        with self.assertRaises(ConnectionClosedOK):
            server_side.send_frames_nowait([encode_header(0x81, 0, None)])

    async def test_traced_frame_by_frame(self) -> None:
        client = await self.connect_to(await self.start_server())
        server_side = await self.server_side()
        seen: list[tuple[bool, bytes, bytes]] = []
        server_side.protocol.tracer = lambda sent, head, payload: seen.append(
            (sent, bytes(head), bytes(payload))
        )
        server_side.send_frames_nowait([b"\x81\x01a", b"\x81\x02bc"])
        assert [await wait(client.recv()) for _ in range(2)] == ["a", "bc"]
        assert seen == [(True, b"\x81\x01", b"a"), (True, b"\x81\x02", b"bc")]

    async def test_joined_frames_in_one_write(self) -> None:
        client = await self.connect_to(await self.start_server())
        server_side = await self.server_side()
        seen: list[tuple[bool, bytes, bytes]] = []
        server_side.protocol.tracer = lambda sent, head, payload: seen.append(
            (sent, bytes(head), bytes(payload))
        )
        before = server_side.messages_sent
        long = encode_header(0x81, 300, None) + b"y" * 300
        assert server_side.send_joined_nowait(b"\x81\x01a" + long + b"\x82\x02bc", 3)
        assert [await wait(client.recv()) for _ in range(3)] == ["a", "y" * 300, b"bc"]
        assert server_side.messages_sent == before + 3
        assert seen == [
            (True, b"\x81\x01", b"a"),
            (True, long[:4], b"y" * 300),
            (True, b"\x82\x02", b"bc"),
        ]
        await wait(client.close())
        await wait(server_side.wait_closed())
        # Not writable: nothing written, no exception.
        assert not server_side.send_joined_nowait(b"\x81\x01a", 1)
        assert server_side.messages_sent == before + 3

    async def test_joined_frames_refused_on_client_side(self) -> None:
        client = await self.connect_to(await self.start_server())
        with self.assertRaises(InvalidState):
            client.send_joined_nowait(b"\x81\x01a", 1)
