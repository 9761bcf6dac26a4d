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


def _split_head(data: bytes | bytearray) -> tuple[list[bytes], int] | None:
    """Split the head of an HTTP message into lines; ``None`` if it is incomplete.

    Returns the lines (without the final empty line) and the size of the head.
    Accepts bare LF line ends, as RFC 7230 section 3.5 allows.
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
    lines = [line.removesuffix(b"\r") for line in bytes(data[: end + 1]).split(b"\n")[:-1]]
    _check_limits(lines, len(lines))
    return lines, size


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
# stripped afterwards).
_HEADER_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*([\x09\x20-\x7e\x80-\xff]*)")


def _parse_headers(lines: list[bytes]) -> Headers:
    flat: list[str] = []
    match = _HEADER_LINE.fullmatch
    for line in lines:
        parsed = match(line)
        if parsed is None:
            raise InvalidMessage(f"invalid HTTP header line: {line!r}")
        name = _shared(parsed[1].decode("ascii"))
        value = parsed[2].rstrip(b" \t").decode("latin-1")
        flat += (name, value if name.lower() in _UNSHARED else _shared(value))
    return Headers.from_flat(flat)


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
        lines, size = split
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise InvalidMessage(f"invalid HTTP request line: {lines[0]!r}")
        method, target, version = parts
        if version not in (b"HTTP/1.1",):
            if version.startswith(b"HTTP/"):
                raise InvalidMessage(
                    f"unsupported protocol: {version.decode('latin-1')}; expected HTTP/1.1",
                    status=505,
                )
            raise InvalidMessage(f"invalid HTTP request line: {lines[0]!r}")
        if method != b"GET":
            raise InvalidMessage(
                f"unsupported method: {method.decode('latin-1')}; expected GET", status=405
            )
        if not target.startswith(b"/") or any(b < 0x21 or b > 0x7E for b in target):
            raise InvalidMessage(f"invalid request target: {target!r}")
        return cls(target.decode("ascii"), _parse_headers(lines[1:])), size

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
                raise InvalidMessage("connection closed during the opening handshake")
            return None
        lines, size = split
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        if version != b"HTTP/1.1":
            raise InvalidMessage(f"unsupported HTTP version in response: {lines[0]!r}")
        if len(code) != 3 or not code.isdigit():
            raise InvalidMessage(f"invalid HTTP status line: {lines[0]!r}")
        status = int(code)
        headers = _parse_headers(lines[1:])
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
        return cls(status, reason.decode("latin-1"), headers, body), size

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
        head = f"HTTP/1.1 {self.status_code} {self.reason_phrase}\r\n".encode()
        return head + self.headers.serialize() + self.body
