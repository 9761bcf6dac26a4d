"""Tests for ws13.asyncio.server: serve(), Server, handlers, HTTP hooks, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import os
import tempfile
import weakref
from collections.abc import Awaitable, Callable

import pytest

from tests.asyncio.helpers import (
    TIMEOUT,
    ServerClientTestCase,
    echo,
    encode_frame,
    raw_client,
    read_frame,
    wait,
    wait_for_condition,
)
from tests.utils import MS
from ws13.asyncio.client import connect, unix_connect
from ws13.asyncio.server import Server, ServerConnection, serve, unix_serve
from ws13.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from ws13.frames import Close
from ws13.http11 import Request, Response
from ws13.protocol import CLOSED, CONNECTING, OPEN


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """A plain HTTP GET with the standard library, run in a thread."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


class ServeTests(ServerClientTestCase):
    async def test_async_with(self) -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            assert isinstance(server, Server)
            port = server.port
            async with connect(f"ws://127.0.0.1:{port}/") as client:
                await client.send("hi")
                assert await wait(client.recv()) == "hi"
        # Leaving the block stopped the server.
        with pytest.raises(ConnectionRefusedError):
            await wait(connect(f"ws://127.0.0.1:{port}/"))

    async def test_await(self) -> None:
        server = await serve(echo, "127.0.0.1", 0)
        try:
            async with connect(f"ws://127.0.0.1:{server.port}/") as client:
                await client.send(b"hi")
                assert await wait(client.recv()) == b"hi"
        finally:
            server.close()
            await wait(server.wait_closed())

    async def test_serve_forever_until_cancelled(self) -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            serving = asyncio.ensure_future(server.serve_forever())
            client = await wait(connect(f"ws://127.0.0.1:{server.port}/"))
            await client.send("hi")
            assert await wait(client.recv()) == "hi"
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await wait(serving)
            # Cancelling serve_forever shut the server down gracefully.
            await wait(client.wait_closed())
            assert client.close_code == 1001

    async def test_serve_forever_ends_when_server_closes(self) -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            serving = asyncio.ensure_future(server.serve_forever())
            client = await wait(connect(f"ws://127.0.0.1:{server.port}/"))
            server.close()
            await asyncio.wait([serving], timeout=TIMEOUT)
            assert serving.done()
            await wait(client.wait_closed())
            assert client.close_code == 1001

    async def test_port_and_sockets(self) -> None:
        server = await self.start_server()
        assert server.port > 0
        assert server.sockets[0].getsockname() == ("127.0.0.1", server.port)

    async def test_connections(self) -> None:
        server = await self.start_server()
        assert server.connections == set()
        client = await self.connect_to(server)
        server_side = await self.server_side()
        assert server.connections == {server_side}
        await wait(client.close())
        await wait(server_side.wait_closed())
        assert server.connections == set()

    async def test_several_clients(self) -> None:
        server = await self.start_server()
        clients = [await self.connect_to(server) for _ in range(5)]
        for i, client in enumerate(clients):
            await client.send(str(i))
        for i, client in enumerate(clients):
            assert await wait(client.recv()) == str(i)
        assert len(server.connections) == 5

    async def test_frames_right_after_the_request(self) -> None:
        # A client may send frames without waiting for the 101 response.
        server = await self.start_server()
        reader, writer, _ = await raw_client(server.port)
        try:
            writer.write(encode_frame(0x1, b"early", mask=True))
            assert await wait(read_frame(reader)) == (True, 0x1, b"early")
        finally:
            writer.close()

    async def test_unix_serve_forever(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "server.sock")
            async with unix_serve(echo, path) as server:
                serving = asyncio.ensure_future(server.serve_forever())
                async with unix_connect(path) as client:
                    await client.send("unix")
                    assert await wait(client.recv()) == "unix"
                serving.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await wait(serving)


class HandlerTests(ServerClientTestCase):
    async def test_returning_closes_normally(self) -> None:
        async def greet(connection: ServerConnection) -> None:
            await connection.send("hello")

        client = await self.connect_to(await self.start_server(greet))
        assert await wait(client.recv()) == "hello"
        with pytest.raises(ConnectionClosedOK):
            await wait(client.recv())
        assert client.close_code == 1000

    async def test_handler_error_is_logged_and_closes_with_1011(self) -> None:
        async def crash(connection: ServerConnection) -> None:
            if await connection.recv() == "crash":
                raise RuntimeError("boom")
            await connection.send("fine")

        server = await self.start_server(crash)
        with self.assertLogs("ws13.server", "ERROR") as logs:
            client = await self.connect_to(server)
            await client.send("crash")
            with pytest.raises(ConnectionClosedError) as raised:
                await wait(client.recv())
        assert raised.value.code == 1011
        assert client.close_code == 1011
        [record] = logs.records
        assert record.getMessage() == "connection handler failed"
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
        # The server goes on serving everyone else.
        other = await self.connect_to(server)
        await other.send("no crash")
        assert await wait(other.recv()) == "fine"

    async def test_a_plain_function_handler_may_return_any_awaitable_or_raise(self) -> None:
        # The handler's awaitable becomes the task itself: a future works as
        # well as a coroutine, and raising before returning one is a failure.
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[None] = loop.create_future()

        def handler(connection: ServerConnection) -> Awaitable[None]:
            if connection.request is not None and connection.request.path == "/raise":
                raise RuntimeError("no awaitable")
            return answered

        server = await self.start_server(handler)
        client = await self.connect_to(server)
        answered.set_result(None)
        with pytest.raises(ConnectionClosedOK):
            await wait(client.recv())
        assert client.close_code == 1000
        with self.assertLogs("ws13.server", "ERROR") as logs:
            other = await wait(connect(f"ws://127.0.0.1:{server.port}/raise"))
            with pytest.raises(ConnectionClosedError):
                await wait(other.recv())
        assert other.close_code == 1011
        assert [r.getMessage() for r in logs.records] == ["connection handler failed"]

    async def test_connection_closed_in_handler_is_not_an_error(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def recv_forever(connection: ServerConnection) -> None:
            try:
                while True:
                    await connection.recv()
            finally:
                done.set_result(None)

        server = await self.start_server(recv_forever)
        # recv() raises ConnectionClosedError in the handler: not logged as a failure.
        with self.assertNoLogs("ws13.server", "ERROR"):
            client = await self.connect_to(server)
            await wait(client.close(4000))
            await wait(done)
            await wait(client.wait_closed())

    async def test_closed_connections_are_freed_without_the_garbage_collector(self) -> None:
        # A reference cycle (the connection and its message queue, the close
        # exception's traceback, a handler bound to the connection) would
        # leave every closed connection to the cyclic garbage collector.
        async def iterate(ws: ServerConnection) -> None:
            async for message in ws:
                await ws.send(message)

        async def callback(ws: ServerConnection) -> None:
            ws.set_message_handler(ws.send_nowait)
            await ws.wait_closed()

        async def crash(ws: ServerConnection) -> None:
            await ws.recv()
            raise RuntimeError("boom")

        for handler in (iterate, callback, crash):
            with self.subTest(handler=handler.__name__):
                await self.check_freed(handler)

    async def check_freed(self, handler: Callable[[ServerConnection], Awaitable[None]]) -> None:
        server_side: list[weakref.ref[ServerConnection]] = []

        async def recording(ws: ServerConnection) -> None:
            server_side.append(weakref.ref(ws))
            await handler(ws)

        async with serve(recording, "127.0.0.1", 0) as server:
            gc.disable()
            try:
                client = await asyncio.wait_for(connect(f"ws://127.0.0.1:{server.port}/"), TIMEOUT)
                with contextlib.ExitStack() as stack:
                    logs = None
                    if handler.__name__ == "crash":
                        logs = stack.enter_context(self.assertLogs("ws13.server", "ERROR"))
                    await client.send("x")
                    # asyncio.timeout(), not wait_for(): on 3.11, wait_for()'s
                    # task and the exception it keeps refer to each other.
                    with contextlib.suppress(ConnectionClosedError):
                        async with asyncio.timeout(TIMEOUT):
                            assert await client.recv() == "x"
                    await asyncio.wait_for(client.close(), TIMEOUT)
                if logs is not None:
                    # The log record holds the exception, and so the handler's frames.
                    assert [r.getMessage() for r in logs.records] == ["connection handler failed"]
                    logs.records.clear()
                await wait_for_condition(lambda: bool(server_side) and not server_side[0]())
                # After an error close too: the ConnectionClosedError that
                # recv() raised is a fresh copy, not the one the queue keeps
                # for the next recv(), so its traceback (recv()'s frame, and
                # so the client) is no cycle.
                client_side = weakref.ref(client)
                del client
                assert client_side() is None
            finally:
                gc.enable()

    async def test_max_size(self) -> None:
        server = await self.start_server(max_size=1000)
        client = await self.connect_to(server)
        await client.send("x" * 1000)
        assert await wait(client.recv()) == "x" * 1000
        await client.send("x" * 1001)
        # The server refuses the message with 1009; the sender sees it.
        with pytest.raises(ConnectionClosedError) as raised:
            await wait(client.recv())
        assert raised.value.code == 1009
        assert client.close_code == 1009
        assert client.close_reason is not None
        assert "too big" in client.close_reason

    async def test_max_size_fragmented(self) -> None:
        server = await self.start_server(max_size=1000)
        client = await self.connect_to(server)
        await client.send([b"x" * 600, b"x" * 600])
        await wait(client.wait_closed())
        assert client.close_code == 1009


class ShutdownTests(ServerClientTestCase):
    async def test_close_closes_connections_with_1001_and_waits_for_handlers(self) -> None:
        finished: list[int] = []

        async def echo_then_finish(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(message)
            # `async for` ended normally on 1001; some cleanup still runs.
            await asyncio.sleep(10 * MS)
            finished.append(connection.close_code or 0)

        server = await serve(echo_then_finish, "127.0.0.1", 0)
        clients = [await wait(connect(f"ws://127.0.0.1:{server.port}/")) for _ in range(3)]
        for client in clients:
            await client.send("ping")
            assert await wait(client.recv()) == "ping"
        server.close()
        await wait(server.wait_closed())
        # wait_closed() returned after every handler finished.
        assert finished == [1001, 1001, 1001]
        assert server.connections == set()
        for client in clients:
            await wait(client.wait_closed())
            assert client.close_code == 1001
            assert client.close_reason == "server shutting down"
            assert client.state is CLOSED

    async def test_close_with_custom_code(self) -> None:
        server = await serve(echo, "127.0.0.1", 0)
        client = await wait(connect(f"ws://127.0.0.1:{server.port}/"))
        server.close(code=1012)
        await wait(server.wait_closed())
        await wait(client.wait_closed())
        assert client.close_code == 1012

    async def test_handlers_that_ignore_close_are_cancelled(self) -> None:
        cancelled = asyncio.Event()

        async def stubborn(connection: ServerConnection) -> None:
            try:
                await asyncio.sleep(100 * TIMEOUT)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        server = await serve(stubborn, "127.0.0.1", 0)
        client = await wait(connect(f"ws://127.0.0.1:{server.port}/"))
        with self.assertLogs("ws13.server", "WARNING") as logs:
            server.close(timeout=50 * MS)
            await wait(server.wait_closed())
        assert cancelled.is_set()
        assert logs.output == ["WARNING:ws13.server:1 connection handler(s) cancelled at shutdown"]
        await wait(client.wait_closed())
        assert client.close_code == 1001

    async def test_close_drops_connections_in_handshake(self) -> None:
        server = await serve(echo, "127.0.0.1", 0)
        reader, writer, _ = await raw_client(server.port, handshake=False)
        try:
            await wait_for_condition(lambda: len(server.connections) == 1)
            server.close()
            await wait(server.wait_closed())
            assert await wait(reader.read()) == b""
        finally:
            writer.close()

    async def test_close_twice(self) -> None:
        server = await serve(echo, "127.0.0.1", 0)
        server.close()
        server.close()
        await wait(server.wait_closed())
        await wait(server.wait_closed())


class ProcessRequestTests(ServerClientTestCase):
    async def test_plain_http_on_the_same_port(self) -> None:
        def health(connection: ServerConnection, request: Request) -> Response | None:
            if request.path == "/health":
                return connection.respond(200, "OK\n")
            return None

        server = await self.start_server(process_request=health)
        status, content_type, body = await wait(asyncio.to_thread(http_get, server.port, "/health"))  # type: ignore[misc]
        assert (status, body) == (200, b"OK\n")
        assert content_type.startswith("text/plain")
        # Other paths still get the WebSocket upgrade.
        client = await self.connect_to(server, "/ws")
        await client.send("still a websocket")
        assert await wait(client.recv()) == "still a websocket"

    async def test_plain_http_raw_socket(self) -> None:
        def health(connection: ServerConnection, request: Request) -> Response:
            return connection.respond(200, "OK\n")

        server = await self.start_server(process_request=health)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            # The server answers and closes the connection.
            response = await wait(reader.read())
        finally:
            writer.close()
        assert isinstance(response, bytes)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nContent-Length: 3\r\n" in response
        assert response.endswith(b"\r\n\r\nOK\n")

    async def test_async_process_request(self) -> None:
        async def authenticate(connection: ServerConnection, request: Request) -> Response | None:
            await asyncio.sleep(0)
            if request.headers.get("Authorization") != "Bearer secret":
                return connection.respond(401, "Unauthorized\n")
            return None

        server = await self.start_server(process_request=authenticate)
        with pytest.raises(InvalidStatus) as raised:
            await wait(connect(f"ws://127.0.0.1:{server.port}/"))
        assert raised.value.status == 401
        client = await self.connect_to(
            server, additional_headers=[("Authorization", "Bearer secret")]
        )
        await client.send("let in")
        assert await wait(client.recv()) == "let in"

    async def test_process_request_sees_the_connection(self) -> None:
        seen: list[tuple[object, str]] = []

        def record(connection: ServerConnection, request: Request) -> None:
            seen.append((connection.state, request.path))

        server = await self.start_server(process_request=record)
        await self.connect_to(server, "/recorded")
        assert seen == [(CONNECTING, "/recorded")]

    async def test_process_request_raises(self) -> None:
        def crash(connection: ServerConnection, request: Request) -> None:
            raise RuntimeError("bug")

        server = await self.start_server(process_request=crash)
        with (
            self.assertLogs("ws13.server", "ERROR") as logs,
            pytest.raises(InvalidStatus) as raised,
        ):
            await wait(connect(f"ws://127.0.0.1:{server.port}/"))
        assert raised.value.status == 500
        assert [r.getMessage() for r in logs.records] == ["process_request failed"]

    async def test_async_process_request_raises(self) -> None:
        async def crash(connection: ServerConnection, request: Request) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("bug")

        server = await self.start_server(process_request=crash)
        with (
            self.assertLogs("ws13.server", "ERROR") as logs,
            pytest.raises(InvalidStatus) as raised,
        ):
            await wait(connect(f"ws://127.0.0.1:{server.port}/"))
        assert raised.value.status == 500
        assert [r.getMessage() for r in logs.records] == ["process_request failed"]


class HandshakeTests(ServerClientTestCase):
    async def test_refused_origin(self) -> None:
        server = await self.start_server(origins=["https://good.example"])
        with pytest.raises(InvalidStatus) as raised:
            await wait(connect(f"ws://127.0.0.1:{server.port}/", origin="https://evil.example"))
        assert raised.value.status == 403
        client = await self.connect_to(server, origin="https://good.example")
        assert client.state is OPEN

    async def test_missing_origin(self) -> None:
        server = await self.start_server(origins=["https://good.example"])
        with pytest.raises(InvalidStatus) as raised:
            await wait(connect(f"ws://127.0.0.1:{server.port}/"))
        assert raised.value.status == 403
        # None in origins accepts a request without Origin.
        lenient = await self.start_server(origins=["https://good.example", None])
        client = await self.connect_to(lenient)
        assert client.state is OPEN

    async def test_server_header(self) -> None:
        server = await self.start_server(server_header="test-server/1")
        client = await self.connect_to(server)
        assert client.response is not None
        assert client.response.headers["Server"] == "test-server/1"
        quiet = await self.start_server(server_header=None)
        client = await self.connect_to(quiet)
        assert client.response is not None
        assert "Server" not in client.response.headers

    async def test_plain_http_request_is_refused(self) -> None:
        server = await self.start_server()
        status, _, body = await wait(asyncio.to_thread(http_get, server.port, "/"))  # type: ignore[misc]
        assert status == 426
        assert b"Failed to open a WebSocket connection" in body

    async def test_malformed_request(self) -> None:
        server = await self.start_server()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            with self.assertLogs("ws13.server", "INFO") as logs:
                writer.write(b"BREW /pot HTTP/1.1\r\n\r\n")
                response = await wait(reader.read())
        finally:
            writer.close()
        assert isinstance(response, bytes)
        assert response.startswith(b"HTTP/1.1 405 ")
        assert "opening handshake failed" in logs.output[0]

    async def test_open_timeout(self) -> None:
        server = await self.start_server(open_timeout=50 * MS)
        # A client that connects but never sends its request is dropped.
        reader, writer, _ = await raw_client(server.port, handshake=False)
        try:
            await wait_for_condition(lambda: len(server.connections) == 1)
            try:
                assert await wait(reader.read()) == b""
            except ConnectionResetError:
                pass  # abort() may reset the connection.
            await wait_for_condition(lambda: not server.connections)
        finally:
            writer.close()

    async def test_open_timeout_does_not_close_open_connections(self) -> None:
        server = await self.start_server(open_timeout=50 * MS)
        client = await self.connect_to(server)
        await asyncio.sleep(100 * MS)
        await client.send("still here")
        assert await wait(client.recv()) == "still here"

    async def test_server_keepalive(self) -> None:
        server = await self.start_server(ping_interval=20 * MS, ping_timeout=TIMEOUT)
        await self.connect_to(server)
        server_side = await self.server_side()
        await wait_for_condition(lambda: server_side.latency > 0)
        assert server_side.state is OPEN


class ServerCloseFrameTests(ServerClientTestCase):
    async def test_server_close_frame_reaches_raw_client(self) -> None:
        async def close_4001(connection: ServerConnection) -> None:
            await connection.close(4001, "custom")

        server = await self.start_server(close_4001)
        reader, writer, _ = await raw_client(server.port)
        try:
            _, opcode, payload = await wait(read_frame(reader))  # type: ignore[misc]
            assert opcode == 0x8
            assert Close.parse(payload) == Close(4001, "custom")
            writer.write(encode_frame(0x8, payload[:2], mask=True))
            # The server closes TCP first (RFC 6455 7.1.1).
            assert await wait(reader.read()) == b""
        finally:
            writer.close()


class CompressionTests(ServerClientTestCase):
    """RFC 7692 on the server's fast paths: permessage-deflate alone, as browsers negotiate."""

    async def test_echo_is_compressed_both_ways(self) -> None:
        server = await self.start_server()
        seen: list[tuple[bool, bytes]] = []
        client = await self.connect_to(server)
        assert client.response is not None
        assert client.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        # The client's tracer sees its frames (the server's paths stay fast).
        client.protocol.tracer = lambda sent, header, payload: seen.append((sent, header))
        messages: list[str | bytes] = ["héllo wörld " * 100, bytes(5000), "tiny", b"\x00" * 40]
        for message in messages:
            await client.send(message)
            assert await wait(client.recv()) == message
        # Section 6: RSV1 (0x40) on every message at or over the 32-byte threshold.
        assert [header[0] for sent, header in seen if sent] == [0xC1, 0xC2, 0x81, 0xC2]
        assert [header[0] for sent, header in seen if not sent] == [0xC1, 0xC2, 0x81, 0xC2]

    async def test_uncompressed_peer_is_echoed_uncompressed(self) -> None:
        server = await self.start_server()
        client = await self.connect_to(server, compression=None)
        assert client.response is not None
        assert "Sec-WebSocket-Extensions" not in client.response.headers
        await client.send("x" * 1000)
        assert await wait(client.recv()) == "x" * 1000

    async def test_bad_compressed_data_closes_with_1002(self) -> None:
        server = await self.start_server()
        client = await self.connect_to(server)
        # A compressed (RSV1) binary frame whose payload isn't DEFLATE data.
        assert client.transport is not None
        client.transport.write(encode_frame(0x42, b"\xff\xff\xff", mask=True))
        with pytest.raises(ConnectionClosedError) as raised:
            await wait(client.recv())
        assert raised.value.rcvd is not None
        assert raised.value.rcvd.code == 1002


class ProcessResponseTests(ServerClientTestCase):
    async def test_adds_a_header_in_place(self) -> None:
        seen: list[tuple[str, int]] = []

        def stamp(connection: ServerConnection, request: Request, response: Response) -> None:
            seen.append((request.path, response.status_code))
            response.headers["X-Served-By"] = "test"

        server = await self.start_server(process_response=stamp)
        client = await self.connect_to(server, "/stamped")
        assert client.response is not None
        assert client.response.headers["X-Served-By"] == "test"
        assert seen == [("/stamped", 101)]
        await client.send("still open")
        assert await wait(client.recv()) == "still open"

    async def test_async_replaces_the_response(self) -> None:
        async def refuse(
            connection: ServerConnection, request: Request, response: Response
        ) -> Response | None:
            await asyncio.sleep(0)
            if request.path == "/closed":
                return connection.respond(403, "Closed for today\n")
            return None

        server = await self.start_server(process_response=refuse)
        with pytest.raises(InvalidStatus) as raised:
            await wait(connect(f"ws://127.0.0.1:{server.port}/closed"))
        assert raised.value.status == 403
        assert raised.value.response.body == b"Closed for today\n"
        client = await self.connect_to(server, "/open")
        assert client.state is OPEN

    async def test_sees_the_answer_of_process_request(self) -> None:
        seen: list[int] = []

        def health(connection: ServerConnection, request: Request) -> Response:
            return connection.respond(200, "OK\n")

        def record(connection: ServerConnection, request: Request, response: Response) -> None:
            seen.append(response.status_code)

        server = await self.start_server(process_request=health, process_response=record)
        status, _, body = await wait(asyncio.to_thread(http_get, server.port, "/health"))  # type: ignore[misc]
        assert (status, body, seen) == (200, b"OK\n", [200])

    async def test_raises(self) -> None:
        def crash(connection: ServerConnection, request: Request, response: Response) -> None:
            raise RuntimeError("bug")

        async def crash_later(
            connection: ServerConnection, request: Request, response: Response
        ) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("bug")

        for hook in (crash, crash_later):
            server = await self.start_server(process_response=hook)
            with (
                self.assertLogs("ws13.server", "ERROR") as logs,
                pytest.raises(InvalidStatus) as raised,
            ):
                await wait(connect(f"ws://127.0.0.1:{server.port}/"))
            assert raised.value.status == 500
            assert [r.getMessage() for r in logs.records] == ["process_response failed"]
