"""The threaded glue around the sans-I/O core, shared by clients and servers.

A ``Connection`` owns a connected socket and the core (``self.protocol``).
After the opening handshake a reader thread per connection reads the socket,
feeds the core, writes what the core answers (Pongs, the Close echo) and
queues messages for ``recv()``; application threads send through the core.
A keepalive thread per connection sends Pings when ``ping_interval`` is set.

Locks, always taken in this order, never the other way:

* ``_message_lock``: one message at a time, so a fragmented ``send()`` is
  never interleaved with another message (other senders wait for it);
* ``_send_lock``: one writer of the socket at a time, held from the core call
  that makes the bytes until they are written, so bytes reach the socket in
  the order the core made them (permessage-deflate's shared context needs it);
* ``_core_lock``: around every call into the core, held briefly.

The reader thread never waits for ``_send_lock``: the bytes a read makes the
core answer go to ``_pending`` and whoever holds ``_send_lock`` writes them
before releasing it. A thread blocked in a large ``sendall()`` to a peer that
doesn't read thus never stops this side from reading (two such peers would
otherwise deadlock).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
)
from ..frames import CloseCode, Fragment, Frame, Opcode
from ..http11 import Request, Response
from ..protocol import CLOSED, OPEN, Event, Protocol, State
from .messages import MessageQueue

__all__ = ["Connection", "Data", "MaxQueue"]

Data = str | bytes | bytearray | memoryview
#: ``max_queue``: the high-water mark, or ``(high, low)`` water marks.
MaxQueue = int | None | tuple[int | None, int | None]


#: Bytes read per ``recv()`` system call.
RECV_BUFSIZE = 2**16
#: A large frame with at least this many bytes still to come is read
#: straight into its payload (``Protocol.receive_large_buffer()``).
LARGE_READ = 2**16
#: Buffers smaller than this in all are joined into one ``sendall()``.
JOIN_MAX = 2**16


class Connection:
    """A WebSocket connection driven by threads.

    You get one from ``ws13.sync.client.connect()`` or as the argument of a
    ``ws13.sync.server.serve()`` handler; you don't build it yourself. Every
    method may be called from any thread.

    Args:
        sock: the connected socket (``ssl.SSLSocket`` for TLS).
        protocol: the sans-I/O core, ``ClientProtocol`` or ``ServerProtocol``.
        ping_interval: seconds between keepalive Pings (20); ``None`` sends none.
        ping_timeout: seconds a keepalive Ping waits for its Pong before the
            connection fails with 1011 (20); ``None`` waits without limit.
        close_timeout: seconds to wait for the closing handshake and the TCP
            close, and for a blocked write during ``close()``, before aborting
            the TCP connection (10); ``None`` waits without limit.
        max_queue: received messages (or pieces of fragmented ones) buffered
            before the reader thread stops reading (16), reading again once
            ``recv()`` brought them down to a quarter; ``(high, low)`` sets
            both marks; ``None`` for no limit.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_queue: MaxQueue = 16,
    ) -> None:
        for name, value in (
            ("ping_interval", ping_interval),
            ("ping_timeout", ping_timeout),
            ("close_timeout", close_timeout),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or None), not {value}")
        self.socket = sock
        # Kept: they still tell which connection it was once the socket is closed.
        self._local_address = self._address(sock.getsockname)
        self._remote_address = self._address(sock.getpeername)
        self.protocol = protocol
        # Fragmented messages come as Fragment events, so recv_streaming()
        # can hand them out as they arrive and recv() joins them.
        protocol.stream_fragments = True
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.logger = protocol.logger
        self.debug = protocol.debug
        #: Seconds between the last Ping and its Pong, 0 before the first one.
        self.latency = 0.0
        high, low = max_queue if isinstance(max_queue, tuple) else (max_queue, None)
        self._messages = MessageQueue(high, low)
        self._message_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._core_lock = threading.Lock()
        # What the reader thread got from the core to write while another
        # thread held _send_lock (see the module docstring).
        self._pending: list[bytes] = []
        self._eof_sent = False
        # Pings waiting for their Pong: payload -> (event, time sent, set on close).
        self._pings: dict[bytes, tuple[threading.Event, float, bool]] = {}
        # Why the TCP connection ended without a closing handshake, if it did.
        self._connection_exc: BaseException | None = None
        self._close_timer: threading.Timer | None = None
        self._close_timer_started = False
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        self._keepalive_thread: threading.Thread | None = None

    # -- properties ----------------------------------------------------------

    @property
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING or CLOSED."""
        return self.protocol.state

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
        return self._local_address

    @property
    def remote_address(self) -> Any:
        """The peer's socket address (``None`` if the peer was gone at once)."""
        return self._remote_address

    @staticmethod
    def _address(get: Callable[[], Any]) -> Any:
        try:
            return get()
        except OSError:  # the peer left already
            return None

    # -- context manager and iteration ---------------------------------------

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close with 1000, or 1011 when the block raised."""
        self.close(CloseCode.NORMAL_CLOSURE if exc_type is None else CloseCode.INTERNAL_ERROR)

    def __iter__(self) -> Iterator[str | bytes]:
        """Yield messages until a normal close (an error close raises)."""
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    # -- receiving -----------------------------------------------------------

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Waits up to ``timeout`` seconds (``None``: without limit; 0 or less:
        only a message already received), then raises TimeoutError. A message
        sent in several frames comes whole. ``decode=False`` returns a text
        message as UTF-8 ``bytes``; ``decode=True`` returns a binary one as
        ``str`` (not UTF-8: the connection fails with 1007 and this raises
        ConnectionClosedError).

        Raises ConnectionClosedOK after a normal close and
        ConnectionClosedError otherwise, once every message received before
        the close was read; ConcurrencyError if another thread is in
        ``recv()`` or ``recv_streaming()``.
        """
        try:
            return self._messages.get(timeout, decode)
        except UnicodeDecodeError as exc:
            self._fail_decoding(exc)
            raise AssertionError("unreachable") from None  # _fail_decoding raises

    def recv_streaming(self, decode: bool | None = None) -> Iterator[str | bytes]:
        """Yield the next message piece by piece, as its frames arrive.

        Each frame of a fragmented message is one piece (text pieces are
        whole characters; ``max_size`` still bounds the message), and so is
        each read of a frame of 16 KiB or more once a first iteration has
        started; a smaller message in one frame is one piece. Consume the
        iterator to the end: until then ``recv()`` raises ConcurrencyError.
        ``decode`` and the exceptions are those of ``recv()``.
        """
        # From now on a large frame comes read by read too (the reader
        # thread reads this flag; a bool is set atomically).
        self.protocol.stream_large_frames = True
        try:
            yield from self._messages.get_iter(decode)
        except UnicodeDecodeError as exc:
            self._fail_decoding(exc)

    def _fail_decoding(self, exc: UnicodeDecodeError) -> None:
        """``decode=True`` met a binary message that isn't UTF-8: fail with 1007."""
        self._connection_exc = self._connection_exc or exc
        try:
            self._send_frames(
                lambda p: p.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            )
        except ConnectionClosed:
            pass
        self.wait_closed()
        raise self._closed_exc()

    # -- sending -------------------------------------------------------------

    def send(self, message: Data | Iterable[Data], text: bool | None = None) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        ``text=True`` sends bytes-like (UTF-8, not checked) as text,
        ``text=False`` a str's UTF-8 as binary. An iterable of str (or of
        bytes-like) sends one fragmented message, a frame per item (an
        iterator's items go out as they come, then an empty frame ends the
        message); a Mapping is refused (its keys would go out). Safe from several threads at
        once: each message goes out whole, in turn; sends wait while a
        fragmented message is being sent. Blocks while the socket's buffer is
        full. Raises ConnectionClosed once the connection is closing (after
        waiting for it to close, at most ``close_timeout``), TypeError for
        anything else.
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            with self._message_lock:
                self._send_frames(lambda p: p.send_message(message, text=text))
        elif isinstance(message, Mapping):
            raise TypeError("message must be str or bytes-like, not a mapping")
        elif isinstance(message, Iterable):
            with self._message_lock:
                self._send_fragments(message, text)
        else:
            raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")

    def _send_fragments(self, fragments: Iterable[Data], text: bool | None) -> None:
        # A sequence's last item is known: it carries FIN. An iterator's
        # items go out as they come (a generator can stream a message) and
        # an empty frame carries FIN once it is exhausted.
        last = len(fragments) - 1 if isinstance(fragments, Sequence) else -1
        kind: type | None = None
        sent_first = False
        try:
            for index, item in enumerate(fragments):
                if not isinstance(item, (str, bytes, bytearray, memoryview)):
                    raise TypeError("fragments must be str or bytes-like")
                item_kind = str if isinstance(item, str) else bytes
                if kind is None:
                    kind = item_kind
                elif kind is not item_kind:
                    raise TypeError("all fragments of a message must be str or all bytes")
                self._send_fragment(item, text, first=not sent_first, fin=index == last)
                sent_first = True
            if sent_first and last == -1:
                self._send_fragment(b"", text, first=False, fin=True)
        except ConnectionClosed:
            raise
        except BaseException:
            # A message can't be left half-sent: fail the connection.
            if sent_first:
                self._send_frames(
                    lambda p: p.fail(CloseCode.INTERNAL_ERROR, "error while sending fragments")
                )
            raise

    def _send_fragment(self, data: Data, text: bool | None, *, first: bool, fin: bool) -> None:
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if not first:
            self._send_frames(lambda p: p.send_continuation(payload, fin=fin))
        elif text if text is not None else isinstance(data, str):
            self._send_frames(lambda p: p.send_text(payload, fin=fin))
        else:
            self._send_frames(lambda p: p.send_binary(payload, fin=fin))

    def ping(self, data: Data | None = None, *, ack_on_close: bool = False) -> threading.Event:
        """Send a Ping; return an Event set when its Pong arrives.

        ``data`` (at most 125 bytes; str is UTF-8 encoded) defaults to 4
        random bytes. A Pong answers its Ping and every Ping sent before it
        (RFC 6455 section 5.5.3). ``ack_on_close=True`` also sets the event
        when the connection closes (check ``state`` then). Raises
        ConnectionClosed once closing, ConcurrencyError if a Ping with the
        same data waits for its Pong.
        """
        payload = b""
        if data is not None:
            payload = data.encode() if isinstance(data, str) else bytes(data)
        event = threading.Event()

        def send(protocol: Protocol) -> None:
            nonlocal payload
            if data is None:
                payload = os.urandom(4)
                while payload in self._pings:
                    payload = os.urandom(4)
            elif payload in self._pings:
                raise ConcurrencyError("a ping with the same data is already waiting for its pong")
            protocol.send_ping(payload)
            self._pings[payload] = (event, time.monotonic(), ack_on_close)

        self._send_frames(send)
        return event

    def pong(self, data: Data = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat); at most 125 bytes."""
        payload = data.encode() if isinstance(data, str) else bytes(data)

        self._send_frames(lambda p: p.send_pong(payload))

    # -- closing -------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Do the closing handshake with ``code`` and ``reason``; wait for the TCP close.

        Waits at most ``close_timeout`` for the peer (and for a write blocked
        by a peer that doesn't read), then aborts the TCP connection. During
        a fragmented ``send()`` the connection fails with 1011 instead, as
        that message can't be finished. Calling it on a closing or closed
        connection just waits. ValueError for a code that can't be sent or a
        reason over 123 bytes.
        """
        # The peer's Close must be read even if the message queue is full.
        self._messages.stop_pausing()
        if self.protocol.state is OPEN:
            if not self._send_lock.acquire(
                timeout=-1 if self.close_timeout is None else self.close_timeout
            ):
                # A write is blocked: the peer doesn't read.
                self._abort(TimeoutError("timed out waiting to send the Close frame"))
            else:
                try:
                    with self._core_lock:
                        protocol = self.protocol
                        if protocol.state is OPEN:
                            if protocol.sending_fragments:
                                protocol.fail(
                                    CloseCode.INTERNAL_ERROR, "close during fragmented send"
                                )
                            else:
                                protocol.send_close(code, reason)
                        buffers = self._take_pending(protocol.data_to_send())
                    self._write(buffers)
                except OSError as exc:
                    self._abort(exc)
                finally:
                    self._release_send()
                self._check_close_expected()
        self.wait_closed()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the TCP connection is closed; return whether it is."""
        return self._closed.wait(timeout)

    # -- the glue: writing ----------------------------------------------------

    def _send_frames(self, produce: Callable[[Protocol], list[bytes] | None]) -> None:
        """Have the core make frames (``produce(protocol)`` returns the bytes
        to write, or ``None`` for ``data_to_send()``) and write them, in
        order with every other write.

        Raises ConnectionClosed, after the connection closed, when the core
        refuses (not OPEN) or the socket fails.
        """
        refused = False
        self._send_lock.acquire()
        try:
            with self._core_lock:
                if self.protocol.state is not OPEN:
                    refused = True
                    buffers = self._take_pending([])
                else:
                    made = produce(self.protocol)
                    if made is None:
                        made = self.protocol.data_to_send()
                    buffers = self._take_pending(made)
            self._write(buffers)
        except OSError as exc:
            self._abort(exc)
            refused = True
        finally:
            self._release_send()
        self._check_close_expected()
        if refused:
            self._raise_closed()

    def _take_pending(self, buffers: list[bytes]) -> list[bytes]:
        """What the reader left to write, then ``buffers``; holding ``_core_lock``."""
        if self._pending:
            buffers = self._pending + buffers
            self._pending = []
        return buffers

    def _release_send(self) -> None:
        """Write what the reader left (``_pending``), then release ``_send_lock``.

        The lock is released under ``_core_lock`` with ``_pending`` seen
        empty: a reader that queues after that finds the lock free and writes
        itself; one that queued before is served here. Nothing is left behind.
        """
        try:
            while True:
                with self._core_lock:
                    pending = self._take_pending([])
                    if not pending:
                        self._send_lock.release()
                        return
                try:
                    self._write(pending)
                except OSError as exc:
                    self._abort(exc)
        except BaseException:
            if self._send_lock.locked():
                self._send_lock.release()
            raise

    def _write(self, buffers: list[bytes]) -> None:
        """Write buffers in order, holding ``_send_lock``; an empty one
        (the core's ``SEND_EOF``) shuts the socket's write side."""
        if not buffers or self._eof_sent:
            return
        if len(buffers) > 1 and b"" not in buffers and sum(map(len, buffers)) <= JOIN_MAX:
            buffers = [b"".join(buffers)]
        for data in buffers:
            if not data:
                # Section 7.1.1: the server closes TCP first.
                self._eof_sent = True
                try:
                    self.socket.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            self.socket.sendall(data)

    def _raise_closed(self) -> None:
        """Wait until the connection is closed (the close timer bounds it); raise."""
        self.wait_closed()
        raise self._closed_exc()

    def _closed_exc(self) -> ConnectionClosed:
        exc = self.protocol.close_exc
        if self._connection_exc is not None and not isinstance(exc, ConnectionClosedOK):
            exc.__cause__ = self._connection_exc
        return exc

    def _check_close_expected(self) -> None:
        """Start the ``close_timeout`` timer once the core expects the TCP close."""
        if self._close_timer_started or not self.protocol.close_expected():
            return
        with self._core_lock:
            if self._close_timer_started or self._closed.is_set():
                return
            self._close_timer_started = True
            if self.close_timeout is not None:
                timer = threading.Timer(
                    self.close_timeout,
                    self._abort,
                    (TimeoutError("timed out waiting for the closing handshake"),),
                )
                timer.daemon = True
                self._close_timer = timer
                timer.start()

    def _abort(self, exc: BaseException) -> None:
        """End the TCP connection now: the reader thread sees EOF and cleans up."""
        if self._closed.is_set():
            return
        if self._connection_exc is None:
            self._connection_exc = exc
        if self.debug:
            self.logger.debug("! aborting the connection: %s", exc)
        try:
            # shutdown(), not close(): it wakes a thread blocked in recv() or
            # sendall() on this socket; the reader thread closes it.
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- the glue: reading ----------------------------------------------------

    def _read_handshake(self, deadline: float | None) -> list[Event]:
        """Read until the core hands out the handshake event or refuses; the
        reader thread doesn't run yet. Raises TimeoutError at ``deadline``."""
        protocol = self.protocol
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("timed out during the opening handshake")
                self.socket.settimeout(remaining)
            try:
                data = self.socket.recv(RECV_BUFSIZE)
            except TimeoutError:
                raise TimeoutError("timed out during the opening handshake") from None
            if data:
                events, writes = protocol.receive(data)
            else:
                protocol.receive_eof()
                events, writes = protocol.events_received(), protocol.data_to_send()
            self._write(writes)
            if events or not data or protocol.handshake_exc is not None:
                self.socket.settimeout(None)
                return events

    def _start(self, events: list[Event]) -> None:
        """The handshake succeeded: handle what came with it, start the threads."""
        self._handle_events(events)
        self._reader = threading.Thread(
            target=self._read_loop, name=f"ws13-reader-{id(self):x}", daemon=True
        )
        self._reader.start()
        if self.ping_interval is not None:
            self._keepalive_thread = threading.Thread(
                target=self._keepalive, name=f"ws13-keepalive-{id(self):x}", daemon=True
            )
            self._keepalive_thread.start()

    def _read_loop(self) -> None:
        """The reader thread: read, feed the core, write its answers, queue messages."""
        protocol = self.protocol
        messages = self._messages
        # recv_into() the payload of a large frame: sockets and SSLSockets
        # have it (TLSInTLS, for wss:// through an https:// proxy, doesn't).
        read_into = isinstance(self.socket, socket.socket)
        try:
            while True:
                messages.wait_below_high_water()
                if read_into and protocol.large_frame_remaining >= LARGE_READ:
                    if not self._read_large():
                        break
                    continue
                try:
                    data = self.socket.recv(RECV_BUFSIZE)
                except OSError as exc:
                    if self._connection_exc is None:
                        self._connection_exc = exc
                    break
                if not data:
                    break
                with self._core_lock:
                    events, writes = protocol.receive(data)
                    if writes:
                        self._pending += writes
                self._after_read(events, writes)
        except Exception:  # a bug: don't leave the connection hanging
            self.logger.error("unexpected error in the reader thread", exc_info=True)
        finally:
            self._finish()

    def _read_large(self) -> bool:
        """Read the next part of a large frame straight into its payload (the
        core unmasks it in place: no copy); return False at EOF."""
        protocol = self.protocol
        with self._core_lock:
            buffer = protocol.receive_large_buffer()
        if buffer is None:
            return True  # failed meanwhile (e.g. a keepalive timeout)
        try:
            nbytes = self.socket.recv_into(buffer)
        except OSError as exc:
            if self._connection_exc is None:
                self._connection_exc = exc
            return False
        if not nbytes:
            return False
        with self._core_lock:
            # Not receive_large_buffer() again: the pure-Python twin hands
            # out a new buffer per call.
            if not protocol.large_frame_remaining:
                return True  # the connection failed while we read: drop it
            protocol.large_buffer_updated(nbytes)
            events, writes = protocol.events_received(), protocol.data_to_send()
            if writes:
                self._pending += writes
        self._after_read(events, writes)
        return True

    def _after_read(self, events: list[Event], writes: list[bytes]) -> None:
        if writes:
            # Write now unless another thread writes: it writes these too.
            if self._send_lock.acquire(blocking=False):
                self._release_send()
            self._check_close_expected()
        if events:
            self._handle_events(events)

    def _handle_events(self, events: list[Event]) -> None:
        put = self._messages.put
        for event in events:
            if isinstance(event, (str, bytes, Fragment)):
                put(event)
            elif isinstance(event, Frame) and event.opcode is Opcode.PONG:
                self._acknowledge_pings(event.data)

    def _acknowledge_pings(self, data: bytes) -> None:
        with self._core_lock:
            pings = self._pings
            if data not in pings:
                return  # An unsolicited Pong is fine (section 5.5.3).
            now = time.monotonic()
            for key in list(pings):
                event, sent_at, _ = pings.pop(key)
                event.set()
                if key == data:
                    self.latency = now - sent_at
                    break

    def _finish(self) -> None:
        """The TCP connection ended: make the core CLOSED, wake every waiter."""
        protocol = self.protocol
        with self._core_lock:
            if protocol.state is not CLOSED:
                protocol.receive_eof()
            events = protocol.events_received()
            protocol.data_to_send()
            self._pending = []
        self._handle_events(events)
        if self._close_timer is not None:
            self._close_timer.cancel()
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # A writer woken by the shutdown releases the lock at once.
        with self._send_lock:
            self.socket.close()
        with self._core_lock:
            for event, _, ack_on_close in self._pings.values():
                if ack_on_close:
                    event.set()
            self._pings.clear()
        exc = self._closed_exc()
        self._messages.close(exc)
        self._closed.set()
        if self.debug:
            self.logger.debug("= connection closed: %s", exc)

    # -- keepalive -------------------------------------------------------------

    def _keepalive(self) -> None:
        """The keepalive thread: a Ping every ``ping_interval``; 1011 without a Pong."""
        interval = self.ping_interval
        assert interval is not None
        try:
            while not self._closed.wait(interval):
                if self._messages.paused:
                    # The Pong could sit unread behind messages the
                    # application hasn't read: we are the slow side.
                    continue
                try:
                    pong = self.ping(ack_on_close=True)
                except ConnectionClosed:
                    return
                if self.ping_timeout is None or pong.wait(self.ping_timeout):
                    continue
                if self._closed.is_set() or self._messages.paused:
                    continue
                if self.debug:
                    self.logger.debug("! keepalive ping timed out")
                try:
                    self._send_frames(
                        lambda p: p.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    )
                except ConnectionClosed:
                    pass
                self._abort(TimeoutError("keepalive ping timeout"))
                return
        except Exception:  # a bug: log it, the connection goes on
            self.logger.error("keepalive failed", exc_info=True)
