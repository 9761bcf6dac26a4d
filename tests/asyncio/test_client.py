"""Tests for ws13.asyncio.client: connect() and unix_connect() over real sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
import tempfile
import unittest
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trustme

from tests.asyncio.helpers import (
    TIMEOUT,
    RawServer,
    ServerClientTestCase,
    accept_key,
    echo,
    tls_contexts,
)
from tests.proxies import Tinyproxy
from tests.utils import MS, free_port
from ws13.asyncio.client import ClientConnection, connect, unix_connect
from ws13.asyncio.server import Server, ServerConnection, serve, unix_serve
from ws13.client import backoff, process_exception
from ws13.exceptions import (
    ConnectionClosed,
    InvalidHeader,
    InvalidMessage,
    InvalidRedirect,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
)
from ws13.headers import Headers
from ws13.http11 import Request, Response
from ws13.protocol import CLOSED, OPEN


async def connect_and_close(uri: str) -> None:
    async with connect(uri):
        pass


class ConnectTests(ServerClientTestCase):
    async def test_await(self) -> None:
        server = await self.start_server()
        client = await connect(f"ws://127.0.0.1:{server.port}/")
        try:
            assert isinstance(client, ClientConnection)
            assert client.state is OPEN
            await client.send("hi")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hi"
        finally:
            await asyncio.wait_for(client.close(), TIMEOUT)
        assert client.state is CLOSED

    async def test_async_with_closes_normally(self) -> None:
        server = await self.start_server()
        async with connect(f"ws://127.0.0.1:{server.port}/") as client:
            await client.send(b"hi")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"hi"
            server_side = await self.server_side()
        assert client.state is CLOSED
        assert client.close_code == 1000
        await asyncio.wait_for(server_side.wait_closed(), TIMEOUT)
        assert server_side.close_code == 1000

    async def test_async_with_closes_on_error(self) -> None:
        server = await self.start_server()
        with pytest.raises(ZeroDivisionError):
            async with connect(f"ws://127.0.0.1:{server.port}/") as client:
                1 / 0  # noqa: B018
        assert client.state is CLOSED

    async def test_request_headers(self) -> None:
        server = await self.start_server()
        client = await self.connect_to(
            server,
            "/chat?room=1",
            origin="https://example.com",
            additional_headers=[("X-Token", "abc")],
            user_agent_header="test-agent/1.0",
        )
        server_side = await self.server_side()
        assert server_side.request is not None
        headers = server_side.request.headers
        assert server_side.request.path == "/chat?room=1"
        assert headers["Origin"] == "https://example.com"
        assert headers["X-Token"] == "abc"
        assert headers["User-Agent"] == "test-agent/1.0"
        assert headers["Host"] == f"127.0.0.1:{server.port}"
        assert client.request is client.protocol.request

    async def test_no_user_agent(self) -> None:
        server = await self.start_server()
        await self.connect_to(server, user_agent_header=None)
        server_side = await self.server_side()
        assert server_side.request is not None
        assert "User-Agent" not in server_side.request.headers

    async def test_basic_auth_from_uri(self) -> None:
        server = await self.start_server()
        await asyncio.wait_for(
            connect_and_close(f"ws://user:pass@127.0.0.1:{server.port}/"), TIMEOUT
        )
        server_side = await self.server_side()
        assert server_side.request is not None
        # base64("user:pass")
        assert server_side.request.headers["Authorization"] == "Basic dXNlcjpwYXNz"

    async def test_subprotocol(self) -> None:
        server = await self.start_server(subprotocols=["chat.v2", "chat.v1"])
        client = await self.connect_to(server, subprotocols=["chat.v1", "chat.v2"])
        server_side = await self.server_side()
        # The server's preference wins.
        assert client.subprotocol == "chat.v2"
        assert server_side.subprotocol == "chat.v2"
        assert client.response is not None
        assert client.response.headers["Sec-WebSocket-Protocol"] == "chat.v2"

    async def test_no_common_subprotocol(self) -> None:
        server = await self.start_server(subprotocols=["chat.v2"])
        client = await self.connect_to(server, subprotocols=["other"])
        assert client.subprotocol is None
        assert (await self.server_side()).subprotocol is None

    async def test_select_subprotocol(self) -> None:
        def select(connection: ServerConnection, offered: object) -> str | None:
            # websockets' signature: the connection, whose request is known.
            assert connection.request is not None
            assert connection.request.headers["Sec-WebSocket-Protocol"] == "a, b, c"
            assert offered == ["a", "b", "c"]
            return "c"

        server = await self.start_server(select_subprotocol=select)
        client = await self.connect_to(server, subprotocols=["a", "b", "c"])
        assert client.subprotocol == "c"

    async def test_max_size(self) -> None:
        async def send_big(connection: ServerConnection) -> None:
            await connection.send(b"x" * 2000)
            await connection.wait_closed()

        server = await self.start_server(send_big)
        client = await self.connect_to(server, max_size=1000)
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        server_side = await self.server_side()
        # The receiving client fails the connection with 1009: the sending
        # server sees it as its close code.
        assert client.protocol.close_sent is not None
        assert client.protocol.close_sent.code == 1009
        assert server_side.close_code == 1009

    async def test_max_size_none(self) -> None:
        server = await self.start_server(max_size=None)
        client = await self.connect_to(server, max_size=None)
        big = os.urandom(3 * 2**20)
        await client.send(big)
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == big


class ConnectErrorTests(ServerClientTestCase):
    async def test_connection_refused(self) -> None:
        port = free_port()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{port}/"), TIMEOUT)
        with pytest.raises(ConnectionRefusedError):
            await connect_and_close(f"ws://127.0.0.1:{port}/")

    async def test_invalid_uri(self) -> None:
        for uri in ("http://localhost/", "ws://[bad", "not a uri"):
            with self.subTest(uri=uri), pytest.raises(InvalidURI):
                connect(uri)

    async def test_ssl_with_ws_uri(self) -> None:
        with pytest.raises(InvalidURI):
            connect("ws://localhost/", ssl=ssl.create_default_context())

    async def test_invalid_status(self) -> None:
        def not_found(connection: ServerConnection, request: Request) -> Response:
            return connection.respond(404, "nothing here\n")

        server = await self.start_server(process_request=not_found)
        with pytest.raises(InvalidStatus) as raised:
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{server.port}/nope"), TIMEOUT)
        exc = raised.value
        assert exc.status == 404
        assert exc.response is not None
        assert exc.response.status_code == 404
        assert exc.response.reason_phrase == "Not Found"
        assert exc.response.body == b"nothing here\n"
        assert "404" in str(exc)

    async def test_open_timeout(self) -> None:
        async with RawServer(handshake=False) as peer:
            # The server accepts TCP but never answers the handshake.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(connect(peer.uri, open_timeout=50 * MS), TIMEOUT)
            # The client dropped the connection.
            await asyncio.wait_for(peer.disconnected.wait(), TIMEOUT)

    async def test_no_open_timeout(self) -> None:
        async with RawServer(handshake=False) as peer:
            connecting = asyncio.ensure_future(connect(peer.uri, open_timeout=None))
            await asyncio.wait_for(peer.connected.wait(), TIMEOUT)
            await asyncio.sleep(50 * MS)
            assert not connecting.done()
            connecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await connecting
            await asyncio.wait_for(peer.disconnected.wait(), TIMEOUT)

    async def scripted_server(self, answer: Callable[[str], bytes]) -> int:
        """A server that reads the request, writes ``answer(key)``, and closes."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = (await reader.readuntil(b"\r\n\r\n")).decode()
            key = next(
                line.split(":", 1)[1].strip()
                for line in request.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            writer.write(answer(key))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.addAsyncCleanup(self._close_scripted, server)
        return int(server.sockets[0].getsockname()[1])

    async def _close_scripted(self, server: asyncio.Server) -> None:
        server.close()
        await server.wait_closed()

    async def expect(self, answer: Callable[[str], bytes], exc_type: type[Exception]) -> Exception:
        port = await self.scripted_server(answer)
        with pytest.raises(exc_type) as raised:
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{port}/"), TIMEOUT)
        return raised.value

    async def test_connection_closed_during_handshake(self) -> None:
        await self.expect(lambda key: b"", InvalidMessage)

    async def test_truncated_response(self) -> None:
        await self.expect(lambda key: b"HTTP/1.1 101 Switching", InvalidMessage)

    async def test_error_without_content_length(self) -> None:
        # The body ends with the connection.
        exc = await self.expect(
            lambda key: b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy", InvalidStatus
        )
        assert exc.response is not None  # type: ignore[attr-defined]
        assert exc.response.body == b"busy"  # type: ignore[attr-defined]

    async def test_wrong_accept_key(self) -> None:
        await self.expect(
            lambda key: (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"
            ),
            InvalidHeader,
        )

    async def test_unexpected_subprotocol(self) -> None:
        await self.expect(
            lambda key: (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(key).encode()
                + b"\r\nSec-WebSocket-Protocol: surprise\r\n\r\n"
            ),
            NegotiationError,
        )


class UnixTests(ServerClientTestCase):
    async def test_unix_socket(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "ws13.sock")
            async with unix_serve(echo, path) as server:
                assert server.sockets[0].family == socket.AF_UNIX
                async with unix_connect(path, "ws://localhost/unix") as client:
                    await client.send("over unix")
                    assert await asyncio.wait_for(client.recv(), TIMEOUT) == "over unix"
                    assert client.request is not None
                    assert client.request.path == "/unix"
                    assert client.remote_address == path
                assert client.close_code == 1000


class IPv6Tests(ServerClientTestCase):
    async def test_ipv6_loopback(self) -> None:
        server = await self.start_server(host="::1")
        assert server.sockets[0].family == socket.AF_INET6
        async with connect(f"ws://[::1]:{server.port}/") as client:
            await client.send("v6")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "v6"
            assert client.remote_address[:2] == ("::1", server.port)
            assert client.request is not None
            assert client.request.headers["Host"] == f"[::1]:{server.port}"


class TLSTests(ServerClientTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.server_context, self.client_context = tls_contexts()

    async def echo_over(
        self, host: str, make_client: Callable[[str], Awaitable[ClientConnection]]
    ) -> None:
        server = await self.start_server(ssl=self.server_context)
        client = await asyncio.wait_for(make_client(f"wss://{host}:{server.port}/"), TIMEOUT)
        try:
            await client.send("secret")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "secret"
            assert client.transport is not None
            assert client.transport.get_extra_info("ssl_object") is not None
        finally:
            await asyncio.wait_for(client.close(), TIMEOUT)
        assert client.close_code == 1000

    async def test_wss_ip_address(self) -> None:
        await self.echo_over("127.0.0.1", lambda uri: connect(uri, ssl=self.client_context))

    async def test_wss_hostname(self) -> None:
        await self.echo_over("localhost", lambda uri: connect(uri, ssl=self.client_context))

    async def test_server_hostname(self) -> None:
        # Connect to an IP address but check the certificate for a name.
        await self.echo_over(
            "127.0.0.1",
            lambda uri: connect(uri, ssl=self.client_context, server_hostname="localhost"),
        )

    async def test_untrusted_certificate(self) -> None:
        server = await self.start_server(ssl=self.server_context)
        # The default context (system CAs) doesn't trust the test CA.
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.wait_for(connect(f"wss://127.0.0.1:{server.port}/"), TIMEOUT)

    async def test_wrong_hostname(self) -> None:
        server = await self.start_server(ssl=self.server_context)
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.wait_for(
                connect(
                    f"wss://127.0.0.1:{server.port}/",
                    ssl=self.client_context,
                    server_hostname="example.com",
                ),
                TIMEOUT,
            )

    async def test_unix_tls(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "tls.sock")
            async with (
                unix_serve(echo, path, ssl=self.server_context),
                unix_connect(path, "wss://localhost/", ssl=self.client_context) as client,
            ):
                await client.send(b"tls over unix")
                assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"tls over unix"


class RedirectTests(ServerClientTestCase):
    """Redirects from real ws13 servers whose process_request answers 3xx."""

    async def redirecting_server(
        self, redirects: dict[str, tuple[int, str]], **kwargs: Any
    ) -> tuple[Server, list[Request]]:
        """A server answering ``redirects[path]`` (status, Location) and accepting
        other paths; every request it received goes in the returned list."""
        requests: list[Request] = []

        def process_request(connection: ServerConnection, request: Request) -> Response | None:
            requests.append(request)
            if request.path not in redirects:
                return None
            status, location = redirects[request.path]
            response = connection.respond(status, "moved\n")
            response.headers["Location"] = location.replace(
                "PORT", str(connection.local_address[1])
            )
            return response

        server = await self.start_server(process_request=process_request, **kwargs)
        return server, requests

    async def test_chain_relative_and_absolute(self) -> None:
        server, requests = await self.redirecting_server(
            {
                "/a": (302, "b?x=1"),
                "/b?x=1": (301, "ws://127.0.0.1:PORT/c"),
                "/c": (307, "http://127.0.0.1:PORT/d"),
                "/d": (308, "//127.0.0.1:PORT/ws#fragment"),
                "/ws": (303, "/final"),
            }
        )
        async with asyncio.timeout(TIMEOUT):
            async with connect(f"ws://127.0.0.1:{server.port}/a") as client:
                assert client.request is not None
                assert client.request.path == "/final"
                await client.send("hi")
                assert await client.recv() == "hi"
        assert [r.path for r in requests] == ["/a", "/b?x=1", "/c", "/d", "/ws", "/final"]
        assert {r.headers["Host"] for r in requests} == {f"127.0.0.1:{server.port}"}

    async def test_loop(self) -> None:
        server, requests = await self.redirecting_server({"/x": (302, "/y"), "/y": (302, "/x")})
        with pytest.raises(InvalidRedirect) as raised:
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{server.port}/x"), TIMEOUT)
        exc = raised.value
        assert str(exc) == (
            f"redirect not followed: redirect loop back to ws://127.0.0.1:{server.port}/x "
            "(HTTP 302)"
        )
        assert isinstance(exc, InvalidStatus)
        assert exc.response is not None
        assert exc.response.headers["Location"] == "/x"
        assert [r.path for r in requests] == ["/x", "/y"]

    async def test_too_many(self) -> None:
        server, requests = await self.redirecting_server(
            {f"/{n}": (302, f"/{n + 1}") for n in range(20)}
        )
        uri = f"ws://127.0.0.1:{server.port}/0"
        with pytest.raises(InvalidRedirect, match=r"more than 10 redirects \(HTTP 302\)"):
            await asyncio.wait_for(connect(uri), TIMEOUT)
        assert len(requests) == 11
        with pytest.raises(InvalidRedirect, match="more than 3 redirects"):
            await asyncio.wait_for(connect(uri, max_redirects=3), TIMEOUT)
        # max_redirects=0: the redirect itself is the answer.
        with pytest.raises(InvalidRedirect, match="more than 0 redirects") as raised:
            await asyncio.wait_for(connect(uri, max_redirects=0), TIMEOUT)
        assert raised.value.status == 302

    async def test_wss_to_ws_refused(self) -> None:
        server_context, client_context = tls_contexts()
        plain = await self.start_server()
        secure, _ = await self.redirecting_server(
            {"/": (301, f"ws://127.0.0.1:{plain.port}/")}, ssl=server_context
        )
        with pytest.raises(InvalidRedirect) as raised:
            await asyncio.wait_for(
                connect(f"wss://127.0.0.1:{secure.port}/", ssl=client_context), TIMEOUT
            )
        assert str(raised.value) == (
            "redirect not followed: refusing to go from wss:// to "
            f"ws://127.0.0.1:{plain.port}/ (HTTP 301)"
        )
        assert self.handlers.empty()

    async def test_ws_to_wss(self) -> None:
        ca = trustme.CA()
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(server_context)
        secure = await self.start_server(ssl=server_context)
        plain, _ = await self.redirecting_server({"/": (301, f"https://localhost:{secure.port}/")})
        # ssl= can't go with a ws:// URI: the default context, which reads
        # SSL_CERT_FILE, verifies the server the redirect leads to.
        with tempfile.TemporaryDirectory() as directory:
            cafile = os.path.join(directory, "ca.pem")
            ca.cert_pem.write_to_path(cafile)
            saved = os.environ.get("SSL_CERT_FILE")
            os.environ["SSL_CERT_FILE"] = cafile
            try:
                async with asyncio.timeout(TIMEOUT):
                    async with connect(f"ws://127.0.0.1:{plain.port}/") as client:
                        await client.send("secure now")
                        assert await client.recv() == "secure now"
                        assert client.protocol.uri.secure
            finally:
                if saved is None:
                    del os.environ["SSL_CERT_FILE"]
                else:
                    os.environ["SSL_CERT_FILE"] = saved

    async def test_credentials_stay_on_their_origin(self) -> None:
        other, other_requests = await self.redirecting_server({})
        first, first_requests = await self.redirecting_server(
            {
                "/login": (302, "/moved"),
                "/moved": (302, f"ws://localhost:{other.port}/elsewhere"),
            }
        )
        async with asyncio.timeout(TIMEOUT):
            async with connect(
                f"ws://ann:s3cret@127.0.0.1:{first.port}/login",
                additional_headers=[("Cookie", "session=1"), ("X-Trace", "7")],
            ):
                pass
        # Same origin: the credentials went along.
        for request in first_requests:
            assert request.headers["Authorization"].startswith("Basic ")
            assert request.headers["Cookie"] == "session=1"
        # Another origin: no credentials, the right Host, other headers kept.
        (request,) = other_requests
        assert "Authorization" not in request.headers
        assert "Cookie" not in request.headers
        assert request.headers["X-Trace"] == "7"
        assert request.headers["Host"] == f"localhost:{other.port}"

    async def test_bad_location(self) -> None:
        server, _ = await self.redirecting_server({"/": (302, "ftp://127.0.0.1/")})
        with pytest.raises(InvalidRedirect, match="isn't a ws, wss, http or https URL"):
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{server.port}/"), TIMEOUT)

    async def test_no_location_is_a_plain_refusal(self) -> None:
        def moved(connection: ServerConnection, request: Request) -> Response:
            return connection.respond(302, "nowhere\n")

        server = await self.start_server(process_request=moved)
        with pytest.raises(InvalidRedirect, match="no Location header"):
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{server.port}/"), TIMEOUT)

    async def test_redirect_with_sock_refused(self) -> None:
        server, _ = await self.redirecting_server({"/": (302, "/ws")})
        sock = socket.create_connection(("127.0.0.1", server.port))
        with pytest.raises(InvalidRedirect, match="can't open a new connection on the sock="):
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{server.port}/", sock=sock), TIMEOUT)

    async def test_redirect_through_a_proxy(self) -> None:
        target = await self.start_server()
        server, _ = await self.redirecting_server({"/": (301, f"ws://127.0.0.1:{target.port}/")})
        proxy = Tinyproxy(server.port, target.port)
        await asyncio.to_thread(proxy.start)
        self.addCleanup(proxy.stop)
        async with asyncio.timeout(TIMEOUT):
            async with connect(f"ws://127.0.0.1:{server.port}/", proxy=proxy.url) as client:
                await client.send("via")
                assert await client.recv() == "via"
        assert proxy.tunnels() == [f"127.0.0.1:{server.port}", f"127.0.0.1:{target.port}"]


async def iterate(opener: connect) -> None:
    """Run a reconnecting loop that does nothing with its connections until it raises."""
    async with asyncio.timeout(TIMEOUT):
        async for _ in opener:
            pass


class ReconnectTests(ServerClientTestCase):
    """``async for ws in connect(...)``: real servers stopped and started again."""

    @staticmethod
    def quick() -> Iterator[float]:
        """Short delays, so the tests take milliseconds to reconnect."""
        return iter([10 * MS] * 1000)

    async def test_reconnects_after_the_server_restarts(self) -> None:
        port = free_port()
        servers = [await serve(echo, "127.0.0.1", port)]
        self.addAsyncCleanup(self.stop_all, servers)

        async def restart_later() -> None:
            await asyncio.sleep(100 * MS)
            servers.append(await serve(echo, "127.0.0.1", port))

        connections: list[ClientConnection] = []
        restarting: asyncio.Task[None] | None = None
        async with asyncio.timeout(TIMEOUT):
            async for client in connect(f"ws://127.0.0.1:{port}/", reconnect_delays=self.quick):
                connections.append(client)
                await client.send(f"hello {len(connections)}")
                assert await client.recv() == f"hello {len(connections)}"
                if len(connections) == 2:
                    break
                # The server goes away; while it is down attempts fail and
                # are retried; it comes back on the same port.
                servers[0].close()
                await servers[0].wait_closed()
                with pytest.raises(ConnectionClosed):
                    await client.recv()
                restarting = asyncio.create_task(restart_later())
        assert restarting is not None
        assert restarting.done()
        assert connections[0] is not connections[1]
        assert connections[0].state is CLOSED
        await connections[1].close()

    async def stop_all(self, servers: list[Server]) -> None:
        for server in servers:
            server.close()
            await server.wait_closed()

    async def test_logs_each_attempt(self) -> None:
        port = free_port()
        attempts = 0

        def count(exc: Exception) -> Exception | None:
            nonlocal attempts
            attempts += 1
            return None if attempts < 3 else InvalidStatus(Response(418, "", Headers()))

        opener = connect(
            f"ws://127.0.0.1:{port}/", reconnect_delays=self.quick, process_exception=count
        )
        with self.assertLogs("ws13.client", "INFO") as logs, pytest.raises(InvalidStatus):
            await iterate(opener)
        retries = [r.getMessage() for r in logs.records if "retrying" in r.getMessage()]
        assert len(retries) == 2
        assert retries[0].startswith(f"connecting to ws://127.0.0.1:{port}/ failed: ")
        assert "ConnectionRefusedError" in retries[0]
        assert retries[0].endswith("retrying in 0.0 s")

    async def test_client_error_is_fatal(self) -> None:
        def forbidden(connection: ServerConnection, request: Request) -> Response:
            return connection.respond(403, "go away\n")

        server = await self.start_server(process_request=forbidden)
        opener = connect(f"ws://127.0.0.1:{server.port}/", reconnect_delays=self.quick)
        with pytest.raises(InvalidStatus) as raised:
            await iterate(opener)
        assert raised.value.status == 403

    async def test_server_errors_are_retried(self) -> None:
        answers = iter([503, 502, None])

        def flaky(connection: ServerConnection, request: Request) -> Response | None:
            status = next(answers)
            return None if status is None else connection.respond(status, "busy\n")

        server = await self.start_server(process_request=flaky)
        async with asyncio.timeout(TIMEOUT):
            async for client in connect(
                f"ws://127.0.0.1:{server.port}/", reconnect_delays=self.quick
            ):
                await client.send("at last")
                assert await client.recv() == "at last"
                break

    async def test_process_exception_makes_a_retry_fatal(self) -> None:
        port = free_port()
        seen: list[Exception] = []

        def fatal(exc: Exception) -> Exception | None:
            seen.append(exc)
            return RuntimeError("give up")

        with pytest.raises(RuntimeError, match="give up") as raised:
            await iterate(connect(f"ws://127.0.0.1:{port}/", process_exception=fatal))
        assert isinstance(raised.value.__cause__, ConnectionRefusedError)
        assert len(seen) == 1

    async def test_waits_after_a_drop(self) -> None:
        server = await self.start_server()
        delays_asked = 0

        def counted() -> Iterator[float]:
            nonlocal delays_asked
            delays_asked += 1
            return self.quick()

        async with asyncio.timeout(TIMEOUT):
            count = 0
            async for client in connect(f"ws://127.0.0.1:{server.port}/", reconnect_delays=counted):
                count += 1
                if count == 3:
                    break
                (await self.server_side()).transport.abort()  # type: ignore[union-attr]
                with pytest.raises(ConnectionClosed):
                    await client.recv()
        # A fresh series of delays after each connection that worked.
        assert delays_asked == 2

    async def test_breaking_out_closes_the_connection(self) -> None:
        server = await self.start_server()
        async with asyncio.timeout(TIMEOUT):
            async for client in connect(f"ws://127.0.0.1:{server.port}/"):  # noqa: B007
                break
            await client.wait_closed()
        assert client.close_code == 1000

    async def test_default_delays(self) -> None:
        opener = connect("ws://127.0.0.1:1/")
        assert opener.reconnect_delays is backoff
        assert opener.process_exception is process_exception


class ReconnectToKilledServerTests(unittest.IsolatedAsyncioTestCase):
    """A server process killed with SIGKILL (no closing handshake) and started
    again on its port: the loop yields a new connection."""

    async def start_server(self, port: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ws13", "serve", "--port", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.addAsyncCleanup(self.kill, process)
        return process

    async def kill(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            process.kill()
        await process.wait()

    async def test_killed_and_restarted(self) -> None:
        port = free_port()
        server = await self.start_server(port)
        echoed = []
        # Refused while the server starts: retried, every 50 ms.
        delays = lambda: iter([50 * MS] * 1000)  # noqa: E731
        async with asyncio.timeout(4 * TIMEOUT):
            async for client in connect(f"ws://127.0.0.1:{port}/echo", reconnect_delays=delays):
                await client.send(f"life {len(echoed)}")
                echoed.append(await client.recv())
                if len(echoed) == 2:
                    await client.close()
                    break
                server.kill()
                await server.wait()
                with pytest.raises(ConnectionClosed) as raised:
                    await client.recv()
                assert raised.value.code == 1006
                server = await self.start_server(port)
        assert echoed == ["life 0", "life 1"]
