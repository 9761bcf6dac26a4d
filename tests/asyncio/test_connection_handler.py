"""Tests for ws13.asyncio.connection's callback API: set_message_handler() and send_nowait().

A ws13 server and client (or a hand-written peer from ``helpers``) over real
loopback TCP sockets, as in test_connection.py.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.asyncio.helpers import (
    ServerClientTestCase,
    encode_frame,
    raw_client,
    read_frame,
    wait,
    wait_for_condition,
)
from ws13.asyncio.server import ServerConnection
from ws13.exceptions import ConcurrencyError, ConnectionClosed, ConnectionClosedError
from ws13.protocol import OPEN


async def callback_echo(ws: ServerConnection) -> None:
    """A serve() handler that echoes with the callback API."""
    ws.set_message_handler(ws.send_nowait)
    await ws.wait_closed()


class MessageHandlerTests(ServerClientTestCase):
    async def test_handler_gets_every_message_in_order_outside_any_task(self) -> None:
        seen: list[tuple[str | bytes, bool]] = []

        async def handler(ws: ServerConnection) -> None:
            def on_message(message: str | bytes) -> None:
                seen.append((message, asyncio.current_task() is None))
                ws.send_nowait(message)

            ws.set_message_handler(on_message)
            await ws.wait_closed()

        client = await self.connect_to(await self.start_server(handler))
        sent: list[str | bytes] = ["one", b"two", "x" * 70_000, b"\x00" * 200_000]
        for message in sent:
            await client.send(message)
        assert [await wait(client.recv()) for _ in sent] == sent
        assert seen == [(message, True) for message in sent]

    async def test_fragmented_messages_reach_the_handler_whole(self) -> None:
        client = await self.connect_to(await self.start_server(callback_echo))
        await client.send(["frag", "ment", "ed"])
        assert await wait(client.recv()) == "fragmented"

    async def test_messages_queued_before_are_passed_first(self) -> None:
        seen: list[str | bytes] = []
        go = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            await go.wait()
            ws.set_message_handler(seen.append)
            await ws.wait_closed()

        client = await self.connect_to(await self.start_server(handler))
        server_side = await self.server_side()
        for i in range(3):
            await client.send(str(i))
        await wait_for_condition(lambda: len(server_side._messages) == 3)
        go.set()
        await wait_for_condition(lambda: len(seen) == 3)
        await client.send("3")
        await wait_for_condition(lambda: len(seen) == 4)
        assert seen == ["0", "1", "2", "3"]

    async def test_recv_and_async_for_refuse_while_a_handler_is_set(self) -> None:
        done = asyncio.Event()
        errors: list[str] = []

        async def handler(ws: ServerConnection) -> None:
            ws.set_message_handler(lambda message: None)
            for reader in (ws.recv(), anext(ws)):
                with pytest.raises(ConcurrencyError) as info:
                    await reader
                errors.append(str(info.value))
            ws.set_message_handler(None)
            await ws.send(await ws.recv())
            done.set()

        client = await self.connect_to(await self.start_server(handler))
        await wait_for_condition(lambda: len(errors) == 2)
        assert all("set_message_handler" in error for error in errors)
        # Unset: messages go to the queue and recv() again.
        await client.send("back to recv")
        assert await wait(client.recv()) == "back to recv"
        await wait(done.wait())

    async def test_setting_a_handler_while_recv_waits_raises(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            await ws.send(await ws.recv())

        client = await self.connect_to(await self.start_server(handler))
        server_side = await self.server_side()
        await wait_for_condition(
            lambda: (
                server_side._messages._waiter is not None
                and not server_side._messages._waiter.done()
            )
        )
        with pytest.raises(ConcurrencyError, match="waiting in recv"):
            server_side.set_message_handler(lambda message: None)
        await client.send("still recv's")
        assert await wait(client.recv()) == "still recv's"

    async def test_handler_raising_closes_with_1011_and_drops_the_rest(self) -> None:
        seen: list[str | bytes] = []

        async def handler(ws: ServerConnection) -> None:
            def on_message(message: str | bytes) -> None:
                seen.append(message)
                raise ValueError("bad message")

            ws.set_message_handler(on_message)
            await ws.wait_closed()

        client = await self.connect_to(await self.start_server(handler))
        with self.assertLogs("ws13", "ERROR") as logs:
            await client.send("first")
            await client.send("second")
            with pytest.raises(ConnectionClosedError):
                await wait(client.recv())
        assert client.close_code == 1011
        assert seen == ["first"]
        assert len(logs.output) == 1
        assert "message handler failed" in logs.output[0]
        assert "ValueError: bad message" in logs.output[0]

    async def test_send_nowait_on_a_closing_connection_is_not_an_error(self) -> None:
        client = await self.connect_to(await self.start_server(callback_echo))
        server_side = await self.server_side()
        # The server starts the closing handshake; the client's message,
        # already on its way, reaches the callback, whose echo can't be sent.
        server_side.protocol.send_close(1000)
        server_side._flush()
        with self.assertNoLogs("ws13", "ERROR"):
            client.protocol.send_text(b"late")
            client._flush()
            with pytest.raises(ConnectionClosed):
                await wait(client.recv())
            await wait(server_side.wait_closed())
        assert server_side.close_code == 1000

    async def test_a_client_can_take_messages_by_callback(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            for i in range(3):
                await ws.send(f"push {i}")
            await ws.wait_closed()

        client = await self.connect_to(await self.start_server(handler))
        seen: list[str | bytes] = []
        client.set_message_handler(seen.append)
        await wait_for_condition(lambda: len(seen) == 3)
        assert seen == ["push 0", "push 1", "push 2"]

    async def test_reading_pauses_while_the_echo_fills_the_write_buffer(self) -> None:
        # A peer that sends and doesn't read: the callback's send_nowait()
        # can't wait, so reading pauses instead, and the buffer stays bounded.
        write_limit = 2**16
        # No keepalive: this raw peer doesn't answer pings.
        server = await self.start_server(callback_echo, write_limit=write_limit, ping_interval=None)
        reader, writer, _ = await raw_client(server.port)
        server_side = await self.server_side()
        transport = server_side.transport
        assert transport is not None
        # Small kernel buffers on both ends, so that they fill soon.
        for sock in (writer.get_extra_info("socket"), transport.get_extra_info("socket")):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**16)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2**16)
        message = b"m" * 16_384
        count = 200  # 3.2 MiB: more than all the buffers on the way hold
        frame = encode_frame(0x2, message, mask=True)
        largest = 0

        async def send_all() -> None:
            for _ in range(count):
                writer.write(frame)
                await writer.drain()

        sending = asyncio.get_running_loop().create_task(send_all())
        await wait_for_condition(lambda: server_side._handler_paused)
        for _ in range(20):
            largest = max(largest, transport.get_write_buffer_size())
            await asyncio.sleep(0.005)
        # Above the limit by at most what one read (256 KiB) brought.
        assert largest <= write_limit + 2**18 + len(frame)
        assert not sending.done()  # TCP pushed back on the sender
        echoes = [await wait(read_frame(reader)) for _ in range(count)]
        await wait(sending)
        assert echoes == [(True, 0x2, message)] * count
        assert not server_side._handler_paused
        assert server_side.state is OPEN
        writer.close()


class SendNowaitTests(ServerClientTestCase):
    async def test_text_and_binary(self) -> None:
        client = await self.connect_to(await self.start_server())
        for message in ("text", b"binary", bytearray(b"array"), memoryview(b"view")):
            client.send_nowait(message)
            assert await wait(client.recv()) == (
                message if isinstance(message, str) else bytes(message)
            )

    async def test_wrong_type(self) -> None:
        client = await self.connect_to(await self.start_server())
        for bad in (42, {"a": 1}, ["list"]):
            with pytest.raises(TypeError, match="str or bytes-like"):
                client.send_nowait(bad)  # type: ignore[arg-type]

    async def test_after_close(self) -> None:
        client = await self.connect_to(await self.start_server())
        await client.close()
        with pytest.raises(ConnectionClosed):
            client.send_nowait("late")

    async def test_during_a_fragmented_send(self) -> None:
        client = await self.connect_to(await self.start_server())
        release = asyncio.Event()

        async def fragments() -> Any:
            yield "a"
            await release.wait()
            yield "b"

        sending = asyncio.get_running_loop().create_task(client.send(fragments()))
        await wait_for_condition(lambda: client._fragmenting)
        with pytest.raises(ConcurrencyError, match="fragmented"):
            client.send_nowait("in between")
        release.set()
        await wait(sending)
        assert await wait(client.recv()) == "ab"
