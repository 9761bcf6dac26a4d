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
from typing import TYPE_CHECKING

from ._accel import CoreBase, build_frame, encode_text
from .exceptions import InvalidState
from .extensions.base import Extension
from .extensions.permessage_deflate import PerMessageDeflate
from .frames import Frame, Opcode
from .utils import encode_header

if TYPE_CHECKING:
    from .protocol import Event

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
    "broadcast_frame",
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
#: (``CoreBase``'s C twin has the same: ``_speedups.COPY_MAX``.)
COPY_MAX = 4096


def broadcast_frame(
    message: str | bytes | bytearray | memoryview,
    *,
    text: bool | None = None,
    deflate: PerMessageDeflate | None = None,
) -> list[bytes]:
    """Encode a whole message once, for many server connections; return its buffers.

    One unmasked frame with FIN set, the same bytes for every server-side
    connection it suits: a server doesn't mask (RFC 6455 section 5.1). One
    buffer, or two (header, payload) when the payload is above
    ``COPY_MAX``, as ``send_message()`` returns them: write them in order.
    A client masks each frame with its own key: this is not for client
    connections. ``str`` goes as text and bytes-like as binary unless
    ``text`` says otherwise, as in ``send_message()``.

    Without ``deflate`` the frame is uncompressed and suits every server
    connection, with permessage-deflate or not (RFC 7692 section 6 lets any
    message go uncompressed). With ``deflate``, a connection's negotiated
    ``PerMessageDeflate`` whose own compressor keeps no context
    (``local_no_context_takeover``: the client accepted
    ``server_no_context_takeover``), the message is compressed once with a
    fresh compressor of the same window bits, settings and threshold: the
    bytes that connection's ``send_message()`` would give, and so the bytes
    for every connection with the same parameters. With context takeover
    each connection's compressor has its own history: it can't share.

    Raises TypeError for anything but str and bytes-like; ValueError for a
    ``deflate`` that keeps context.
    """
    if isinstance(message, str):
        payload = encode_text(message)
        first_byte = 0x80 | (OP_BINARY if text is False else OP_TEXT)
    elif isinstance(message, (bytes, bytearray, memoryview)):
        payload = bytes(message)
        first_byte = 0x80 | (OP_TEXT if text is True else OP_BINARY)
    else:
        raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
    if deflate is not None:
        if not deflate.local_no_context_takeover:
            raise ValueError("a compressor with context takeover can't encode for others")
        fresh = PerMessageDeflate(
            True,
            True,
            deflate.remote_max_window_bits,
            deflate.local_max_window_bits,
            deflate.compress_settings,
            deflate.threshold,
        )
        compressed = fresh.encode_message(payload)
        if compressed is not None:
            payload = compressed
            first_byte |= 0x40  # RSV1: a compressed message (RFC 7692 section 6)
    if len(payload) > COPY_MAX:
        return [encode_header(first_byte, len(payload), None), payload]
    return [build_frame(first_byte, payload, None)]


class FrameWriter(CoreBase):
    """What ``Protocol`` sends (see the module docstring).

    Its own attributes are set by ``Protocol.__init__``; the others
    annotated here are ``Protocol``'s, in its ``__slots__``.
    """

    __slots__ = ("_send_fragmented", "eof_sent")

    debug: bool
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    extensions: list[Extension]
    eof_sent: bool
    _deflate: PerMessageDeflate | None
    _tracer: FrameTracer | None
    _send_fragmented: bool

    def _queue_event(self, event: Event) -> None:
        """Hand ``event`` out with the next ``receive()`` / ``events_received()``."""
        # The lists exist only while they hold something: an idle connection
        # keeps none (two empty lists are 112 bytes per connection).
        if self._events is None:
            self._events = [event]
        else:
            self._events.append(event)

    def _queue_writes(self, writes: list[bytes]) -> None:
        """Hand ``writes`` (a list now the core's) out with the next
        ``receive()``, ``send_message()`` or ``data_to_send()``."""
        if self._writes is None:
            self._writes = writes
        else:
            self._writes += writes

    def _check_open(self) -> None:
        """Raise InvalidState unless the connection is OPEN (``Protocol._check_open``)."""
        raise NotImplementedError

    @property
    def sending_fragments(self) -> bool:
        """Whether a fragmented message is being sent (``send_continuation()`` is next)."""
        return self._send_fragmented

    def _frame(self, first_byte: int, payload: bytes, compress: bool = True) -> list[bytes]:
        """The buffers that send a frame, in order: the one place for the
        framing policy.

        The extensions (permessage-deflate alone without Frame objects, else
        the general loop) transform the frame, a client masks it, the tracer
        and the debug log see it, and a large unmasked payload goes out as
        its own buffer beside the header instead of being copied.
        """
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
                # RFC 7692 section 6: RSV1 marks the first frame of a
                # compressed message.
                first_byte |= 0x40
        elif self.extensions:
            frame = Frame(Opcode(first_byte & 0x0F), payload, bool(first_byte & 0x80))
            for extension in self.extensions:
                frame = extension.encode(frame, compress=compress)
            payload = frame.data
            first_byte = frame.first_byte
        mask_next = self._mask_next
        # Section 5.3: a client masks every frame with a fresh random key.
        mask = None if mask_next is None else mask_next()
        if self._tracer is not None:
            self._tracer(True, encode_header(first_byte, len(payload), mask), payload)
        if mask is None and len(payload) > COPY_MAX:
            # A large unmasked payload goes out as its own buffer, not copied.
            return [encode_header(first_byte, len(payload), None), payload]
        return [build_frame(first_byte, payload, mask)]

    def _write_frame(self, first_byte: int, payload: bytes, compress: bool = True) -> None:
        """Queue a frame for ``data_to_send()``."""
        self._queue_writes(self._frame(first_byte, payload, compress))

    def _send_message(
        self, message: str | bytes | bytearray | memoryview, text: bool | None, compress: bool
    ) -> list[bytes]:
        """``send_message()``'s general path: the reference, and where the C
        twin goes off its fast path."""
        if isinstance(message, str):
            if text is False:
                self.send_binary(encode_text(message), compress=compress)
            else:
                self.send_text(message, compress=compress)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            if text:
                self.send_text(bytes(message), compress=compress)
            else:
                self.send_binary(message, compress=compress)
        else:
            raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
        writes, self._writes = self._writes, None
        return [] if writes is None else writes

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
        if fin:
            self.messages_sent += 1
        else:
            self._send_fragmented = True
            self._fast_send = False
        self._write_frame((0x80 if fin else 0) | OP_TEXT, data, compress)

    def send_binary(
        self, data: bytes | bytearray | memoryview, fin: bool = True, *, compress: bool = True
    ) -> None:
        """Send a binary frame: the whole message, or its first fragment (see ``send_text``)."""
        self._check_open()
        if self._send_fragmented:
            raise InvalidState("a fragmented message is in progress; send continuations")
        if fin:
            self.messages_sent += 1
        else:
            self._send_fragmented = True
            self._fast_send = False
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
        self._queue_writes([SEND_EOF])
