"""The threaded client: ``connect()`` and ``unix_connect()``."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.utils import MS
from ws13.exceptions import (
    ConnectionClosedOK,
    InvalidHeader,
    InvalidMessage,
    InvalidRedirect,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
)
from ws13.extensions.permessage_deflate import PerMessageDeflate
from ws13.headers import Headers
from ws13.http11 import Request, Response
from ws13.protocol import CLOSED, OPEN
from ws13.sync.client import ClientConnection, connect, reconnect, unix_connect
from ws13.sync.server import ServerConnection, serve, unix_serve

from .helpers import TIMEOUT, SyncTestCase, echo, start_thread, tls_contexts, wait_until


class ConnectTests(SyncTestCase):
    def test_connect_returns_an_open_connection(self) -> None:
        server = self.start_server()
        client = connect(f"ws://127.0.0.1:{server.port}/")
        try:
            assert isinstance(client, ClientConnection)
            assert client.state is OPEN
            client.send("hi")
            assert client.recv(timeout=TIMEOUT) == "hi"
        finally:
            client.close()
        assert client.state is CLOSED

    def test_with_closes_normally(self) -> None:
        server = self.start_server()
        with connect(f"ws://127.0.0.1:{server.port}/") as client:
            client.send(b"hi")
            assert client.recv(timeout=TIMEOUT) == b"hi"
            peer = self.next_handler()
        assert client.state is CLOSED
        assert client.close_code == 1000
        assert peer.wait_closed(TIMEOUT)
        assert peer.close_code == 1000

    def test_request_headers(self) -> None:
        server = self.start_server()
        client = self.connect(
            f"ws://127.0.0.1:{server.port}/chat?room=1",
            origin="https://example.com",
            additional_headers={"X-Token": "abc"},
            user_agent_header="test-agent/1.0",
        )
        peer = self.next_handler()
        assert peer.request is not None
        headers = peer.request.headers
        assert peer.request.path == "/chat?room=1"
        assert headers["Origin"] == "https://example.com"
        assert headers["X-Token"] == "abc"
        assert headers["User-Agent"] == "test-agent/1.0"
        assert headers["Host"] == f"127.0.0.1:{server.port}"
        assert client.request is client.protocol.request

    def test_additional_headers_as_pairs_or_headers(self) -> None:
        server = self.start_server()
        self.connect(f"ws://127.0.0.1:{server.port}/", additional_headers=[("X-A", "1")])
        self.connect(f"ws://127.0.0.1:{server.port}/", additional_headers=Headers([("X-B", "2")]))
        # Each handler runs in its own thread: either may start first.
        requests = [self.next_handler().request, self.next_handler().request]
        headers = {(r.headers.get("X-A"), r.headers.get("X-B")) for r in requests if r}
        assert headers == {("1", None), (None, "2")}

    def test_no_user_agent(self) -> None:
        server = self.start_server()
        self.connect(f"ws://127.0.0.1:{server.port}/", user_agent_header=None)
        peer = self.next_handler()
        assert peer.request is not None
        assert "User-Agent" not in peer.request.headers

    def test_basic_auth_from_uri(self) -> None:
        server = self.start_server()
        self.connect(f"ws://user:pass@127.0.0.1:{server.port}/")
        peer = self.next_handler()
        assert peer.request is not None
        assert peer.request.headers["Authorization"] == "Basic dXNlcjpwYXNz"

    def test_subprotocol(self) -> None:
        server = self.start_server(subprotocols=["chat.v2", "chat.v1"])
        client = self.connect(f"ws://127.0.0.1:{server.port}/", subprotocols=["chat.v1", "chat.v2"])
        assert client.subprotocol == "chat.v2"

    def test_compression_is_negotiated_by_default(self) -> None:
        server = self.start_server()
        client = self.connect(f"ws://127.0.0.1:{server.port}/")
        assert [type(e) for e in client.protocol.extensions] == [PerMessageDeflate]
        client.send("x" * 100_000)
        assert client.recv(timeout=TIMEOUT) == "x" * 100_000

    def test_compression_none(self) -> None:
        server = self.start_server()
        client = self.connect(f"ws://127.0.0.1:{server.port}/", compression=None)
        assert client.protocol.extensions == []
        with pytest.raises(ValueError, match="unsupported compression"):
            connect(f"ws://127.0.0.1:{server.port}/", compression="zstd")

    def test_max_size(self) -> None:
        def send_big(connection: ServerConnection) -> None:
            connection.send(b"x" * 2000)
            connection.wait_closed(TIMEOUT)

        server = self.start_server(send_big)
        client = self.connect(f"ws://127.0.0.1:{server.port}/", max_size=1000)
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is checked below
            client.recv(timeout=TIMEOUT)
        assert type(caught.value).__name__ == "ConnectionClosedError"
        assert client.protocol.close_sent is not None
        assert client.protocol.close_sent.code == 1009

    def test_address_overrides_where_to_connect(self) -> None:
        server = self.start_server()
        client = self.connect("ws://example.invalid/", address=("127.0.0.1", server.port))
        peer = self.next_handler()
        assert peer.request is not None
        assert peer.request.headers["Host"] == "example.invalid"
        assert client.state is OPEN

    def test_sock(self) -> None:
        server = self.start_server()
        sock = socket.create_connection(("127.0.0.1", server.port))
        client = self.connect("ws://localhost/", sock=sock)
        client.send("over my socket")
        assert client.recv(timeout=TIMEOUT) == "over my socket"


class ConnectErrorTests(SyncTestCase):
    def test_connection_refused(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as sock:
            port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            connect(f"ws://127.0.0.1:{port}/")

    def test_invalid_uri(self) -> None:
        with pytest.raises(InvalidURI):
            connect("http://127.0.0.1/")

    def test_ssl_with_ws_uri(self) -> None:
        with pytest.raises(InvalidURI):
            connect("ws://127.0.0.1/", ssl=ssl.create_default_context())

    def test_invalid_status(self) -> None:
        server = self.start_server(process_request=lambda c, r: c.respond(404, "nope\n"))
        with pytest.raises(InvalidStatus) as caught:
            connect(f"ws://127.0.0.1:{server.port}/")
        assert caught.value.response.status_code == 404
        assert caught.value.response.body == b"nope\n"

    def test_open_timeout(self) -> None:
        # The kernel completes the TCP handshake; nobody answers.
        with socket.create_server(("127.0.0.1", 0)) as listener, pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout=50 * MS)

    def test_open_timeout_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="open_timeout"):
            connect("ws://127.0.0.1/", open_timeout=0)

    def raw_answer(self, answer: bytes) -> Exception:
        """Connect to a server that answers the handshake with ``answer`` and closes."""
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)

        def serve_once() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                conn.sendall(answer)

        thread = start_thread(serve_once)
        try:
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout=TIMEOUT)
        except Exception as exc:
            return exc
        finally:
            thread.join(TIMEOUT)
        raise AssertionError("the handshake succeeded")

    def test_connection_closed_during_handshake(self) -> None:
        assert isinstance(self.raw_answer(b""), InvalidMessage)

    def test_truncated_response(self) -> None:
        assert isinstance(self.raw_answer(b"HTTP/1.1 101 Switching"), InvalidMessage)

    def test_wrong_accept_key(self) -> None:
        exc = self.raw_answer(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n"
        )
        assert isinstance(exc, InvalidHeader)

    def test_select_subprotocol(self) -> None:
        seen = []

        def select(connection: Any, offered: Sequence[str]) -> str | None:
            # websockets' signature: the connection, whose request is known.
            seen.append(connection.request.path)
            return offered[-1]

        server = self.start_server(select_subprotocol=select)
        client = self.connect(f"ws://127.0.0.1:{server.port}/room", subprotocols=["a", "b"])
        assert client.subprotocol == "b"
        assert seen == ["/room"]

    def test_unexpected_subprotocol(self) -> None:
        server = self.start_server(subprotocols=["chat"])
        with pytest.raises(NegotiationError):
            # Offered nothing: the server picks nothing, so force it.
            connect(
                f"ws://127.0.0.1:{server.port}/",
                additional_headers={"Sec-WebSocket-Protocol": "chat"},
            )


class UnixTests(SyncTestCase):
    def test_unix_socket(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "ws.sock")
            server = unix_serve(echo, path)
            thread = start_thread(server.serve_forever)
            try:
                with unix_connect(path) as client:
                    client.send("over unix")
                    assert client.recv(timeout=TIMEOUT) == "over unix"
                    assert client.remote_address == path
            finally:
                server.shutdown()
                thread.join(TIMEOUT)

    def test_unix_connect_needs_a_path(self) -> None:
        with pytest.raises(ValueError, match="path"):
            unix_connect()


class IPv6Tests(SyncTestCase):
    def test_ipv6_loopback(self) -> None:
        server = self.start_server(host="::1")
        client = self.connect(f"ws://[::1]:{server.port}/")
        client.send("six")
        assert client.recv(timeout=TIMEOUT) == "six"


class TLSTests(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.server_context, self.client_context = tls_contexts()

    def echo_over(self, host: str, **kwargs: object) -> None:
        server = self.start_server(ssl=self.server_context)
        client = self.connect(f"wss://{host}:{server.port}/", ssl=self.client_context, **kwargs)
        client.send("secret")
        assert client.recv(timeout=TIMEOUT) == "secret"
        assert isinstance(client.socket, ssl.SSLSocket)
        client.close()
        assert client.close_code == 1000

    def test_wss_ip_address(self) -> None:
        self.echo_over("127.0.0.1")

    def test_wss_hostname(self) -> None:
        self.echo_over("localhost")

    def test_server_hostname(self) -> None:
        self.echo_over("127.0.0.1", server_hostname="localhost")

    def test_untrusted_certificate(self) -> None:
        server = self.start_server(ssl=self.server_context)
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(f"wss://127.0.0.1:{server.port}/")

    def test_wrong_hostname(self) -> None:
        server = self.start_server(ssl=self.server_context)
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(
                f"wss://127.0.0.1:{server.port}/",
                ssl=self.client_context,
                server_hostname="example.com",
            )

    def test_close_from_another_thread_wakes_recv_over_tls(self) -> None:
        server = self.start_server(ssl=self.server_context)
        client = self.connect(f"wss://127.0.0.1:{server.port}/", ssl=self.client_context)
        outcome: list[BaseException] = []

        def receiver() -> None:
            try:
                client.recv()
            except BaseException as exc:
                outcome.append(exc)

        thread = start_thread(receiver)
        wait_until(lambda: client._messages._getting)
        client.close()
        thread.join(TIMEOUT)
        assert [type(e) for e in outcome] == [ConnectionClosedOK]
        assert client.close_code == 1000

    def test_many_threads_over_tls(self) -> None:
        server = self.start_server(ssl=self.server_context)
        client = self.connect(f"wss://127.0.0.1:{server.port}/", ssl=self.client_context)

        def sender(n: int) -> None:
            for i in range(20):
                client.send(f"{n}-{i}-" + "y" * 20_000)

        threads = [start_thread(sender, n) for n in range(4)]
        received = [client.recv(timeout=TIMEOUT) for _ in range(80)]
        for thread in threads:
            thread.join(TIMEOUT)
        assert sorted(received) == sorted(
            f"{n}-{i}-" + "y" * 20_000 for n in range(4) for i in range(20)
        )

    def test_unix_tls(self) -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "tls.sock")
            server = unix_serve(echo, path, ssl=self.server_context)
            thread = start_thread(server.serve_forever)
            try:
                with unix_connect(path, ssl=self.client_context) as client:
                    client.send(b"tls over unix")
                    assert client.recv(timeout=TIMEOUT) == b"tls over unix"
            finally:
                server.shutdown()
                thread.join(TIMEOUT)


class ThreadTests(SyncTestCase):
    def test_threads_end_with_the_connection(self) -> None:
        server = self.start_server()
        before = set(threading.enumerate())
        client = self.connect(f"ws://127.0.0.1:{server.port}/", ping_interval=1)
        peer = self.next_handler()
        started = set(threading.enumerate()) - before
        # The client's reader and keepalive; the server's handler, reader, keepalive.
        assert len(started) == 5
        client.close()
        assert peer.wait_closed(TIMEOUT)
        for thread in started:
            thread.join(TIMEOUT)
            assert not thread.is_alive(), thread.name


def redirect_to(location: str, status: int = 302) -> Any:
    """A ``process_request`` that redirects every request but those for ``/final``."""

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/final":
            return None
        response = connection.respond(status, "moved\n")
        response.headers["Location"] = location
        return response

    return process_request


class RedirectTests(SyncTestCase):
    def test_relative_redirect_on_the_same_server(self) -> None:
        server = self.start_server(process_request=redirect_to("/final", 301))
        client = self.connect(
            f"ws://user:pw@127.0.0.1:{server.port}/start", additional_headers={"X-Token": "t"}
        )
        peer = self.next_handler()
        assert peer.request is not None
        assert peer.request.path == "/final"
        # Same origin: the credentials follow.
        assert peer.request.headers["Authorization"] == "Basic dXNlcjpwdw=="
        assert peer.request.headers["X-Token"] == "t"
        client.send("arrived")
        assert client.recv(timeout=TIMEOUT) == "arrived"

    def test_chain_to_another_origin_drops_credentials(self) -> None:
        final = self.start_server()
        middle = self.start_server(
            process_request=redirect_to(f"http://127.0.0.1:{final.port}/final", 307)
        )
        first = self.start_server(
            process_request=redirect_to(f"ws://127.0.0.1:{middle.port}/", 308)
        )
        self.connect(
            f"ws://user:pw@127.0.0.1:{first.port}/",
            additional_headers=[
                ("Authorization", "Bearer secret"),
                ("Cookie", "c=1"),
                ("X-Kept", "k"),
            ],
        )
        peer = self.handlers.get(timeout=TIMEOUT)
        assert peer.request is not None
        assert peer.request.path == "/final"
        assert peer.local_address[1] == final.port
        assert "Authorization" not in peer.request.headers
        assert "Cookie" not in peer.request.headers
        assert peer.request.headers["X-Kept"] == "k"

    def test_redirect_loop(self) -> None:
        server = self.start_server(process_request=redirect_to("/"))
        with pytest.raises(InvalidRedirect, match="loop"):
            connect(f"ws://127.0.0.1:{server.port}/")

    def test_max_redirects(self) -> None:
        server = self.start_server(process_request=redirect_to("/final"))
        with pytest.raises(InvalidRedirect, match="more than 0 redirects"):
            connect(f"ws://127.0.0.1:{server.port}/", max_redirects=0)

    def test_wss_to_ws_is_refused(self) -> None:
        server_context, client_context = tls_contexts()
        plain = self.start_server()
        secure = self.start_server(
            ssl=server_context, process_request=redirect_to(f"ws://127.0.0.1:{plain.port}/final")
        )
        with pytest.raises(InvalidRedirect, match="wss://") as caught:
            connect(f"wss://127.0.0.1:{secure.port}/", ssl=client_context)
        assert caught.value.response.status_code == 302
        assert self.handlers.empty()

    def test_not_followed_over_a_given_socket(self) -> None:
        server = self.start_server(process_request=redirect_to("/final"))
        sock = socket.create_connection(("127.0.0.1", server.port))
        with pytest.raises(InvalidStatus) as caught:
            connect("ws://127.0.0.1/", sock=sock)
        assert caught.value.response.status_code == 302


class ReconnectTests(SyncTestCase):
    def test_reconnects_after_the_server_restarts_on_the_same_port(self) -> None:
        first = self.start_server()
        port = first.port
        delays: list[float] = []

        def quick() -> Iterator[float]:
            while True:
                delays.append(10 * MS)
                yield 10 * MS

        loop = iter(
            reconnect(f"ws://127.0.0.1:{port}/", reconnect_delays=quick, open_timeout=TIMEOUT)
        )
        ws = next(loop)
        ws.send("one")
        assert ws.recv(timeout=TIMEOUT) == "one"
        first.shutdown()
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=TIMEOUT)
        restarted: list[Any] = []

        def restart() -> None:
            # While the loop retries against a closed port.
            wait_until(lambda: len(delays) >= 2)
            server = serve(echo, "127.0.0.1", port)
            restarted.append(server)
            server.serve_forever()

        thread = start_thread(restart)
        with self.assertLogs("ws13.client", logging.INFO) as logs:
            ws = next(loop)
        ws.send("two")
        assert ws.recv(timeout=TIMEOUT) == "two"
        assert "connect failed; reconnecting in 0.0 seconds" in logs.records[0].getMessage()
        loop.close()  # the loop closes its last connection
        assert ws.state is CLOSED
        restarted[0].shutdown()
        thread.join(TIMEOUT)

    def test_a_fatal_error_ends_the_loop(self) -> None:
        server = self.start_server(process_request=lambda c, r: c.respond(403, "no\n"))
        with pytest.raises(InvalidStatus) as caught:
            next(iter(reconnect(f"ws://127.0.0.1:{server.port}/")))
        assert caught.value.response.status_code == 403

    def test_process_exception_decides(self) -> None:
        server = self.start_server(process_request=lambda c, r: c.respond(403, "no\n"))
        seen: list[Exception] = []

        def only_twice(exc: Exception) -> Exception | None:
            seen.append(exc)
            return None if len(seen) < 3 else RuntimeError("gave up")

        loop = reconnect(
            f"ws://127.0.0.1:{server.port}/",
            process_exception=only_twice,
            reconnect_delays=lambda: iter([0.0] * 5),
        )
        with pytest.raises(RuntimeError, match="gave up"):
            next(iter(loop))
        assert [type(e) for e in seen] == [InvalidStatus] * 3

    def test_sock_is_refused(self) -> None:
        with socket.socket() as sock, pytest.raises(TypeError, match="sock"):
            reconnect("ws://127.0.0.1/", sock=sock)
