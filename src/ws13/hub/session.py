"""``Session``: one hub connection, its bounded outbound queue and write coalescing.

Frames pushed to a session are not written at once: they wait in the
session's queue until the end of the event-loop iteration, when one callback
(``Flusher``, one ``loop.call_soon`` per iteration for the whole hub) writes
each dirty session's messages with a single ``Transport.write()`` (over ws13's
own connection, one ``send_frames_nowait()``). A ticker
burst, a history replay or a backlog of publishes handled in one iteration thus
costs one system call per subscriber, not one per frame. A channel's messages
reach its idle subscribers without this queue: the channel's ``Batch``
(``ws13.hub.batch``) is flushed first, one shared buffer for all of them.

The queue is bounded (``Hub.max_queue`` frames, ``Hub.max_queue_bytes``
bytes). While the socket takes data, a batch that reaches the bound is written
at once, so only frames the socket refused ever count against it; while it
doesn't, a drain task waits on ``Transport.wait_writable()`` and the channel's
``Policy`` applies beyond the bound: drop the oldest droppable pushes, or close
with 1013. Replies and pushes share the one queue, so they are never reordered.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - the hub is an I/O layer, like ws13.asyncio
import collections
import logging
import secrets
import time  # noqa: TID251 - the publish rate limit needs a clock
from typing import TYPE_CHECKING, Any

from ..exceptions import ConnectionClosed
from ..frames import CloseCode
from . import wire
from .auth import Principal
from .backplanes import Member
from .transport import Outgoing, Transport
from .wire import ErrorCode

if TYPE_CHECKING:
    from .batch import Batch
    from .server import Hub, _Channel

__all__ = ["Flusher", "Session"]

logger = logging.getLogger("ws13.hub")


#: The longest a flush waits after the previous one (see ``Flusher``).
MAX_FLUSH_DELAY = 0.05
#: Flushes shorter than this don't delay the next one.
SMALL_FLUSH = 0.002


class Flusher:
    """Writes what sessions queued during one loop iteration, from one callback.

    Under load the writes themselves set the pace: after a flush that took
    ``d`` seconds (more than ``SMALL_FLUSH``: thousands of subscribers), the
    next one waits until ``d`` (at most ``MAX_FLUSH_DELAY``) has passed, so
    writing takes at most about half of the node's time and what is
    published meanwhile leaves in the same write, one system call per
    subscriber for several messages. Lightly loaded, every iteration flushes.
    """

    __slots__ = ("_batches", "_dirty", "_next", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Session] = []
        self._batches: list[Batch] = []
        self._scheduled = False
        # Loop time before which the next flush should not run.
        self._next = 0.0

    def add(self, session: Session) -> None:
        self._dirty.append(session)
        if not self._scheduled:
            self._schedule()

    def add_batch(self, batch: Batch) -> None:
        """Flush ``batch`` (a channel's new messages) with the next flush."""
        self._batches.append(batch)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        loop = asyncio.get_running_loop()
        if loop.time() < self._next:
            loop.call_at(self._next, self._flush)
        else:
            # call_soon runs after every callback already ready in this
            # iteration (other sockets' reads, the backplane's), so
            # whatever they push is written in the same batch.
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._write()
        took = loop.time() - started
        self._next = started + took + min(took, MAX_FLUSH_DELAY) if took > SMALL_FLUSH else 0.0

    def _write(self) -> None:
        # Batches first: the sessions they can't write to directly get the
        # frames in their queues, written below in this same flush (still
        # scheduled meanwhile, so they don't schedule another).
        batches, self._batches = self._batches, []
        for batch in batches:
            batch.flush()
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            session._dirty = False
            try:
                session._flush()
            except Exception:  # one broken connection must not strand the others
                logger.error("hub: writing to %r failed", session, exc_info=True)
                session._clear()
                session.kick(CloseCode.INTERNAL_ERROR, "internal error")


class Session:
    """One client connection to the hub: its subscriptions and outbound queue."""

    def __init__(self, hub: Hub, transport: Transport, principal: Principal) -> None:
        self.hub = hub
        #: The client's connection (``ConnectionTransport`` under ``ws13 serve``).
        self.transport = transport
        self.principal = principal
        #: Unique across nodes; the ``client`` in presence.
        self.id = secrets.token_urlsafe(12)
        self.member = Member(self.id, principal.user, principal.info)
        self.channels: dict[str, _Channel] = {}
        self.errors = 0
        self.dropped = 0
        self.closing = False
        #: Publish tokens (see ``allow_publish``); below 0 is debt from refusals.
        self.tokens = float(hub.publish_burst)
        self._refilled = time.monotonic()
        self._queue: collections.deque[tuple[Outgoing, bool]] = collections.deque()
        self._queued_bytes = 0
        # The hub's bounds and flusher, read on every push.
        self._max_frames = hub.max_queue
        self._max_bytes = hub.max_queue_bytes
        self._flusher = hub.flusher
        #: In the Flusher's list for this iteration.
        self._dirty = False
        self._drainer: asyncio.Task[None] | None = None
        #: The batch this session shares (``ws13.hub.batch``), and how many of
        #: its messages it has taken.
        self._batch: Batch | None = None
        self._cursor = 0
        #: The last publish of this connection still in flight, and how many
        #: are (``Hub._op_publish`` pipelines them).
        self.last_publish: asyncio.Task[None] | None = None
        self.publishing = 0

    def __repr__(self) -> str:
        return f"<Session {self.id} user={self.principal.user!r}>"

    def send(self, text: str) -> None:
        """Queue a reply: never dropped, so a full queue disconnects."""
        self.push(Outgoing(text), droppable=False)

    def reply(self, request_id: wire.RequestId, result: dict[str, Any]) -> None:
        self.send(wire.encode_reply(request_id, result))

    def error(
        self,
        request_id: wire.RequestId,
        code: ErrorCode,
        message: str,
        retry_after: float | None = None,
        rate: float | None = None,
    ) -> None:
        """Send an error reply; too many client errors close with 1008."""
        self.send(wire.encode_error(request_id, code, message, retry_after, rate))
        if code in (ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_OP, ErrorCode.TOO_LARGE):
            self.errors += 1
            if self.errors > self.hub.max_errors:
                self.kick(CloseCode.POLICY_VIOLATION, "too many invalid requests")

    def allow_publish(self) -> float | None:
        """Take a publish token: None if allowed, else seconds until one is available.

        A token bucket of ``Hub.publish_rate`` tokens per second holding at
        most ``Hub.publish_burst``. A refused publish takes a token too, so a
        client that ignores refusals runs into debt; deeper than
        ``Hub.max_errors`` tokens closes the connection with 1008. A client
        that waits the returned delay before retrying never gets there.
        """
        hub = self.hub
        rate = hub.publish_rate
        if not rate:
            return None
        now = time.monotonic()
        tokens = min(hub.publish_burst, self.tokens + (now - self._refilled) * rate)
        self._refilled = now
        self.tokens = tokens - 1
        if tokens >= 1:
            return None
        if self.tokens < -hub.max_errors:
            self.kick(CloseCode.POLICY_VIOLATION, "publish rate limit exceeded")
        return (1 - self.tokens) / rate

    # -- the outbound queue ------------------------------------------------------

    def push(self, message: Outgoing, droppable: bool) -> None:
        """Queue ``message`` for this iteration's write; bounded while the socket is full."""
        # Once per subscriber per message when not batched: the common case is
        # first and lean.
        if self.closing:
            return
        batch = self._batch
        if batch is not None and batch.pending:
            self._catch_up()  # the batch's messages so far go first
        self._enqueue(message, droppable)

    def _catch_up(self) -> None:
        """Queue the messages of the shared batch this session hasn't taken yet."""
        batch = self._batch
        assert batch is not None
        self._take(batch.pending, batch.base)

    def _take(self, messages: list[Outgoing], start: int) -> None:
        """Queue ``messages`` (the batch's from ``start``) from the ones not taken yet."""
        assert self._batch is not None
        first = self._cursor - start
        if first >= len(messages):
            return
        self._cursor = start + len(messages)
        droppable = self._batch.droppable
        for message in messages[max(first, 0) :]:
            self._enqueue(message, droppable)

    def _enqueue(self, message: Outgoing, droppable: bool) -> None:
        if self.closing:
            return
        queue = self._queue
        queue.append((message, droppable))
        size = self._queued_bytes = self._queued_bytes + message.size
        if self._drainer is None and len(queue) <= self._max_frames and size <= self._max_bytes:
            if not self._dirty:
                self._dirty = True
                self._flusher.add(self)
            return
        self._push_over(droppable)

    def _push_over(self, droppable: bool) -> None:
        """``push()`` when the queue is over its bound or draining."""
        queue = self._queue
        if self._drainer is None:
            # A full batch goes out now if the socket takes it, as it would
            # have frame by frame; only what it refuses counts against the bound.
            self._flush()
            if self._drainer is None:
                return
        while len(queue) > self._max_frames or self._queued_bytes > self._max_bytes:
            if not droppable or not self._drop_oldest():
                self.kick(CloseCode.TRY_AGAIN_LATER, "slow consumer")
                return

    def _flush(self) -> None:
        """Write everything queued in one write, or start draining if the socket is full."""
        if self._drainer is not None or not self._queue:
            return
        transport = self.transport
        if transport.writable:
            self._write_queue()
        elif transport.open:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._clear()

    def _write_queue(self) -> None:
        queue = self._queue
        self.transport.write([message for message, _ in queue])
        queue.clear()
        self._queued_bytes = 0

    def _clear(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0

    def _drop_oldest(self) -> bool:
        queue = self._queue
        for index, (message, droppable) in enumerate(queue):
            if droppable:
                del queue[index]
                self._queued_bytes -= message.size
                self.dropped += 1
                self.hub.stats["dropped"] += 1
                return True
        return False

    async def _drain(self) -> None:
        transport = self.transport
        try:
            while self._queue and not self.closing:
                await transport.wait_writable()
                if self._queue and transport.writable:
                    self._write_queue()
        except ConnectionClosed:
            pass
        finally:
            self._drainer = None
            if self.closing or not transport.open:
                self._clear()

    def kick(self, code: int, reason: str) -> None:
        """Close the connection (at most once) after writing what the socket takes."""
        if self.closing:
            return
        self.closing = True
        # An error reply queued just before (the one that crossed max_errors)
        # goes out ahead of the Close frame; a slow consumer's backlog doesn't.
        if self._queue and self._drainer is None and self.transport.writable:
            self._write_queue()
        self._clear()
        if code == CloseCode.TRY_AGAIN_LATER:
            self.hub.stats["slow_disconnects"] += 1
        # Under ws13 serve the transport has the ws13 connection, which log
        # formatters read (ws13.logs); an ASGI server's connection is hidden.
        connection = getattr(self.transport, "connection", None)
        logger.info("closing %r: %d %s", self, code, reason, extra={"websocket": connection})
        self.hub._spawn(self.transport.close(code, reason))

    @property
    def queued(self) -> int:
        """Frames waiting in the outbound queue."""
        return len(self._queue)
