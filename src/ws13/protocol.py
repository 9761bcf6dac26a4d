"""The sans-I/O WebSocket state machine shared by clients and servers.

Feed it bytes with ``receive_data()`` / ``receive_eof()``; then take the
bytes it wants written from ``data_to_send()`` and what it received from
``events_received()``. It does the RFC 6455 chores itself: it answers Ping with
Pong, echoes Close, and fails the connection on bad input with the right close
code. No I/O happens here, so any event loop, thread or test can drive it.

Events are complete messages, ``str`` for text and ``bytes`` for binary
(fragments are reassembled and UTF-8 is checked here, ``assembler.py``; or
handed out as ``Fragment`` events as they arrive, with ``stream_fragments``),
and ``Frame`` objects for the control frames Ping, Pong and Close, plus the
handshake ``Request`` or ``Response`` on the side that receives one.
"""

from __future__ import annotations

import codecs
import enum
import logging
from typing import Union

from ._accel import MaskKeys, parse_messages
from .assembler import NO_PARTS, MessageAssembler, payload_of
from .corebase import count_bytes, count_messages
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from .extensions.base import Extension
from .extensions.permessage_deflate import PerMessageDeflate, max_compressed_size
from .frames import Close, CloseCode, Fragment, Frame, Opcode, is_valid_close_code
from .http11 import Request, Response
from .largeframes import LARGE_FRAME, LARGE_FRAME_MAX
from .writer import (
    COPY_MAX,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    SEND_EOF,
    FrameTracer,
)

__all__ = [
    "COPY_MAX",
    "INFLATE_ERRORS",
    "LARGE_FRAME",
    "LARGE_FRAME_MAX",
    "SEND_EOF",
    "Event",
    "FrameTracer",
    "Protocol",
    "Side",
    "State",
]

#: The close codes that make ``ConnectionClosedOK`` (else ``ConnectionClosedError``).
OK_CLOSE_CODES = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD}
)

# Shared and never mutated, so an idle connection doesn't own an empty list:
# set_extensions() assigns a new one.
_NO_EXTENSIONS: list[Extension] = []

Event = Union[str, bytes, Fragment, Frame, Request, Response]

#: What ``parse_messages`` raises from a compressed message it consumed
#: (see ``Protocol._fail_inflated``): the connection fails, it doesn't crash.
INFLATE_ERRORS = (PayloadTooBig, ProtocolError, UnicodeDecodeError)


class Side(enum.IntEnum):
    SERVER = 0
    CLIENT = 1


class State(enum.IntEnum):
    """The connection state (RFC 6455 sections 4 and 7)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


SERVER, CLIENT = Side.SERVER, Side.CLIENT
CONNECTING, OPEN, CLOSING, CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED

_CONTROL = {OP_CLOSE: Opcode.CLOSE, OP_PING: Opcode.PING, OP_PONG: Opcode.PONG}


class Protocol(MessageAssembler):
    """The WebSocket protocol state machine for one side of one connection.

    Args:
        side: ``Side.CLIENT`` or ``Side.SERVER``; clients mask their frames and
            servers require masked frames (RFC 6455 section 5.1).
        state: the initial state; OPEN skips the opening handshake.
        max_size: the largest message (and frame) accepted, in bytes; ``None``
            lifts the limit. A larger one fails the connection with 1009.
            With permessage-deflate it bounds the decompressed message; a
            compressed frame may take up to ``max_compressed_size()`` of what
            is left on the wire (DEFLATE's worst case, about 1.14x).
        logger: where to log; defaults to ``ws13.client`` / ``ws13.server``.
    """

    # Slots: an idle server connection must stay small (a few KiB in all).
    __slots__ = (
        "_buffer",
        "_deflate",
        "_discarding",
        "_msg_rsv",
        "_need",
        "_rsv_allowed",
        "_state",
        "_tracer",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "debug",
        "extensions",
        "handshake_exc",
        "logger",
        "parser_exc",
        "side",
    )

    def __init__(
        self,
        side: Side,
        *,
        state: State = OPEN,
        max_size: int | None = 2**20,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self.side = side
        self._state = state
        self.max_size = max_size
        # The traffic counters (see ws13.corebase).
        self.bytes_received = 0
        self.bytes_sent = 0
        self.messages_received = 0
        self.messages_sent = 0
        if logger is None:
            logger = logging.getLogger("ws13.client" if side is CLIENT else "ws13.server")
        self.logger = logger
        self.debug = logger.isEnabledFor(logging.DEBUG)

        #: Close frame received from the peer, when there was one.
        self.close_rcvd: Close | None = None
        #: Close frame sent to the peer, when there was one.
        self.close_sent: Close | None = None
        #: Whether the peer started the closing handshake.
        self.close_rcvd_then_sent: bool | None = None
        #: The exception that made the core fail the connection, if any.
        self.parser_exc: Exception | None = None
        #: The exception that made the opening handshake fail, if any.
        self.handshake_exc: Exception | None = None
        self.eof_sent = False
        self._tracer: FrameTracer | None = None

        # Made when something is queued (see FrameWriter._queue_event()).
        self._events: list[Event] | None = None
        self._writes: list[bytes] | None = None
        # The bytes of an incomplete frame; None when there are none (an
        # idle connection keeps no empty bytearray: 56 bytes).
        self._buffer: bytearray | None = None
        # The buffer size at which the frame at its head is complete, when
        # nothing needs to look at that frame before (0: parse every read).
        # A large frame arrives in many reads: up to one per TCP segment.
        self._need = 0
        self._discarding = False
        self._init_large()
        self._expect_mask = 0x80 if side is SERVER else 0
        self._mask_next = MaskKeys().next if side is CLIENT else None
        #: Extensions negotiated during the opening handshake.
        self.extensions: list[Extension] = _NO_EXTENSIONS
        self._deflate: PerMessageDeflate | None = None
        # The C fast path's inflate callable: _deflate.decode_message, or None.
        self._inflate = None
        self._encode_message = None
        # Reserved bits that negotiated extensions may set (0x40 = RSV1).
        self._rsv_allowed = 0
        # Whether the message being received had a reserved bit set on its
        # first frame (e.g. compressed): then its text can't be checked early.
        self._msg_rsv = 0
        # The message being reassembled from fragments (RFC 6455 section 5.4).
        self._msg_opcode = 0
        self._msg_parts: list[bytes] = NO_PARTS
        self._msg_size = 0
        # Where UTF-8 validation of a fragmented or partly received text
        # message stands (utils.utf8_check's state: 0 at a character boundary).
        self._utf8 = 0
        # Bytes of the frame at the head of the buffer already UTF-8 checked.
        self._partial_done = 0
        #: See MessageAssembler.stream_fragments.
        self.stream_fragments = False
        self._stream_decoder: codecs.IncrementalDecoder | None = None
        # Whether a fragmented message we send is in progress.
        self._send_fragmented = False
        # The fast paths (see _update_fast_paths); off until OPEN.
        self._fast_send = False
        self._fast_recv = False
        self._update_fast_paths()

    def set_extensions(self, extensions: list[Extension]) -> None:
        """Activate the extensions negotiated in the opening handshake."""
        self.extensions = extensions
        # permessage-deflate alone (what browsers negotiate): whole messages
        # skip the general extension loop and its Frame objects. Not for a
        # subclass, which may override encode() or decode().
        self._deflate = (
            extensions[0]
            if len(extensions) == 1 and type(extensions[0]) is PerMessageDeflate
            else None
        )
        deflate = self._deflate
        self._inflate = None if deflate is None else deflate.decode_message
        self._encode_message = None if deflate is None else deflate.encode_message
        self._rsv_allowed = 0
        for extension in extensions:
            self._rsv_allowed |= extension.rsv_bits
        self._update_fast_paths()

    @property
    def tracer(self) -> FrameTracer | None:
        """Called with every frame received and sent (see ``FrameTracer``).

        For inspectors and ``ws13 connect --trace``. ``None`` (the default)
        keeps the fast paths; setting a tracer leaves them.
        """
        return self._tracer

    @tracer.setter
    def tracer(self, tracer: FrameTracer | None) -> None:
        self._tracer = tracer
        self._update_fast_paths()

    def _update_fast_paths(self) -> None:
        """Decide whether the next data can take the fast paths of ``CoreBase``.

        Both need an OPEN connection with no extension but permessage-deflate
        alone, no tracer and no debug logging; sending also needs no
        fragmented message in progress; receiving needs the C parser and
        nothing buffered or half-received. Called wherever one of these
        changes, so the hot paths test one flag instead of several conditions.
        """
        plain = (
            self._state is OPEN
            and (not self.extensions or self._deflate is not None)
            and self._tracer is None
            and not self.debug
        )
        self._fast_send = plain and not self._send_fragmented
        self._fast_recv = (
            plain
            and parse_messages is not None
            and not self._discarding
            and not self._buffer
            and self._large is None
            and not self._split_left
            and not self._msg_opcode
            and not self._partial_done
        )

    # -- state ---------------------------------------------------------------

    @property
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED."""
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        if self.debug:
            self.logger.debug("= connection is %s", state.name)
        self._state = state
        self._update_fast_paths()

    @property
    def close_code(self) -> int | None:
        """The close code received, 1006 if the connection closed without one,
        or ``None`` while the connection is not CLOSED (RFC 6455 section 7.1.5)."""
        if self._state is not CLOSED:
            return None
        if self.close_rcvd is None:
            return CloseCode.ABNORMAL_CLOSURE
        return self.close_rcvd.code

    @property
    def close_reason(self) -> str | None:
        """The close reason received, or ``None`` while not CLOSED (section 7.1.6)."""
        if self._state is not CLOSED:
            return None
        if self.close_rcvd is None:
            return ""
        return self.close_rcvd.reason

    @property
    def close_exc(self) -> ConnectionClosed:
        """What sending or receiving raises once the connection is closing or
        closed (websockets' name): ``ConnectionClosedOK`` when both Close
        frames carry 1000, 1001 or no code (1005), else
        ``ConnectionClosedError``, caused by ``parser_exc`` if any. A new
        exception on each read."""
        rcvd, sent = self.close_rcvd, self.close_sent
        if (
            rcvd is not None
            and sent is not None
            and rcvd.code in OK_CLOSE_CODES
            and sent.code in OK_CLOSE_CODES
        ):
            return ConnectionClosedOK(rcvd, sent, self.close_rcvd_then_sent)
        exc = ConnectionClosedError(rcvd, sent, self.close_rcvd_then_sent)
        exc.__cause__ = self.parser_exc
        return exc

    def close_expected(self) -> bool:
        """Whether the TCP connection is expected to close soon.

        True once a Close frame was sent or received, or the connection
        failed: the I/O layer should then start its close timeout.
        """
        return self._state is CLOSING or self._state is CLOSED or self.handshake_exc is not None

    def free_idle_memory(self) -> None:
        """Tell the core the connection is idle: free what the next message rebuilds.

        Each negotiated extension frees what it can (permessage-deflate: its
        zlib state, about 31 KiB with the defaults, keeping a copy of the
        window it needs). Cheap, and correct at any moment: a message in
        progress keeps what it uses. ``ws13.asyncio`` calls it at each
        keepalive ping.
        """
        for extension in self.extensions:
            extension.free_idle_memory()

    # -- data in -------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes received from the network.

        Then call ``data_to_send()`` and write what it returns, and call
        ``events_received()`` for what arrived (or use ``receive()`` for the
        three). Bad input never raises here: it fails the connection (see
        ``parser_exc``).
        """
        if self._fast_recv:
            pos = self._parse_fast(data, 0)
            if pos != len(data):
                self._receive_rest(data, pos)
            return
        if self._discarding:
            return
        if self._state is CONNECTING:
            self._receive_handshake_data(data)
            return
        self._receive_rest(data, 0)

    def _receive_rest(self, data: bytes | bytearray, pos: int) -> None:
        """``receive_data`` past the fast path: buffer, parse, frame by frame,
        what C left from ``pos`` on (a partial frame, a fragment, a control
        frame, or everything when the fast path is off)."""
        if self._split_left:
            pos = self._feed_split(data, pos)
            if self._split_left or self._discarding:
                return
        large = self._large
        if large is not None:
            # LargeFrameReceiver._large_received() inlined for the common
            # read: a large frame may arrive in hundreds of TCP segments.
            pos = large.feed(data, pos)
            if large.remaining and self._large_utf8 < 0:
                return  # nothing to check before the frame is complete
            self._large_received(large)
            if self._large is not None:
                return  # all of data belongs to the frame
            # What follows the frame (or nothing, if it failed the connection).
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return
            data = buffer
        pos = self._parse_frames(data, pos)
        if self._discarding:
            self._buffer = None
        elif data is buffer:
            del buffer[:pos]
            if not buffer:
                self._buffer = None
        elif pos < len(data):
            if buffer is None:
                self._buffer = bytearray(data[pos:])
            else:
                buffer += data[pos:]
        self._update_fast_paths()

    def _receive_handshake_data(self, data: bytes | bytearray) -> None:
        """Handle bytes that arrive during the opening handshake (client and server)."""
        raise InvalidState("a Protocol without a handshake must start OPEN")

    def receive_eof(self) -> None:
        """Tell the protocol the peer closed its side of the TCP connection.

        Afterwards the state is CLOSED. Call ``data_to_send()``: a client
        answers with its own EOF.
        """
        if self._state is CLOSED:
            return
        if self._state is OPEN and not self._discarding and self.parser_exc is None:
            self.parser_exc = EOFError("connection closed without a close frame")
        if not self.eof_sent:
            self.send_eof()
        self.state = CLOSED

    def events_received(self) -> list[Event]:
        """Return what arrived since the last call, oldest first."""
        events, self._events = self._events, None
        if events is None:
            return []
        self.messages_received += count_messages(events)
        return events

    def data_to_send(self) -> list[bytes]:
        """Return the bytes to write, in order; ``SEND_EOF`` means close the transport."""
        writes, self._writes = self._writes, None
        if writes is None:
            return []
        self.bytes_sent += count_bytes(writes)
        return writes

    def _parse_frames(self, data: bytes | bytearray, pos: int = 0) -> int:
        """Parse every complete frame in ``data`` from ``pos``; return where it stopped.

        The general loop: every frame the C fast path leaves (or every frame
        in pure Python). It indexes into ``data`` without copying until a
        frame is complete.
        """
        end_data = len(data)
        expect_mask = self._expect_mask
        self._need = 0
        fast = parse_messages is not None
        while end_data - pos >= 2 and not self._discarding:
            if (
                fast
                and not self._msg_opcode
                and not self._partial_done
                and (not self.extensions or self._deflate is not None)
                and self._tracer is None
                and not self.debug
            ):
                # C consumes the whole single-frame messages; the code below
                # handles what it leaves: control frames, fragments, errors.
                pos = self._parse_fast(data, pos)
                # Failing the connection clears the buffer, which may be data.
                if end_data - pos < 2 or self._discarding:
                    break
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length >= 126:
                if length == 126:
                    if end_data - pos < 4:
                        break
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    head = pos + 4
                else:
                    if end_data - pos < 10:
                        break
                    length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                    head = pos + 10
                    if length >> 63:
                        self.fail(CloseCode.PROTOCOL_ERROR, "invalid frame length")
                        break
            opcode = b0 & 0x0F
            # A frame whose start was already UTF-8 checked passed this check then.
            if not self._partial_done and not self._check_header(
                b0, b1, opcode, length, expect_mask
            ):
                break
            if expect_mask:
                head += 4
            end = head + length
            if end > end_data:
                if self.stream_large_frames and self._splits(length):
                    if head > end_data:
                        self._need = head - pos  # the masking key, then stream
                    else:
                        pos = self._start_split(data, b0, head, length)
                    break
                # Uncompressed text is UTF-8-checked as it arrives.
                text = (
                    opcode <= OP_TEXT
                    and (opcode == OP_TEXT or self._msg_opcode == OP_TEXT)
                    and not (b0 & 0x70 or (opcode == OP_CONT and self._msg_rsv))
                )
                if (
                    LARGE_FRAME <= length <= LARGE_FRAME_MAX
                    and self._tracer is None
                    and not self._partial_done
                ):
                    if head <= end_data:
                        pos = self._start_large(data, b0, head, length, text)
                    else:
                        # The masking key is still incomplete.
                        self._need = head - pos
                elif text:
                    self._check_partial_text(data, b0, head, end_data)
                else:
                    # Nothing to check before the frame is complete.
                    self._need = end - pos
                break
            if self._tracer is not None:
                self._trace_received(data, pos, head, end, expect_mask)
            payload = payload_of(data, head, head + self._partial_done, end, expect_mask)
            pos = end
            self._receive_frame(b0, opcode, payload, length)
        return pos

    def _receive_frame(self, b0: int, opcode: int, payload: bytes, length: int) -> None:
        """Handle a whole frame: its first header byte, opcode and unmasked payload."""
        if self.extensions:
            if self._deflate is not None and (b0 == 0xC1 or b0 == 0xC2):
                # FIN and RSV1 on a text or binary frame: a whole compressed
                # message (RSV1 on a continuation is an error that decode()
                # reports).
                self._receive_deflated(opcode, payload)
            else:
                self._receive_extended(b0, opcode, payload, length)
        elif opcode >= 8:
            self._receive_control(opcode, payload)
        else:
            self._receive_data_frame(b0, opcode, payload, length)

    def _parse_fast(self, data: bytes | bytearray, pos: int) -> int:
        """The C parser from ``pos``: where it stopped (the end once it failed the connection)."""
        if self._events is None:
            self._events = []  # the C parser appends to it
        try:
            return parse_messages(  # type: ignore[misc]
                data,
                pos,
                self._expect_mask,
                -1 if self.max_size is None else self.max_size,
                self._events,
                self._inflate,
            )
        except INFLATE_ERRORS as exc:
            self._fail_inflated(exc)
            return len(data)

    def _fail_inflated(self, exc: Exception) -> None:
        """Fail for what ``parse_messages`` raised from a compressed message;
        anything but ``INFLATE_ERRORS`` is raised again."""
        if not isinstance(exc, INFLATE_ERRORS):
            raise exc
        if isinstance(exc, UnicodeDecodeError):
            self._fail_utf8(exc.reason)
        else:
            self._fail_extension(exc)

    def _trace_received(
        self, data: bytes | bytearray, start: int, head: int, end: int, masked: int
    ) -> None:
        assert self._tracer is not None
        self._tracer(False, bytes(data[start:head]), payload_of(data, head, head, end, masked))

    def _receive_extended(self, b0: int, opcode: int, payload: bytes, length: int) -> None:
        """Run a received frame through the negotiated extensions, then handle it."""
        if opcode in (OP_TEXT, OP_BINARY):
            self._msg_rsv = b0 & 0x70
        frame = Frame(
            Opcode(opcode),
            payload,
            bool(b0 & 0x80),
            bool(b0 & 0x40),
            bool(b0 & 0x20),
            bool(b0 & 0x10),
        )
        remaining = None if self.max_size is None else self.max_size - self._msg_size
        try:
            for extension in reversed(self.extensions):
                frame = extension.decode(frame, max_size=remaining)
        except (PayloadTooBig, ProtocolError) as exc:
            self._fail_extension(exc)
            return
        if opcode >= 8:
            self._receive_control(opcode, frame.data)
        else:
            # The part already UTF-8 checked (uncompressed frames only) counts in the size.
            decoded = len(frame.data) + self._partial_done
            self._receive_data_frame(0x80 if frame.fin else 0, opcode, frame.data, decoded)

    def _receive_deflated(self, opcode: int, payload: bytes) -> None:
        """``_receive_extended`` for a whole compressed message with
        permessage-deflate alone: the same checks and errors, no Frame objects."""
        assert self._deflate is not None
        try:
            data = self._deflate.decode_message(payload, self.max_size)
        except (PayloadTooBig, ProtocolError) as exc:
            self._fail_extension(exc)
            return
        self._receive_data_frame(0x80, opcode, data, len(data))

    def _fail_extension(self, exc: PayloadTooBig | ProtocolError) -> None:
        """Fail for an extension's error: 1009 past max_size, else 1002."""
        if isinstance(exc, PayloadTooBig):
            self._fail_too_big(exc)
        else:
            self.parser_exc = exc
            self.fail(CloseCode.PROTOCOL_ERROR, str(exc))

    def _check_header(self, b0: int, b1: int, opcode: int, length: int, expect_mask: int) -> bool:
        """Validate a frame header as soon as it is known; fail and return False if bad."""
        if b0 & 0x70 & ~self._rsv_allowed:
            # Section 5.2: "If a nonzero value is received and none of the
            # negotiated extensions defines the meaning of such a nonzero
            # value, the receiving endpoint MUST _Fail the WebSocket Connection_."
            self.fail(CloseCode.PROTOCOL_ERROR, "reserved bits must be 0")
            return False
        if (b1 & 0x80) != expect_mask:
            # Section 5.1: a server MUST close on an unmasked frame; a client
            # MUST close on a masked one.
            self.fail(CloseCode.PROTOCOL_ERROR, "incorrect masking")
            return False
        if opcode >= 8:
            if opcode not in _CONTROL:
                self.fail(CloseCode.PROTOCOL_ERROR, f"invalid opcode: {opcode:#x}")
                return False
            # Section 5.5: "All control frames MUST have a payload length of 125
            # bytes or less and MUST NOT be fragmented."
            if length > 125:
                self.fail(CloseCode.PROTOCOL_ERROR, "control frame too long")
                return False
            if not b0 & 0x80:
                self.fail(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
                return False
            return True
        if opcode > OP_BINARY:
            self.fail(CloseCode.PROTOCOL_ERROR, f"invalid opcode: {opcode:#x}")
            return False
        if opcode == OP_CONT:
            if not self._msg_opcode:
                self.fail(CloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
                return False
        elif self._msg_opcode:
            self.fail(CloseCode.PROTOCOL_ERROR, "expected a continuation frame")
            return False
        max_size = self.max_size
        if max_size is not None and self._msg_size + length > max_size:
            left = max_size - self._msg_size
            # RSV1 with permessage-deflate: compressed (RFC 7692 section 6).
            # max_size bounds its data as it inflates; the wire size, only
            # what is buffered before.
            rsv1 = b0 & 0x40 or (opcode == OP_CONT and self._msg_rsv & 0x40)
            if not rsv1 or not any(isinstance(e, PerMessageDeflate) for e in self.extensions):
                self._fail_too_big(self._msg_size + length)
                return False
            if length > (limit := max_compressed_size(left)):
                self._fail_too_big(
                    f"compressed frame of {length} bytes exceeds max_size={max_size}: "
                    f"at most {limit} bytes may carry the {left} bytes left"
                )
                return False
        return True

    def _fail_too_big(self, size: int | str | PayloadTooBig) -> None:
        """Fail with 1009 for a message over ``max_size``: its size so far,
        what is wrong, or the extension's exception."""
        if isinstance(size, int):
            size = f"message of at least {size} bytes exceeds max_size={self.max_size}"
        self.parser_exc = (
            size
            if isinstance(size, PayloadTooBig)
            else PayloadTooBig(f"{size} (pass a larger max_size, or None, to accept it)")
        )
        self.fail(CloseCode.MESSAGE_TOO_BIG, f"message too big; limit is {self.max_size} bytes")

    def _fail_utf8(self, reason: str) -> None:
        # Section 8.1: "When an endpoint is to interpret a byte stream as UTF-8
        # but finds that the byte stream is not, in fact, a valid UTF-8 stream,
        # that endpoint MUST _Fail the WebSocket Connection_."
        self.parser_exc = ProtocolError(f"invalid UTF-8 in text message: {reason}")
        self.fail(CloseCode.INVALID_DATA, "invalid UTF-8")

    def _receive_control(self, opcode: int, payload: bytes) -> None:
        frame = Frame(_CONTROL[opcode], payload)
        if self.debug:
            self.logger.debug("< %s", frame)
        if opcode == OP_PING:
            # Section 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST
            # send a Pong frame in response, unless it already received a
            # Close frame. ... the "Application data" field of the Ping frame"
            if self._state is OPEN or self._state is CLOSING:
                self._write_frame(0x80 | OP_PONG, payload)
        elif opcode == OP_CLOSE:
            try:
                close = Close.parse(payload)
            except ProtocolError as exc:
                self.parser_exc = exc
                self.fail(CloseCode.PROTOCOL_ERROR, str(exc))
                return
            except UnicodeDecodeError as exc:
                self._fail_utf8(exc.reason)
                return
            self.close_rcvd = close
            if self._state is OPEN:
                # Section 5.5.1: "If an endpoint receives a Close frame and did
                # not previously send a Close frame, the endpoint MUST send a
                # Close frame in response. ... typically echoing the status code
                # it received."
                self.close_rcvd_then_sent = True
                self._send_close(Close(close.code, "") if payload else None)
            # Section 7.1.1: "the server [...] SHOULD close the underlying TCP
            # connection first"; anything after a Close frame is ignored.
            if self.side is SERVER and not self.eof_sent:
                self.send_eof()
            self._discarding = True
            self._buffer = None
        self._queue_event(frame)

    # -- data out ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not OPEN:
            raise InvalidState(f"connection is {self._state.name}; cannot send data")

    def send_continuation(self, data: bytes | bytearray | memoryview, fin: bool) -> None:
        """Send the next fragment of a message started with ``fin=False``."""
        self._check_open()
        if not self._send_fragmented:
            raise InvalidState("no fragmented message is in progress")
        if fin:
            self._send_fragmented = False
            self._update_fast_paths()
            self.messages_sent += 1
        self._write_frame((0x80 if fin else 0) | OP_CONT, bytes(data))

    def send_close(self, code: int | None = None, reason: str = "") -> None:
        """Start the closing handshake with ``code`` and ``reason``.

        With no code the Close frame is empty and the peer sees 1005. The
        reason is at most 123 bytes of UTF-8, so the frame fits in 125 bytes.
        """
        self._check_open()
        if code is None:
            if reason:
                raise ValueError("cannot send a reason without a code")
            close = None
        else:
            if not is_valid_close_code(code):
                raise ValueError(f"invalid close code: {code}")
            close = Close(code, reason)
            if len(close.serialize()) > 125:
                raise ValueError("close reason is longer than 123 bytes once UTF-8 encoded")
        self.close_rcvd_then_sent = False
        self._send_close(close)

    def _send_close(self, close: Close | None) -> None:
        payload = b"" if close is None else close.serialize()
        self.close_sent = Close(CloseCode.NO_STATUS_RCVD, "") if close is None else close
        self._write_frame(0x80 | OP_CLOSE, payload)
        self.state = CLOSING

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the WebSocket connection (RFC 6455 section 7.1.7).

        Sends a Close frame with ``code`` if the connection is open, then
        ignores everything the peer sends. A server also closes the TCP
        connection at once; a client waits for the server to do it.
        """
        if self.parser_exc is None:
            self.parser_exc = ProtocolError(f"{reason} ({code})" if reason else str(code))
        if self._state is OPEN and code != CloseCode.ABNORMAL_CLOSURE:
            self.close_rcvd_then_sent = False
            self._send_close(Close(code, reason[:120]))
        if self._state is not CLOSED and self.side is SERVER and not self.eof_sent:
            self.send_eof()
        if self._state is OPEN:
            self.state = CLOSING
        self._discarding = True
        self._buffer = None
        self._large = None
        self._split_left = 0
        self._msg_parts = NO_PARTS
