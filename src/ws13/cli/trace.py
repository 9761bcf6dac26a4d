"""The frame dissector: what went over the wire, field by field, like Wireshark.

``Dissector.frame(from_client, header, payload)`` turns one frame, as
``Protocol.tracer`` sees it, into a JSON-ready record: FIN, RSV1-3, the opcode
and its name, MASK, the masking key, the payload length and which length
encoding carried it (RFC 6455 section 5.2: 7 bits, 7+16 or 7+64), and the
payload as hex and text, cut to ``preview`` bytes. Frames compressed with
permessage-deflate (RSV1) are shown as sent, compressed, and also inflated by a
decompressor of the dissector's own, so the reader sees the text too.
``handshake_record()`` does the same for the opening handshake, with the
``Sec-WebSocket-Accept`` value computed from the key.

The page (``ws13 serve``) renders these records; ``format_frame()`` and
``format_handshake()`` render them for a terminal (``ws13 connect --trace``,
``ws13 serve -v``).
"""

from __future__ import annotations

import zlib
from typing import Any

from ..frames import Close
from ..http11 import Request, Response
from ..utils import accept_key

__all__ = [
    "OPCODE_NAMES",
    "PREVIEW",
    "Dissector",
    "escape",
    "format_frame",
    "format_frame_line",
    "format_handshake",
    "handshake_record",
    "hexdump",
]

#: Opcode names (RFC 6455 section 5.2); others are reserved.
OPCODE_NAMES = {0x0: "CONT", 0x1: "TEXT", 0x2: "BINARY", 0x8: "CLOSE", 0x9: "PING", 0xA: "PONG"}
#: Payload bytes shown as hex and text in a record; the rest is cut.
PREVIEW = 256
#: Largest inflated frame the dissector decompresses before it gives up on a
#: direction (the connection's own max_size already bounds real messages).
MAX_INFLATE = 16 * 2**20
_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 section 7.2.2, removed by the sender
_CONTROL_CHARS = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)} | {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
}
_C1_CHARS = {i: f"\\x{i:02x}" for i in range(0x80, 0xA0)}


def escape(text: str) -> str:
    """Escape terminal control characters (C0, DEL, C1) so a message can't drive the terminal."""
    return text.translate(_CONTROL_CHARS).translate(_C1_CHARS)


def _text_preview(data: bytes) -> str | None:
    """``data`` as text when it is UTF-8 (a cut multi-byte character at the end is fine)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3 and exc.reason == "unexpected end of data":
            return data[: exc.start].decode("utf-8")
        return None


class _Inflater:
    """One direction's permessage-deflate decompressor, for display only."""

    def __init__(self) -> None:
        # 15 bits inflates whatever window the sender used; keeping context
        # works whether or not the sender resets its own between messages.
        self.decoder: Any = zlib.decompressobj(-15)
        self.in_message = False
        self.broken = False

    def inflate(self, data: bytes, fin: bool, preview: int) -> tuple[bytes, int] | None:
        """The first ``preview`` inflated bytes and the inflated length, or None if broken."""
        if self.broken:
            return None
        if fin:
            data += _TAIL
        try:
            if self.decoder.eof:  # a sender's BFINAL block ended the stream
                self.decoder = zlib.decompressobj(-15)
            shown = self.decoder.decompress(data, preview)
            size = len(shown)
            while self.decoder.unconsumed_tail:
                size += len(self.decoder.decompress(self.decoder.unconsumed_tail, 2**16))
                if size > MAX_INFLATE:
                    raise zlib.error(f"more than {MAX_INFLATE} bytes")
        except zlib.error:
            self.broken = True
            return None
        return shown, size


class Dissector:
    """Dissects the frames of one connection; keeps the state compression needs.

    Args:
        preview: payload bytes kept as hex and text per frame.
    """

    def __init__(self, preview: int = PREVIEW) -> None:
        self.preview = preview
        self._inflaters = {True: _Inflater(), False: _Inflater()}

    def frame(self, from_client: bool, header: bytes, payload: bytes) -> dict[str, Any]:
        """The record of one frame; ``header`` is raw, ``payload`` unmasked as sent."""
        b0, b1 = header[0], header[1]
        code7 = b1 & 0x7F
        encoding = "7" if code7 < 126 else "7+16" if code7 == 126 else "7+64"
        masked = bool(b1 & 0x80)
        opcode = b0 & 0x0F
        fin, rsv1 = bool(b0 & 0x80), bool(b0 & 0x40)
        shown = payload[: self.preview]
        record: dict[str, Any] = {
            "type": "frame",
            "from": "client" if from_client else "server",
            "fin": fin,
            "rsv1": rsv1,
            "rsv2": bool(b0 & 0x20),
            "rsv3": bool(b0 & 0x10),
            "opcode": opcode,
            "opcode_name": OPCODE_NAMES.get(opcode, "RESERVED"),
            "mask": masked,
            "masking_key": header[-4:].hex() if masked else None,
            "length": len(payload),
            "length_code": code7,
            "length_encoding": encoding,
            "header_hex": header.hex(),
            "payload_hex": shown.hex(),
            "payload_text": _text_preview(shown) if opcode != 0x8 else None,
            "truncated": len(payload) > len(shown),
        }
        if opcode == 0x8 and payload:
            try:
                close = Close.parse(payload)
                record["close_code"], record["close_reason"] = close.code, close.reason
            except Exception:  # a bad Close payload is shown as hex only
                pass
        inflater = self._inflaters[from_client]
        if opcode in (0x1, 0x2):
            inflater.in_message = rsv1
        if opcode < 8 and inflater.in_message:
            result = inflater.inflate(payload, fin, self.preview)
            if result is None:
                record["inflated_error"] = "cannot inflate (stream out of sync or too large)"
            else:
                data, size = result
                record["inflated_length"] = size
                record["inflated_hex"] = data.hex()
                record["inflated_text"] = _text_preview(data)
            if fin:
                inflater.in_message = False
        return record

    def skip(self, from_client: bool, header: bytes) -> None:
        """Note a frame that isn't dissected (its record would be dropped).

        A compressed frame skipped leaves that direction's inflater out of
        sync with the sender's compressor, so it stops inflating.
        """
        opcode, rsv1, fin = header[0] & 0x0F, bool(header[0] & 0x40), bool(header[0] & 0x80)
        inflater = self._inflaters[from_client]
        if opcode in (0x1, 0x2):
            inflater.in_message = rsv1
        if opcode < 8 and inflater.in_message:
            inflater.broken = True
            if fin:
                inflater.in_message = False


def handshake_record(request: Request | None, response: Response | None) -> dict[str, Any]:
    """The record of an opening handshake, with the expected ``Sec-WebSocket-Accept``."""
    record: dict[str, Any] = {"type": "handshake"}
    key = None
    if request is not None:
        record["request"] = {
            "line": f"GET {request.path} HTTP/1.1",
            "headers": [list(item) for item in request.headers.items()],
        }
        key = request.headers.get("Sec-WebSocket-Key")
    if response is not None:
        record["response"] = {
            "line": f"HTTP/1.1 {response.status_code} {response.reason_phrase}",
            "headers": [list(item) for item in response.headers.items()],
        }
    if key is not None:
        expected = accept_key(key)
        record["key"] = key
        record["accept_expected"] = expected
        if response is not None:
            received = response.headers.get("Sec-WebSocket-Accept")
            record["accept_received"] = received
            record["accept_ok"] = received == expected
    return record


# -- terminal rendering -------------------------------------------------------


def hexdump(data: bytes, width: int = 16) -> list[str]:
    """Classic hex dump lines: offset, hex bytes, printable ASCII."""
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset : offset + width]
        hex_part = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:04x}  {hex_part:<{width * 3 - 1}}  {text}")
    return lines


def _flag(value: bool) -> str:
    return "1" if value else "0"


def format_frame_line(record: dict[str, Any], outgoing: bool) -> str:
    """One line per frame, for logs: ``> TEXT fin=1 rsv=000 mask=0 len=5 (7) 'hi'``."""
    arrow = ">" if outgoing else "<"
    rsv = _flag(record["rsv1"]) + _flag(record["rsv2"]) + _flag(record["rsv3"])
    line = (
        f"{arrow} {record['opcode_name']} fin={_flag(record['fin'])} rsv={rsv} "
        f"mask={_flag(record['mask'])} len={record['length']} ({record['length_encoding']})"
    )
    if "close_code" in record:
        line += f" code={record['close_code']} reason={record['close_reason']!r}"
    elif record.get("inflated_text") is not None:
        line += f" inflated={record['inflated_length']} {escape(repr(record['inflated_text']))}"
    elif record["payload_text"] is not None and record["opcode"] != 0x2:
        line += " " + escape(repr(record["payload_text"]))
    elif record["payload_hex"]:
        line += " " + bytes.fromhex(record["payload_hex"])[:32].hex(" ")
    if record["truncated"]:
        line += " ..."
    return line


def format_frame(record: dict[str, Any], outgoing: bool) -> str:
    """A frame dissected over several lines with a hex dump, for ``--trace``."""
    who = "sent" if outgoing else "received"
    lines = [
        f"{'>' if outgoing else '<'} {record['opcode_name']} frame {who}, "
        f"{record['length']} bytes payload",
        f"    FIN={_flag(record['fin'])} RSV1={_flag(record['rsv1'])} "
        f"RSV2={_flag(record['rsv2'])} RSV3={_flag(record['rsv3'])} "
        f"opcode=0x{record['opcode']:x} ({record['opcode_name']})",
        f"    MASK={_flag(record['mask'])}"
        + (f" masking-key={record['masking_key']}" if record["mask"] else ""),
        f"    payload length={record['length']} "
        f"({record['length_encoding']}-bit encoding, 7-bit field={record['length_code']})",
        f"    header: {bytes.fromhex(record['header_hex']).hex(' ')}",
    ]
    if "close_code" in record:
        lines.append(f"    close code={record['close_code']} reason={record['close_reason']!r}")
    payload = bytes.fromhex(record["payload_hex"])
    if payload:
        cut = f", first {len(payload)} bytes" if record["truncated"] else ""
        lines.append(f"    payload{' (compressed)' if record['rsv1'] else ''}{cut}:")
        lines.extend("      " + line for line in hexdump(payload))
    if "inflated_length" in record:
        lines.append(f"    inflated: {record['inflated_length']} bytes")
        lines.extend("      " + line for line in hexdump(bytes.fromhex(record["inflated_hex"])))
    elif "inflated_error" in record:
        lines.append(f"    inflated: {record['inflated_error']}")
    return "\n".join(lines)


def format_handshake(record: dict[str, Any]) -> str:
    """The opening handshake, request then response, for ``--trace``."""
    lines: list[str] = []
    for part, arrow in (("request", ">"), ("response", "<")):
        message = record.get(part)
        if message is None:
            continue
        lines.append(f"{arrow} {message['line']}")
        lines.extend(f"{arrow} {name}: {escape(value)}" for name, value in message["headers"])
        lines.append(arrow)
    if "accept_expected" in record:
        verdict = ""
        if "accept_ok" in record:
            verdict = " (matches)" if record["accept_ok"] else " (MISMATCH)"
        lines.append(
            f"= Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) = {record['accept_expected']}"
            + verdict
        )
    return "\n".join(lines)
