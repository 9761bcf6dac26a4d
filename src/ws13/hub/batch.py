"""``Batch``: a channel's messages of one flush, one buffer for all its idle subscribers.

A message published on a channel is not pushed to each subscriber's queue:
that would be one Python call per subscriber per message, 10,000 of them for
one publish to 10,000 subscribers. It is appended once to the channel's
``Batch``; at the flush (``Flusher``, once per loop iteration or paced under
load) the batch's frames are joined once into one buffer (a ``Joined``) and
each subscriber gets it with one ``Transport.write_shared()``: one system call
and no queue work per subscriber, however many messages the flush holds.

Only subscribers that can take the shared bytes as they are get them so:
live (not recovering), subscribed to this channel alone (so that the order
of messages across channels stays the order they arrived in), with nothing
of their own waiting (no queued reply, no drain in progress), their socket
taking data. The others get the frames they haven't taken yet through their
own queue at the flush, where the slow-consumer policy applies as before;
sessions subscribed to several channels skip the batch altogether (each of
their channels pushes to them message by message).

Ordering with a session's own sends: a reply (or event, or error) queued for
a session between two messages of the batch first queues the batch's frames
the session hasn't taken (``Session._catch_up()``), so replies and pushes
leave in the order the hub produced them. A session's ``_cursor`` counts the
channel's batched frames it has taken (or that predate it); frames from
``_cursor`` on are its own to take.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..frames import CloseCode
from .transport import Joined, Outgoing

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Batch"]

logger = logging.getLogger("ws13.hub")


class Batch:
    """A channel's messages since its last flush, and the subscribers that share them.

    Args:
        droppable: whether the channel's pushes may be dropped by the
            slow-consumer policy (``Policy.DROP_OLDEST``).
        max_frames, max_bytes: the hub's per-connection queue bounds
            (``max_queue``, ``max_queue_bytes``): a batch that reaches one is
            flushed at once, as a session's queue is, so a backlog handled
            in one iteration doesn't grow a batch (and each slow
            subscriber's write buffer) without bound.
    """

    __slots__ = ("base", "droppable", "max_bytes", "max_frames", "pending", "pending_bytes",
                 "sessions")  # fmt: skip

    def __init__(self, droppable: bool, max_frames: int, max_bytes: int) -> None:
        self.droppable = droppable
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.pending_bytes = 0
        #: Sessions that take the shared buffer (insertion-ordered set).
        self.sessions: dict[Session, None] = {}
        #: Messages appended since the last flush.
        self.pending: list[Outgoing] = []
        #: Messages flushed before ``pending[0]``, since the channel opened.
        self.base = 0

    @property
    def top(self) -> int:
        """Messages appended since the channel opened."""
        return self.base + len(self.pending)

    def add(self, session: Session) -> None:
        """Share with ``session`` from the next message on."""
        session._batch = self
        session._cursor = self.top
        self.sessions[session] = None

    def remove(self, session: Session) -> None:
        """Stop sharing with ``session``, after queueing what it hasn't taken yet."""
        if session._batch is self:
            session._catch_up()
            session._batch = None
        self.sessions.pop(session, None)

    def append(self, message: Outgoing) -> bool:
        """Add ``message`` for the next flush; True if it is the first since the last one.

        A batch that reaches ``max_frames`` or ``max_bytes`` is flushed now.
        """
        pending = self.pending
        pending.append(message)
        size = self.pending_bytes = self.pending_bytes + message.size
        if len(pending) >= self.max_frames or size >= self.max_bytes:
            self.flush()
            return False
        return len(pending) == 1

    def flush(self) -> None:
        """Give every sharing session the messages appended since the last flush."""
        messages = self.pending
        if not messages:
            return
        start = self.base
        self.base = start + len(messages)
        self.pending = []
        self.pending_bytes = 0
        joined = Joined(messages)
        for session in self.sessions:
            # The common case in one call: idle, writable, the shared bytes.
            if (
                session._cursor <= start
                and not session._queue
                and session._drainer is None
                and not session.closing
            ):
                try:
                    if session.transport.write_shared(joined):
                        continue
                except Exception:  # one broken connection must not strand the others
                    logger.error("hub: writing to %r failed", session, exc_info=True)
                    session.kick(CloseCode.INTERNAL_ERROR, "internal error")
                    continue
            session._take(messages, start)
