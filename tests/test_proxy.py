"""Tests for ws13.proxy: proxy URLs, the environment, CONNECT bytes in and out."""

from __future__ import annotations

import base64
import re

import pytest

from ws13.exceptions import (
    InvalidHandshake,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    ProxyError,
)
from ws13.proxy import (
    Proxy,
    get_proxy,
    parse_connect_response,
    parse_proxy,
    prepare_connect_request,
)
from ws13.uri import parse_uri

PROXY_VARIABLES = [
    f"{scheme}_proxy"
    for scheme in ("ws", "wss", "http", "https", "socks", "all", "no", "ftp", "request_method")
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy setting from the machine running the tests leaks in."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


class TestParseProxy:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://proxy", Proxy("http", "proxy", 80)),
            ("proxy:3128", Proxy("http", "proxy", 3128)),
            ("127.0.0.1", Proxy("http", "127.0.0.1", 80)),
            ("http://proxy:3128/", Proxy("http", "proxy", 3128)),
            ("https://Proxy.Example", Proxy("https", "proxy.example", 443)),
            ("socks5h://127.0.0.1", Proxy("socks5h", "127.0.0.1", 1080)),
            ("socks5://[::1]:9050", Proxy("socks5", "::1", 9050)),
            ("socks4a://p:1", Proxy("socks4a", "p", 1)),
            ("socks4://p", Proxy("socks4", "p", 1080)),
            ("http://user:pa%3Ass@proxy:8080", Proxy("http", "proxy", 8080, "user", "pa:ss")),
            ("http://user@proxy", Proxy("http", "proxy", 80, "user", "")),
            ("http://bücher.example", Proxy("http", "xn--bcher-kva.example", 80)),
        ],
    )
    def test_valid(self, url: str, expected: Proxy) -> None:
        assert parse_proxy(url) == expected

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("ftp://proxy", "scheme ftp isn't supported"),
            ("://proxy:3128", "scheme (none) isn't supported"),
            ("http://", "hostname is missing"),
            ("http://proxy/path", "a path is meaningless"),
            ("http://proxy/?q", "a query is meaningless"),
            ("http://proxy/?", "a query is meaningless"),
            ("http://proxy/#f", "a fragment is meaningless"),
            ("http://proxy:99999", "out of range"),
            ("http://proxy:port", "Port could not be cast"),
            ("http://u%ff:p@proxy", "credentials aren't valid UTF-8"),
        ],
    )
    def test_invalid(self, url: str, message: str) -> None:
        with pytest.raises(InvalidProxy, match=re.escape(message)) as info:
            parse_proxy(url)
        assert info.value.proxy == url
        assert str(info.value).startswith(f"{url!r} isn't a valid proxy: ")
        assert isinstance(info.value, ValueError)

    def test_str_hides_the_password(self) -> None:
        proxy = parse_proxy("http://us%20er:secret@[::1]:3128")
        assert str(proxy) == "http://us%20er@[::1]:3128"
        assert "secret" not in repr(proxy)
        assert proxy.user_info == ("us er", "secret")
        assert parse_proxy("http://p").user_info is None

    def test_is_socks(self) -> None:
        assert parse_proxy("socks5h://p").is_socks
        assert not parse_proxy("https://p").is_socks


class TestGetProxy:
    def test_none_configured(self) -> None:
        assert get_proxy(parse_uri("ws://example.com/")) is None
        assert get_proxy(parse_uri("wss://example.com/")) is None

    def test_wss_uses_https_proxy_and_ws_http_proxy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://secure-proxy:3128")
        monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy:3128")
        assert get_proxy(parse_uri("wss://example.com/")) == "http://secure-proxy:3128"
        assert get_proxy(parse_uri("ws://example.com/")) == "http://plain-proxy:3128"

    def test_lower_case_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
        monkeypatch.setenv("https_proxy", "http://lower:1")
        assert get_proxy(parse_uri("wss://example.com/")) == "http://lower:1"

    def test_websocket_specific_variables_first(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://https:1")
        monkeypatch.setenv("WSS_PROXY", "http://wss:1")
        monkeypatch.setenv("WS_PROXY", "http://ws:1")
        assert get_proxy(parse_uri("wss://example.com/")) == "http://wss:1"
        assert get_proxy(parse_uri("ws://example.com/")) == "http://ws:1"

    def test_all_proxy_is_the_fallback(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ALL_PROXY", "socks5h://all:1080")
        assert get_proxy(parse_uri("wss://example.com/")) == "socks5h://all:1080"
        assert get_proxy(parse_uri("ws://example.com/")) == "socks5h://all:1080"
        monkeypatch.setenv("http_proxy", "http://plain:1")
        assert get_proxy(parse_uri("ws://example.com/")) == "http://plain:1"
        # http_proxy isn't for wss://.
        assert get_proxy(parse_uri("wss://example.com/")) == "socks5h://all:1080"

    def test_socks_proxy_before_all_proxy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ALL_PROXY", "http://all:1")
        monkeypatch.setenv("SOCKS_PROXY", "socks5://socks:1080")
        assert get_proxy(parse_uri("wss://example.com/")) == "socks5://socks:1080"
        # How macOS and Windows system settings give a SOCKS proxy.
        monkeypatch.setenv("SOCKS_PROXY", "http://socks:1080")
        assert get_proxy(parse_uri("wss://example.com/")) == "socks5h://socks:1080"

    @pytest.mark.parametrize(
        ("no_proxy", "uri", "bypassed"),
        [
            ("example.com", "wss://example.com/", True),
            ("example.com", "wss://sub.example.com/", True),
            (".example.com", "wss://sub.example.com/", True),
            ("example.com", "wss://notexample.com/", False),
            ("localhost, 127.0.0.1", "ws://127.0.0.1:8000/", True),
            ("localhost,127.0.0.1", "ws://localhost:8000/", True),
            ("example.com:8443", "wss://example.com:8443/", True),
            ("example.com:8443", "wss://example.com/", False),
            ("*", "wss://anything.example/", True),
            ("other.example", "wss://example.com/", False),
        ],
    )
    def test_no_proxy(
        self, monkeypatch: pytest.MonkeyPatch, no_proxy: str, uri: str, bypassed: bool
    ) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
        monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
        monkeypatch.setenv("NO_PROXY", no_proxy)
        expected = None if bypassed else "http://proxy:3128"
        assert get_proxy(parse_uri(uri)) == expected

    def test_no_proxy_lower_case(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("https_proxy", "http://proxy:3128")
        monkeypatch.setenv("no_proxy", "example.com")
        assert get_proxy(parse_uri("wss://example.com/")) is None


class TestConnectRequest:
    def test_bytes(self) -> None:
        request = prepare_connect_request(
            parse_proxy("http://proxy:3128"), parse_uri("wss://example.com/chat"), "agent/1"
        )
        assert request == (
            b"CONNECT example.com:443 HTTP/1.1\r\n"
            b"Host: example.com:443\r\n"
            b"User-Agent: agent/1\r\n"
            b"\r\n"
        )

    def test_ipv6_and_no_user_agent(self) -> None:
        request = prepare_connect_request(
            parse_proxy("http://proxy"), parse_uri("ws://[::1]:8000/"), None
        )
        assert request == b"CONNECT [::1]:8000 HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n"

    def test_proxy_credentials(self) -> None:
        request = prepare_connect_request(
            parse_proxy("http://us%40er:p%3Ass@proxy"),
            parse_uri("ws://server-user:server-pass@example.com/"),
            None,
        )
        token = base64.b64encode(b"us@er:p:ss").decode()
        assert request == (
            b"CONNECT example.com:80 HTTP/1.1\r\n"
            b"Host: example.com:80\r\n"
            b"Proxy-Authorization: Basic " + token.encode() + b"\r\n\r\n"
        )
        # The server's credentials never go to the proxy.
        assert b"server" not in request


class TestConnectResponse:
    def test_established_http10(self) -> None:
        # tinyproxy's answer, word for word.
        data = b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n"
        parsed = parse_connect_response(data + b"tunnel bytes")
        assert parsed is not None
        response, size = parsed
        assert (response.status_code, response.reason_phrase) == (200, "Connection established")
        assert response.headers["Proxy-agent"] == "tinyproxy/1.11.1"
        assert size == len(data)

    def test_established_http11_no_headers(self) -> None:
        parsed = parse_connect_response(b"HTTP/1.1 200 OK\r\n\r\n")
        assert parsed is not None
        assert parsed[1] == 19

    def test_incomplete(self) -> None:
        assert parse_connect_response(b"") is None
        assert parse_connect_response(b"HTTP/1.1 200 OK\r\nVia: x\r\n") is None

    def test_eof_before_the_answer(self) -> None:
        with pytest.raises(InvalidProxyMessage, match="closed the connection before answering"):
            parse_connect_response(b"HTTP/1.1 200", eof=True)

    def test_407(self) -> None:
        data = (
            b"HTTP/1.0 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="tinyproxy"\r\n'
            b"Content-Length: 5\r\n\r\nbody!"
        )
        with pytest.raises(InvalidProxyStatus) as info:
            parse_connect_response(data)
        exc = info.value
        assert str(exc) == "proxy rejected connection: HTTP 407 Proxy Authentication Required"
        assert exc.status == 407
        assert exc.response.headers["Proxy-Authenticate"] == 'Basic realm="tinyproxy"'
        assert isinstance(exc, ProxyError)
        assert isinstance(exc, InvalidHandshake)

    def test_refusal_without_reason(self) -> None:
        with pytest.raises(InvalidProxyStatus, match=r"^proxy rejected connection: HTTP 403$"):
            parse_connect_response(b"HTTP/1.1 403\r\n\r\n")

    @pytest.mark.parametrize(
        "data",
        [
            b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        ],
    )
    def test_malformed(self, data: bytes) -> None:
        with pytest.raises(InvalidProxyMessage):
            parse_connect_response(data)

    def test_bounded(self) -> None:
        # A proxy sending an endless header line is cut off before the end.
        with pytest.raises(InvalidProxyMessage, match="line too long"):
            parse_connect_response(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 10_000)
        with pytest.raises(InvalidProxyMessage, match="too many headers"):
            parse_connect_response(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200)
