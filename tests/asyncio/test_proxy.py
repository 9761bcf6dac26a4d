"""Tests for ws13.asyncio.proxy: connect() through real proxies on loopback.

tinyproxy (HTTP CONNECT, with and without Basic auth), tinyproxy behind
stunnel (an https:// proxy: TLS to the proxy, then TLS to the server inside
it), microsocks (SOCKS5, socks5h, with and without a password) and dante
(SOCKS4). Each test proves its traffic went through the proxy: the proxy's
log names the tunnel, or the server sees the proxy's address as its peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trustme

from tests.asyncio.helpers import (
    TIMEOUT,
    RawServer,
    ServerClientTestCase,
    echo,
    tls_contexts,
    wait_for_condition,
)
from tests.proxies import Dante, Microsocks, ProxyProcess, Stunnel, Tinyproxy
from tests.utils import MS, free_port
from ws13.asyncio.client import connect
from ws13.asyncio.server import Server, ServerConnection, serve
from ws13.client import process_exception
from ws13.exceptions import (
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    ProxyError,
)

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Set proxy variables (and clear the others, both cases) for a while."""
    saved = {
        name: os.environ.get(name) for lower in PROXY_VARIABLES for name in (lower, lower.upper())
    }
    for name in saved:
        os.environ.pop(name, None)
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class ProxyTestCase(ServerClientTestCase):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        # No proxy setting of the machine running the tests leaks in.
        scrubbing = environment()
        scrubbing.__enter__()
        self.addCleanup(scrubbing.__exit__, None, None, None)

    async def start_server(  # type: ignore[override]
        self, handler: Callable[[ServerConnection], Awaitable[None]] = echo, **kwargs: Any
    ) -> Server:
        """A server that records each connection's peer address in ``peers``."""
        self.peers: list[str] = []

        async def recording(connection: ServerConnection) -> None:
            self.peers.append(connection.remote_address[0])
            await handler(connection)

        return await super().start_server(recording, **kwargs)

    async def run_proxy(self, proxy: ProxyProcess) -> None:
        await asyncio.to_thread(proxy.start)
        self.addCleanup(proxy.stop)

    async def echo_through(self, uri: str, **kwargs: object) -> None:
        async with asyncio.timeout(TIMEOUT):
            async with connect(uri, **kwargs) as ws:  # type: ignore[arg-type]
                await ws.send("through the proxy")
                assert await ws.recv() == "through the proxy"

    async def tls_server(self) -> tuple[Server, ssl.SSLContext]:
        server_context, client_context = tls_contexts()
        server = await self.start_server(ssl=server_context)
        return server, client_context


class HTTPProxyTests(ProxyTestCase):
    async def test_ws_through_tinyproxy(self) -> None:
        server = await self.start_server()
        proxy = Tinyproxy(server.port)
        await self.run_proxy(proxy)
        await self.echo_through(f"ws://127.0.0.1:{server.port}/", proxy=proxy.url)
        assert proxy.tunnels() == [f"127.0.0.1:{server.port}"]

    async def test_wss_through_tinyproxy(self) -> None:
        server, client_context = await self.tls_server()
        proxy = Tinyproxy(server.port)
        await self.run_proxy(proxy)
        await self.echo_through(
            f"wss://localhost:{server.port}/", proxy=proxy.url, ssl=client_context
        )
        assert proxy.tunnels() == [f"localhost:{server.port}"]

    async def test_basic_auth(self) -> None:
        server = await self.start_server()
        proxy = Tinyproxy(server.port, auth=("ann", "s3cret"))
        await self.run_proxy(proxy)
        uri = f"ws://127.0.0.1:{server.port}/"
        await self.echo_through(uri, proxy=proxy.url_with("ann", "s3cret"))
        assert proxy.tunnels() == [f"127.0.0.1:{server.port}"]
        # No credentials: 407. Wrong ones: tinyproxy 1.11 says 401.
        for url, status_line in [
            (proxy.url, "407 Proxy Authentication Required"),
            (proxy.url_with("ann", "wrong"), "401 Unauthorized"),
        ]:
            with self.subTest(url=url), pytest.raises(InvalidProxyStatus) as raised:
                await asyncio.wait_for(connect(uri, proxy=url), TIMEOUT)
            exc = raised.value
            assert str(exc) == f"proxy rejected connection: HTTP {status_line}"
            assert 'Basic realm="Tinyproxy"' in exc.response.headers.get_all(
                "Proxy-Authenticate"
            ) + exc.response.headers.get_all("WWW-Authenticate")
            # Fatal for a reconnecting loop: the credentials won't get better.
            assert process_exception(exc) is exc

    async def test_refusals_carry_the_status_line(self) -> None:
        server = await self.start_server()
        proxy = Tinyproxy(server.port)
        await self.run_proxy(proxy)
        # A port tinyproxy won't CONNECT to.
        with pytest.raises(InvalidProxyStatus, match=r"HTTP 403 Access violation$"):
            await asyncio.wait_for(connect("ws://127.0.0.1:1/", proxy=proxy.url), TIMEOUT)
        # Nothing listens behind the proxy: a 5xx is worth retrying.
        port = server.port
        server.close()
        await server.wait_closed()
        with pytest.raises(InvalidProxyStatus, match=r"HTTP 500 Unable to connect$") as raised:
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{port}/", proxy=proxy.url), TIMEOUT)
        assert process_exception(raised.value) is None

    async def test_environment(self) -> None:
        server = await self.start_server()
        proxy = Tinyproxy(server.port)
        await self.run_proxy(proxy)
        uri = f"ws://127.0.0.1:{server.port}/"
        with environment(HTTP_PROXY=proxy.url):
            await self.echo_through(uri)
            assert len(proxy.tunnels()) == 1
            # proxy=None: straight to the server.
            await self.echo_through(uri, proxy=None)
            assert len(proxy.tunnels()) == 1
        with environment(http_proxy=proxy.url, NO_PROXY="localhost,127.0.0.1"):
            await self.echo_through(uri)
            assert len(proxy.tunnels()) == 1
        with environment(ALL_PROXY=proxy.url):
            await self.echo_through(uri)
            assert len(proxy.tunnels()) == 2
        with environment(HTTPS_PROXY=proxy.url):
            # HTTPS_PROXY is for wss:// only.
            await self.echo_through(uri)
            assert len(proxy.tunnels()) == 2

    async def test_environment_wss(self) -> None:
        server, client_context = await self.tls_server()
        proxy = Tinyproxy(server.port)
        await self.run_proxy(proxy)
        with environment(HTTPS_PROXY=proxy.url, HTTP_PROXY="http://127.0.0.1:1"):
            await self.echo_through(f"wss://127.0.0.1:{server.port}/", ssl=client_context)
        assert proxy.tunnels() == [f"127.0.0.1:{server.port}"]

    async def test_invalid_proxy_in_environment(self) -> None:
        with environment(HTTP_PROXY="ftp://proxy.example"), pytest.raises(InvalidProxy):
            await asyncio.wait_for(connect("ws://127.0.0.1:1/"), TIMEOUT)

    async def test_open_timeout_covers_the_handshake_through_the_proxy(self) -> None:
        async with RawServer(handshake=False) as peer:
            proxy = Tinyproxy(peer.port)
            await self.run_proxy(proxy)
            with pytest.raises(TimeoutError, match=r"open_timeout=0.2 s"):
                await asyncio.wait_for(
                    connect(peer.uri, proxy=proxy.url, open_timeout=200 * MS), TIMEOUT
                )
            assert proxy.tunnels() == [f"127.0.0.1:{peer.port}"]

    async def test_reconnecting_through_the_proxy(self) -> None:
        # The server behind the proxy is down at first: tinyproxy answers
        # 500, which the default process_exception retries.
        port = free_port()
        proxy = Tinyproxy(port)
        await self.run_proxy(proxy)
        servers: list[Server] = []

        async def start_later() -> None:
            await asyncio.sleep(100 * MS)
            servers.append(await serve(echo, "127.0.0.1", port))

        starting = asyncio.create_task(start_later())
        with self.assertLogs("ws13.client", "INFO") as logs:
            async with asyncio.timeout(TIMEOUT):
                async for ws in connect(
                    f"ws://127.0.0.1:{port}/",
                    proxy=proxy.url,
                    reconnect_delays=lambda: iter([20 * MS] * 1000),
                ):
                    await ws.send("at last")
                    assert await ws.recv() == "at last"
                    await ws.close()
                    break
        await starting
        for server in servers:
            server.close()
            await server.wait_closed()
        assert "InvalidProxyStatus: proxy rejected connection: HTTP 500 Unable to connect" in (
            logs.records[0].getMessage()
        )
        assert len(proxy.tunnels()) >= 2


class HTTPSProxyTests(ProxyTestCase):
    """TLS to the proxy: stunnel with a trustme certificate in front of tinyproxy."""

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        ca = trustme.CA()
        self.proxy_context = ssl.create_default_context()
        ca.configure_trust(self.proxy_context)
        self.ca = ca

    async def https_proxy(self, port: int) -> tuple[Tinyproxy, Stunnel]:
        tinyproxy = Tinyproxy(port)
        await self.run_proxy(tinyproxy)
        stunnel = Stunnel(tinyproxy.port, self.ca)
        await self.run_proxy(stunnel)
        # Its start-up probe, once logged, is the first accepted connection.
        await wait_for_condition(lambda: len(stunnel.tunnels()) == 1)
        return tinyproxy, stunnel

    async def test_ws_through_https_proxy(self) -> None:
        server = await self.start_server()
        tinyproxy, stunnel = await self.https_proxy(server.port)
        await self.echo_through(
            f"ws://127.0.0.1:{server.port}/", proxy=stunnel.url, proxy_ssl=self.proxy_context
        )
        assert tinyproxy.tunnels() == [f"127.0.0.1:{server.port}"]
        await wait_for_condition(lambda: len(stunnel.tunnels()) == 2)

    async def test_wss_through_https_proxy_tls_in_tls(self) -> None:
        server, client_context = await self.tls_server()
        tinyproxy, stunnel = await self.https_proxy(server.port)
        await self.echo_through(
            f"wss://127.0.0.1:{server.port}/",
            ssl=client_context,
            proxy=stunnel.url,
            proxy_ssl=self.proxy_context,
        )
        assert tinyproxy.tunnels() == [f"127.0.0.1:{server.port}"]
        await wait_for_condition(lambda: len(stunnel.tunnels()) == 2)

    async def test_untrusted_proxy_certificate(self) -> None:
        server = await self.start_server()
        _, stunnel = await self.https_proxy(server.port)
        # The default context doesn't trust the test CA.
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.wait_for(
                connect(f"ws://127.0.0.1:{server.port}/", proxy=stunnel.url), TIMEOUT
            )

    async def test_proxy_ssl_needs_https(self) -> None:
        with pytest.raises(ValueError, match="proxy_ssl= was given for the proxy"):
            connect("ws://example.com/", proxy="http://proxy:3128", proxy_ssl=self.proxy_context)


class SOCKSProxyTests(ProxyTestCase):
    async def test_socks5(self) -> None:
        server = await self.start_server()
        proxy = Microsocks()
        await self.run_proxy(proxy)
        await self.echo_through(f"ws://127.0.0.1:{server.port}/", proxy=proxy.url)
        # The server's peer is the proxy (it connects from 127.0.0.2).
        assert self.peers == [Microsocks.OUTGOING]
        assert proxy.tunnels() == [f"127.0.0.1:{server.port}"]

    async def test_socks5h_lets_the_proxy_resolve(self) -> None:
        server = await self.start_server()
        proxy = Microsocks()
        await self.run_proxy(proxy)
        await self.echo_through(
            f"ws://localhost:{server.port}/", proxy=f"socks5h://127.0.0.1:{proxy.port}"
        )
        # The proxy got the name, not an address.
        assert proxy.tunnels() == [f"localhost:{server.port}"]
        assert self.peers == [Microsocks.OUTGOING]

    async def test_socks5_resolves_here(self) -> None:
        server = await self.start_server()
        proxy = Microsocks()
        await self.run_proxy(proxy)
        await self.echo_through(f"ws://localhost:{server.port}/", proxy=proxy.url)
        assert proxy.tunnels() in (
            [f"127.0.0.1:{server.port}"],
            # The client tried ::1 first; the proxy found nobody there.
            [f"::1:{server.port}", f"127.0.0.1:{server.port}"],
        )

    async def test_wss_through_socks5(self) -> None:
        server, client_context = await self.tls_server()
        proxy = Microsocks()
        await self.run_proxy(proxy)
        await self.echo_through(
            f"wss://127.0.0.1:{server.port}/", proxy=proxy.url, ssl=client_context
        )
        assert self.peers == [Microsocks.OUTGOING]

    async def test_socks5_with_password(self) -> None:
        server = await self.start_server()
        proxy = Microsocks(auth=("ann", "s3cret"))
        await self.run_proxy(proxy)
        uri = f"ws://127.0.0.1:{server.port}/"
        await self.echo_through(uri, proxy=proxy.url_with("ann", "s3cret"))
        assert proxy.tunnels() == [f"127.0.0.1:{server.port}"]
        for url in (proxy.url, proxy.url_with("ann", "wrong")):
            with self.subTest(url=url), pytest.raises(ProxyError) as raised:
                await asyncio.wait_for(connect(uri, proxy=url), TIMEOUT)
            assert "SOCKS proxy socks5://" in str(raised.value)
            assert "refused the connection" in str(raised.value)
            assert "s3cret" not in str(raised.value)

    async def test_socks4_through_dante(self) -> None:
        server = await self.start_server()
        proxy = Dante()
        await self.run_proxy(proxy)
        before = len(proxy.tunnels())
        await self.echo_through(f"ws://127.0.0.1:{server.port}/", proxy=proxy.url)
        tunnels = proxy.tunnels()[before:]
        assert any(f"127.0.0.1.{server.port}" in line for line in tunnels), proxy.log()

    async def test_socks5_through_dante(self) -> None:
        server, client_context = await self.tls_server()
        proxy = Dante()
        await self.run_proxy(proxy)
        await self.echo_through(
            f"wss://127.0.0.1:{server.port}/",
            proxy=f"socks5://127.0.0.1:{proxy.port}",
            ssl=client_context,
        )
        assert any(f"127.0.0.1.{server.port}" in line for line in proxy.tunnels()), proxy.log()

    async def test_socks_proxy_refuses_target(self) -> None:
        proxy = Microsocks()
        await self.run_proxy(proxy)
        # Nothing listens there: the proxy says so.
        port = free_port()
        with pytest.raises(ProxyError, match="refused the connection"):
            await asyncio.wait_for(connect(f"ws://127.0.0.1:{port}/", proxy=proxy.url), TIMEOUT)


class ProxyFailureTests(ProxyTestCase):
    async def test_unreachable_http_proxy(self) -> None:
        port = free_port()
        with pytest.raises(ConnectionRefusedError) as raised:
            await asyncio.wait_for(
                connect("ws://127.0.0.1:1/", proxy=f"http://127.0.0.1:{port}"), TIMEOUT
            )
        assert str(raised.value) == (
            f"[Errno 111] cannot connect to proxy http://127.0.0.1:{port}: Connection refused"
        )
        assert process_exception(raised.value) is None

    async def test_unreachable_socks_proxy(self) -> None:
        port = free_port()
        with pytest.raises(OSError, match=f"Could not connect to proxy 127.0.0.1:{port}"):
            await asyncio.wait_for(
                connect("ws://127.0.0.1:1/", proxy=f"socks5h://127.0.0.1:{port}"), TIMEOUT
            )

    async def silent_proxy(self) -> int:
        """A port that accepts connections, reads, and never answers."""

        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()
            writer.close()

        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        self.addAsyncCleanup(server.wait_closed)
        self.addCleanup(server.close)
        return int(server.sockets[0].getsockname()[1])

    async def test_silent_proxy_times_out(self) -> None:
        port = await self.silent_proxy()
        for scheme in ("http", "socks5h", "socks4"):
            with self.subTest(scheme=scheme), pytest.raises(TimeoutError, match="open_timeout"):
                await asyncio.wait_for(
                    connect(
                        "ws://127.0.0.1:1/",
                        proxy=f"{scheme}://127.0.0.1:{port}",
                        open_timeout=100 * MS,
                    ),
                    TIMEOUT,
                )

    async def answering_proxy(self, answer: bytes) -> int:
        """A port that answers any CONNECT with ``answer``, then closes."""

        async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(reply, "127.0.0.1", 0)
        self.addAsyncCleanup(server.wait_closed)
        self.addCleanup(server.close)
        return int(server.sockets[0].getsockname()[1])

    async def test_proxy_answers_nonsense(self) -> None:
        for answer, message in [
            (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "invalid status line from proxy"),
            (b"HTTP/1.1 200 OK\r\n", "proxy closed the connection before answering CONNECT"),
            (b"", "proxy closed the connection before answering CONNECT"),
            (b"HTTP/1.1 200 OK\r\n\r\nearly", "proxy sent data after its answer to CONNECT"),
        ]:
            port = await self.answering_proxy(answer)
            with self.subTest(answer=answer), pytest.raises(InvalidProxyMessage, match=message):
                await asyncio.wait_for(
                    connect("ws://127.0.0.1:1/", proxy=f"http://127.0.0.1:{port}"), TIMEOUT
                )

    async def test_invalid_proxy_url(self) -> None:
        with pytest.raises(InvalidProxy, match="scheme ftp isn't supported"):
            connect("ws://127.0.0.1:1/", proxy="ftp://127.0.0.1:21")

    async def test_proxy_with_unix_socket(self) -> None:
        with pytest.raises(ValueError, match="can't be used with unix=True"):
            connect("ws://localhost/", proxy="http://p", unix=True, path="/tmp/x.sock")
        with pytest.raises(ValueError, match="can't be used with unix=True, sock=, host="):
            connect("ws://localhost/", proxy="http://p", port=8000)

    async def test_host_and_port_bypass_the_environments_proxy(self) -> None:
        server = await self.start_server()
        with environment(HTTP_PROXY="http://127.0.0.1:1"):
            await self.echo_through("ws://example.invalid/", host="127.0.0.1", port=server.port)


class WithoutPythonSocksTests(ProxyTestCase):
    async def test_clear_import_error(self) -> None:
        # A fresh interpreter where python-socks can't be imported.
        script = (
            "import asyncio, sys\n"
            "sys.modules['python_socks'] = None\n"
            "from ws13.asyncio.client import connect\n"
            "try:\n"
            "    asyncio.run(connect('ws://127.0.0.1:1/', proxy='socks5h://127.0.0.1:1080').connect())\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
        )
        stdout, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
        assert stdout.decode().strip() == (
            "connecting through the SOCKS proxy socks5h://127.0.0.1:1080 needs python-socks: "
            "pip install 'ws13[proxy]'"
        )
