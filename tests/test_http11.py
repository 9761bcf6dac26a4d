"""Tests for ws13.http11: the HTTP/1.1 messages of the opening handshake."""

from __future__ import annotations

import pytest

from ws13 import http11
from ws13.exceptions import InvalidMessage
from ws13.headers import Headers
from ws13.http11 import Request, Response, reason_phrase

# RFC 6455 section 1.2.
REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n"
    b"\r\n"
)


def parse_request(data: bytes) -> Request:
    parsed = Request.parse(data)
    assert parsed is not None
    request, size = parsed
    assert size == len(data)
    return request


def parse_response(data: bytes, *, eof: bool = False) -> Response:
    parsed = Response.parse(data, eof=eof)
    assert parsed is not None
    response, size = parsed
    assert size == len(data)
    return response


class TestSection4_1HandshakeRequest:
    def test_rfc_example(self) -> None:
        request = parse_request(REQUEST)
        assert request.path == "/chat"
        assert request.headers["Host"] == "server.example.com"
        assert request.headers["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
        assert request.headers["Sec-WebSocket-Protocol"] == "chat, superchat"
        assert len(request.headers) == 7

    def test_incomplete(self) -> None:
        for end in range(len(REQUEST)):
            assert Request.parse(REQUEST[:end]) is None

    def test_bytes_after_the_request_are_left(self) -> None:
        assert Request.parse(REQUEST + b"\x81\x85") == (parse_request(REQUEST), len(REQUEST))

    def test_bytearray(self) -> None:
        assert Request.parse(bytearray(REQUEST)) == (parse_request(REQUEST), len(REQUEST))

    def test_bare_lf(self) -> None:
        # RFC 7230 section 3.5: "the recipient MAY recognize a single LF as a line terminator".
        request = parse_request(REQUEST.replace(b"\r\n", b"\n"))
        assert request == parse_request(REQUEST)

    def test_no_headers(self) -> None:
        assert parse_request(b"GET / HTTP/1.1\r\n\r\n") == Request("/", Headers())

    def test_path_and_query(self) -> None:
        assert parse_request(b"GET /a/b?c=d&e HTTP/1.1\r\n\r\n").path == "/a/b?c=d&e"

    def test_header_whitespace_is_stripped(self) -> None:
        request = parse_request(b"GET / HTTP/1.1\r\nHost:  \texample.com \t\r\nX:\r\n\r\n")
        assert request.headers["Host"] == "example.com"
        assert request.headers["X"] == ""

    def test_obs_text_header_value(self) -> None:
        request = parse_request(b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n")
        assert request.headers["X"] == "caf\xe9"

    def test_serialize(self) -> None:
        assert parse_request(REQUEST).serialize() == REQUEST

    @pytest.mark.parametrize(
        ("data", "status", "match"),
        [
            # "The method of the request MUST be GET"
            (b"POST /chat HTTP/1.1\r\n\r\n", 405, "unsupported method: POST"),
            (b"get /chat HTTP/1.1\r\n\r\n", 405, "unsupported method"),
            # "... and the HTTP version MUST be at least 1.1."
            (b"GET /chat HTTP/1.0\r\n\r\n", 505, "unsupported protocol: HTTP/1.0"),
            (b"GET /chat HTTP/2.0\r\n\r\n", 505, "unsupported protocol"),
            (b"GET /chat FTP/1.1\r\n\r\n", 400, "invalid HTTP request line"),
            (b"GET /chat\r\n\r\n", 400, "invalid HTTP request line"),
            (b"GET  /chat HTTP/1.1\r\n\r\n", 400, "invalid HTTP request line"),
            (b"GET chat HTTP/1.1\r\n\r\n", 400, "invalid request target"),
            (b"GET /ch\x7fat HTTP/1.1\r\n\r\n", 400, "invalid request target"),
            (b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400, "invalid request target"),
            (b"\r\n\r\n", 400, "invalid HTTP request line"),
            (b"GET / HTTP/1.1\r\nHost\r\n\r\n", 400, "invalid HTTP header line"),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "invalid HTTP header line"),
            (b"GET / HTTP/1.1\r\n: x\r\n\r\n", 400, "invalid HTTP header line"),
            (b"GET / HTTP/1.1\r\nX-\xe9: x\r\n\r\n", 400, "invalid HTTP header line"),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400, "invalid HTTP header line"),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "invalid HTTP header line"),
            (b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", 400, "invalid HTTP header line"),
            (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400, "invalid HTTP header line"),
            # RFC 7230 section 3.2.4: obs-fold is refused with 400.
            (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400, "invalid HTTP header line"),
        ],
    )
    def test_invalid(self, data: bytes, status: int, match: str) -> None:
        with pytest.raises(InvalidMessage, match=match) as exc_info:
            Request.parse(data)
        assert exc_info.value.status == status


class TestLimits:
    """Header limits protect a server (431 Request Header Fields Too Large)."""

    def test_defaults(self) -> None:
        assert http11.MAX_LINE_LENGTH == 8192
        assert http11.MAX_NUM_HEADERS == 128
        assert http11.MAX_BODY_SIZE == 2**20

    def test_line_at_limit(self) -> None:
        line = b"X: " + b"a" * (http11.MAX_LINE_LENGTH - 3)
        request = parse_request(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n")
        assert len(request.headers["X"]) == http11.MAX_LINE_LENGTH - 3

    def test_line_too_long(self) -> None:
        line = b"X: " + b"a" * (http11.MAX_LINE_LENGTH - 2)
        with pytest.raises(InvalidMessage, match="WS13_MAX_LINE_LENGTH") as exc_info:
            Request.parse(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n")
        assert exc_info.value.status == 431

    def test_line_too_long_detected_before_its_end(self) -> None:
        # A peer can't make the server buffer an endless line.
        with pytest.raises(InvalidMessage, match="line too long") as exc_info:
            Request.parse(b"GET / HTTP/1.1\r\nX: " + b"a" * http11.MAX_LINE_LENGTH)
        assert exc_info.value.status == 431

    def test_complete_line_too_long_in_incomplete_head(self) -> None:
        with pytest.raises(InvalidMessage, match="line too long"):
            Request.parse(b"GET / HTTP/1.1\r\nX: " + b"a" * http11.MAX_LINE_LENGTH + b"\r\nY")

    def test_headers_at_limit(self) -> None:
        headers = b"X: y\r\n" * http11.MAX_NUM_HEADERS
        request = parse_request(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
        assert len(request.headers) == http11.MAX_NUM_HEADERS

    def test_too_many_headers(self) -> None:
        headers = b"X: y\r\n" * (http11.MAX_NUM_HEADERS + 1)
        with pytest.raises(InvalidMessage, match="WS13_MAX_NUM_HEADERS") as exc_info:
            Request.parse(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
        assert exc_info.value.status == 431

    def test_too_many_headers_detected_before_the_end(self) -> None:
        headers = b"X: y\r\n" * (http11.MAX_NUM_HEADERS + 1)
        with pytest.raises(InvalidMessage, match="too many headers") as exc_info:
            Request.parse(b"GET / HTTP/1.1\r\n" + headers)
        assert exc_info.value.status == 431

    @pytest.mark.timeout(30)
    def test_many_bad_lines_of_blanks(self) -> None:
        # The largest head the limits allow, every header line blanks then a
        # NUL: refused with 400. (A parser that backtracked over each split of
        # the blanks took minutes here, and held its event loop as long.)
        line = b"X:" + b" " * (http11.MAX_LINE_LENGTH - 3) + b"\x00"
        head = b"GET / HTTP/1.1\r\n" + (line + b"\r\n") * http11.MAX_NUM_HEADERS + b"\r\n"
        with pytest.raises(InvalidMessage, match="invalid HTTP header line") as exc_info:
            Request.parse(head)
        assert exc_info.value.status == 400

    def test_limits_are_read_at_parse_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(http11, "MAX_NUM_HEADERS", 1)
        parse_request(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n")
        with pytest.raises(InvalidMessage, match="limit: 1,"):
            Request.parse(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n")

    def test_response_too_many_headers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(http11, "MAX_NUM_HEADERS", 2)
        with pytest.raises(InvalidMessage, match="too many headers"):
            Response.parse(RESPONSE)


class TestSection4_2_2HandshakeResponse:
    def test_rfc_example(self) -> None:
        response = parse_response(RESPONSE)
        assert response.status_code == 101
        assert response.reason_phrase == "Switching Protocols"
        assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert response.body == b""

    def test_incomplete(self) -> None:
        for end in range(len(RESPONSE)):
            assert Response.parse(RESPONSE[:end]) is None

    def test_frames_after_101_are_left(self) -> None:
        assert Response.parse(RESPONSE + b"\x81\x05Hello") == (
            parse_response(RESPONSE),
            len(RESPONSE),
        )

    def test_101_ignores_content_length(self) -> None:
        data = b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 5\r\n\r\n"
        assert Response.parse(data + b"\x81\x03abc") == (parse_response(data), len(data))

    def test_serialize(self) -> None:
        assert parse_response(RESPONSE).serialize() == RESPONSE

    def test_empty_reason_phrase(self) -> None:
        response = parse_response(b"HTTP/1.1 101\r\n\r\n")
        assert (response.status_code, response.reason_phrase) == (101, "")

    def test_body_with_content_length(self) -> None:
        data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
        response = parse_response(data)
        assert (response.status_code, response.body) == (404, b"not found")
        for end in range(len(data)):
            assert Response.parse(data[:end]) is None

    def test_body_up_to_eof(self) -> None:
        data = b"HTTP/1.1 403 Forbidden\r\n\r\nno"
        assert Response.parse(data) is None
        assert parse_response(data, eof=True).body == b"no"

    @pytest.mark.parametrize("status", [204, 304, 100])
    def test_no_body(self, status: int) -> None:
        data = f"HTTP/1.1 {status} X\r\n\r\n".encode()
        assert parse_response(data).body == b""

    def test_chunked_body_is_not_read(self) -> None:
        data = b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert Response.parse(data + b"5\r\nhello\r\n") == (parse_response(data), len(data))

    def test_eof_during_head(self) -> None:
        with pytest.raises(InvalidMessage, match="connection closed"):
            Response.parse(RESPONSE[:20], eof=True)

    def test_body_too_large(self) -> None:
        data = f"HTTP/1.1 400 Bad\r\nContent-Length: {http11.MAX_BODY_SIZE + 1}\r\n\r\n"
        with pytest.raises(InvalidMessage, match="WS13_MAX_BODY_SIZE"):
            Response.parse(data.encode())

    def test_body_without_length_too_large(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(http11, "MAX_BODY_SIZE", 4)
        data = b"HTTP/1.1 400 Bad\r\n\r\n"
        assert Response.parse(data + b"1234") is None
        with pytest.raises(InvalidMessage, match="body too large"):
            Response.parse(data + b"12345")

    @pytest.mark.parametrize(
        ("data", "match"),
        [
            (b"HTTP/1.0 101 Switching Protocols\r\n\r\n", "unsupported HTTP version"),
            (b"ICY 200 OK\r\n\r\n", "unsupported HTTP version"),
            (b"HTTP/1.1 1O1 Switching Protocols\r\n\r\n", "invalid HTTP status line"),
            (b"HTTP/1.1 1010 Switching Protocols\r\n\r\n", "invalid HTTP status line"),
            (b"HTTP/1.1\r\n\r\n", "invalid HTTP status line"),
            (b"\r\n\r\n", "unsupported HTTP version"),
            (b"HTTP/1.1 101 OK\r\nUpgrade websocket\r\n\r\n", "invalid HTTP header line"),
            (b"HTTP/1.1 404 X\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
            (b"HTTP/1.1 404 X\r\nContent-Length: 1, 1\r\n\r\nx", "invalid Content-Length"),
            # latin-1 digits that str.isdigit() accepts but int() doesn't.
            (b"HTTP/1.1 404 X\r\nContent-Length: \xb2\r\n\r\n", "invalid Content-Length"),
            (b"HTTP/1.1 404 X\r\nContent-Length: \xb9\r\n\r\nx", "invalid Content-Length"),
        ],
    )
    def test_invalid(self, data: bytes, match: str) -> None:
        with pytest.raises(InvalidMessage, match=match):
            Response.parse(data)

    def test_text(self) -> None:
        response = Response.text(403, "Forbidden origin\n")
        assert response.status_code == 403
        assert response.reason_phrase == "Forbidden"
        assert response.body == b"Forbidden origin\n"
        assert response.serialize() == (
            b"HTTP/1.1 403 Forbidden\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 17\r\n"
            b"Connection: close\r\n"
            b"\r\n"
            b"Forbidden origin\n"
        )
        assert parse_response(response.serialize()) == response

    def test_text_non_ascii_length_in_bytes(self) -> None:
        response = Response.text(400, "é")
        assert response.headers["Content-Length"] == "2"

    def test_text_keeps_headers_and_content_type(self) -> None:
        headers = Headers([("Content-Type", "text/html"), ("X", "1")])
        response = Response.text(400, "<p>", headers)
        assert response.headers["Content-Type"] == "text/html"
        assert response.headers["X"] == "1"
        # The caller's headers are not modified.
        assert "Content-Length" not in headers

    @pytest.mark.parametrize(
        ("status", "phrase"),
        [
            (101, "Switching Protocols"),
            (426, "Upgrade Required"),
            (431, "Request Header Fields Too Large"),
            (599, ""),
        ],
    )
    def test_reason_phrase(self, status: int, phrase: str) -> None:
        assert reason_phrase(status) == phrase
