"""The received messages of a threaded ``Connection``, waiting for ``recv()``.

``MessageQueue`` sits between the connection's reader thread, which puts what
the core hands out (whole messages, ``str`` or ``bytes``, and the
``Fragment`` pieces of a message sent in several frames), and the application
threads that take them with ``get()`` (a whole message) or ``get_iter()`` (a
message piece by piece, for ``recv_streaming()``).

Flow control: the reader thread calls ``wait_below_high_water()`` after each
read; it blocks while ``high`` items are queued, until ``get()`` brings the
queue down to ``low``, so a peer that sends faster than the application reads
can't grow memory without bound. ``stop_pausing()`` (closing) releases it for
good, so that the peer's Close frame is still read.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from typing import cast

from ..exceptions import ConcurrencyError, ConnectionClosed
from ..frames import Fragment

__all__ = ["Item", "MessageQueue"]

#: What the reader thread queues: a whole message or a piece of one.
Item = str | bytes | Fragment


class MessageQueue:
    """Messages received and not read yet; see the module docstring.

    Args:
        high: items queued before the reader thread stops reading (``None``:
            no limit).
        low: the queue length at which it reads again (default ``high // 4``).
    """

    def __init__(self, high: int | None = 16, low: int | None = None) -> None:
        if high is not None and high < 1:
            raise ValueError(f"max_queue must be at least 1 (or None), not {high}")
        if low is None:
            low = None if high is None else high // 4
        if high is not None and low is not None and not 0 <= low <= high:
            raise ValueError(f"max_queue's low-water mark must be in 0..{high}, not {low}")
        self.high = high
        self.low = low
        self._items: collections.deque[Item] = collections.deque()
        self._cond = threading.Condition()
        # Set once the connection is closed: what get() raises then.
        self._exc: ConnectionClosed | None = None
        self._getting = False
        self._paused = False
        self._no_pausing = False

    @property
    def paused(self) -> bool:
        """Whether the reader thread waits for the queue to drain."""
        return self._paused

    # -- the reader thread's side ------------------------------------------

    def put(self, item: Item) -> None:
        """Queue what the core handed out; never blocks."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def wait_below_high_water(self) -> None:
        """Block while the queue is full (see the module docstring)."""
        high = self.high
        if high is None:
            return
        with self._cond:
            if len(self._items) < high or self._no_pausing:
                return
            self._paused = True
            while len(self._items) > (self.low or 0) and not self._no_pausing:
                self._cond.wait()
            self._paused = False

    def stop_pausing(self) -> None:
        """Never block the reader thread again: the connection is closing."""
        with self._cond:
            self._no_pausing = True
            self._cond.notify_all()

    def close(self, exc: ConnectionClosed) -> None:
        """No item comes after those queued: ``get()`` then raises ``exc``."""
        with self._cond:
            self._exc = exc
            self._no_pausing = True
            self._cond.notify_all()

    # -- the application's side --------------------------------------------

    def get(self, timeout: float | None = None, decode: bool | None = None) -> str | bytes:
        """Return the next whole message, joining its pieces if it came in several.

        Waits up to ``timeout`` seconds (``None``: without limit; 0 or less:
        only what is already queued); then raises TimeoutError, leaving the
        pieces of a partly received message queued. ``decode=True`` returns
        ``str`` for a binary message too (UnicodeDecodeError if it isn't
        UTF-8), ``decode=False`` ``bytes`` for a text one. Raises the
        connection's ConnectionClosed once it is closed and every message
        queued before was read; ConcurrencyError if another thread is in
        ``get()`` or ``get_iter()``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._enter()
            try:
                item = self._next(deadline)
                if type(item) is not Fragment:
                    return _decoded(item, decode)  # type: ignore[arg-type]
                pieces = [item]
                try:
                    while not pieces[-1].fin:
                        piece = self._next(deadline)
                        assert type(piece) is Fragment
                        pieces.append(piece)
                except TimeoutError:
                    # Put them back: the next get() starts with them.
                    self._items.extendleft(reversed(pieces))
                    raise
            finally:
                self._getting = False
        whole: str | bytes
        if isinstance(pieces[0].data, str):
            whole = "".join(cast(str, piece.data) for piece in pieces)
        else:
            whole = b"".join(cast(bytes, piece.data) for piece in pieces)
        return _decoded(whole, decode)

    def get_iter(self, decode: bool | None = None) -> Iterator[str | bytes]:
        """Yield the next message piece by piece as the pieces arrive.

        A piece per Fragment the core gave, a whole message as one. Text
        pieces are whole characters. Consume the iterator to the end: until
        then other ``get()`` calls raise ConcurrencyError. Raises as
        ``get()``.
        """
        with self._cond:
            self._enter()
        try:
            while True:
                with self._cond:
                    item = self._next(None)
                if type(item) is not Fragment:
                    yield _decoded(item, decode)  # type: ignore[arg-type]
                    return
                yield _decoded(item.data, decode)
                if item.fin:
                    return
        finally:
            with self._cond:
                self._getting = False

    def _enter(self) -> None:
        """Mark a reader in; the caller holds the condition's lock."""
        if self._getting:
            raise ConcurrencyError("another thread is already in recv() or recv_streaming()")
        self._getting = True

    def _next(self, deadline: float | None) -> Item:
        """Pop the next item, waiting until ``deadline``; the caller holds the lock."""
        items = self._items
        while not items:
            if self._exc is not None:
                raise _fresh(self._exc)
            if deadline is None:
                self._cond.wait()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self._cond.wait(remaining) and not items):
                    if self._exc is not None:
                        raise _fresh(self._exc)
                    raise TimeoutError("no message received within the timeout")
        item = items.popleft()
        if self._paused and len(items) <= (self.low or 0):
            self._cond.notify_all()
        return item


def _decoded(data: str | bytes, decode: bool | None) -> str | bytes:
    if decode is None:
        return data
    if decode:
        return data if isinstance(data, str) else data.decode()
    return data.encode() if isinstance(data, str) else data


def _fresh(exc: ConnectionClosed) -> ConnectionClosed:
    """A copy of ``exc`` to raise: each raise gets its own traceback, no cycle."""
    copy = type(exc)(exc.rcvd, exc.sent, exc.rcvd_then_sent)
    copy.__cause__ = exc.__cause__
    return copy
