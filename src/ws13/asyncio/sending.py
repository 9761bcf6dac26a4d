"""The sending side of ``Connection`` beyond one whole message.

``Sender``, the base class of ``Connection``, holds what most connections
never use, apart from the hot paths of ``send()`` / ``send_nowait()``, which
stay in ``connection.py`` beside the glue they share:

* fragmented messages: ``send()`` of an iterable or async iterable, one frame
  per item, with a lock so that other sends wait until its last frame is out;
* the broadcaster's interface (``writable``, ``send_frame_nowait()``,
  ``send_frames_nowait()``, ``send_joined_nowait()``, ``wait_writable()``),
  where one frame is encoded once and written to many connections;
* waiting for the write buffer to drain, and the ConnectionClosed that a send
  on a closed connection raises.

``write_buffers()``, several buffers in one system call where the transport
keeps flow control with them, is the write of every send here and of
``ws13.uvicorn``'s protocol.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from .._accel import encode_text
from ..exceptions import ConnectionClosed, InvalidState
from ..frames import CloseCode, Frame, Opcode
from ..protocol import OPEN, Protocol, Side

__all__ = ["Data", "Sender", "write_buffers"]

Data = str | bytes | bytearray | memoryview

#: Whether ``transport.writelines()`` keeps flow control: not with the selector
#: transport of CPython 3.12.0-3.12.8 and 3.13.0-3.13.1 (gh-127655, it never
#: calls ``pause_writing``), where large messages are copied into one frame.
#: Nor is it used on a closing transport: the same transport's
#: ``writelines()`` doesn't check that the connection was lost (gh-136234)
#: and could watch a socket about to be closed; ``write()`` does.
_WRITELINES_OK = not (
    (3, 12, 0) <= sys.version_info[:3] < (3, 12, 9)
    or (3, 13, 0) <= sys.version_info[:3] < (3, 13, 2)
)


def write_buffers(transport: asyncio.WriteTransport, buffers: list[bytes]) -> None:
    """Write buffers in order: several (a large frame's header and payload, a
    pong and a message...) in one ``writelines()``, one system call, where it
    keeps flow control (see ``_WRITELINES_OK``); else joined, in one ``write()``."""
    if len(buffers) == 1:
        transport.write(buffers[0])
    elif _WRITELINES_OK and not transport.is_closing():
        transport.writelines(buffers)
    else:
        transport.write(b"".join(buffers))


class Sender(asyncio.Protocol):
    """What ``Connection`` sends besides whole messages (see the module docstring).

    Its own attributes are set by ``Connection.__init__``; the others
    annotated here are ``Connection``'s, in its ``__slots__``.
    """

    __slots__ = ("_drain_waiter", "_fragmenting", "_frames_bytes", "_frames_sent", "_send_lock")

    protocol: Protocol
    transport: asyncio.Transport | None
    loop: asyncio.AbstractEventLoop
    debug: bool
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    _paused_writing: bool
    _drain_waiter: asyncio.Future[None] | None
    _send_lock: asyncio.Lock | None
    _fragmenting: bool
    _frames_bytes: int
    _frames_sent: int

    def _flush(self) -> None:
        """Write what the core queued (``Connection._flush``)."""
        raise NotImplementedError

    def _write_buffers(self, buffers: list[bytes]) -> None:
        """Write buffers in order, in one system call (``Connection._write_buffers``)."""
        raise NotImplementedError

    async def _send_fragments(
        self,
        fragments: Iterable[Data] | AsyncIterable[Data],
        as_text: bool | None = None,
        compress: bool = True,
    ) -> None:
        """Send one message, a frame per item; ``as_text`` and ``compress`` as in ``send()``."""
        if self._send_lock is None:
            self._send_lock = asyncio.Lock()
        async with self._send_lock:
            self._fragmenting = True
            sent_first = False
            try:
                iterator = (
                    aiter(fragments)
                    if isinstance(fragments, AsyncIterable)
                    else _as_async(fragments)
                )
                # Whether the items are str, and whether the frames are Text.
                kind: bool | None = None
                text: bool | None = None
                # Each fragment waits for the next one to learn whether it is
                # the last (FIN), so a generator can be sent lazily.
                pending: bytes | None = None
                async for item in iterator:
                    if isinstance(item, str):
                        item_text, data = True, encode_text(item)
                    elif isinstance(item, (bytes, bytearray, memoryview)):
                        item_text, data = False, bytes(item)
                    else:
                        raise TypeError("fragments must be str or bytes-like")
                    if kind is None:
                        kind = item_text
                        text = kind if as_text is None else as_text
                    elif kind != item_text:
                        raise TypeError("all fragments of a message must be str or all bytes")
                    if pending is not None:
                        assert text is not None
                        self._send_fragment(
                            pending, text, compress, first=not sent_first, fin=False
                        )
                        sent_first = True
                        await self._drain_if_needed()
                    pending = data
                if pending is not None:
                    assert text is not None
                    self._send_fragment(pending, text, compress, first=not sent_first, fin=True)
                    await self._drain_if_needed()
            except BaseException:
                # A message can't be left half-sent: fail the connection.
                if sent_first and self.protocol.state is OPEN:
                    self.protocol.fail(CloseCode.INTERNAL_ERROR, "error while sending fragments")
                    self._flush()
                raise
            finally:
                self._fragmenting = False

    def _send_fragment(
        self, data: bytes, text: bool, compress: bool, *, first: bool, fin: bool
    ) -> None:
        protocol = self.protocol
        if protocol.state is not OPEN:
            raise self._closed_exc()
        if not first:
            protocol.send_continuation(data, fin=fin)
        elif text:
            protocol.send_text(data, fin=fin, compress=compress)
        else:
            protocol.send_binary(data, fin=fin, compress=compress)
        self._flush()

    async def _drain_if_needed(self) -> None:
        if self._paused_writing:
            await self._drain()

    # -- pre-encoded frames, for broadcasting -------------------------------

    @property
    def writable(self) -> bool:
        """True while OPEN and the write buffer is under ``write_limit``.

        A broadcaster writes with ``send_frame_nowait()`` while this is true and
        queues (or drops) otherwise, then calls ``wait_writable()``.
        """
        return self.protocol.state is OPEN and not self._paused_writing

    def send_frame_nowait(self, frame: bytes) -> None:
        """Write a complete frame that was encoded once for many connections.

        ``frame`` is a whole unmasked data frame with FIN set and the RSV bits
        clear, e.g. ``encode_header(0x81, len(payload), None) + payload`` for
        text. Only a server sends unmasked frames, so this is for server-side
        connections. With permessage-deflate negotiated the frame goes out
        uncompressed, which RFC 7692 section 6 allows, so the same bytes suit
        every connection. No backpressure is applied: check ``writable``.

        Raises ConnectionClosed unless OPEN; InvalidState on a client
        connection or while a fragmented message is being sent.
        """
        self._check_pre_encoded()
        if self.debug or self.protocol.tracer is not None:
            self._trace_pre_encoded(frame)
        if self.transport is not None:
            self._frames_sent += 1
            self._frames_bytes += len(frame)
            self.transport.write(frame)

    def send_frames_nowait(self, frames: list[bytes]) -> None:
        """Write several pre-encoded frames (see ``send_frame_nowait``) in one write.

        A broadcaster that queued frames for a connection while it was busy
        sends them together: one system call instead of one per frame. The
        two buffers of a large frame from ``ws13.writer.broadcast_frame()``
        (header, payload) count as one frame here.
        """
        self._check_pre_encoded()
        if self.debug or self.protocol.tracer is not None:
            for frame in _whole_frames(frames):
                self._trace_pre_encoded(frame)
        if self.transport is not None:
            self._frames_sent += len(frames)
            self._frames_bytes += sum(map(len, frames))
        self._write_buffers(frames)

    def send_joined_nowait(self, data: bytes, frames: int) -> bool:
        """Write ``frames`` pre-encoded frames joined in one buffer, if writable now.

        ``data`` is ``b"".join(...)`` of whole frames as ``send_frame_nowait()``
        takes them, joined once and written to many connections: the hub's
        fan-out writes a channel's messages of one flush to every idle
        subscriber so. ``frames`` counts them for ``messages_sent``; it is
        not checked.

        Unlike the other ``*_nowait`` sends it doesn't raise when the
        connection can't take the bytes now: it writes nothing and returns
        False when not ``writable`` (not OPEN, or the write buffer above
        ``write_limit``) or while a fragmented message is being sent, so a
        broadcaster's loop over thousands of connections makes one call per
        connection and queues (or drops) for the rest. Returns True once
        written. Raises InvalidState on a client connection.
        """
        protocol = self.protocol
        if (
            protocol.state is not OPEN
            or self._paused_writing
            or self._fragmenting
            or protocol.sending_fragments
        ):
            return False
        if protocol.side is not Side.SERVER:
            raise InvalidState("only a server sends pre-encoded, unmasked frames")
        if self.debug or protocol.tracer is not None:
            for frame in _split_frames(data):
                self._trace_pre_encoded(frame)
        transport = self.transport
        if transport is None:
            return False
        self._frames_sent += frames
        self._frames_bytes += len(data)
        transport.write(data)
        return True

    def _check_pre_encoded(self) -> None:
        protocol = self.protocol
        if protocol.state is not OPEN:
            raise self._closed_exc()
        if protocol.side is not Side.SERVER:
            raise InvalidState("only a server sends pre-encoded, unmasked frames")
        if self._fragmenting or protocol.sending_fragments:
            raise InvalidState("a fragmented message is in progress")

    def _trace_pre_encoded(self, frame: bytes) -> None:
        length = frame[1] & 0x7F
        head = 2 if length < 126 else 4 if length == 126 else 10
        if self.debug:
            opcode = Opcode(frame[0] & 0x0F)
            self.logger.debug("> %s [pre-encoded]", Frame(opcode, frame[head:]))
        if self.protocol.tracer is not None:
            self.protocol.tracer(True, frame[:head], frame[head:])

    async def wait_writable(self) -> None:
        """Wait until the write buffer is under ``write_limit``.

        Raises ConnectionClosed if the connection closes first.
        """
        if self.protocol.state is not OPEN:
            raise self._closed_exc()
        if self._paused_writing:
            await self._drain()

    async def _drain(self) -> None:
        if self._drain_waiter is None or self._drain_waiter.done():
            self._drain_waiter = self.loop.create_future()
        await asyncio.shield(self._drain_waiter)
        if self.transport is None:
            raise self._closed_exc()

    def _closed_exc(self) -> ConnectionClosed:
        return self.protocol.close_exc


def _whole_frames(buffers: list[bytes]) -> list[bytes]:
    """The frames in ``buffers``, a header alone joined to its payload (for tracing)."""
    frames = []
    i = 0
    while i < len(buffers):
        frame = buffers[i]
        length = frame[1] & 0x7F
        head = 2 if length < 126 else 4 if length == 126 else 10
        if head > 2 and len(frame) == head and i + 1 < len(buffers):
            frame += buffers[i + 1]
            i += 1
        frames.append(frame)
        i += 1
    return frames


def _split_frames(data: bytes) -> list[bytes]:
    """The whole frames joined in ``data`` (for tracing)."""
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        length = data[pos + 1] & 0x7F
        head = 2
        if length == 126:
            length, head = int.from_bytes(data[pos + 2 : pos + 4]), 4
        elif length == 127:
            length, head = int.from_bytes(data[pos + 2 : pos + 10]), 10
        frames.append(data[pos : pos + head + length])
        pos += head + length
    return frames


async def _as_async(iterator: Iterable[Data]) -> AsyncIterator[Data]:
    for item in iterator:
        yield item
