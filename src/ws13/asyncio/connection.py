"""The asyncio glue around the sans-I/O core, shared by clients and servers.

``Connection`` is an ``asyncio.Protocol``: bytes from the transport go into
``self.protocol``; the bytes it wants written go to the transport; complete
messages go to a bounded queue that ``recv()`` reads. Timeouts, keepalive and
flow control live here, never in the core. Its base class ``Sender``
(``sending.py``) has the sends most connections never make: fragmented
messages and frames pre-encoded for broadcasting.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import Any, cast

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidState,
)
from ..frames import CloseCode, Fragment, Frame, Opcode
from ..http11 import Request, Response
from ..protocol import CLOSED, OPEN, SEND_EOF, Event, Protocol, State
from .largereader import LARGE_READ, LargeFrameReader
from .messages import MessageQueue, fresh
from .pinging import Pinger
from .sending import Data, write_buffers
from .streaming import Streamer, decoded
from .timers import Deadlines, Keepalive

__all__ = ["FREE_IDLE_AFTER", "Connection", "Data"]


class Connection(Pinger):
    """A WebSocket connection driven by asyncio.

    You get one from ``ws13.asyncio.connect()`` or as the argument of a
    ``serve()`` handler; you don't build it yourself.

    Args:
        protocol: the sans-I/O core, ``ClientProtocol`` or ``ServerProtocol``.
        keepalive: the pings that keep it alive, shared by the connections of
            a server (``ping_interval`` / ``ping_timeout`` of ``serve()`` and
            ``connect()``); ``None`` sends none.
        closing: the ``close_timeout`` deadline (seconds to wait for the
            closing handshake and the TCP close before aborting), shared by
            the connections of a server; ``None`` waits without limit.
        idle: the ``FREE_IDLE_AFTER`` deadlines, shared by the connections of
            a server: a connection with an extension (permessage-deflate)
            lets its state go after that long without a message; ``None``
            keeps it until the next keepalive ping.
        max_queue: received messages buffered before reading pauses (``None``
            for no limit).
        write_limit: write-buffer high-water mark in bytes; ``send()`` waits
            while the buffer is above it until it drains below a quarter of it.

    Counters, read by ``ws13.metrics`` at scrape time (and by anyone):
    ``bytes_received``, ``bytes_sent``, ``messages_received``,
    ``messages_sent`` (the core's, plus the pre-encoded frames of
    ``send_frame_nowait()``) and ``write_pauses``, how many times the write
    buffer went above ``write_limit``.
    """

    # Slots keep an idle connection small; "__dict__" (created only when
    # used) still lets applications attach their own attributes.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_closed",
        "_closing",
        "_closing_started",
        "_handler_paused",
        "_idle",
        "_lost",
        "_messages",
        "_on_message",
        "_paused_writing",
        "_streamer",
        "debug",
        "logger",
        "loop",
        "protocol",
        "transport",
        "write_limit",
        "write_pauses",
    )

    def __init__(
        self,
        protocol: Protocol,
        *,
        keepalive: Keepalive[Connection] | None = None,
        closing: Deadlines[Connection] | None = None,
        idle: Deadlines[Connection] | None = None,
        max_queue: int | None = 16,
        write_limit: int = 2**16,
    ) -> None:
        self.protocol = protocol
        self._keepalive = keepalive
        # The payload of the keepalive ping waiting for its pong, if any.
        self._keepalive_ping: bytes | None = None
        self._closing = closing
        self._idle = idle
        self.write_limit = write_limit
        self.logger = protocol.logger
        self.debug = protocol.debug
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        #: Seconds between the last ping and its pong, 0 before the first one.
        self.latency = 0.0
        self._messages = MessageQueue(self, self.loop, max_queue)
        self._paused_writing = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # Pings waiting for their pong: payload -> (waiter, time sent); the
        # waiter is None for keepalive pings. Made by the first ping.
        self._pings: dict[bytes, tuple[asyncio.Future[float] | None, float]] | None = None
        # Made by the first wait_closed() while the connection is open: most
        # connections never need it.
        self._closed: asyncio.Future[None] | None = None
        self._lost = False
        # Whether the close_timeout deadline runs (the closing handshake started).
        self._closing_started = False
        # Created on the first fragmented send: most connections never need it.
        self._send_lock: asyncio.Lock | None = None
        self._fragmenting = False
        # set_message_handler(): the callback that takes messages instead of
        # the queue, and whether reading is paused because its sends filled
        # the write buffer.
        self._on_message: Callable[[str | bytes], object] | None = None
        self._handler_paused = False
        # Made by the first recv_streaming(), which turns streaming on.
        self._streamer: Streamer | None = None
        # The core counts bytes and messages; the frames written around it
        # (send_frame_nowait) are counted here, and so are write pauses.
        self._frames_sent = 0
        self._frames_bytes = 0
        self.write_pauses = 0

    # -- properties ----------------------------------------------------------

    @functools.cached_property
    def id(self) -> uuid.UUID:
        """A random identifier (UUID 4), made when first read: for logs."""
        return uuid.uuid4()

    @property
    def bytes_received(self) -> int:
        """Bytes read: the HTTP handshake and frame headers included (TLS: the plaintext)."""
        return self.protocol.bytes_received

    @property
    def bytes_sent(self) -> int:
        """Bytes written: the HTTP handshake and frame headers included (TLS: the plaintext)."""
        return self.protocol.bytes_sent + self._frames_bytes

    @property
    def messages_received(self) -> int:
        """Whole messages received (control frames aren't messages)."""
        return self.protocol.messages_received

    @property
    def messages_sent(self) -> int:
        """Whole messages sent, pre-encoded frames included."""
        return self.protocol.messages_sent + self._frames_sent

    def counters(self) -> tuple[int, int, int, int, int]:
        """``(bytes_received, bytes_sent, messages_received, messages_sent,
        write_pauses)`` in one call (``ws13.metrics`` reads them so)."""
        protocol = self.protocol
        return (
            protocol.bytes_received,
            protocol.bytes_sent + self._frames_bytes,
            protocol.messages_received,
            protocol.messages_sent + self._frames_sent,
            self.write_pauses,
        )

    @property
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED."""
        return self.protocol.state

    @property
    def ping_interval(self) -> float | None:
        """Seconds between keepalive pings; ``None`` when there are none."""
        return None if self._keepalive is None else self._keepalive.interval

    @property
    def close_timeout(self) -> float | None:
        """Seconds to wait for the closing handshake and the TCP close; then abort."""
        return None if self._closing is None else self._closing.delay

    @close_timeout.setter
    def close_timeout(self, value: float | None) -> None:
        # This connection only: it leaves the server's shared deadlines. A
        # deadline already running restarts with the new value.
        closing = closing_deadlines(value)  # a bad value raises before any change
        started = self._closing_started
        if started and self._closing is not None:
            self._closing.discard(self)
        self._closing = closing
        self._closing_started = False
        if started:
            self._start_close_timer()

    @property
    def ping_timeout(self) -> float | None:
        """Seconds a keepalive ping waits for its pong before closing with 1011."""
        return None if self._keepalive is None else self._keepalive.timeout

    @property
    def request(self) -> Request | None:
        """The opening handshake request."""
        return getattr(self.protocol, "request", None)

    @property
    def response(self) -> Response | None:
        """The opening handshake response."""
        return getattr(self.protocol, "response", None)

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol negotiated during the opening handshake, if any."""
        return getattr(self.protocol, "subprotocol", None)

    @property
    def close_code(self) -> int | None:
        """The close code received, 1006 without one; ``None`` until CLOSED."""
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; ``None`` until CLOSED."""
        return self.protocol.close_reason

    @property
    def local_address(self) -> Any:
        """The local socket address (``(host, port)`` for TCP, a path for Unix)."""
        return None if self.transport is None else self.transport.get_extra_info("sockname")

    @property
    def remote_address(self) -> Any:
        """The peer's socket address."""
        return None if self.transport is None else self.transport.get_extra_info("peername")

    # -- receiving -----------------------------------------------------------

    async def recv(self, decode: bool | None = None) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        ``decode=False`` returns text as ``bytes`` (its UTF-8, re-encoded:
        the core checks and decodes text as it arrives), ``decode=True``
        returns binary as ``str`` (decoded as UTF-8: UnicodeDecodeError if
        it isn't, and the message is gone). A fragmented message comes
        whole, also on a connection where ``recv_streaming()`` is used.
        Cancelling ``recv()`` loses nothing: the next call returns the
        message.

        Raises ConnectionClosedOK after a normal close and ConnectionClosedError
        otherwise, once every message received before the close was read;
        ConcurrencyError if another coroutine is already in ``recv()`` or
        ``recv_streaming()``, or if ``recv_streaming()`` left a message
        unfinished (call it again for the rest).
        """
        messages = self._messages
        if messages._queue:
            message = messages.get_nowait()
            if message is not None:
                if decode is None and self._streamer is None:
                    return message  # type: ignore[return-value]
                return await self._finish(message, decode)
        if self._on_message is not None:
            raise ConcurrencyError("messages go to the handler given to set_message_handler()")
        # MessageQueue.wait() inlined, as in __anext__: a call per message.
        if messages._exc is not None:
            raise fresh(messages._exc)
        waiter = messages._waiter
        if waiter is not None and not waiter.done():
            raise ConcurrencyError("another coroutine is already waiting for the next message")
        waiter = messages._waiter = self.loop.create_future()
        try:
            # Never a Fragment: Streamer.arrived() joins them for this waiter.
            message = await waiter
        except asyncio.CancelledError:
            messages.cancelled(waiter)
            raise
        except ConnectionClosed as exc:
            raise fresh(exc) from exc.__cause__  # see MessageQueue.close()
        if decode is None:
            return message  # type: ignore[return-value]
        return decoded(message, decode)  # type: ignore[arg-type]

    async def _finish(self, message: str | bytes | Fragment, decode: bool | None) -> str | bytes:
        """What ``recv()`` returns for ``message``: joined if it is a fragment, decoded."""
        if type(message) is Fragment:
            assert self._streamer is not None  # only streaming makes fragments
            message = await self._streamer.join(message)
        return decoded(message, decode)  # type: ignore[arg-type]

    def recv_streaming(self, decode: bool | None = None) -> AsyncIterator[str | bytes]:
        """Iterate over the pieces of the next message as they arrive.

        ``async for piece in ws.recv_streaming(): ...`` yields ``str`` pieces
        for a text message (each decoded as it arrives: a character cut
        between two frames comes whole in the later piece) and ``bytes`` for
        a binary one, a piece per frame, and stops after the message's last
        frame. A frame of 16 KiB or more (``LARGE_FRAME``) that doesn't
        arrive in one read comes as a piece per read, so a large message
        sent in one frame (as websockets and Node's ws send them) streams
        too; a smaller one is one piece. ``decode`` as in ``recv()``; with
        ``decode=True`` binary is decoded incrementally.

        The first call turns streaming on for this connection, for good:
        from then on each piece is queued as it arrives (each counts toward
        ``max_queue``) instead of once the message is whole; ``recv()`` and
        ``async for`` still return whole messages. ``max_size`` still
        bounds the whole message: past it the connection fails with 1009
        and the iteration raises ConnectionClosedError. Messages already
        whole in the queue when streaming starts come as one piece.

        Leaving the loop before the last piece (``break``, cancellation)
        keeps the rest: the next ``recv_streaming()`` continues that
        message, and ``recv()`` raises ConcurrencyError until it has.
        Raises what ``recv()`` raises.
        """
        streamer = self._streamer
        if streamer is None:
            streamer = self._streamer = Streamer(self)
            self.protocol.stream_fragments = True
            self.protocol.stream_large_frames = True
        return streamer.stream(decode)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """Iterate over messages until a normal close (an error close raises)."""
        return self

    async def __anext__(self) -> str | bytes:
        # recv() inlined: this runs once per message of every `async for`.
        messages = self._messages
        if messages._queue:
            message = messages.get_nowait()
            if message is not None:
                if self._streamer is None:
                    return message  # type: ignore[return-value]
                return await self._finish(message, None)
        # MessageQueue.wait() inlined.
        if messages._exc is not None:
            if isinstance(messages._exc, ConnectionClosedOK):
                raise StopAsyncIteration
            raise fresh(messages._exc)
        waiter = messages._waiter
        if waiter is not None and not waiter.done():
            raise ConcurrencyError("another coroutine is already waiting for the next message")
        if self._on_message is not None:
            raise ConcurrencyError("messages go to the handler given to set_message_handler()")
        waiter = messages._waiter = self.loop.create_future()
        try:
            # Never a Fragment: Streamer.arrived() joins them for this waiter.
            return await waiter  # type: ignore[return-value]
        except asyncio.CancelledError:
            messages.cancelled(waiter)
            raise
        except ConnectionClosedOK as exc:
            exc.__traceback__ = None  # see MessageQueue.close()
            raise StopAsyncIteration from None
        except ConnectionClosed as exc:
            raise fresh(exc) from exc.__cause__

    def set_message_handler(self, handler: Callable[[str | bytes], object] | None) -> None:
        """Have ``handler(message)`` called with each message instead of queueing it.

        The lower-level callback API, for the last microseconds per message:
        ``handler`` runs from the transport's ``data_received()``, without a
        task switch, a future or a queue. It must not block; to answer, it
        calls ``send_nowait()``. Messages already queued are passed to it at
        once, in order. While a handler is set, ``recv()`` and ``async for``
        raise ConcurrencyError, and reading pauses whenever the write buffer
        is above ``write_limit`` (resuming below a quarter of it), so a peer
        that sends without reading can't grow the buffer by more than what
        one read brings. An exception from ``handler`` is logged and closes
        the connection with 1011; ConnectionClosed (from ``send_nowait()``
        once closing) is not logged; after either, later messages are
        dropped. ``None`` sends messages to the queue again. A server's
        connection still closes when its ``serve()`` handler returns: that
        handler awaits ``wait_closed()``.

        Raises ConcurrencyError if a coroutine is waiting in ``recv()``.
        """
        waiter = self._messages._waiter
        if handler is not None and waiter is not None and not waiter.done():
            raise ConcurrencyError("a coroutine is waiting in recv()")
        if handler is not None and self._streamer is not None:
            self._streamer.check_handler()
        self._on_message = handler
        if handler is None:
            self._unpause_for_handler()
            return
        messages = self._messages
        while self._on_message is handler:
            message = messages.get_nowait()
            if message is None:
                break
            self._call_handler(message)
        if self._paused_writing:
            self._pause_for_handler()

    def _call_handler(self, message: str | bytes | Fragment) -> None:
        assert self._on_message is not None
        if isinstance(message, Fragment):
            assert self._streamer is not None  # only streaming makes fragments
            whole = self._streamer.collect(message)
            if whole is None:
                return
            message = whole
        try:
            self._on_message(message)
        except Exception as exc:
            self._handler_failed(exc)

    def _handler_failed(self, exc: Exception) -> None:
        """The message handler raised ``exc``: drop later messages; close unless closing."""
        self._on_message = _drop
        if isinstance(exc, ConnectionClosed):
            # Its send_nowait() found the connection closing: normal, as
            # ConnectionClosed escaping a serve() handler is.
            return
        self.logger.error("message handler failed", exc_info=exc, extra={"websocket": self})
        if self.protocol.state is OPEN:
            self.protocol.send_close(CloseCode.INTERNAL_ERROR)
            self._flush()
            # Read the peer's Close even if the handler's sends filled the buffer.
            self.resume_receiving()

    def _unpause_for_handler(self) -> None:
        # Reading stays paused if the queue paused it too.
        if self._handler_paused:
            self._handler_paused = False
            if not self._messages.paused:
                self.resume_receiving()

    def _pause_for_handler(self) -> None:
        # Not once closing: the peer's Close must still be read.
        if not self._handler_paused and self.protocol.state is OPEN:
            self._handler_paused = True
            self.pause_receiving()

    # -- sending -------------------------------------------------------------

    async def send(
        self,
        message: Data | Iterable[Data] | AsyncIterable[Data],
        text: bool | None = None,
        compress: bool = True,
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        ``text=True`` sends bytes-like as a Text frame (they must be UTF-8:
        not checked, the peer fails the connection otherwise), ``text=False``
        sends a ``str``'s UTF-8 as a Binary frame. ``compress=False`` sends
        this message uncompressed even with permessage-deflate on (e.g. data
        already compressed, or secrets next to attacker-chosen text: BREACH).

        An iterable or async iterable of str (or of bytes-like) sends one
        fragmented message, a frame per item (``text`` applies to it too).
        Waits while the write buffer is above ``write_limit``. Raises
        ConnectionClosed once the connection is closing, TypeError for
        anything else.
        """
        kind = type(message)
        if (kind is str or kind is bytes) and not self._fragmenting:
            self.send_nowait(message, text, compress)  # type: ignore[arg-type]
            if self._paused_writing:
                await self._drain()
            return
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            if self._fragmenting:
                # A fragmented send() is under way: this message goes after it.
                assert self._send_lock is not None
                async with self._send_lock:
                    pass
            self.send_nowait(message, text=text, compress=compress)
            if self._paused_writing:
                await self._drain()
        elif isinstance(message, Mapping):
            # A dict is iterable too: without this its keys went out as fragments.
            raise TypeError("message must be str or bytes-like, not a mapping")
        elif isinstance(message, (Iterable, AsyncIterable)):
            if self.protocol.state is not OPEN:
                raise self._closed_exc()
            await self._send_fragments(message, text, compress)  # type: ignore[arg-type]
        else:
            raise TypeError(f"message must be str or bytes-like, not {kind.__name__}")

    def send_nowait(self, message: Data, text: bool | None = None, compress: bool = True) -> None:
        """Send a whole message now, without waiting: ``str`` as text, bytes-like as binary.

        ``text`` and ``compress`` as in ``send()``. For code that can't
        await, such as a ``set_message_handler()`` callback. What the socket
        doesn't take at once stays in the write buffer, which this never
        waits for: a connection whose messages come to a handler stops
        reading while that buffer is above ``write_limit``, so an echo can't
        be made to buffer without bound; elsewhere, ``await send()`` (or
        ``wait_writable()``) is what keeps it bounded. Raises
        ConnectionClosed once the connection is closing, ConcurrencyError
        during a fragmented ``send()``, TypeError for anything but str and
        bytes-like.
        """
        if self._fragmenting:
            raise ConcurrencyError("send_nowait() during a fragmented send()")
        try:
            if text is None and compress:
                buffers = self.protocol.send_message(message)
            else:
                buffers = self.protocol.send_message(message, text=text, compress=compress)
        except InvalidState:
            raise self._send_refused() from None
        transport = self.transport
        if len(buffers) == 1 and transport is not None:
            transport.write(buffers[0])
        else:
            self._write_buffers(buffers)
        idle = self._idle
        if idle is not None and self.protocol.extensions and self not in idle:
            idle.add(self)

    def _free_idle_memory(self) -> None:
        """``FREE_IDLE_AFTER`` seconds after a message: let the extensions'
        state go (a busy connection so rebuilds it at most that often)."""
        self.protocol.free_idle_memory()

    # -- closing -------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Do the closing handshake with ``code`` and ``reason``; wait for the TCP close.

        Waits at most ``close_timeout`` for the peer, then aborts. Calling it
        on a closing or closed connection just waits.
        """
        self._start_closing(code, reason)
        await self.wait_closed()

    def _start_closing(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """``close()`` without the wait: the close timeout runs, nothing awaits."""
        if self.protocol.state is OPEN:
            if self._fragmenting:
                # A half-sent fragmented message can't be finished: fail it.
                self.protocol.fail(CloseCode.INTERNAL_ERROR, "close during fragmented send")
            else:
                self.protocol.send_close(code, reason)
            self._flush()
        # A full message queue may have paused reading: the peer's Close frame
        # (or its TCP close) would then never be read and close() would hang
        # until close_timeout. Read again; the closing peer sends little more.
        self.resume_receiving()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        if self._lost:
            return
        if self._closed is None:
            self._closed = self.loop.create_future()
        await asyncio.shield(self._closed)

    # -- the glue ------------------------------------------------------------

    def _flush(self) -> None:
        """Write what the core queued (see ``_write``)."""
        self._write(self.protocol.data_to_send())

    def _write(self, writes: list[bytes]) -> None:
        """Write what the core gave; close the transport at SEND_EOF; start
        the close timeout once the core expects the TCP close."""
        transport = self.transport
        if writes and transport is not None:
            end = len(writes)
            if SEND_EOF in writes:
                end = writes.index(SEND_EOF)
            if end:
                self._write_buffers(writes if end == len(writes) else writes[:end])
            if end < len(writes):
                # Section 7.1.1: the server closes TCP first. transport.close()
                # flushes the buffer before closing the socket; nothing after
                # SEND_EOF is written.
                transport.close()
        if not self._closing_started and self.protocol.close_expected():
            self._start_close_timer()

    def _write_buffers(self, buffers: list[bytes]) -> None:
        transport = self.transport
        if transport is not None:
            write_buffers(transport, buffers)

    def _send_refused(self) -> Exception:
        """What a send raises when the core refuses it (InvalidState)."""
        if self.protocol.state is OPEN:
            return ConcurrencyError("a fragmented message is in progress")
        return self._closed_exc()

    def _start_close_timer(self) -> None:
        if self._closing is not None and not self._lost:
            self._closing_started = True
            self._closing.add(self)

    def _abort(self) -> None:
        if self.transport is not None:
            if self.debug:
                self.logger.debug("! timed out waiting for TCP close")
            self.transport.abort()

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is str or type(event) is bytes:
                if self._on_message is not None:
                    self._call_handler(event)
                else:
                    self._messages.put(event)
            else:
                self._handle_event(event)

    def _handle_event(self, event: object) -> None:
        """Handle an event other than a message: a fragment, a control frame, the handshake."""
        if type(event) is Fragment:
            # Streaming is on (recv_streaming()).
            if self._on_message is not None:
                self._call_handler(event)
            else:
                assert self._streamer is not None
                self._streamer.arrived(event)
        elif isinstance(event, Frame):
            if event.opcode is Opcode.PONG:
                self._acknowledge_pings(event.data)
        elif isinstance(event, (Request, Response)):
            self._handle_handshake(event)

    def _handle_handshake(self, event: Request | Response) -> None:
        """Handle the opening handshake event; subclasses override."""

    def pause_receiving(self) -> None:
        """Stop reading from the network (the receive queue is full)."""
        if self.transport is not None:
            self.transport.pause_reading()
        if self._keepalive is not None:
            # The pong may be sitting unread behind the messages the
            # application hasn't consumed: we are the slow side, not the
            # peer. Stop waiting for it; pings resume with reading.
            self._keepalive.answered(self)

    def resume_receiving(self) -> None:
        """Read from the network again."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports (used by `ws13 serve`) have
        # the Transport methods but don't subclass asyncio.Transport. No
        # TCP_NODELAY either: asyncio and uvloop set it on every TCP socket
        # (a test checks), and a setsockopt per connection costs a system call.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(self.write_limit, self.write_limit // 4)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        events, writes = protocol.receive(data)
        if writes:
            self._write(writes)
        if not events:
            # Nothing whole yet: perhaps the start of a large frame (a read
            # that also brought messages leaves it to the next read).
            if protocol.large_frame_remaining >= LARGE_READ:
                self._read_large()
            return
        idle = self._idle
        if idle is not None and protocol.extensions and self not in idle:
            idle.add(self)
        # _handle_events() inlined for the common case: only messages arrived.
        messages = self._messages
        for event in events:
            if type(event) is str or type(event) is bytes:
                handler = self._on_message
                if handler is not None:
                    # _call_handler() inlined: a call costs more than the rest.
                    try:
                        handler(event)
                    except Exception as exc:
                        self._handler_failed(exc)
                    continue
                waiter = messages._waiter
                if waiter is not None and not waiter.done():
                    # MessageQueue.put() inlined: a reader is waiting.
                    messages._waiter = None
                    waiter.set_result(event)
                else:
                    messages.put(event)
            else:
                self._handle_event(event)

    def _read_large(self) -> None:
        """Read the rest of a large frame straight into its payload (see
        ``largereader``), unless reading is paused: resuming restarts
        ``data_received()``."""
        transport = self.transport
        if transport is not None and transport.is_reading():
            transport.set_protocol(LargeFrameReader(self))

    def _received(self) -> None:
        """What ``data_received()`` does once the core has the data."""
        self._flush()
        self._handle_events(self.protocol.events_received())

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._received()
        return None

    def pause_writing(self) -> None:
        self._paused_writing = True
        self.write_pauses += 1
        if self._on_message is not None:
            self._pause_for_handler()

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._unpause_for_handler()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        protocol = self.protocol
        if protocol.state is not CLOSED:
            protocol.receive_eof()
            protocol.data_to_send()
            self._handle_events(protocol.events_received())
        self.transport = None
        if self._closing_started and self._closing is not None:
            self._closing.discard(self)
        if self._idle is not None:
            self._idle.discard(self)
        if self._keepalive is not None:
            self._keepalive.stop(self)
        closed = self._closed_exc()
        self._messages.close(closed)
        if self._on_message is not None:
            # No message comes after this. A handler such as ws.send_nowait
            # refers to the connection: dropping it breaks that cycle.
            self._on_message = _drop
        if self._pings is not None:
            for waiter, _ in self._pings.values():
                if waiter is not None and not waiter.done():
                    waiter.set_exception(closed)
                    # Mark it retrieved: the caller of ping() may not await it.
                    waiter.exception()
            self._pings = None
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        self._lost = True
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self.debug:
            self.logger.debug("= connection closed: %s", closed)


#: Seconds without a message after which a connection lets the state of its
#: extensions go (``Protocol.free_idle_memory()``): permessage-deflate's zlib
#: state, about 31 KiB a connection with the defaults, which the next message
#: rebuilds (a compressor takes about 6 µs to make; the decompressor comes
#: back primed with its window, so compression goes on as before).
FREE_IDLE_AFTER = 2.0


def idle_deadlines() -> Deadlines[Connection]:
    """The ``idle`` deadlines of ``Connection``: ``FREE_IDLE_AFTER`` seconds."""
    return Deadlines(FREE_IDLE_AFTER, Connection._free_idle_memory)


def check_close_timeout(close_timeout: float | None) -> None:
    """Raise ValueError unless ``close_timeout`` is positive or None."""
    if close_timeout is not None and not close_timeout > 0:
        raise ValueError(f"close_timeout must be positive (or None), not {close_timeout}")


def closing_deadlines(close_timeout: float | None) -> Deadlines[Connection] | None:
    """The ``closing`` deadlines of ``Connection`` for a ``close_timeout``."""
    check_close_timeout(close_timeout)
    return None if close_timeout is None else Deadlines(close_timeout, Connection._abort)


def _drop(message: str | bytes) -> None:
    """The message handler after the one given failed: the connection is closing."""
