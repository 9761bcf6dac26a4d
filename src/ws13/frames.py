"""WebSocket frames (RFC 6455 section 5) and the Close payload (section 5.5.1).

The incremental frame reader that runs on every received byte lives in
``protocol.py`` for speed; this module holds the data types, the header
encoder and a standalone ``Frame.parse`` used by tests and tools.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

from ._accel import apply_mask
from .exceptions import PayloadTooBig, ProtocolError
from .utils import encode_header

__all__ = [
    "CLOSE_CODE_EXPLANATIONS",
    "Close",
    "CloseCode",
    "Fragment",
    "Frame",
    "Opcode",
    "encode_header",
    "is_valid_close_code",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
CTRL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


class CloseCode(enum.IntEnum):
    """Close codes (RFC 6455 section 7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    # 1004 is reserved
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


CLOSE_CODE_EXPLANATIONS: dict[int, str] = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received [internal]",
    1006: "connection closed abnormally [internal]",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure [internal]",
}

# Codes a peer may put on the wire. 1005, 1006 and 1015 "MUST NOT be set as a
# status code in a Close control frame by an endpoint" (section 7.4.1); 1004 is
# reserved; 1016-2999 are reserved for future RFCs; 3000-4999 are for
# libraries, frameworks and applications.
_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame on the wire."""
    return code in _WIRE_CODES or 3000 <= code <= 4999


@dataclasses.dataclass(slots=True, frozen=True)
class Fragment:
    """A frame of a fragmented message, handed out as it arrives.

    The event a ``Protocol`` with ``stream_fragments`` on gives for each
    frame of a message sent in several (RFC 6455 section 5.4): ``data`` is
    ``str`` for a text message (decoded as it arrives: a character cut
    between two frames comes whole with the later one) and ``bytes`` for a
    binary one; ``fin`` is True on the last.
    """

    data: str | bytes
    fin: bool


@dataclasses.dataclass(slots=True)
class Frame:
    """One WebSocket frame, with its payload unmasked."""

    opcode: Opcode
    data: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def __str__(self) -> str:
        data = self.data
        if self.opcode is Opcode.TEXT:
            try:
                shown = repr(data.decode("utf-8"))
            except UnicodeDecodeError:
                shown = data.hex(" ")
        elif self.opcode is Opcode.CLOSE:
            # Frames are logged before they are checked: a bad Close payload
            # from the peer must show as hex, not raise out of a log call.
            try:
                shown = str(Close.parse(data))
            except (ProtocolError, UnicodeDecodeError):
                shown = data.hex(" ")
        else:
            shown = data[:75].hex(" ") + ("..." if len(data) > 75 else "")
        cont = "" if self.fin else " [continued]"
        return f"{self.opcode.name} {shown} [{len(data)} bytes]{cont}"

    @property
    def first_byte(self) -> int:
        """The header's first byte: FIN, RSV1-3 and the opcode (RFC 6455 section 5.2)."""
        return (
            (0x80 if self.fin else 0)
            | (0x40 if self.rsv1 else 0)
            | (0x20 if self.rsv2 else 0)
            | (0x10 if self.rsv3 else 0)
            | self.opcode
        )

    def serialize(self, *, mask: bytes | None = None) -> bytes:
        """Encode this frame; ``mask`` is the 4-byte masking key of a client."""
        header = encode_header(self.first_byte, len(self.data), mask)
        payload = self.data if mask is None else apply_mask(self.data, mask)
        return header + payload

    @classmethod
    def parse(
        cls, data: bytes, *, mask: bool, max_size: int | None = None
    ) -> tuple[Frame, int] | None:
        """Decode the frame at the start of ``data``.

        Returns the frame and the number of bytes it used, or ``None`` when
        ``data`` holds only part of a frame. ``mask`` says whether the frame
        must be masked (frames from a client). Raises ProtocolError or
        PayloadTooBig on a frame that breaks RFC 6455 or ``max_size``.
        """
        if len(data) < 2:
            return None
        b0, b1 = data[0], data[1]
        try:
            opcode = Opcode(b0 & 0x0F)
        except ValueError:
            raise ProtocolError(f"invalid opcode: {b0 & 0x0F:#x}") from None
        if bool(b1 & 0x80) != mask:
            raise ProtocolError("incorrect masking")
        length = b1 & 0x7F
        if opcode >= Opcode.CLOSE:
            # Section 5.5: "All control frames MUST have a payload length of
            # 125 bytes or less and MUST NOT be fragmented."
            if length > 125:
                raise ProtocolError("control frame too long")
            if not b0 & 0x80:
                raise ProtocolError("fragmented control frame")
        pos = 2
        if length == 126:
            if len(data) < 4:
                return None
            (length,) = struct.unpack_from("!H", data, 2)
            pos = 4
        elif length == 127:
            if len(data) < 10:
                return None
            (length,) = struct.unpack_from("!Q", data, 2)
            if length >> 63:
                raise ProtocolError("invalid payload length: most significant bit set")
            pos = 10
        if max_size is not None and length > max_size:
            raise PayloadTooBig(f"frame of {length} bytes exceeds max_size={max_size}")
        end = pos + (4 if mask else 0) + length
        if len(data) < end:
            return None
        if mask:
            payload = apply_mask(data[pos + 4 : end], bytes(data[pos : pos + 4]))
        else:
            payload = bytes(data[pos:end])
        frame = cls(
            opcode,
            payload,
            bool(b0 & 0x80),
            bool(b0 & 0x40),
            bool(b0 & 0x20),
            bool(b0 & 0x10),
        )
        return frame, end


@dataclasses.dataclass(slots=True)
class Close:
    """The code and reason carried by a Close frame (RFC 6455 section 5.5.1)."""

    code: int
    reason: str

    def __str__(self) -> str:
        explanation = CLOSE_CODE_EXPLANATIONS.get(self.code)
        if explanation is None:
            if 3000 <= self.code < 4000:
                explanation = "registered"
            elif 4000 <= self.code < 5000:
                explanation = "private use"
            else:
                explanation = "unknown"
        result = f"{self.code} ({explanation})"
        if self.reason:
            result = f"{result} {self.reason}"
        return result

    @classmethod
    def parse(cls, data: bytes) -> Close:
        """Decode a Close payload; an empty payload means 1005 (no status).

        Raises ProtocolError for a 1-byte payload or a code that may not be
        sent, and UnicodeDecodeError for a reason that is not UTF-8.
        """
        if len(data) >= 2:
            (code,) = struct.unpack_from("!H", data)
            reason = data[2:].decode("utf-8")
            if not is_valid_close_code(code):
                raise ProtocolError(f"invalid close code: {code}")
            return cls(code, reason)
        if len(data) == 0:
            return cls(CloseCode.NO_STATUS_RCVD, "")
        raise ProtocolError("close frame payload of 1 byte")

    def serialize(self) -> bytes:
        """Encode this Close payload; 1005 gives an empty payload."""
        if self.code == CloseCode.NO_STATUS_RCVD:
            return b""
        return struct.pack("!H", self.code) + self.reason.encode("utf-8")
