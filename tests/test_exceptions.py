"""Tests for ws13.exceptions: the tree, the messages and the attributes."""

from __future__ import annotations

import pytest

from ws13.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidRedirect,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    InvalidVersion,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    WebSocketError,
)
from ws13.frames import Close
from ws13.headers import Headers
from ws13.http11 import Response


class TestTree:
    """The tree drawn in the module docstring."""

    @pytest.mark.parametrize(
        ("child", "parent"),
        [
            (ConnectionClosed, WebSocketError),
            (ConnectionClosedOK, ConnectionClosed),
            (ConnectionClosedError, ConnectionClosed),
            (InvalidURI, WebSocketError),
            (InvalidURI, ValueError),
            (InvalidHandshake, WebSocketError),
            (InvalidMessage, InvalidHandshake),
            (InvalidStatus, InvalidHandshake),
            (InvalidRedirect, InvalidStatus),
            (InvalidProxy, WebSocketError),
            (InvalidProxy, ValueError),
            (ProxyError, InvalidHandshake),
            (InvalidProxyMessage, ProxyError),
            (InvalidProxyStatus, ProxyError),
            (InvalidHeader, InvalidHandshake),
            (InvalidUpgrade, InvalidHeader),
            (InvalidOrigin, InvalidHeader),
            (NegotiationError, InvalidHeader),
            (InvalidVersion, InvalidHeader),
            (PayloadTooBig, WebSocketError),
            (ProtocolError, WebSocketError),
            (InvalidState, WebSocketError),
            (InvalidState, AssertionError),
            (ConcurrencyError, WebSocketError),
            (ConcurrencyError, RuntimeError),
        ],
    )
    def test_subclass(self, child: type[Exception], parent: type[Exception]) -> None:
        assert issubclass(child, parent)

    def test_root(self) -> None:
        assert issubclass(WebSocketError, Exception)

    def test_docstring_lists_every_exception(self) -> None:
        import ws13.exceptions

        assert ws13.exceptions.__doc__ is not None
        for name in ws13.exceptions.__all__:
            assert name in ws13.exceptions.__doc__


class TestSection7_1ConnectionClosed:
    @pytest.mark.parametrize(
        ("rcvd", "sent", "rcvd_then_sent", "text"),
        [
            (None, None, None, "no close frame received or sent"),
            (None, Close(1000, ""), None, "sent 1000 (OK); no close frame received"),
            (Close(1001, "bye"), None, None, "received 1001 (going away) bye; no close frame sent"),
            (
                Close(1000, "a"),
                Close(1000, ""),
                True,
                "received 1000 (OK) a; then sent 1000 (OK)",
            ),
            (
                Close(1000, "a"),
                Close(1002, "b"),
                False,
                "sent 1002 (protocol error) b; then received 1000 (OK) a",
            ),
        ],
    )
    def test_str(
        self, rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None, text: str
    ) -> None:
        exc = ConnectionClosedOK(rcvd, sent, rcvd_then_sent)
        assert str(exc) == text
        assert exc.rcvd is rcvd
        assert exc.sent is sent
        assert exc.rcvd_then_sent is rcvd_then_sent

    def test_code_and_reason_received(self) -> None:
        exc = ConnectionClosedError(Close(4000, "custom"), Close(4000, ""), True)
        assert exc.code == 4000
        assert exc.reason == "custom"

    def test_code_without_close_frame_is_1006(self) -> None:
        # RFC 6455 section 7.1.5: no Close frame received means 1006.
        exc = ConnectionClosedError(None, Close(1000, ""))
        assert exc.code == 1006
        assert exc.reason == ""

    def test_raise_and_catch_as_base(self) -> None:
        with pytest.raises(ConnectionClosed, match="no close frame"):
            raise ConnectionClosedError(None, None)


class TestSection4Handshake:
    def test_invalid_uri(self) -> None:
        exc = InvalidURI("http://x", "scheme isn't ws or wss")
        assert str(exc) == "'http://x' isn't a valid WebSocket URI: scheme isn't ws or wss"
        assert exc.uri == "http://x"
        assert exc.msg == "scheme isn't ws or wss"

    def test_invalid_handshake_status(self) -> None:
        assert InvalidHandshake("x").status == 400
        exc = InvalidHandshake("x", status=500)
        assert exc.status == 500
        assert exc.response is None
        assert str(exc) == "x"
        # The class default is untouched.
        assert InvalidHandshake.status == 400

    def test_invalid_message(self) -> None:
        exc = InvalidMessage("line too long", status=431)
        assert (str(exc), exc.status) == ("line too long", 431)

    def test_invalid_status(self) -> None:
        response = Response(404, "Not Found", Headers(), b"no")
        exc = InvalidStatus(response)
        assert str(exc) == "server rejected WebSocket connection: HTTP 404"
        assert exc.status == 404
        assert exc.response is response

    def test_invalid_redirect(self) -> None:
        response = Response(301, "Moved Permanently", Headers(), b"")
        exc = InvalidRedirect(response, "more than 10 redirects")
        assert str(exc) == "redirect not followed: more than 10 redirects (HTTP 301)"
        assert (exc.status, exc.response, exc.msg) == (301, response, "more than 10 redirects")

    def test_invalid_proxy(self) -> None:
        exc = InvalidProxy("ftp://p", "scheme ftp isn't supported")
        assert str(exc) == "'ftp://p' isn't a valid proxy: scheme ftp isn't supported"
        assert (exc.proxy, exc.msg) == ("ftp://p", "scheme ftp isn't supported")

    def test_invalid_proxy_status(self) -> None:
        response = Response(407, "Proxy Authentication Required", Headers())
        exc = InvalidProxyStatus(response)
        assert str(exc) == "proxy rejected connection: HTTP 407 Proxy Authentication Required"
        assert (exc.status, exc.response) == (407, response)

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (None, "missing Host header"),
            ("", "empty Host header"),
            ("a b", "invalid Host header: a b"),
        ],
    )
    def test_invalid_header(self, value: str | None, text: str) -> None:
        exc = InvalidHeader("Host", value)
        assert str(exc) == text
        assert (exc.name, exc.value, exc.status) == ("Host", value, 400)

    def test_invalid_upgrade_status(self) -> None:
        exc = InvalidUpgrade("Upgrade", "h2c", status=426)
        assert str(exc) == "invalid Upgrade header: h2c"
        assert exc.status == 426

    def test_invalid_origin(self) -> None:
        exc = InvalidOrigin("https://evil.example")
        assert str(exc) == "invalid Origin header: https://evil.example"
        assert exc.status == 403
        assert str(InvalidOrigin(None)) == "missing Origin header"

    def test_invalid_version(self) -> None:
        exc = InvalidVersion("12")
        assert str(exc) == "invalid Sec-WebSocket-Version header: 12"
        assert exc.status == 426
        assert exc.name == "Sec-WebSocket-Version"

    def test_negotiation_error(self) -> None:
        exc = NegotiationError("Sec-WebSocket-Protocol", "x (not offered)")
        assert str(exc) == "invalid Sec-WebSocket-Protocol header: x (not offered)"


class TestOthers:
    def test_invalid_state_is_an_assertion_error(self) -> None:
        with pytest.raises(AssertionError):
            raise InvalidState("connection is CLOSED")

    def test_concurrency_error_is_a_runtime_error(self) -> None:
        with pytest.raises(RuntimeError):
            raise ConcurrencyError("recv() already running")

    def test_payload_too_big_and_protocol_error(self) -> None:
        assert str(PayloadTooBig("too big")) == "too big"
        assert str(ProtocolError("bad")) == "bad"
