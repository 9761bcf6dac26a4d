"""Messages from frames in the sans-I/O core: reassembly, UTF-8, streaming.

``MessageAssembler``, a base class of ``Protocol``, takes each whole data
frame the frame reader (``Protocol._parse_frames``) hands it: a message in
one frame becomes one event (``str`` for text, ``bytes`` for binary); the
frames of a fragmented message (RFC 6455 section 5.4) are put together and
delivered as one event when the last arrives, or, with ``stream_fragments``
on, each handed out as a ``Fragment`` as it arrives. Text is UTF-8-checked as
it arrives, to fail fast (section 8.1, Autobahn 6.4.*).
"""

from __future__ import annotations

import codecs
import logging

from ._accel import apply_mask, utf8_check
from .frames import Fragment, Frame, Opcode
from .largeframes import LargeFrameReceiver
from .utils import rotate_mask
from .writer import COPY_MAX, OP_CONT, OP_TEXT

__all__ = ["MessageAssembler", "payload_of"]

# Shared and never mutated, so an idle connection doesn't own an empty list:
# the start of a fragmented message assigns a new list.
NO_PARTS: list[bytes] = []

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def payload_of(data: bytes | bytearray, head: int, start: int, end: int, masked: int) -> bytes:
    """``data[start:end]``, part of the payload that starts at ``head``, unmasked.

    The masking key is the 4 bytes before ``head`` when ``masked``. Large
    pieces are read through a memoryview, so that a buffered frame is copied
    once, not sliced out of the buffer first; released at once, since the
    buffer can't be resized while exported (CPython frees it anyway, a
    tracing GC wouldn't).
    """
    mask = b""
    if masked:
        mask = bytes(data[head - 4 : head])
        if start > head:
            mask = rotate_mask(mask, start - head)
    if end - start <= COPY_MAX:
        piece = data[start:end]
        return apply_mask(piece, mask) if masked else bytes(piece)
    with memoryview(data) as view, view[start:end] as large:
        return apply_mask(large, mask) if masked else bytes(large)


class MessageAssembler(LargeFrameReceiver):
    """What ``Protocol`` does with data frames (see the module docstring).

    Its own attributes are set by ``Protocol.__init__``; the others
    annotated here are ``Protocol``'s, in its ``__slots__``.
    """

    __slots__ = (
        "_msg_opcode",
        "_msg_parts",
        "_msg_size",
        "_partial_done",
        "_stream_decoder",
        "_utf8",
        "stream_fragments",
    )

    debug: bool
    messages_received: int
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    _msg_opcode: int
    _msg_parts: list[bytes]
    _msg_size: int
    _partial_done: int
    _stream_decoder: codecs.IncrementalDecoder | None
    _utf8: int
    #: Whether the frames of a fragmented message are handed out as they
    #: arrive (``Fragment`` events) instead of as one message at the end. A
    #: message in one frame is one ``str`` or ``bytes`` event either way.
    stream_fragments: bool

    def _check_partial_text(self, data: bytes | bytearray, b0: int, head: int, end: int) -> None:
        """UTF-8-check the part of a text frame received so far.

        Autobahn 6.4.*: an endpoint should fail on invalid UTF-8 as soon as it
        sees it, not after the rest of the frame arrived.
        """
        done = self._partial_done
        if end - head <= done:
            return
        if not self._msg_opcode:
            self._msg_opcode = OP_TEXT
            self._msg_parts = []
        piece = payload_of(data, head, head + done, end, self._expect_mask)
        state = utf8_check(piece, self._utf8)
        if state < 0:
            self._fail_utf8("invalid byte sequence")
            return
        self._utf8 = state
        self._msg_parts.append(piece)
        self._msg_size += end - head - done
        self._partial_done = end - head

    def _receive_data_frame(self, b0: int, opcode: int, payload: bytes, length: int) -> None:
        fin = b0 & 0x80
        if self.debug:
            self.logger.debug("< %s", Frame(Opcode(opcode), payload, bool(fin)))
        partial = self._partial_done
        self._partial_done = 0
        if fin and not self._msg_opcode:
            # The common case: a whole message in one frame.
            if opcode == OP_TEXT:
                try:
                    self._queue_event(payload.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    self._fail_utf8(exc.reason)
            else:
                self._queue_event(payload)
            return
        if not self._msg_opcode:
            self._msg_opcode = opcode
            self._msg_parts = []
        self._msg_size += length - partial
        self._msg_parts.append(payload)
        text = self._msg_opcode == OP_TEXT
        if text:
            # Each fragment is checked as it arrives (fail fast), the whole
            # message decoded once at the end.
            state = utf8_check(payload, self._utf8)
            if state < 0 or (fin and state):
                self._fail_utf8("invalid byte sequence" if state < 0 else "unexpected end of data")
                return
            self._utf8 = state
        if self.stream_fragments and (opcode == OP_CONT or not fin):
            self._stream_fragment(fin, text)
            return
        if fin:
            message = b"".join(self._msg_parts)
            self._queue_event(message.decode("utf-8") if text else message)
            self._msg_opcode = 0
            self._msg_parts = NO_PARTS
            self._msg_size = 0

    def _stream_fragment(self, fin: int, text: bool) -> None:
        """Hand out what arrived of a fragmented message (``stream_fragments``)."""
        data = b"".join(self._msg_parts)
        if fin:
            # A whole message, as the messages handed out whole are counted.
            self.messages_received += 1
            self._msg_opcode = 0
            self._msg_parts = NO_PARTS
            self._msg_size = 0
        else:
            self._msg_parts = []
        if not text:
            self._queue_event(Fragment(data, bool(fin)))
            return
        # Checked above: decoding can't fail, and a character cut between
        # frames comes whole with the later piece.
        decoder = self._stream_decoder
        if decoder is None:
            decoder = self._stream_decoder = _utf8_decoder()
        self._queue_event(Fragment(decoder.decode(data, bool(fin)), bool(fin)))
        if fin:
            self._stream_decoder = None
