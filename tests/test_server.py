"""Tests for ws13.server: the server's opening handshake (RFC 6455 section 4.2)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ws13 import http11
from ws13.exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidState,
    InvalidUpgrade,
    InvalidVersion,
)
from ws13.frames import Frame, Opcode
from ws13.headers import Headers
from ws13.http11 import Request, Response
from ws13.protocol import CLOSED, CONNECTING, OPEN, SEND_EOF
from ws13.server import ServerProtocol
from ws13.version import USER_AGENT

MASKED_HELLO = bytes.fromhex("818537fa213d7f9f4d5158")

# RFC 6455 section 1.3.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BASE_HEADERS = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def request(
    *,
    remove: Sequence[str] = (),
    add: Sequence[tuple[str, str]] = (),
    replace: Sequence[tuple[str, str]] = (),
    path: str = "/chat",
) -> bytes:
    """A handshake request: RFC 6455 section 1.2's, minus ``remove``, plus ``add``."""
    replaced = dict(replace)
    lines = [f"GET {path} HTTP/1.1"]
    for name, value in BASE_HEADERS:
        if name in remove:
            continue
        lines.append(f"{name}: {replaced.get(name, value)}")
    lines.extend(f"{name}: {value}" for name, value in add)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


REQUEST = request()


def parse_response(data: bytes) -> Response:
    parsed = Response.parse(data)
    assert parsed is not None
    assert parsed[1] == len(data)
    return parsed[0]


def handshake(server: ServerProtocol, data: bytes = REQUEST) -> Response:
    """Feed a request, answer it with ``accept()``; return the response sent."""
    server.receive_data(data)
    [event] = server.events_received()
    assert isinstance(event, Request)
    server.send_response(server.accept(event))
    writes = server.data_to_send()
    return parse_response(writes[0])


def assert_refused(
    server: ServerProtocol, status: int, exc_type: type[Exception], match: str
) -> Response:
    """The server answered ``status`` with a short text and closed the connection."""
    writes = server.data_to_send()
    assert writes[1:] == [SEND_EOF]
    response = parse_response(writes[0])
    assert response.status_code == status
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Connection"] == "close"
    text = response.body.decode()
    assert text.startswith("Failed to open a WebSocket connection: ")
    assert match in text
    assert "Traceback" not in text
    assert len(text) < 500
    assert isinstance(server.handshake_exc, exc_type)
    assert server.state is CONNECTING
    assert server.close_expected()
    return response


class TestSection4_2_1ReadingTheRequest:
    def test_request_event(self) -> None:
        server = ServerProtocol()
        server.receive_data(REQUEST)
        [event] = server.events_received()
        assert isinstance(event, Request)
        assert event.path == "/chat"
        assert event.headers["Sec-WebSocket-Key"] == KEY
        assert server.request is event
        assert server.data_to_send() == []
        assert server.state is CONNECTING

    def test_request_split_across_reads(self) -> None:
        server = ServerProtocol()
        for i in range(len(REQUEST) - 1):
            server.receive_data(REQUEST[i : i + 1])
            assert server.events_received() == []
        server.receive_data(REQUEST[-1:])
        [event] = server.events_received()
        assert isinstance(event, Request)


class TestSection4_2_2SendingTheResponse:
    def test_accept(self) -> None:
        server = ServerProtocol()
        response = handshake(server)
        assert response.status_code == 101
        assert response.reason_phrase == "Switching Protocols"
        assert response.headers["Upgrade"] == "websocket"
        assert response.headers["Connection"] == "Upgrade"
        # RFC 6455 section 1.3 / 4.2.2 item 5.4.
        assert response.headers["Sec-WebSocket-Accept"] == ACCEPT
        assert response.headers["Server"] == USER_AGENT
        assert "Sec-WebSocket-Protocol" not in response.headers
        assert "Sec-WebSocket-Extensions" not in response.headers
        assert server.response == response
        assert server.state is OPEN
        assert server.handshake_exc is None
        assert not server.close_expected()

    def test_response_bytes(self) -> None:
        server = ServerProtocol(server_header=None)
        server.receive_data(REQUEST)
        [event] = server.events_received()
        server.send_response(server.accept(event))  # type: ignore[arg-type]
        assert server.data_to_send() == [
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"\r\n"
        ]

    def test_frames_after_open(self) -> None:
        server = ServerProtocol()
        handshake(server)
        server.receive_data(MASKED_HELLO)
        assert server.events_received() == ["Hello"]
        server.send_text("Hello")
        assert server.data_to_send() == [bytes.fromhex("810548656c6c6f")]

    def test_send_before_open(self) -> None:
        server = ServerProtocol()
        server.receive_data(REQUEST)
        with pytest.raises(InvalidState):
            server.send_text("too early")

    @pytest.mark.parametrize(
        ("headers", "path"),
        [
            ([("Connection", "keep-alive, Upgrade")], "/"),
            ([("Connection", "keep-alive"), ("Connection", "upgrade")], "/"),
            ([("Upgrade", "WebSocket")], "/"),
            ([("Upgrade", "websocket, h2c")], "/"),
            ([("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")], "/"),
            ([("Origin", "http://evil.example")], "/x?y=z"),
        ],
    )
    def test_acceptable_variants(self, headers: list[tuple[str, str]], path: str) -> None:
        names = [name for name, _ in headers]
        data = request(remove=names, add=headers, path=path)
        response = handshake(ServerProtocol(), data)
        assert response.status_code == 101
        # Extensions offered are declined by not answering them (section 9.1).
        assert "Sec-WebSocket-Extensions" not in response.headers


# (request bytes, status, exception type, text in the body)
BAD_REQUESTS = [
    pytest.param(request(remove=["Host"]), 400, InvalidHeader, "missing Host header", id="no Host"),
    pytest.param(
        request(add=[("Host", "other.example.com")]),
        400,
        InvalidHeader,
        "Host",
        id="two Hosts",
    ),
    pytest.param(
        request(remove=["Upgrade"]), 426, InvalidUpgrade, "missing Upgrade header", id="no Upgrade"
    ),
    pytest.param(
        request(replace=[("Upgrade", "h2c")]),
        426,
        InvalidUpgrade,
        "invalid Upgrade header: h2c",
        id="Upgrade h2c",
    ),
    pytest.param(
        request(remove=["Connection"]),
        426,
        InvalidUpgrade,
        "missing Connection header",
        id="no Connection",
    ),
    pytest.param(
        request(replace=[("Connection", "keep-alive")]),
        426,
        InvalidUpgrade,
        "invalid Connection header: keep-alive",
        id="Connection keep-alive",
    ),
    pytest.param(
        request(replace=[("Connection", "Upgrade; x")]),
        400,
        InvalidHeader,
        "Connection",
        id="Connection not a token list",
    ),
    pytest.param(
        request(remove=["Sec-WebSocket-Key"]),
        400,
        InvalidHeader,
        "missing Sec-WebSocket-Key header",
        id="no key",
    ),
    pytest.param(
        request(replace=[("Sec-WebSocket-Key", "not base64!")]),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header: not base64!",
        id="key not base64",
    ),
    pytest.param(
        request(replace=[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ")]),
        400,
        InvalidHeader,
        "Sec-WebSocket-Key",
        id="key without padding",
    ),
    pytest.param(
        request(replace=[("Sec-WebSocket-Key", "c2hvcnQ=")]),
        400,
        InvalidHeader,
        "invalid Sec-WebSocket-Key header: c2hvcnQ=",
        id="key of 5 bytes",
    ),
    pytest.param(
        request(replace=[("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAA")]),
        400,
        InvalidHeader,
        "Sec-WebSocket-Key",
        id="key of 18 bytes",
    ),
    pytest.param(
        request(replace=[("Sec-WebSocket-Key", "")]),
        400,
        InvalidHeader,
        "empty Sec-WebSocket-Key header",
        id="empty key",
    ),
    pytest.param(
        request(add=[("Sec-WebSocket-Key", KEY)]),
        400,
        InvalidHeader,
        "Sec-WebSocket-Key",
        id="key repeated",
    ),
    pytest.param(
        request(remove=["Sec-WebSocket-Version"]),
        426,
        InvalidVersion,
        "missing Sec-WebSocket-Version header",
        id="no version",
    ),
    pytest.param(
        request(replace=[("Sec-WebSocket-Version", "12")]),
        426,
        InvalidVersion,
        "invalid Sec-WebSocket-Version header: 12",
        id="version 12",
    ),
    pytest.param(
        request(replace=[("Sec-WebSocket-Version", "8, 13")]),
        426,
        InvalidVersion,
        "Sec-WebSocket-Version",
        id="versions 8 and 13",
    ),
    pytest.param(
        request(add=[("Sec-WebSocket-Version", "13")]),
        426,
        InvalidVersion,
        "Sec-WebSocket-Version",
        id="version repeated",
    ),
    pytest.param(
        request(add=[("Sec-WebSocket-Protocol", "a b")]),
        400,
        InvalidHeader,
        "Sec-WebSocket-Protocol",
        id="bad subprotocol list",
    ),
    pytest.param(
        request(add=[("Sec-WebSocket-Extensions", "x; =1")]),
        400,
        InvalidHeader,
        "Sec-WebSocket-Extensions",
        id="bad extension list",
    ),
]


class TestSection4_2_1InvalidRequests:
    @pytest.mark.parametrize(("data", "status", "exc_type", "match"), BAD_REQUESTS)
    def test_refused_by_accept(
        self, data: bytes, status: int, exc_type: type[Exception], match: str
    ) -> None:
        # "If the server, while reading the handshake, finds that the client did
        # not send a handshake that matches the description below [...] the
        # server MUST stop processing the client's handshake and return an HTTP
        # response with an appropriate error code (such as 400 Bad Request)."
        server = ServerProtocol()
        server.receive_data(data)
        [event] = server.events_received()
        assert isinstance(event, Request)
        response = server.accept(event)
        assert server.state is CONNECTING
        server.send_response(response)
        assert_refused(server, status, exc_type, match)
        assert server.handshake_exc.status == status  # type: ignore[union-attr]
        assert server.subprotocol is None

    def test_version_12_advertises_13(self) -> None:
        # Section 4.2.2: "[...] a |Sec-WebSocket-Version| header field indicating
        # the version(s) the server is capable of understanding."
        server = ServerProtocol()
        data = request(replace=[("Sec-WebSocket-Version", "12")])
        server.receive_data(data)
        [event] = server.events_received()
        server.send_response(server.accept(event))  # type: ignore[arg-type]
        response = assert_refused(server, 426, InvalidVersion, "12")
        assert response.headers["Sec-WebSocket-Version"] == "13"
        # RFC 7231 section 6.5.15: 426 "MUST send an Upgrade header field".
        assert response.headers["Upgrade"] == "websocket"

    def test_missing_upgrade_advertises_websocket(self) -> None:
        server = ServerProtocol()
        server.receive_data(request(remove=["Upgrade"]))
        [event] = server.events_received()
        server.send_response(server.accept(event))  # type: ignore[arg-type]
        response = assert_refused(server, 426, InvalidUpgrade, "Upgrade")
        assert response.headers["Upgrade"] == "websocket"
        assert "Sec-WebSocket-Version" not in response.headers

    @pytest.mark.parametrize(
        ("data", "status", "match"),
        [
            pytest.param(
                REQUEST.replace(b"GET", b"POST", 1), 405, "unsupported method: POST", id="POST"
            ),
            pytest.param(
                REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
                505,
                "unsupported protocol: HTTP/1.0",
                id="HTTP/1.0",
            ),
            pytest.param(
                REQUEST.replace(b"Host: ", b"Host : ", 1),
                400,
                "invalid HTTP header line",
                id="space before colon",
            ),
            pytest.param(
                REQUEST.replace(b"Host: ", b"Host ", 1),
                400,
                "invalid HTTP header line",
                id="no colon",
            ),
            pytest.param(b"GET /\r\n\r\n", 400, "invalid HTTP request line", id="HTTP/0.9"),
            pytest.param(
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\r\n\r\n",
                400,
                "invalid HTTP request line",
                id="TLS to a plain port",
            ),
            pytest.param(
                request(add=[("X-Long", "x" * http11.MAX_LINE_LENGTH)]),
                431,
                "line too long",
                id="long header line",
            ),
            pytest.param(
                request(add=[("X", "y")] * http11.MAX_NUM_HEADERS),
                431,
                "too many headers",
                id="too many headers",
            ),
        ],
    )
    def test_refused_by_the_parser(self, data: bytes, status: int, match: str) -> None:
        server = ServerProtocol()
        server.receive_data(data)
        # The core answered by itself: there is no request to look at.
        assert server.events_received() == []
        assert server.request is None
        assert_refused(server, status, InvalidMessage, match)

    def test_refused_by_the_parser_before_the_end_of_the_head(self) -> None:
        server = ServerProtocol()
        server.receive_data(b"GET / HTTP/1.1\r\nX: " + b"x" * http11.MAX_LINE_LENGTH)
        assert_refused(server, 431, InvalidMessage, "line too long")

    def test_405_lists_get(self) -> None:
        # RFC 7231 section 6.5.5: "The origin server MUST generate an Allow header
        # field in a 405 response containing a list of the target resource's
        # currently supported methods."
        server = ServerProtocol()
        server.receive_data(REQUEST.replace(b"GET", b"PUT", 1))
        response = assert_refused(server, 405, InvalidMessage, "PUT")
        assert response.headers["Allow"] == "GET"

    def test_data_after_refusal_is_ignored(self) -> None:
        server = ServerProtocol()
        server.receive_data(REQUEST.replace(b"GET", b"POST", 1))
        server.data_to_send()
        server.receive_data(REQUEST)
        server.receive_data(MASKED_HELLO * 1000)
        assert server.events_received() == []
        assert server.data_to_send() == []
        # Nothing is kept: a client can't fill the server's memory after a refusal.
        assert not server._handshake_buffer
        server.receive_eof()
        assert server.state is CLOSED
        assert server.data_to_send() == []

    def test_eof_before_the_response(self) -> None:
        # The client goes away while the application decides (async process_request).
        server = ServerProtocol()
        server.receive_data(REQUEST)
        [event] = server.events_received()
        server.receive_eof()
        assert server.data_to_send() == [SEND_EOF]
        server.send_response(server.accept(event))  # type: ignore[arg-type]
        # CLOSED is final: no response after the EOF, no reopening.
        assert server.state is CLOSED
        assert server.data_to_send() == []
        with pytest.raises(InvalidState):
            server.send_text("x")

    def test_eof_during_handshake(self) -> None:
        server = ServerProtocol()
        server.receive_data(REQUEST[:10])
        server.receive_eof()
        assert server.state is CLOSED
        assert server.events_received() == []
        assert server.data_to_send() == [SEND_EOF]


class TestSection4_2_2Origin:
    @pytest.mark.parametrize(
        ("origins", "origin"),
        [
            (["https://example.com"], "https://example.com"),
            (["https://a.example", "https://example.com"], "https://example.com"),
            ([None], None),
            (["https://example.com", None], None),
        ],
    )
    def test_accepted(self, origins: list[str | None], origin: str | None) -> None:
        data = request(add=[("Origin", origin)] if origin else [])
        assert handshake(ServerProtocol(origins=origins), data).status_code == 101

    @pytest.mark.parametrize(
        ("origins", "origin"),
        [
            (["https://example.com"], "https://evil.example"),
            (["https://example.com"], "HTTPS://EXAMPLE.COM"),
            (["https://example.com"], None),
            ([], "https://example.com"),
            ([None], "https://example.com"),
        ],
    )
    def test_refused(self, origins: list[str | None], origin: str | None) -> None:
        # Section 10.2: "If the server does not wish to accept this connection,
        # it MUST return an appropriate HTTP error code (e.g., 403 Forbidden)".
        server = ServerProtocol(origins=origins)
        server.receive_data(request(add=[("Origin", origin)] if origin else []))
        [event] = server.events_received()
        server.send_response(server.accept(event))  # type: ignore[arg-type]
        assert_refused(server, 403, InvalidOrigin, "Origin")

    def test_two_origins_refused(self) -> None:
        server = ServerProtocol(origins=["https://example.com"])
        server.receive_data(
            request(add=[("Origin", "https://example.com"), ("Origin", "https://example.com")])
        )
        [event] = server.events_received()
        server.send_response(server.accept(event))  # type: ignore[arg-type]
        assert_refused(server, 403, InvalidOrigin, "Origin")


class TestSection4_2_2Subprotocols:
    @pytest.mark.parametrize(
        ("available", "offered", "chosen"),
        [
            (["chat"], "chat", "chat"),
            (["superchat", "chat"], "chat, superchat", "superchat"),
            (["chat", "superchat"], "superchat, chat", "chat"),
            (["chat"], "superchat", None),
            ([], "chat", None),
            (["chat"], None, None),
        ],
    )
    def test_server_preference(
        self, available: list[str], offered: str | None, chosen: str | None
    ) -> None:
        server = ServerProtocol(subprotocols=available)
        add = [("Sec-WebSocket-Protocol", offered)] if offered else []
        response = handshake(server, request(add=add))
        assert response.status_code == 101
        assert response.headers.get("Sec-WebSocket-Protocol") == chosen
        assert server.subprotocol == chosen

    def test_offers_in_several_headers(self) -> None:
        server = ServerProtocol(subprotocols=["superchat"])
        data = request(
            add=[("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", "superchat")]
        )
        assert handshake(server, data).headers["Sec-WebSocket-Protocol"] == "superchat"

    def test_callback(self) -> None:
        calls = []

        def select(request: Request, offered: Sequence[str]) -> str | None:
            calls.append((request.path, list(offered)))
            return offered[-1]

        server = ServerProtocol(subprotocols=["chat"], select_subprotocol=select)
        data = request(add=[("Sec-WebSocket-Protocol", "chat, superchat")])
        response = handshake(server, data)
        assert response.headers["Sec-WebSocket-Protocol"] == "superchat"
        assert server.subprotocol == "superchat"
        assert calls == [("/chat", ["chat", "superchat"])]

    def test_callback_chooses_none(self) -> None:
        server = ServerProtocol(select_subprotocol=lambda request, offered: None)
        response = handshake(server, request(add=[("Sec-WebSocket-Protocol", "chat")]))
        assert response.status_code == 101
        assert "Sec-WebSocket-Protocol" not in response.headers

    def test_callback_chooses_one_not_offered(self) -> None:
        server = ServerProtocol(select_subprotocol=lambda request, offered: "other")
        server.receive_data(request(add=[("Sec-WebSocket-Protocol", "chat")]))
        [event] = server.events_received()
        server.send_response(server.accept(event))  # type: ignore[arg-type]
        assert_refused(server, 500, InvalidHandshake, "'other'")


class TestPipelining:
    def test_frames_after_the_request_wait_for_the_response(self) -> None:
        server = ServerProtocol()
        ping = bytes.fromhex("898537fa213d7f9f4d5158")
        server.receive_data(REQUEST + MASKED_HELLO + ping[:4])
        [event] = server.events_received()
        assert isinstance(event, Request)
        server.receive_data(ping[4:])
        # Nothing is processed before the handshake completes.
        assert server.events_received() == []
        assert server.data_to_send() == []
        server.send_response(server.accept(event))
        assert server.events_received() == ["Hello", Frame(Opcode.PING, b"Hello")]
        [response, pong] = server.data_to_send()
        assert parse_response(response).status_code == 101
        # The pong comes after the 101 response.
        assert pong == b"\x8a\x05Hello"

    def test_invalid_frame_after_the_request(self) -> None:
        server = ServerProtocol()
        server.receive_data(REQUEST + bytes.fromhex("810548656c6c6f"))
        [event] = server.events_received()
        server.send_response(server.accept(event))  # type: ignore[arg-type]
        [response, close, eof] = server.data_to_send()
        assert parse_response(response).status_code == 101
        assert close[:4] == b"\x88\x13\x03\xea"
        assert eof == SEND_EOF

    def test_frames_after_a_refused_request_are_dropped(self) -> None:
        server = ServerProtocol()
        server.receive_data(REQUEST + MASKED_HELLO)
        assert len(server.events_received()) == 1
        server.send_response(server.reject(404, "Not here.\n"))
        server.receive_data(MASKED_HELLO)
        assert server.events_received() == []
        [response, eof] = server.data_to_send()
        assert parse_response(response).status_code == 404
        assert eof == SEND_EOF


class TestReject:
    def test_reject_then_eof(self) -> None:
        server = ServerProtocol()
        server.receive_data(REQUEST)
        server.events_received()
        response = server.reject(404, "Not here.\n", Headers([("X-Reason", "test")]))
        assert response.status_code == 404
        server.send_response(response)
        assert server.data_to_send() == [
            b"HTTP/1.1 404 Not Found\r\n"
            b"X-Reason: test\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 10\r\n"
            b"Connection: close\r\n"
            b"Server: " + USER_AGENT.encode() + b"\r\n"
            b"\r\n"
            b"Not here.\n",
            SEND_EOF,
        ]
        assert isinstance(server.handshake_exc, InvalidMessage)
        assert server.handshake_exc.status == 404
        assert server.state is CONNECTING
        assert server.close_expected()
        server.receive_eof()
        assert server.state is CLOSED
        assert server.data_to_send() == []

    def test_reject_without_server_header(self) -> None:
        response = ServerProtocol(server_header=None).reject(503, "later\n")
        assert "Server" not in response.headers
        assert response.reason_phrase == "Service Unavailable"

    def test_open_state_skips_the_handshake(self) -> None:
        server = ServerProtocol(state=OPEN)
        server.receive_data(MASKED_HELLO)
        assert server.events_received() == ["Hello"]


class TestLogging:
    def test_debug_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level("DEBUG", logger="ws13.server")
        handshake(ServerProtocol())
        server = ServerProtocol()
        server.receive_data(request(remove=["Host"]))
        [event] = server.events_received()
        server.accept(event)  # type: ignore[arg-type]
        messages = [record.getMessage() for record in caplog.records]
        assert "< GET /chat HTTP/1.1" in messages
        assert "> HTTP/1.1 101 Switching Protocols" in messages
        assert "= connection is OPEN" in messages
        assert "! invalid handshake request: missing Host header" in messages
