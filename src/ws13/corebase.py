"""The core's two hot entry points and the state they use: pure Python, twin of ``_corebase.c``.

``Protocol`` extends ``CoreBase`` (the class ``ws13._accel`` picks: this one,
or the C extension type ``ws13._speedups.CoreBase``, whose state is its own C
struct). An I/O layer drives the core through these two calls, once per read
and once per message sent:

* ``receive(data)``: bytes in; the events that arrived and the bytes to write
  out, in one call.
* ``send_message(message)``: a whole message in; all the bytes to write now,
  in one call.

This twin is the reference: it takes the general path every time
(``receive_data()``, ``events_received()``, ``data_to_send()``;
``send_text()`` / ``send_binary()``). The C twin takes a fast path when the
flags below allow it and calls the same Python methods otherwise; the
differential tests (``tests/test_corebase.py``) feed both the same bytes and
messages and compare everything that comes out.

The state, set by ``Protocol`` and read by both twins:

* ``_events``, ``_writes``: what ``events_received()`` and ``data_to_send()``
  hand out: a list, or ``None`` while there is nothing (an idle connection
  keeps no empty lists); each hand-out leaves ``None``.
* ``_fast_recv``: whether a read may go to the C frame parser first
  (``Protocol._update_fast_paths`` says when); ``_expect_mask``: 0x80 when
  frames must be masked (a server), else 0; ``max_size``: the largest message
  (``None``: no limit); ``_inflate``: permessage-deflate's
  ``decode_message`` when it is the only extension, else ``None``.
* ``bytes_received``, ``bytes_sent``, ``messages_received``,
  ``messages_sent``: the traffic counters (public; integers, C integers in the
  C twin, so that counting allocates nothing). Bytes in: every byte given to
  ``receive()`` (and ``large_buffer_updated()``); bytes out: every byte
  handed out to write (by ``receive()``, ``send_message()``,
  ``data_to_send()``): the HTTP handshake, frame headers and control frames
  included. Messages: whole messages handed out as events (a streamed one
  counts once, with its last ``Fragment``), and whole
  messages framed (``send_message()``, ``send_text()`` / ``send_binary()``
  with ``fin``, the last ``send_continuation()``).
* ``_fast_send``: whether a whole message may be framed without the general
  path: OPEN, no fragmented message being sent, no tracer, no debug log, no
  extension but permessage-deflate alone; ``_encode_message``: that
  extension's ``encode_message`` (``None`` without it); ``_mask_next``: the
  client's source of masking keys (``MaskKeys.next``; ``None`` on a server).

What the C twin calls back, off its fast path, is the contract of the class
that extends this one: ``receive_data(data)``, ``_receive_rest(data, pos)``
(the bytes from ``pos`` on, that the C parser left), ``_fail_inflated(exc)``
(an exception from ``_inflate``), and ``_send_message(message, text,
compress)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import Event

__all__ = ["CoreBase", "count_bytes", "count_messages"]


def count_bytes(writes: list[bytes]) -> int:
    """The bytes in a list of writes (``SEND_EOF`` isn't bytes)."""
    # A plain loop: a generator costs more than the usual one or two items.
    total = 0
    for item in writes:
        if isinstance(item, (bytes, bytearray, memoryview)):
            total += len(item)
    return total


def count_messages(events: list[Event]) -> int:
    """The messages (``str`` and ``bytes``) in a list of events."""
    total = 0
    for item in events:
        if type(item) is str or type(item) is bytes:
            total += 1
    return total


class CoreBase:
    """The state and entry points above (see the module docstring)."""

    __slots__ = (
        "_encode_message",
        "_events",
        "_expect_mask",
        "_fast_recv",
        "_fast_send",
        "_inflate",
        "_mask_next",
        "_writes",
        "bytes_received",
        "bytes_sent",
        "max_size",
        "messages_received",
        "messages_sent",
    )

    _encode_message: Callable[[bytes], bytes | None] | None
    _events: list[Event] | None
    _expect_mask: int
    _fast_recv: bool
    _fast_send: bool
    _inflate: Callable[[bytes, int | None], bytes] | None
    _mask_next: Callable[[], bytes] | None
    _writes: list[bytes] | None
    max_size: int | None
    bytes_received: int
    bytes_sent: int
    messages_received: int
    messages_sent: int

    def receive(self, data: bytes | bytearray) -> tuple[list[Event], list[bytes]]:
        """Feed bytes received; return what arrived and what to write, in one call.

        ``receive_data()``, ``events_received()`` and ``data_to_send()``
        together, for the I/O layer's hot path: write the bytes (in order;
        ``SEND_EOF`` means close the transport), then handle the events.
        Both lists are often empty; they are the caller's.
        """
        self.bytes_received += len(data)
        self.receive_data(data)
        events, self._events = self._events, None
        writes, self._writes = self._writes, None
        if events is None:
            events = []
        else:
            self.messages_received += count_messages(events)
        if writes is None:
            writes = []
        else:
            self.bytes_sent += count_bytes(writes)
        return events, writes

    def send_message(
        self,
        message: str | bytes | bytearray | memoryview,
        *,
        text: bool | None = None,
        compress: bool = True,
    ) -> list[bytes]:
        """Send a whole message as one frame; return all the bytes to write now.

        ``send_text()`` or ``send_binary()`` and then ``data_to_send()`` in
        one call, for the I/O layer's hot path: the list holds what was
        already queued (a Pong, say) and then this message's frame, one
        buffer, or two (header and payload) for a large unmasked payload, to
        be written in order, e.g. with one ``writelines()``.

        ``str`` goes as text and bytes-like as binary unless ``text`` says
        otherwise: ``text=True`` sends bytes as text (they must be UTF-8: not
        checked), ``text=False`` sends a str's UTF-8 as binary.
        ``compress=False`` sends this message uncompressed even with
        permessage-deflate on.

        Raises InvalidState unless OPEN or while a fragmented message is
        being sent; TypeError for anything but str and bytes-like.
        """
        writes = self._send_message(message, text, compress)
        self.bytes_sent += count_bytes(writes)
        return writes

    # -- the contract: what the class extending this one implements ----------

    def receive_data(self, data: bytes | bytearray) -> None:
        raise NotImplementedError

    def _receive_rest(self, data: bytes | bytearray, pos: int) -> None:
        raise NotImplementedError

    def _fail_inflated(self, exc: Exception) -> None:
        raise NotImplementedError

    def _send_message(
        self, message: str | bytes | bytearray | memoryview, text: bool | None, compress: bool
    ) -> list[bytes]:
        raise NotImplementedError
