"""Tests for ws13.client: the client's opening handshake (RFC 6455 section 4.1)."""

from __future__ import annotations

import base64
import ssl

import pytest

from ws13.client import (
    BACKOFF_FACTOR,
    BACKOFF_INITIAL_DELAY,
    BACKOFF_MAX_DELAY,
    BACKOFF_MIN_DELAY,
    ClientProtocol,
    backoff,
    process_exception,
)
from ws13.exceptions import (
    InvalidHeader,
    InvalidMessage,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidRedirect,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
)
from ws13.frames import Frame, Opcode
from ws13.headers import Headers
from ws13.http11 import Request, Response
from ws13.protocol import CLOSED, CLOSING, CONNECTING, OPEN, SEND_EOF
from ws13.uri import parse_uri
from ws13.utils import accept_key, apply_mask
from ws13.version import USER_AGENT

URI = parse_uri("ws://example.com:8080/chat?room=1")
# RFC 6455 section 1.3.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
UNMASKED_HELLO = bytes.fromhex("810548656c6c6f")


def make_client(**kwargs: object) -> ClientProtocol:
    """A client that sent its request, with the RFC 6455 section 1.3 key."""
    client = ClientProtocol(URI, **kwargs)  # type: ignore[arg-type]
    client.key = KEY
    client.send_request(client.connect())
    client.data_to_send()
    return client


def response(*headers: tuple[str, str], status: str = "101 Switching Protocols") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


UPGRADE = ("Upgrade", "websocket")
CONNECTION = ("Connection", "Upgrade")
ACCEPT_HEADER = ("Sec-WebSocket-Accept", ACCEPT)
# RFC 6455 section 1.3, without the subprotocol.
RESPONSE = response(UPGRADE, CONNECTION, ACCEPT_HEADER)


def assert_handshake_failed(client: ClientProtocol, exc_type: type[Exception], match: str) -> None:
    assert isinstance(client.handshake_exc, exc_type)
    assert match in str(client.handshake_exc)
    assert client.state is CONNECTING
    assert client.data_to_send() == [SEND_EOF]
    assert client.close_expected()
    assert client.subprotocol is None


class TestSection4_1ClientHandshake:
    def test_request(self) -> None:
        client = ClientProtocol(URI)
        request = client.connect()
        assert request.path == "/chat?room=1"
        headers = request.headers
        assert headers["Host"] == "example.com:8080"
        assert headers["Upgrade"] == "websocket"
        assert headers["Connection"] == "Upgrade"
        assert headers["Sec-WebSocket-Key"] == client.key
        assert headers["Sec-WebSocket-Version"] == "13"
        assert headers["User-Agent"] == USER_AGENT
        assert "Origin" not in headers
        assert "Sec-WebSocket-Protocol" not in headers
        assert "Sec-WebSocket-Extensions" not in headers
        assert "Authorization" not in headers

    def test_key_is_16_random_bytes(self) -> None:
        # "a nonce consisting of a randomly selected 16-byte value that has been
        # base64-encoded"; "The nonce MUST be selected randomly for each connection."
        keys = [ClientProtocol(URI).connect().headers["Sec-WebSocket-Key"] for _ in range(10)]
        assert all(len(base64.b64decode(key, validate=True)) == 16 for key in keys)
        assert len(set(keys)) == 10

    def test_send_request_bytes(self) -> None:
        client = ClientProtocol(URI)
        client.key = KEY
        request = client.connect(user_agent=None)
        client.send_request(request)
        assert client.request is request
        assert client.data_to_send() == [
            b"GET /chat?room=1 HTTP/1.1\r\n"
            b"Host: example.com:8080\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"\r\n"
        ]
        assert client.state is CONNECTING

    def test_request_is_parseable(self) -> None:
        client = ClientProtocol(URI, origin="http://example.com", subprotocols=["chat"])
        client.send_request(client.connect())
        [data] = client.data_to_send()
        assert Request.parse(data) == (client.request, len(data))

    def test_origin_and_subprotocols(self) -> None:
        request = ClientProtocol(
            URI, origin="http://example.com", subprotocols=["chat", "superchat"]
        ).connect()
        assert request.headers["Origin"] == "http://example.com"
        assert request.headers["Sec-WebSocket-Protocol"] == "chat, superchat"

    def test_credentials_in_uri(self) -> None:
        request = ClientProtocol(parse_uri("wss://user:pass@example.com/")).connect()
        assert request.headers["Authorization"] == "Basic dXNlcjpwYXNz"
        assert request.headers["Host"] == "example.com"
        assert request.path == "/"

    def test_ipv6_host(self) -> None:
        request = ClientProtocol(parse_uri("ws://[::1]:8080/x")).connect()
        assert request.headers["Host"] == "[::1]:8080"

    def test_additional_headers(self) -> None:
        request = ClientProtocol(URI).connect(
            additional_headers=[("X-Token", "1"), ("X-Token", "2")], user_agent="me/1"
        )
        assert request.headers.get_all("X-Token") == ["1", "2"]
        assert request.headers["User-Agent"] == "me/1"


class TestSection4_1ServerResponse:
    def test_rfc_response(self) -> None:
        client = make_client()
        client.receive_data(RESPONSE)
        [event] = client.events_received()
        assert isinstance(event, Response)
        assert event.status_code == 101
        assert client.response is event
        assert client.state is OPEN
        assert client.handshake_exc is None
        assert client.data_to_send() == []
        assert not client.close_expected()

    def test_response_split_across_reads(self) -> None:
        client = make_client()
        for i in range(len(RESPONSE) - 1):
            client.receive_data(RESPONSE[i : i + 1])
            assert client.events_received() == []
            assert client.state is CONNECTING
        client.receive_data(RESPONSE[-1:])
        assert [event.status_code for event in client.events_received()] == [101]  # type: ignore[union-attr]
        assert client.state is OPEN

    def test_frames_in_the_same_packet(self) -> None:
        client = make_client()
        client.receive_data(RESPONSE + UNMASKED_HELLO + UNMASKED_HELLO[:3])
        events = client.events_received()
        assert isinstance(events[0], Response)
        assert events[1:] == ["Hello"]
        client.receive_data(UNMASKED_HELLO[3:])
        assert client.events_received() == ["Hello"]

    def test_ping_in_the_same_packet_is_answered(self) -> None:
        client = make_client()
        client.receive_data(RESPONSE + bytes.fromhex("890548656c6c6f"))
        assert client.events_received()[1:] == [Frame(Opcode.PING, b"Hello")]
        [pong] = client.data_to_send()
        assert pong[:2] == b"\x8a\x85"
        assert apply_mask(pong[6:], pong[2:6]) == b"Hello"

    def test_header_names_and_values_case_insensitive(self) -> None:
        client = make_client()
        client.receive_data(
            response(("UPGRADE", "WebSocket"), ("connection", "keep-alive, UPGRADE"), ACCEPT_HEADER)
        )
        assert client.state is OPEN

    def test_bare_lf_response(self) -> None:
        client = make_client()
        client.receive_data(RESPONSE.replace(b"\r\n", b"\n"))
        assert client.state is OPEN

    def test_send_after_open(self) -> None:
        client = make_client()
        client.receive_data(RESPONSE)
        client.send_text("Hello")
        [data] = client.data_to_send()
        assert data[:2] == b"\x81\x85"
        assert apply_mask(data[6:], data[2:6]) == b"Hello"

    def test_send_before_open(self) -> None:
        client = make_client()
        with pytest.raises(InvalidState, match="CONNECTING"):
            client.send_text("too early")
        assert client.data_to_send() == []


class TestSection4_1ResponseChecks:
    def test_status_not_101(self) -> None:
        # "If the status code received from the server is not 101, the client
        # handles the response per HTTP procedures."
        client = make_client()
        client.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nNot here.\n")
        assert_handshake_failed(client, InvalidStatus, "HTTP 403")
        exc = client.handshake_exc
        assert isinstance(exc, InvalidStatus)
        assert exc.status == 403
        assert exc.response is client.response
        assert exc.response is not None
        assert exc.response.body == b"Not here.\n"
        [event] = client.events_received()
        assert event is client.response

    def test_status_not_101_body_until_eof(self) -> None:
        client = make_client()
        client.receive_data(b"HTTP/1.1 500 Internal Server Error\r\n\r\noops")
        assert client.handshake_exc is None
        assert client.events_received() == []
        client.receive_eof()
        exc = client.handshake_exc
        assert isinstance(exc, InvalidStatus)
        assert exc.response is not None
        assert exc.response.body == b"oops"
        assert client.data_to_send() == [SEND_EOF]
        assert client.state is CLOSED

    @pytest.mark.parametrize("status", ["200 OK", "301 Moved Permanently", "426 Upgrade Required"])
    def test_other_statuses(self, status: str) -> None:
        client = make_client()
        client.receive_data(response(UPGRADE, CONNECTION, ACCEPT_HEADER, status=status))
        client.receive_eof()
        assert isinstance(client.handshake_exc, InvalidStatus)
        assert client.handshake_exc.status == int(status[:3])

    @pytest.mark.parametrize(
        ("headers", "exc_type", "match"),
        [
            ((CONNECTION, ACCEPT_HEADER), InvalidUpgrade, "missing Upgrade header"),
            ((("Upgrade", "h2c"), CONNECTION, ACCEPT_HEADER), InvalidUpgrade, "Upgrade"),
            (
                (("Upgrade", "websocket, h2c"), CONNECTION, ACCEPT_HEADER),
                InvalidUpgrade,
                "Upgrade",
            ),
            ((("Upgrade", "web socket"), CONNECTION, ACCEPT_HEADER), InvalidHeader, "Upgrade"),
            ((UPGRADE, ACCEPT_HEADER), InvalidUpgrade, "missing Connection header"),
            (
                (UPGRADE, ("Connection", "keep-alive"), ACCEPT_HEADER),
                InvalidUpgrade,
                "invalid Connection header: keep-alive",
            ),
            ((UPGRADE, CONNECTION), InvalidHeader, "missing Sec-WebSocket-Accept header"),
            (
                (UPGRADE, CONNECTION, ("Sec-WebSocket-Accept", "x" + ACCEPT[1:])),
                InvalidHeader,
                "invalid Sec-WebSocket-Accept header",
            ),
            (
                (UPGRADE, CONNECTION, ("Sec-WebSocket-Accept", accept_key("other"))),
                InvalidHeader,
                "Sec-WebSocket-Accept",
            ),
            (
                (UPGRADE, CONNECTION, ACCEPT_HEADER, ACCEPT_HEADER),
                InvalidHeader,
                "Sec-WebSocket-Accept",
            ),
            (
                (UPGRADE, CONNECTION, ACCEPT_HEADER, ("Sec-WebSocket-Extensions", "x-foo")),
                NegotiationError,
                "x-foo (not offered)",
            ),
            (
                (
                    UPGRADE,
                    CONNECTION,
                    ACCEPT_HEADER,
                    ("Sec-WebSocket-Extensions", "permessage-deflate"),
                ),
                NegotiationError,
                "permessage-deflate (not offered)",
            ),
            (
                (UPGRADE, CONNECTION, ACCEPT_HEADER, ("Sec-WebSocket-Protocol", "chat")),
                NegotiationError,
                "chat (not offered)",
            ),
        ],
    )
    def test_invalid_response(
        self, headers: tuple[tuple[str, str], ...], exc_type: type[Exception], match: str
    ) -> None:
        # "If the response lacks an |Upgrade| header field [...] the client MUST
        # _Fail the WebSocket Connection_." Likewise Connection, Accept,
        # extensions and subprotocols.
        client = make_client()
        client.receive_data(response(*headers) + UNMASKED_HELLO)
        assert_handshake_failed(client, exc_type, match)
        [event] = client.events_received()
        assert isinstance(event, Response)
        assert client.handshake_exc.response is event  # type: ignore[union-attr]
        # Nothing after the failed handshake is processed.
        client.receive_data(UNMASKED_HELLO)
        assert client.events_received() == []
        client.receive_eof()
        assert client.data_to_send() == []
        assert client.state is CLOSED

    @pytest.mark.parametrize(
        "data",
        [
            b"HTTP/1.0 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 1O1 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade websocket\r\n\r\n",
            b"\x81\x05Hello\r\n\r\n",
        ],
    )
    def test_malformed_response(self, data: bytes) -> None:
        client = make_client()
        client.receive_data(data)
        assert isinstance(client.handshake_exc, InvalidMessage)
        assert client.handshake_exc.response is None
        assert client.events_received() == []
        assert client.data_to_send() == [SEND_EOF]

    def test_too_long_response_line(self) -> None:
        client = make_client()
        client.receive_data(b"HTTP/1.1 101 " + b"x" * 10000)
        assert isinstance(client.handshake_exc, InvalidMessage)
        assert client.handshake_exc.status == 431
        assert client.data_to_send() == [SEND_EOF]


class TestSection4_1Subprotocols:
    def test_server_chooses_an_offered_subprotocol(self) -> None:
        client = make_client(subprotocols=["chat", "superchat"])
        client.receive_data(
            response(UPGRADE, CONNECTION, ACCEPT_HEADER, ("Sec-WebSocket-Protocol", "superchat"))
        )
        assert client.state is OPEN
        assert client.subprotocol == "superchat"

    def test_server_chooses_none(self) -> None:
        client = make_client(subprotocols=["chat"])
        client.receive_data(RESPONSE)
        assert client.state is OPEN
        assert client.subprotocol is None

    def test_server_chooses_several(self) -> None:
        client = make_client(subprotocols=["chat", "superchat"])
        client.receive_data(
            response(
                UPGRADE, CONNECTION, ACCEPT_HEADER, ("Sec-WebSocket-Protocol", "chat, superchat")
            )
        )
        assert_handshake_failed(client, NegotiationError, "chat, superchat (several)")

    def test_server_repeats_the_header(self) -> None:
        client = make_client(subprotocols=["chat", "superchat"])
        client.receive_data(
            response(
                UPGRADE,
                CONNECTION,
                ACCEPT_HEADER,
                ("Sec-WebSocket-Protocol", "chat"),
                ("Sec-WebSocket-Protocol", "chat"),
            )
        )
        assert_handshake_failed(client, NegotiationError, "several")

    def test_server_chooses_one_not_offered(self) -> None:
        client = make_client(subprotocols=["chat"])
        client.receive_data(
            response(UPGRADE, CONNECTION, ACCEPT_HEADER, ("Sec-WebSocket-Protocol", "superchat"))
        )
        assert_handshake_failed(client, NegotiationError, "superchat (not offered)")


class TestSection4_1ConnectionClosedDuringHandshake:
    def test_eof_before_response(self) -> None:
        client = make_client()
        client.receive_eof()
        assert isinstance(client.handshake_exc, InvalidMessage)
        assert "connection closed during the opening handshake" in str(client.handshake_exc)
        # From EOFError: process_exception() retries it.
        assert isinstance(client.handshake_exc.__cause__, EOFError)
        assert client.state is CLOSED
        assert client.data_to_send() == [SEND_EOF]
        assert client.events_received() == []

    def test_eof_in_the_middle_of_the_response(self) -> None:
        client = make_client()
        client.receive_data(RESPONSE[:30])
        client.receive_eof()
        assert isinstance(client.handshake_exc, InvalidMessage)
        assert isinstance(client.handshake_exc.__cause__, EOFError)
        assert client.state is CLOSED
        assert client.data_to_send() == [SEND_EOF]

    def test_eof_in_the_middle_of_a_refusal_body(self) -> None:
        client = make_client()
        client.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot")
        client.receive_eof()
        assert isinstance(client.handshake_exc, InvalidMessage)
        assert client.state is CLOSED
        assert client.data_to_send() == [SEND_EOF]

    def test_eof_after_failed_handshake(self) -> None:
        client = make_client()
        client.receive_data(response(UPGRADE, CONNECTION))
        exc = client.handshake_exc
        client.receive_eof()
        assert client.handshake_exc is exc
        assert client.data_to_send() == [SEND_EOF]
        assert client.state is CLOSED

    def test_eof_after_open(self) -> None:
        client = make_client()
        client.receive_data(RESPONSE)
        client.events_received()
        client.receive_eof()
        assert client.handshake_exc is None
        assert client.close_code == 1006
        assert client.data_to_send() == [SEND_EOF]


class TestSection7_1ClientClosingHandshake:
    def test_client_waits_for_the_server_to_close_tcp(self) -> None:
        client = make_client()
        client.receive_data(RESPONSE)
        client.events_received()
        client.send_close(1000, "done")
        [close] = client.data_to_send()
        assert apply_mask(close[6:], close[2:6]) == b"\x03\xe8done"
        assert client.state is CLOSING
        client.receive_data(b"\x88\x02\x03\xe8")
        assert client.events_received() == [Frame(Opcode.CLOSE, b"\x03\xe8")]
        # "the client SHOULD wait for the server to close the connection"
        assert client.data_to_send() == []
        client.receive_eof()
        assert client.data_to_send() == [SEND_EOF]
        assert client.state is CLOSED
        assert client.close_code == 1000

    def test_open_state_skips_the_handshake(self) -> None:
        client = ClientProtocol(URI, state=OPEN)
        client.receive_data(UNMASKED_HELLO)
        assert client.events_received() == ["Hello"]

    def test_max_size(self) -> None:
        client = make_client(max_size=4)
        client.receive_data(RESPONSE + UNMASKED_HELLO)
        assert isinstance(client.events_received()[0], Response)
        assert client.state is CLOSING
        [close] = client.data_to_send()
        assert apply_mask(close[6:8], close[2:6]) == b"\x03\xf1"


class TestLogging:
    def test_debug_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level("DEBUG", logger="ws13.client")
        client = make_client()
        client.receive_data(RESPONSE)
        failed = make_client()
        failed.receive_data(response(status="404 Not Found"))
        failed.receive_eof()
        messages = [record.getMessage() for record in caplog.records]
        assert "> GET /chat?room=1 HTTP/1.1" in messages
        assert "< HTTP/1.1 101 Switching Protocols" in messages
        assert "! opening handshake failed: server rejected WebSocket connection: HTTP 404" in (
            messages
        )


class TestBackoff:
    def test_defaults_are_websockets(self) -> None:
        assert (BACKOFF_INITIAL_DELAY, BACKOFF_MIN_DELAY, BACKOFF_MAX_DELAY, BACKOFF_FACTOR) == (
            5.0,
            3.1,
            90.0,
            1.618,
        )

    def test_sequence(self) -> None:
        delays = backoff(initial_delay=1, min_delay=2, max_delay=10, factor=2)
        first = next(delays)
        assert 0 <= first <= 1
        assert [next(delays) for _ in range(5)] == [2, 4, 8, 10, 10]

    def test_jitter(self) -> None:
        firsts = {next(backoff()) for _ in range(20)}
        assert len(firsts) > 1
        assert all(0 <= delay <= 5 for delay in firsts)

    def test_capped(self) -> None:
        delays = backoff()
        assert max(next(delays) for _ in range(100)) == 90.0


class TestProcessException:
    @pytest.mark.parametrize(
        "exc",
        [
            ConnectionRefusedError(111, "refused"),
            ConnectionResetError(),
            OSError("unreachable"),
            TimeoutError(),
            InvalidStatus(Response(500, "Internal Server Error", Headers())),
            InvalidStatus(Response(502, "Bad Gateway", Headers())),
            InvalidStatus(Response(503, "Service Unavailable", Headers())),
            InvalidStatus(Response(504, "Gateway Timeout", Headers())),
            InvalidProxyStatus(Response(502, "Bad Gateway", Headers())),
        ],
    )
    def test_retried(self, exc: Exception) -> None:
        assert process_exception(exc) is None

    def test_closed_during_handshake_is_retried(self) -> None:
        client = make_client()
        client.receive_eof()
        assert client.handshake_exc is not None
        assert process_exception(client.handshake_exc) is None

    @pytest.mark.parametrize(
        "exc",
        [
            InvalidStatus(Response(404, "Not Found", Headers())),
            InvalidStatus(Response(401, "Unauthorized", Headers())),
            InvalidRedirect(Response(302, "Found", Headers()), "more than 10 redirects"),
            InvalidProxyStatus(Response(407, "Proxy Authentication Required", Headers())),
            InvalidProxyMessage("bad"),
            InvalidMessage("invalid HTTP status line"),
            InvalidUpgrade("Upgrade", "h2c"),
            InvalidURI("x", "bad"),
            ValueError("x"),
            ssl.SSLCertVerificationError(1, "certificate verify failed"),
        ],
    )
    def test_fatal(self, exc: Exception) -> None:
        assert process_exception(exc) is exc
