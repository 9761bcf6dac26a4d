"""The HTTP/1.1 messages of the opening handshake (RFC 6455 section 4, RFC 7230).

Parsing is incremental: ``parse()`` takes the bytes received so far and returns
``None`` until a whole message is there. Limits protect a server from a peer
that sends endless or huge headers; each can be raised with an environment
variable:

* ``WS13_MAX_LINE_LENGTH`` — bytes per request, status or header line (8192);
* ``WS13_MAX_NUM_HEADERS`` — header lines per message (128);
* ``WS13_MAX_BODY_SIZE`` — body of a non-101 response read by a client (1 MiB).
"""

from __future__ import annotations

import dataclasses
import os
import re
from http import HTTPStatus

from .exceptions import InvalidMessage
from .headers import Headers

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_LINE_LENGTH",
    "MAX_NUM_HEADERS",
    "Request",
    "Response",
    "reason_phrase",
]

MAX_LINE_LENGTH = int(os.environ.get("WS13_MAX_LINE_LENGTH", "8192"))
MAX_NUM_HEADERS = int(os.environ.get("WS13_MAX_NUM_HEADERS", "128"))
MAX_BODY_SIZE = int(os.environ.get("WS13_MAX_BODY_SIZE", str(2**20)))


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status``, or an empty string."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _check_limits(lines: list[bytes], header_lines: int) -> None:
    """Raise InvalidMessage (431) if a line or the number of lines is over its limit.

    ``header_lines`` counts the request or status line and the header lines.
    """
    if max(map(len, lines), default=0) > MAX_LINE_LENGTH:
        raise InvalidMessage(
            f"line too long (limit: {MAX_LINE_LENGTH} bytes, set WS13_MAX_LINE_LENGTH)",
            status=431,
        )
    if header_lines > MAX_NUM_HEADERS + 1:
        raise InvalidMessage(
            f"too many headers (limit: {MAX_NUM_HEADERS}, set WS13_MAX_NUM_HEADERS)",
            status=431,
        )


def _split_head(data: bytes | bytearray) -> tuple[str, int] | None:
    """Find the head of an HTTP message; ``None`` if it is incomplete.

    Returns the head as Latin-1 text, each line with its line end, without
    the final empty line, and the size of the head in bytes (empty line
    included). Accepts bare LF line ends, as RFC 7230 section 3.5 allows.
    """
    end = data.find(b"\n\r\n")
    size = end + 3
    lf_end = data.find(b"\n\n")
    if lf_end != -1 and (end == -1 or lf_end < end):
        end, size = lf_end, lf_end + 2
    if end == -1:
        # Incomplete: check the limits on what arrived so far (the last line
        # may still grow; the others may still lose their "\r").
        partial = bytes(data).split(b"\n")
        _check_limits([line.removesuffix(b"\r") for line in partial], len(partial) - 1)
        return None
    head = data[: end + 1].decode("latin-1")
    if size > MAX_LINE_LENGTH:
        # Only a head this long can hold a line over the limit.
        lines = [line.removesuffix("\r").encode("latin-1") for line in head.split("\n")[:-1]]
        _check_limits(lines, len(lines))
    else:
        # Only the number of lines can be over its limit (checked here, the
        # call costs more than the count on every handshake).
        count = head.count("\n")
        if count > MAX_NUM_HEADERS + 1:
            _check_limits([], count)
    return head, size


# Header names and values seen again and again (Host, Upgrade: websocket,
# Sec-WebSocket-Version: 13, a common User-Agent...) share one str object
# across connections. Bounded, so a peer can't grow it without limit.
_SHARED: dict[str, str] = {}
_SHARED_MAX = 4096
# Values unique to each connection would only fill the cache.
_UNSHARED = frozenset({"sec-websocket-key", "sec-websocket-accept", "authorization", "cookie"})


def _shared(text: str) -> str:
    shared = _SHARED.get(text)
    if shared is not None:
        return shared
    if len(_SHARED) < _SHARED_MAX and len(text) <= 256:
        _SHARED[text] = text
    return text


# RFC 7230 section 3.2: header-field = field-name ":" OWS field-value OWS, with
# field-name a token and field-value visible characters, spaces, tabs and
# obs-text. One match per line checks all of it (the value's trailing OWS is
# stripped afterwards). The text is the head decoded as Latin-1, so obs-text
# is \x80-\xff. Anchored at line starts and unable to cross a line end, a
# match is a whole line: every line is valid when there are as many matches
# as lines, and findall() does them all in one call. The leading OWS is
# possessive (*+): the value may start with the same characters, and a bad
# line of thousands of spaces would otherwise be retried at every split
# between the two, quadratic work per line.
_HEADER_LINE = re.compile(
    r"^([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*+([\t\x20-\x7e\x80-\xff]*)\r?\n", re.M
)


def _parse_headers(block: str) -> Headers:
    """Parse header lines, each ending with its line end (``_split_head()``'s text)."""
    fields = _HEADER_LINE.findall(block)
    if len(fields) != block.count("\n"):
        for line in block.split("\n")[:-1]:
            if _HEADER_LINE.fullmatch(line + "\n") is None:
                line = line.removesuffix("\r")
                raise InvalidMessage(f"invalid HTTP header line: {line.encode('latin-1')!r}")
    flat: list[str] = []
    for name, value in fields:
        name = _shared(name)
        value = value.rstrip(" \t")
        flat += (name, value if name.lower() in _UNSHARED else _shared(value))
    return Headers.from_flat(flat)


# RFC 7230 section 5.3.1: origin-form = absolute-path [ "?" query ], visible
# ASCII only (RFC 3986 leaves no room for spaces or controls).
_TARGET = re.compile(r"/[\x21-\x7e]*")


@dataclasses.dataclass(slots=True)
class Request:
    """An HTTP GET request: the opening handshake of a client.

    Attributes:
        path: the request target, path and query (``/chat?room=1``).
        headers: the request headers.
    """

    path: str
    headers: Headers

    @classmethod
    def parse(cls, data: bytes | bytearray) -> tuple[Request, int] | None:
        """Parse a request from the start of ``data``.

        Returns the request and the number of bytes it used, or ``None`` if
        more bytes are needed. Raises InvalidMessage when the request is
        malformed, too large, or not a ``GET`` over HTTP/1.1 (RFC 6455
        section 4.1: "The method of the request MUST be GET, and the HTTP
        version MUST be at least 1.1.").
        """
        split = _split_head(data)
        if split is None:
            return None
        head, size = split
        line, _, block = head.partition("\n")
        line = line.removesuffix("\r")
        parts = line.split(" ")
        if len(parts) != 3:
            raise InvalidMessage(f"invalid HTTP request line: {line.encode('latin-1')!r}")
        method, target, version = parts
        if version != "HTTP/1.1":
            if version.startswith("HTTP/"):
                raise InvalidMessage(
                    f"unsupported protocol: {version}; expected HTTP/1.1", status=505
                )
            raise InvalidMessage(f"invalid HTTP request line: {line.encode('latin-1')!r}")
        if method != "GET":
            raise InvalidMessage(f"unsupported method: {method}; expected GET", status=405)
        if _TARGET.fullmatch(target) is None:
            raise InvalidMessage(f"invalid request target: {target.encode('latin-1')!r}")
        return cls(target, _parse_headers(block)), size

    def serialize(self) -> bytes:
        return f"GET {self.path} HTTP/1.1\r\n".encode() + self.headers.serialize()


@dataclasses.dataclass(slots=True)
class Response:
    """An HTTP response: ``101 Switching Protocols`` or a refusal with a body."""

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = b""

    @classmethod
    def parse(cls, data: bytes | bytearray, *, eof: bool = False) -> tuple[Response, int] | None:
        """Parse a response from the start of ``data``.

        Returns the response and the bytes it used, or ``None`` if more are
        needed. A 101 response has no body; any other reads ``Content-Length``
        bytes, or everything up to ``eof`` when there is no Content-Length.
        """
        split = _split_head(data)
        if split is None:
            if eof:
                # From EOFError: a network failure, which a client may retry.
                raise InvalidMessage("connection closed during the opening handshake") from (
                    EOFError("connection closed")
                )
            return None
        head, size = split
        line, _, block = head.partition("\n")
        line = line.removesuffix("\r")
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version != "HTTP/1.1":
            raise InvalidMessage(
                f"unsupported HTTP version in response: {line.encode('latin-1')!r}"
            )
        if len(code) != 3 or not (code.isascii() and code.isdigit()):
            raise InvalidMessage(f"invalid HTTP status line: {line.encode('latin-1')!r}")
        status = int(code)
        headers = _parse_headers(block)
        body = b""
        if status != 101 and not (100 <= status < 200) and status not in (204, 304):
            length_header = headers.get("Content-Length")
            if length_header is not None:
                # isascii(): str.isdigit() also accepts "\xb2" etc., which int() refuses.
                if not (length_header.isascii() and length_header.isdigit()):
                    raise InvalidMessage(f"invalid Content-Length: {length_header}")
                length = int(length_header)
                if length > MAX_BODY_SIZE:
                    raise InvalidMessage(
                        f"body too large: {length} bytes "
                        f"(limit: {MAX_BODY_SIZE}, set WS13_MAX_BODY_SIZE)"
                    )
                if len(data) < size + length:
                    return None
                body = bytes(data[size : size + length])
                size += length
            elif "Transfer-Encoding" in headers:
                # A client only reads refusals for their status; it ignores a
                # chunked body rather than decode it.
                pass
            elif not eof:
                if len(data) - size > MAX_BODY_SIZE:
                    raise InvalidMessage(
                        f"body too large (limit: {MAX_BODY_SIZE}, set WS13_MAX_BODY_SIZE)"
                    )
                return None
            else:
                body = bytes(data[size:])
                size = len(data)
        return cls(status, reason, headers, body), size

    @classmethod
    def text(cls, status: int, body: str, headers: Headers | None = None) -> Response:
        """A response with a short plain-text body, e.g. for a refused handshake."""
        payload = body.encode()
        response_headers = Headers() if headers is None else headers.copy()
        if "Content-Type" not in response_headers:
            response_headers["Content-Type"] = "text/plain; charset=utf-8"
        response_headers["Content-Length"] = str(len(payload))
        response_headers["Connection"] = "close"
        return cls(status, reason_phrase(status), response_headers, payload)

    def serialize(self) -> bytes:
        head = f"HTTP/1.1 {self.status_code} {self.reason_phrase}\r\n{self.headers}"
        return head.encode() + self.body if self.body else head.encode()
