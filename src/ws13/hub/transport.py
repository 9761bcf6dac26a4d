"""What a hub ``Session`` needs from a WebSocket connection, and ws13's own.

A session talks to its client through a ``Transport``: send text messages
now (``write``), know whether the connection still takes them (``writable``,
``open``), wait until it does (``wait_writable``), receive (``async for``),
and close. Two front-ends implement it: ``ConnectionTransport`` here, over a
``ws13.asyncio`` server connection (``ws13 serve``, ``Hub.handler``), and
``ws13.hub.asgi.ASGITransport``, over an ASGI server's ``receive``/``send``.

What is sent is an ``Outgoing`` message: its text and its complete frame,
both made once per message on a node and shared by every subscriber, so each
front-end takes the form it writes without re-encoding per connection. A
channel's messages of one flush go to its idle subscribers as a ``Joined``:
their frames joined once into one buffer for all of them (``write_shared``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from .._accel import encode_text
from ..asyncio.server import ServerConnection
from ..frames import encode_header
from ..protocol import OPEN

__all__ = ["ConnectionTransport", "Joined", "Outgoing", "Transport"]


class Outgoing:
    """One text message of the hub, ready for any front-end.

    Attributes:
        text: the message.
        frame: the complete unmasked text frame carrying it, as a server
            sends it (``encode_header(0x81, ...) + payload``).
        size: ``len(frame)``: what a queued message counts against the
            ``max_queue_bytes`` bound.
    """

    __slots__ = ("frame", "size", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        payload = encode_text(text)
        frame = self.frame = encode_header(0x81, len(payload), None) + payload
        self.size = len(frame)


class Joined:
    """Several ``Outgoing`` messages, their frames joined once for many connections.

    Attributes:
        messages: the messages, in order.
        count: ``len(messages)``.
        data: their frames, concatenated: what a WebSocket connection writes.
    """

    __slots__ = ("count", "data", "messages")

    def __init__(self, messages: Sequence[Outgoing]) -> None:
        self.messages = messages
        self.count = len(messages)
        self.data = (
            messages[0].frame if len(messages) == 1 else b"".join([m.frame for m in messages])
        )


class Transport(Protocol):
    """A hub client's WebSocket connection, as a ``Session`` uses it."""

    @property
    def open(self) -> bool:
        """True until the connection starts closing (either side) or is lost."""
        ...

    @property
    def writable(self) -> bool:
        """True while ``open`` and what was written and not yet sent is under the limit."""
        ...

    def write(self, messages: Sequence[Outgoing]) -> None:
        """Send ``messages`` in order, without waiting; only while ``writable``."""
        ...

    def write_shared(self, joined: Joined) -> bool:
        """Send ``joined.messages`` in order if ``writable``; return whether it did.

        ``joined`` goes to many connections; one call per connection does the
        check and the write.
        """
        ...

    async def wait_writable(self) -> None:
        """Wait until ``writable``; raise ``ConnectionClosed`` if it closes first."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close after what was written (the closing handshake); return once closed."""
        ...

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        """The messages received, until the connection closes."""
        ...


class ConnectionTransport:
    """``Transport`` over a ``ws13.asyncio`` server connection.

    ``write()`` hands the pre-encoded frames to ``send_frames_nowait()``: one
    system call for the lot; ``write_shared()`` the joined buffer to
    ``send_joined_nowait()``, one system call with no per-frame work.
    ``writable`` is the connection's own: false while the socket's write
    buffer is above ``write_limit``.
    """

    __slots__ = ("connection",)

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    @property
    def open(self) -> bool:
        return self.connection.protocol.state is OPEN

    @property
    def writable(self) -> bool:
        return self.connection.writable

    def write(self, messages: Sequence[Outgoing]) -> None:
        if len(messages) == 1:
            self.connection.send_frame_nowait(messages[0].frame)
        else:
            self.connection.send_frames_nowait([message.frame for message in messages])

    def write_shared(self, joined: Joined) -> bool:
        return self.connection.send_joined_nowait(joined.data, joined.count)

    async def wait_writable(self) -> None:
        await self.connection.wait_writable()

    async def close(self, code: int, reason: str) -> None:
        await self.connection.close(code, reason)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return aiter(self.connection)
