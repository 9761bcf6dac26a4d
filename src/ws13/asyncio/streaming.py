"""Receiving a message as a stream of its fragments: ``Connection.recv_streaming()``.

The first ``recv_streaming()`` on a connection turns the core's
``stream_fragments`` on for good: from then on each frame of a fragmented
message comes from the core as a ``Fragment(data, fin)`` as soon as it
arrives (text decoded as it comes, a character cut between frames whole in
the later piece), instead of one ``str``/``bytes`` at the end. A message in
one frame is still one item. ``Streamer.arrived()`` routes each fragment:

* to the queue as it is, for ``recv_streaming()`` (waiting or not) and for
  whoever reads next when nobody waits;
* joined into the whole message here when ``recv()`` or ``async for`` waits,
  so that their waiting path, the one of every message on a request/response
  connection, never sees a fragment and costs what it did;
* joined for a ``set_message_handler()`` handler (``collect``).

A reader that takes a fragment from the queue (it arrived while nobody
waited) joins the rest itself (``join``). A connection that never calls
``recv_streaming()`` never sees a ``Fragment``: its ``recv()`` and ``async
for`` pay one attribute check per queued message, none per waited one.

Limits stay: the core counts a fragmented message's size across its frames
and fails the connection with 1009 past ``max_size``, streamed or not; each
queued fragment is one item of the queue that ``max_queue`` bounds.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..exceptions import ConcurrencyError
from ..frames import Fragment

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Streamer", "decoded"]


def decoded(message: str | bytes, decode: bool | None) -> str | bytes:
    """``message`` as ``recv(decode=...)`` returns it (see ``Connection.recv``)."""
    if decode is None:
        return message
    if decode:
        return message if isinstance(message, str) else message.decode()
    return message.encode() if isinstance(message, str) else message


class Streamer:
    """The fragment side of one connection's receiving (see the module docstring)."""

    __slots__ = ("_connection", "_held", "_parts", "_reading", "_unfinished")

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        # The pieces recv() joined so far, kept when it was cancelled.
        self._parts: list[str | bytes] | None = None
        # recv_streaming() yielded part of a message and not its end.
        self._unfinished = False
        # The fragments recv() took off the queue while _unfinished: the
        # next recv_streaming() yields them first.
        self._held: list[Fragment] = []
        # recv_streaming() waits for the next item: fragments go to it as they are.
        self._reading = False

    def _check_finished(self) -> None:
        if self._unfinished:
            raise ConcurrencyError(
                "recv_streaming() left a message unfinished: call it again to read the rest"
            )

    async def join(self, fragment: Fragment) -> str | bytes:
        """The whole message that starts (or goes on) with ``fragment``, for ``recv()``.

        Cancellation-safe: the pieces read so far wait for the next call.
        """
        if self._unfinished:
            self._held.append(fragment)
            self._check_finished()
        parts = self._parts
        if parts is None:
            parts = self._parts = []
        parts.append(fragment.data)
        messages = self._connection._messages
        while not fragment.fin:
            item = await messages.get()
            if type(item) is not Fragment:
                # arrived() joined the rest to these parts while we waited.
                assert isinstance(item, (str, bytes))
                return item
            fragment = item
            parts.append(fragment.data)
        self._parts = None
        return _joined(parts)

    def arrived(self, fragment: Fragment) -> None:
        """Take a ``Fragment`` from the core (no message handler is set).

        Queued as it is for ``recv_streaming()``, or when nobody waits; a
        ``recv()`` or ``async for`` waiting gets the whole message instead,
        joined here, so that their waiting path never sees a fragment.
        """
        messages = self._connection._messages
        waiter = messages._waiter
        if self._reading or waiter is None or waiter.done():
            messages.put(fragment)
            return
        if self._unfinished:
            # The rest of a message recv_streaming() left: not for recv().
            messages._waiter = None
            try:
                self._check_finished()
            except ConcurrencyError as exc:
                waiter.set_exception(exc)
            messages.put(fragment)
            return
        whole = self.collect(fragment)
        if whole is not None:
            messages.put(whole)

    def collect(self, fragment: Fragment) -> str | bytes | None:
        """Gather ``fragment`` for a message handler: the whole message at the end, else None."""
        parts = self._parts
        if parts is None:
            parts = self._parts = []
        parts.append(fragment.data)
        if not fragment.fin:
            return None
        self._parts = None
        return _joined(parts)

    def check_handler(self) -> None:
        """Raise ConcurrencyError if a message handler would get part of a message."""
        self._check_finished()

    async def stream(self, decode: bool | None) -> AsyncIterator[str | bytes]:
        """The pieces of the next message (see ``Connection.recv_streaming``)."""
        connection = self._connection
        if connection._on_message is not None:
            raise ConcurrencyError("messages go to the handler given to set_message_handler()")
        decoder: codecs.IncrementalDecoder | None = None
        item: str | bytes | Fragment
        if self._parts is not None:
            # A cancelled recv() had read these: they come first.
            item = Fragment(_joined(self._parts), False)
            self._parts = None
        elif self._held:
            item = self._held.pop(0)
        else:
            item = await self._next()
        while True:
            if type(item) is not Fragment:
                assert isinstance(item, (str, bytes))
                yield decoded(item, decode)
                return
            data = item.data
            if decode and isinstance(data, bytes):
                if decoder is None:
                    decoder = codecs.getincrementaldecoder("utf-8")()
                data = decoder.decode(data, item.fin)
            elif decode is False and isinstance(data, str):
                data = data.encode()
            self._unfinished = not item.fin
            yield data
            if item.fin:
                return
            item = self._held.pop(0) if self._held else await self._next()

    async def _next(self) -> str | bytes | Fragment:
        """The next item of the queue, fragments as they are."""
        self._reading = True
        try:
            return await self._connection._messages.get()
        finally:
            self._reading = False


def _joined(parts: list[str | bytes]) -> str | bytes:
    """The pieces of a message as one: all str or all bytes."""
    if isinstance(parts[0], str):
        return "".join(parts)  # type: ignore[arg-type]
    return b"".join(parts)  # type: ignore[arg-type]
