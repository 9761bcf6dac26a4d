"""The threaded client through real proxies: tinyproxy, stunnel, microsocks, dante.

The proxies are ``tests/proxies.py``'s, shared with the asyncio client's
tests. Each test proves its traffic went through the proxy from the proxy's
own log (tinyproxy's CONNECT lines, stunnel's byte counts, microsocks' and
dante's connections).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import unittest.mock

import pytest
import trustme

from tests.proxies import Dante, Microsocks, ProxyProcess, Stunnel, Tinyproxy
from tests.utils import MS
from ws13.exceptions import InvalidProxy, InvalidProxyMessage, InvalidProxyStatus, ProxyError
from ws13.sync.client import connect

from .helpers import TIMEOUT, SyncTestCase, start_thread, tls_contexts, wait_until

ENVIRONMENT = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


class ProxyTestCase(SyncTestCase):
    def setUp(self) -> None:
        super().setUp()
        # No proxy from the test run's own environment.
        patcher = unittest.mock.patch.dict(os.environ)
        patcher.start()
        self.addCleanup(patcher.stop)
        for name in ENVIRONMENT:
            os.environ.pop(name, None)
            os.environ.pop(name.upper(), None)
        self.server = self.start_server()
        self.target = f"127.0.0.1:{self.server.port}"

    def proxy(self, proxy: ProxyProcess) -> None:
        """Start ``proxy`` for this test."""
        proxy.start()
        self.addCleanup(proxy.stop)

    def echo(self, uri: str, **kwargs: object) -> None:
        with connect(uri, open_timeout=TIMEOUT, **kwargs) as ws:  # type: ignore[arg-type]
            ws.send("through the proxy")
            assert ws.recv(timeout=TIMEOUT) == "through the proxy"
            # Random: it doesn't compress, so its size shows in the proxy's counts.
            message = os.urandom(200_000)
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
        assert ws.close_code == 1000


class HTTPProxyTests(ProxyTestCase):
    def test_http_proxy(self) -> None:
        tinyproxy = Tinyproxy(self.server.port)
        self.proxy(tinyproxy)
        self.echo(f"ws://{self.target}/", proxy=tinyproxy.url)
        assert tinyproxy.tunnels() == [self.target]

    def test_http_proxy_from_the_environment(self) -> None:
        tinyproxy = Tinyproxy(self.server.port)
        self.proxy(tinyproxy)
        os.environ["HTTP_PROXY"] = tinyproxy.url
        self.echo(f"ws://{self.target}/")
        assert tinyproxy.tunnels() == [self.target]
        # NO_PROXY reaches the host directly; so does proxy=None.
        os.environ["NO_PROXY"] = "127.0.0.1"
        self.echo(f"ws://{self.target}/")
        del os.environ["NO_PROXY"]
        self.echo(f"ws://{self.target}/", proxy=None)
        assert tinyproxy.tunnels() == [self.target]

    def test_basic_auth(self) -> None:
        tinyproxy = Tinyproxy(self.server.port, auth=("alice", "s3cret"))
        self.proxy(tinyproxy)
        self.echo(f"ws://{self.target}/", proxy=f"http://alice:s3cret@127.0.0.1:{tinyproxy.port}")
        assert tinyproxy.tunnels() == [self.target]

    def test_wrong_credentials_give_the_proxys_status_line(self) -> None:
        tinyproxy = Tinyproxy(self.server.port, auth=("alice", "s3cret"))
        self.proxy(tinyproxy)
        for proxy in (f"http://alice:wrong@127.0.0.1:{tinyproxy.port}", tinyproxy.url):
            with pytest.raises(InvalidProxyStatus) as caught:
                connect(f"ws://{self.target}/", proxy=proxy)
            # RFC 9110 says 407; tinyproxy 1.11 answers 401. Either way the
            # error says what the proxy said.
            response = caught.value.response
            assert response.status_code in (401, 407)
            assert str(caught.value) == (
                f"proxy rejected connection: HTTP {response.status_code} {response.reason_phrase}"
            )

    def test_unreachable_server_gives_the_proxys_status(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as sock:
            closed_port = sock.getsockname()[1]
        tinyproxy = Tinyproxy(closed_port)
        self.proxy(tinyproxy)
        with pytest.raises(InvalidProxyStatus) as caught:
            connect(f"ws://127.0.0.1:{closed_port}/", proxy=tinyproxy.url)
        assert caught.value.response.status_code >= 500

    def test_wss_through_an_http_proxy(self) -> None:
        server_context, client_context = tls_contexts()
        server = self.start_server(ssl=server_context)
        tinyproxy = Tinyproxy(server.port)
        self.proxy(tinyproxy)
        self.echo(f"wss://localhost:{server.port}/", proxy=tinyproxy.url, ssl=client_context)
        assert tinyproxy.tunnels() == [f"localhost:{server.port}"]

    def test_open_timeout_covers_the_proxy(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as silent:
            proxy = f"http://127.0.0.1:{silent.getsockname()[1]}"
            with pytest.raises(TimeoutError):
                connect(f"ws://{self.target}/", proxy=proxy, open_timeout=50 * MS)

    def test_proxy_that_answers_nonsense(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as liar:

            def answer() -> None:
                conn, _ = liar.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

            thread = start_thread(answer)
            with pytest.raises(InvalidProxyMessage):
                connect(f"ws://{self.target}/", proxy=f"http://127.0.0.1:{liar.getsockname()[1]}")
            thread.join(TIMEOUT)

    def test_invalid_proxy(self) -> None:
        with pytest.raises(InvalidProxy):
            connect(f"ws://{self.target}/", proxy="ftp://127.0.0.1:21")


class HTTPSProxyTests(ProxyTestCase):
    def setUp(self) -> None:
        super().setUp()
        server_context, self.client_context = tls_contexts()
        self.tls_server = self.start_server(ssl=server_context)
        self.tinyproxy = Tinyproxy(self.server.port, self.tls_server.port)
        self.proxy(self.tinyproxy)
        ca = trustme.CA()
        self.stunnel = Stunnel(self.tinyproxy.port, ca)
        self.proxy(self.stunnel)
        self.proxy_context = ssl.create_default_context()
        ca.configure_trust(self.proxy_context)

    def tunnelled(self) -> list[tuple[int, int]]:
        """Bytes stunnel sent to the client (TLS) and to tinyproxy, per closed connection."""
        pattern = r"Connection closed: (\d+) byte\(s\) sent to TLS, (\d+) byte\(s\) sent to socket"
        return [(int(a), int(b)) for a, b in re.findall(pattern, self.stunnel.log())]

    def test_ws_through_an_https_proxy(self) -> None:
        self.echo(f"ws://{self.target}/", proxy=self.stunnel.url, proxy_ssl=self.proxy_context)
        assert self.tinyproxy.tunnels() == [self.target]
        # The 200 kB message and its echo crossed stunnel's TLS.
        wait_until(lambda: any(min(t) > 200_000 for t in self.tunnelled()))

    def test_wss_through_an_https_proxy_is_tls_in_tls(self) -> None:
        server = self.tls_server
        with connect(
            f"wss://localhost:{server.port}/",
            proxy=self.stunnel.url,
            proxy_ssl=self.proxy_context,
            ssl=self.client_context,
        ) as ws:
            # Several threads at once through both TLS layers.
            sent = [os.urandom(10_000) for _ in range(80)]

            def sender(n: int) -> None:
                for message in sent[n * 20 : n * 20 + 20]:
                    ws.send(message)

            threads = [start_thread(sender, n) for n in range(4)]
            received = [ws.recv(timeout=TIMEOUT) for _ in range(80)]
            for thread in threads:
                thread.join(TIMEOUT)
        assert sorted(received) == sorted(sent)  # type: ignore[type-var]
        assert ws.close_code == 1000
        assert self.tinyproxy.tunnels() == [f"localhost:{server.port}"]
        wait_until(lambda: any(min(t) > 800_000 for t in self.tunnelled()))

    def test_untrusted_proxy_certificate(self) -> None:
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            connect(f"ws://{self.target}/", proxy=self.stunnel.url)
        assert self.tinyproxy.tunnels() == []

    def test_proxy_ssl_needs_an_https_proxy(self) -> None:
        with pytest.raises(ValueError, match="proxy_ssl"):
            connect(
                f"ws://{self.target}/",
                proxy=self.tinyproxy.url,
                proxy_ssl=self.proxy_context,
            )


class SOCKSProxyTests(ProxyTestCase):
    def test_socks5h_and_socks5(self) -> None:
        microsocks = Microsocks()
        self.proxy(microsocks)
        port = microsocks.port
        self.echo(f"ws://localhost:{self.server.port}/", proxy=f"socks5h://127.0.0.1:{port}")
        self.echo(f"ws://localhost:{self.server.port}/", proxy=f"socks5://127.0.0.1:{port}")
        # socks5h hands the name to the proxy; socks5 resolves it here.
        first, second = microsocks.tunnels()
        assert first.startswith("localhost:") or first.endswith(f":{self.server.port}")
        assert second.endswith(f":{self.server.port}")
        # The server saw the proxy's outgoing address, not ours.
        peer = self.next_handler()
        assert peer.remote_address[0] == Microsocks.OUTGOING

    def test_socks_from_the_environment(self) -> None:
        microsocks = Microsocks()
        self.proxy(microsocks)
        os.environ["ALL_PROXY"] = microsocks.url
        self.echo(f"ws://{self.target}/")
        assert microsocks.tunnels() == [self.target]

    def test_socks5_with_auth(self) -> None:
        microsocks = Microsocks(auth=("bob", "pw"))
        self.proxy(microsocks)
        self.echo(f"ws://{self.target}/", proxy=microsocks.url_with("bob", "pw"))
        assert microsocks.tunnels() == [self.target]
        with pytest.raises(ProxyError):
            connect(f"ws://{self.target}/", proxy=microsocks.url_with("bob", "wrong"))

    def test_socks4_with_dante(self) -> None:
        dante = Dante()
        self.proxy(dante)
        self.echo(f"ws://{self.target}/", proxy=dante.url)
        self.echo(f"ws://{self.target}/", proxy=f"socks4a://127.0.0.1:{dante.port}")
        # dante logs each tunnel as it opens ("[") and as it closes ("]").
        assert sum("tcp/connect [" in line for line in dante.tunnels()) == 2

    def test_wss_through_socks(self) -> None:
        server_context, client_context = tls_contexts()
        server = self.start_server(ssl=server_context)
        microsocks = Microsocks()
        self.proxy(microsocks)
        self.echo(f"wss://127.0.0.1:{server.port}/", proxy=microsocks.url, ssl=client_context)
        assert microsocks.tunnels() == [f"127.0.0.1:{server.port}"]
