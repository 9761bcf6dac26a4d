"""The bounded queue between the network and ``Connection.recv()``.

Complete messages go in from ``data_received()``; ``recv()`` takes them out.
When ``high`` messages wait, the queue pauses reading from the transport so a
slow consumer makes TCP push back on the peer instead of growing memory; it
resumes below ``low``. A reader that finds a message waiting gets it without
awaiting anything: no future is made per message. A reader that must wait
awaits the future from ``wait()`` directly (no coroutine in between): that
is the path of every message on a request/response connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from ..exceptions import ConcurrencyError
from ..frames import Fragment

__all__ = ["FlowControl", "MessageQueue"]

#: A whole message, or a piece of one once ``recv_streaming()`` turned
#: streaming on (see ``streaming.py``).
Message = str | bytes | Fragment


class FlowControl(Protocol):
    """Whoever reads the network: the queue asks it to pause and resume."""

    def pause_receiving(self) -> None: ...

    def resume_receiving(self) -> None: ...


class _NoFlow:
    """The flow control of a closed queue: there is no reading left to pause."""

    __slots__ = ()

    def pause_receiving(self) -> None:
        pass

    def resume_receiving(self) -> None:
        pass


_NO_FLOW = _NoFlow()


def fresh(exc: BaseException) -> BaseException:
    """A copy of ``exc`` to raise to a reader once the queue is closed,
    instead of the exception ``close()`` was given; that one's traceback is
    dropped.

    Raised itself, it would keep each reader's frames in its traceback, and
    those frames refer to the connection, which refers to this queue and so
    to the exception: a reference cycle that only the garbage collector
    frees (with the connection, its protocol and their buffers), and a
    traceback that grows at every ``recv()``. Copied without calling
    ``__init__`` again: ``args``, the instance attributes and the cause.
    """
    exc.__traceback__ = None
    cls = type(exc)
    new = cls.__new__(cls, *exc.args)
    new.__dict__.update(exc.__dict__)
    new.__cause__ = exc.__cause__
    return new


class MessageQueue:
    """A FIFO of messages with one waiting reader and read flow control.

    Args:
        flow: its ``pause_receiving()`` is called when the queue reaches
            ``high`` messages, ``resume_receiving()`` when it falls back to
            ``low`` after a pause.
        loop: the event loop that readers wait in.
        high: messages queued before reading pauses; ``None`` never pauses.
        low: messages left when reading resumes (default ``high // 4``).
    """

    __slots__ = ("_exc", "_flow", "_high", "_loop", "_low", "_paused", "_queue", "_waiter")

    def __init__(
        self,
        flow: FlowControl,
        loop: asyncio.AbstractEventLoop,
        high: int | None = 16,
        low: int | None = None,
    ) -> None:
        # Created when a message waits, dropped once empty: an idle connection
        # has none.
        self._queue: deque[Message] | None = None
        self._waiter: asyncio.Future[Message] | None = None
        self._flow = flow
        self._loop = loop
        self._high = high
        self._low = (high // 4 if low is None else low) if high is not None else 0
        self._paused = False
        self._exc: BaseException | None = None

    @property
    def paused(self) -> bool:
        """Whether the queue has paused reading (it holds ``high`` messages or more)."""
        return self._paused

    def __len__(self) -> int:
        return 0 if self._queue is None else len(self._queue)

    def put(self, message: Message) -> None:
        """Add a message; hand it straight to a waiting reader if there is one."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(message)
                return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(message)
        if self._high is not None and not self._paused and len(queue) >= self._high:
            self._paused = True
            self._flow.pause_receiving()

    def close(self, exc: BaseException) -> None:
        """No more messages will come: readers get ``exc`` once the queue is empty."""
        self._exc = exc
        # Nothing more to pause or resume. Letting go of the connection (the
        # flow) breaks the reference cycle connection <-> queue, so a closed
        # connection is freed by reference counting, not by the garbage
        # collector (docs/design.md says which other cycles are broken).
        self._flow = _NO_FLOW
        self._paused = False
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                # The reader gets exc itself (a copy costs more than most
                # readers need: `async for` ends on it) and must drop its
                # traceback or raise a fresh() copy instead.
                waiter.set_exception(exc)

    def get_nowait(self) -> Message | None:
        """Return the next message, or ``None`` if none is waiting."""
        queue = self._queue
        if not queue:
            return None
        message = queue.popleft()
        if not queue:
            # An empty deque still holds a 64-slot block (about 750 bytes
            # with the deque): an idle connection keeps none. Most messages
            # go straight to a waiting reader and never reach a deque.
            self._queue = None
        if self._paused and len(queue) <= self._low:
            self._paused = False
            self._flow.resume_receiving()
        return message

    def wait(self) -> asyncio.Future[Message]:
        """Return a future for the next message; call when ``get_nowait()`` gave ``None``.

        ``Connection.recv()`` and ``__anext__`` inline this.

        Raises the exception given to ``close()`` if the queue is closed, and
        ConcurrencyError if another coroutine is already waiting. A reader
        cancelled while waiting calls ``cancelled(waiter)``.
        """
        if self._exc is not None:
            raise fresh(self._exc)
        current = self._waiter
        if current is not None and not current.done():
            raise ConcurrencyError("another coroutine is already waiting for the next message")
        waiter: asyncio.Future[Message] = self._loop.create_future()
        self._waiter = waiter
        return waiter

    def cancelled(self, waiter: asyncio.Future[Message]) -> None:
        """The reader waiting on ``waiter`` was cancelled.

        A message delivered in the same loop iteration as the cancellation
        must not be lost: it goes back at the front of the queue.
        """
        if self._waiter is waiter:
            self._waiter = None
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            message = waiter.result()
            assert message is not None
            if self._queue is None:
                self._queue = deque()
            self._queue.appendleft(message)

    async def get(self) -> Message:
        """Return the next message, waiting for one if needed.

        Raises the exception given to ``close()`` when the queue is empty and
        closed, and ConcurrencyError if another coroutine is already waiting.
        """
        message = self.get_nowait()
        if message is not None:
            return message
        waiter = self.wait()
        try:
            return await waiter
        except asyncio.CancelledError:
            self.cancelled(waiter)
            raise
        except BaseException as exc:
            if exc is not self._exc:
                raise
            raise fresh(exc) from exc.__cause__
