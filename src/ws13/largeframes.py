"""Large frames in the sans-I/O core: received over many reads, copied once.

``LargeFrameReceiver``, a base class of ``Protocol``, takes a data frame of
``LARGE_FRAME`` bytes or more that doesn't arrive in one read. Instead of
waiting in the carry-over buffer to be unmasked whole at the end, its payload
goes to a ``PayloadBuffer`` as it arrives: in C, straight into the ``bytes``
object the message is delivered as. An I/O layer that can read into a buffer
may go further and read the rest of the frame into the payload itself
(``receive_large_buffer()`` / ``large_buffer_updated()``; the asyncio layer's
``LargeFrameReader``). Uncompressed text is UTF-8-checked as it arrives, to
fail fast; the whole frame then goes to ``Protocol._receive_frame`` like any
other.

With ``stream_large_frames`` on (and ``stream_fragments``, which makes
``Fragment`` events), such a frame is not gathered at all: what each read
holds of its payload goes to ``_receive_frame`` as a frame of its own, the
first with the frame's opcode and RSV1, the others as continuations, the last
with its FIN. The message then arrives as it is sent, as if the peer had
fragmented it (RFC 6455 section 5.4 lets an intermediary do just that), and
with permessage-deflate each piece is inflated as it arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._accel import PayloadBuffer, apply_mask
from .exceptions import InvalidState
from .utils import rotate_mask
from .writer import FrameWriter

if TYPE_CHECKING:
    from .extensions.base import Extension
    from .extensions.permessage_deflate import PerMessageDeflate

__all__ = ["LARGE_FRAME", "LARGE_FRAME_MAX", "LargeFrameReceiver"]

#: A frame payload of at least this many bytes that doesn't arrive in one read
#: is unmasked read by read into its own buffer (``PayloadBuffer``): in C,
#: straight into the ``bytes`` it is delivered as, one allocation and one copy
#: per frame instead of two of each (buffer the reads, then unmask the whole).
LARGE_FRAME = 16 * 1024
#: ...up to this size. The C ``PayloadBuffer`` reserves the whole payload when
#: the header arrives (address space only, until written), so a larger frame,
#: possible with ``max_size=None``, is buffered as it arrives instead.
LARGE_FRAME_MAX = 64 * 2**20


class LargeFrameReceiver(FrameWriter):
    """What ``Protocol`` does with large frames (see the module docstring).

    Its own attributes are set by ``Protocol.__init__``; the others
    annotated here are ``Protocol``'s, in its ``__slots__``.
    """

    __slots__ = (
        "_large",
        "_large_b0",
        "_large_utf8",
        "_split_b0",
        "_split_left",
        "_split_mask",
        "stream_large_frames",
    )

    _large: PayloadBuffer | None
    _large_b0: int
    _large_utf8: int
    _deflate: PerMessageDeflate | None
    _expect_mask: int
    _partial_done: int
    extensions: list[Extension]
    _utf8: int
    stream_fragments: bool
    #: Whether a data frame of ``LARGE_FRAME`` bytes or more that doesn't
    #: arrive in one read is handed out read by read (see the module
    #: docstring) instead of whole; it takes ``stream_fragments`` too.
    stream_large_frames: bool

    def _init_large(self) -> None:
        """No large frame being received (``Protocol.__init__``)."""
        # A large frame being gathered (see LARGE_FRAME): its payload so far,
        # its first header byte, and where UTF-8 validation of its text
        # stands (-1: not checked as it arrives).
        self._large = None
        self._large_b0 = 0
        self._large_utf8 = -1
        # A large frame being streamed: the first header byte its next piece
        # goes out with, the payload bytes still to come, the masking key
        # for the next of them (b"" unmasked).
        self._split_b0 = 0
        self._split_left = 0
        self._split_mask = b""
        self.stream_large_frames = False

    def _fail_utf8(self, reason: str) -> None:
        """Fail with 1007 (``Protocol._fail_utf8``)."""
        raise NotImplementedError

    def _receive_frame(self, b0: int, opcode: int, payload: bytes, length: int) -> None:
        """Handle a whole frame (``Protocol._receive_frame``)."""
        raise NotImplementedError

    def _update_fast_paths(self) -> None:
        """Decide whether the next data can take the fast paths
        (``Protocol._update_fast_paths``)."""
        raise NotImplementedError

    def _start_large(
        self, data: bytes | bytearray, b0: int, head: int, length: int, text: bool
    ) -> int:
        """Receive the frame whose payload starts at ``head`` into a
        ``PayloadBuffer``; return the position after what ``data`` held of it."""
        mask = bytes(data[head - 4 : head]) if self._expect_mask else b""
        self._large_b0 = b0
        self._large_utf8 = self._utf8 if text else -1
        large = self._large = PayloadBuffer(length, mask)
        pos = large.feed(data, head)
        # If that failed the connection, the caller discards the rest.
        self._large_received(large)
        return pos

    def _splits(self, length: int) -> bool:
        """Whether an incomplete frame of ``length`` bytes is streamed
        (``stream_large_frames`` on): large, not traced (a tracer sees whole
        frames), not partly checked already, and no extension but
        permessage-deflate, which inflates a piece as a fragment. RFC 6455
        section 5.4: "an intermediary MUST NOT change the fragmentation of a
        message if any reserved bit values are used and the meaning of these
        values is not known to the intermediary"."""
        return (
            self.stream_fragments
            and length >= LARGE_FRAME
            and self._tracer is None
            and not self._partial_done
            and (not self.extensions or self._deflate is not None)
        )

    def _start_split(self, data: bytes | bytearray, b0: int, head: int, length: int) -> int:
        """Stream the frame whose payload starts at ``head`` (``stream_large_frames``);
        return the position after what ``data`` held of it."""
        self._split_b0 = b0
        self._split_left = length
        self._split_mask = bytes(data[head - 4 : head]) if self._expect_mask else b""
        return self._feed_split(data, head)

    def _feed_split(self, data: bytes | bytearray, pos: int) -> int:
        """Hand out what ``data`` holds from ``pos`` of the frame being streamed."""
        size = min(len(data) - pos, self._split_left)
        if not size:
            return pos
        end = pos + size
        mask = self._split_mask
        if mask:
            with memoryview(data) as view, view[pos:end] as piece:
                payload = apply_mask(piece, mask)
            self._split_mask = rotate_mask(mask, size)
        else:
            payload = bytes(data[pos:end])
        self._split_left -= size
        b0 = self._split_b0
        if self._split_left:
            # Not the last piece: no FIN; the next ones are continuations
            # (RFC 7692 section 6.1: RSV1 on the first frame only).
            self._split_b0 = b0 & 0x80
            b0 &= 0x7F
        self._receive_frame(b0, b0 & 0x0F, payload, size)
        return end

    def receive_large_buffer(self) -> memoryview | None:
        """A writable buffer for the next bytes of the large frame being
        received, or None if there is none (see ``LARGE_FRAME``).

        An I/O layer may read into it instead of calling ``receive_data()``
        (``asyncio.BufferedProtocol.get_buffer``), then call
        ``large_buffer_updated()``; it is never longer than what is left of
        the frame, so nothing after it is read.
        """
        large = self._large
        return None if large is None else large.receive_buffer()

    @property
    def large_frame_remaining(self) -> int:
        """Bytes still to come of the large frame being received; 0 if none.

        An I/O layer that can read into a buffer switches to
        ``receive_large_buffer()`` while this is large, and back once it is 0.
        """
        large = self._large
        return 0 if large is None else large.remaining

    def large_buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into the buffer ``receive_large_buffer()`` gave.

        Then call ``data_to_send()`` and ``events_received()`` as after
        ``receive_data()``; once the frame is complete (or the connection
        failed), ``receive_large_buffer()`` returns None.
        """
        large = self._large
        if large is None:
            raise InvalidState("no large frame is being received")
        self.bytes_received += nbytes
        large.written(nbytes)
        self._large_received(large)
        self._update_fast_paths()

    def _large_received(self, large: PayloadBuffer) -> None:
        """Check what arrived of the large frame (failing the connection on
        invalid UTF-8); handle the frame once complete."""
        if self._large_utf8 >= 0:
            # Autobahn 6.4.*: fail on invalid UTF-8 as soon as it arrives.
            # The frame is checked again as a whole (decoded, or checked as
            # a fragment) once complete; this check only fails early.
            state = large.check_utf8(self._large_utf8)
            if state < 0:
                self._fail_utf8("invalid byte sequence")
                return
            self._large_utf8 = state
        if not large.remaining:
            self._large = None
            payload = large.take()
            b0 = self._large_b0
            self._receive_frame(b0, b0 & 0x0F, payload, len(payload))
