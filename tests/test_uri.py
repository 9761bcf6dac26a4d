"""Tests for ws13.uri: WebSocket URIs (RFC 6455 section 3)."""

from __future__ import annotations

import base64

import pytest

from ws13.exceptions import InvalidURI
from ws13.uri import WebSocketURI, parse_uri


class TestSection3WebSocketURIs:
    @pytest.mark.parametrize(
        ("uri", "parsed"),
        [
            ("ws://localhost/", WebSocketURI(False, "localhost", 80, "/")),
            ("wss://localhost/", WebSocketURI(True, "localhost", 443, "/")),
            # "If the port component is absent, the default port 80 / 443."
            ("ws://example.com", WebSocketURI(False, "example.com", 80, "/")),
            ("wss://example.com", WebSocketURI(True, "example.com", 443, "/")),
            ("ws://example.com:8080/chat", WebSocketURI(False, "example.com", 8080, "/chat")),
            ("wss://example.com:80/", WebSocketURI(True, "example.com", 80, "/")),
            ("ws://example.com:443/", WebSocketURI(False, "example.com", 443, "/")),
            (
                "ws://example.com/a/b?c=d&e=f",
                WebSocketURI(False, "example.com", 80, "/a/b?c=d&e=f"),
            ),
            # An empty path with a query still gets "/".
            ("ws://example.com?x=1", WebSocketURI(False, "example.com", 80, "/?x=1")),
            ("WS://EXAMPLE.COM/Path", WebSocketURI(False, "example.com", 80, "/Path")),
            ("ws://127.0.0.1:9000/", WebSocketURI(False, "127.0.0.1", 9000, "/")),
            ("ws://[::1]:8080/x", WebSocketURI(False, "::1", 8080, "/x")),
            ("wss://[2001:db8::1]/", WebSocketURI(True, "2001:db8::1", 443, "/")),
        ],
    )
    def test_parse(self, uri: str, parsed: WebSocketURI) -> None:
        assert parse_uri(uri) == parsed

    def test_path_is_percent_encoded(self) -> None:
        assert parse_uri("ws://h/a b/é?q=x y").path == "/a%20b/%C3%A9?q=x%20y"

    def test_existing_escapes_are_kept(self) -> None:
        assert parse_uri("ws://h/a%20b?x=%2F").path == "/a%20b?x=%2F"

    @pytest.mark.parametrize(
        ("uri", "host_header"),
        [
            ("ws://example.com/", "example.com"),
            ("ws://example.com:80/", "example.com"),
            ("ws://example.com:443/", "example.com:443"),
            ("wss://example.com:443/", "example.com"),
            ("wss://example.com:80/", "example.com:80"),
            ("ws://[::1]:8080/x", "[::1]:8080"),
            ("ws://[::1]/x", "[::1]"),
        ],
    )
    def test_host_header(self, uri: str, host_header: str) -> None:
        assert parse_uri(uri).host_header == host_header

    @pytest.mark.parametrize(
        "uri",
        ["ws://example.com:8080/chat?x=1", "wss://example.com/", "ws://[::1]:8080/x"],
    )
    def test_str(self, uri: str) -> None:
        assert str(parse_uri(uri)) == uri

    def test_user_and_password(self) -> None:
        uri = parse_uri("ws://user:pass@example.com/")
        assert (uri.user, uri.password) == ("user", "pass")
        assert uri.host_header == "example.com"
        assert uri.authorization == "Basic " + base64.b64encode(b"user:pass").decode()
        assert uri.authorization == "Basic dXNlcjpwYXNz"

    def test_user_without_password(self) -> None:
        uri = parse_uri("ws://user@example.com/")
        assert (uri.user, uri.password) == ("user", None)
        assert uri.authorization == "Basic " + base64.b64encode(b"user:").decode()

    def test_percent_encoded_credentials(self) -> None:
        uri = parse_uri("ws://us%40er:p%3Ass@example.com/")
        assert (uri.user, uri.password) == ("us@er", "p:ss")

    def test_no_credentials(self) -> None:
        assert parse_uri("ws://example.com/").authorization is None

    def test_frozen(self) -> None:
        uri = parse_uri("ws://example.com/")
        with pytest.raises(AttributeError):
            uri.port = 1  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("uri", "match"),
        [
            ("http://example.com/", "scheme"),
            ("https://example.com/", "scheme"),
            ("example.com/", "scheme"),
            ("", "scheme"),
            # "Fragment identifiers ... MUST NOT be used on these URIs."
            ("ws://example.com/#frag", "fragment"),
            ("ws://example.com/#", "fragment"),
            ("ws:///path", "hostname"),
            ("ws://", "hostname"),
            ("ws://:8080/", "hostname"),
            ("ws://example.com:port/", "port"),
            ("ws://example.com:65536/", "port"),
            ("ws://example.com:-1/", "port"),
            ("ws://[::1/", "Invalid IPv6 URL"),
            ("ws://exa mple.com/", "invalid hostname"),
        ],
    )
    def test_invalid(self, uri: str, match: str) -> None:
        with pytest.raises(InvalidURI, match=match) as exc_info:
            parse_uri(uri)
        assert exc_info.value.uri == uri
        assert isinstance(exc_info.value, ValueError)
