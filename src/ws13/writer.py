"""The sending half of the sans-I/O core: frames out.

``FrameWriter``, the base class of ``Protocol``, turns the messages and
control frames the application sends into bytes queued for ``data_to_send()``:
permessage-deflate (or the general extension loop), masking on the client side
(RFC 6455 section 5.3), the tracer. ``Protocol`` keeps what depends on the
connection's state: the closing handshake (``send_close``, ``fail``) and
the end of a fragmented message (``send_continuation``), which changes the
fast paths.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ._accel import build_frame, encode_text
from .exceptions import InvalidState
from .extensions.base import Extension
from .extensions.permessage_deflate import PerMessageDeflate
from .frames import Frame, Opcode
from .utils import MaskKeys, encode_header

__all__ = [
    "COPY_MAX",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "SEND_EOF",
    "FrameTracer",
    "FrameWriter",
]

#: Opcodes as plain ints, for the hot paths (``Opcode`` members compare slower).
OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

#: ``tracer(outgoing, header, payload)`` sees every frame as it crosses the
#: wire: ``header`` is the raw frame header (with the masking key, if any) and
#: ``payload`` the unmasked payload as sent (compressed, if RSV1 says so).
FrameTracer = Callable[[bool, bytes, bytes], None]

#: Returned by ``data_to_send()`` when the transport should be closed
#: (half-closed where the transport supports it) after writing what came before.
SEND_EOF = b""

#: Unmasked payloads larger than this go out as a header and the payload
#: itself, two buffers the transport writes together, rather than copied into
#: one frame: above a few KiB the copy costs more than the extra buffer.
COPY_MAX = 4096


class FrameWriter:
    """What ``Protocol`` sends (see the module docstring).

    Its own attributes are set by ``Protocol.__init__``; the others
    annotated here are ``Protocol``'s, in its ``__slots__``.
    """

    __slots__ = ("_plain_send", "_send_fragmented", "eof_sent")

    debug: bool
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    extensions: list[Extension]
    eof_sent: bool
    _deflate: PerMessageDeflate | None
    _mask_keys: MaskKeys | None
    _tracer: FrameTracer | None
    _writes: list[bytes]
    _send_fragmented: bool
    _plain_send: bool

    def _check_open(self) -> None:
        """Raise InvalidState unless the connection is OPEN (``Protocol._check_open``)."""
        raise NotImplementedError

    def _write_frame(self, first_byte: int, payload: bytes, compress: bool = True) -> None:
        if self.debug:
            # Logged as the application sent it: before compression and masking.
            self.logger.debug(
                "> %s", Frame(Opcode(first_byte & 0x0F), payload, bool(first_byte & 0x80))
            )
        deflate = self._deflate
        if deflate is not None and (first_byte == 0x81 or first_byte == 0x82):
            # A whole message with permessage-deflate alone (see set_extensions).
            compressed = deflate.encode_message(payload, compress)
            if compressed is not None:
                payload = compressed
                first_byte |= 0x40
        elif self.extensions:
            frame = Frame(Opcode(first_byte & 0x0F), payload, bool(first_byte & 0x80))
            for extension in self.extensions:
                frame = extension.encode(frame, compress=compress)
            payload = frame.data
            first_byte = frame.first_byte
        keys = self._mask_keys
        mask = None if keys is None else keys.next()
        if self._tracer is not None:
            self._tracer(True, encode_header(first_byte, len(payload), mask), payload)
        if mask is None and len(payload) > COPY_MAX:
            # A large unmasked payload goes out as its own buffer, not copied.
            self._writes.append(encode_header(first_byte, len(payload), None))
            self._writes.append(payload)
        else:
            self._writes.append(build_frame(first_byte, payload, mask))

    def send_text(self, data: bytes | str, fin: bool = True, *, compress: bool = True) -> None:
        """Send a text frame: the whole message, or its first fragment when ``fin`` is False.

        ``str`` is encoded as UTF-8; ``bytes`` must already be UTF-8.
        ``compress=False`` sends this message uncompressed even when
        permessage-deflate is on.
        """
        self._check_open()
        if self._send_fragmented:
            raise InvalidState("a fragmented message is in progress; send continuations")
        if isinstance(data, str):
            data = encode_text(data)
        if not fin:
            self._send_fragmented = True
            self._plain_send = False
        self._write_frame((0x80 if fin else 0) | OP_TEXT, data, compress)

    def send_binary(
        self, data: bytes | bytearray | memoryview, fin: bool = True, *, compress: bool = True
    ) -> None:
        """Send a binary frame: the whole message, or its first fragment (see ``send_text``)."""
        self._check_open()
        if self._send_fragmented:
            raise InvalidState("a fragmented message is in progress; send continuations")
        if not fin:
            self._send_fragmented = True
            self._plain_send = False
        self._write_frame((0x80 if fin else 0) | OP_BINARY, bytes(data), compress)

    def send_ping(self, data: bytes = b"") -> None:
        """Send a Ping frame; the payload is at most 125 bytes."""
        self._check_open()
        if len(data) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        self._write_frame(0x80 | OP_PING, bytes(data))

    def send_pong(self, data: bytes = b"") -> None:
        """Send an unsolicited Pong frame (a one-way heartbeat); at most 125 bytes."""
        self._check_open()
        if len(data) > 125:
            raise ValueError("a pong payload is at most 125 bytes")
        self._write_frame(0x80 | OP_PONG, bytes(data))

    def send_eof(self) -> None:
        """Ask for the TCP connection to be closed after what is already queued."""
        if self.eof_sent:
            raise InvalidState("EOF was already sent")
        self.eof_sent = True
        self._writes.append(SEND_EOF)
