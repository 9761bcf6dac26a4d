"""The server's own accept loop, which survives running out of file descriptors.

asyncio's accept loop logs a traceback through the loop's exception handler
for every ``accept()`` that fails with EMFILE, ENFILE, ENOBUFS or ENOMEM, and
with several listening sockets or a steady stream of clients that is thousands
of lines a second while the descriptors are gone; uvloop stays quiet but keeps
polling. ``Acceptor`` accepts on the listening sockets itself (``add_reader``
and ``socket.accept()``, handing each socket to
``loop.connect_accepted_socket()``: public API on both loops) so that a failed
``accept()`` pauses accepting with one warning per episode, and resumes when a
connection closes (its descriptor is free again) or after a backoff timer.
The clients meanwhile wait in the kernel's listen backlog; open connections
keep working throughout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence

__all__ = ["RETRY_FIRST", "RETRY_MAX", "Acceptor"]

#: Seconds before the first retry of a paused accept loop; each retry that
#: fails again doubles it, up to ``RETRY_MAX``. A closing connection retries
#: at once: it is what usually frees a descriptor.
RETRY_FIRST = 0.1
RETRY_MAX = 2.0


class Acceptor:
    """Accept connections on ``listeners`` and pass each to ``accepted``.

    Args:
        loop: the running loop.
        listeners: bound, non-blocking sockets; ``start()`` makes them listen,
            ``close()`` closes them.
        accepted: called with each accepted socket.
        backlog: the listen backlog, also the most accepted per wake-up
            (as asyncio's own loop does).
        logger: where the one warning per episode goes.
        open_connections: how many connections the server holds, for the warning.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listeners: Sequence[socket.socket],
        accepted: Callable[[socket.socket], None],
        *,
        backlog: int,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        open_connections: Callable[[], int],
    ) -> None:
        self.loop = loop
        self.listeners = tuple(listeners)
        self.accepted = accepted
        self.backlog = backlog
        self.logger = logger
        self.open_connections = open_connections
        #: The retry timer while paused; None while accepting.
        self.retry: asyncio.Handle | None = None
        self.delay = RETRY_FIRST
        #: True from a failed accept() until every client waiting in the
        #: backlog is accepted: one warning per episode, however many times
        #: descriptors run out while the backlog drains.
        self.exhausted = False
        self.closed = False

    def start(self) -> None:
        for listener in self.listeners:
            listener.listen(self.backlog)
        self._watch()

    def _watch(self) -> None:
        for listener in self.listeners:
            self.loop.add_reader(listener.fileno(), self._accept, listener)

    def _unwatch(self) -> None:
        for listener in self.listeners:
            self.loop.remove_reader(listener.fileno())

    def _accept(self, listener: socket.socket) -> None:
        # Another listener's wake-up may come in the same loop iteration as
        # the failure that paused us.
        if self.retry is not None or self.closed:
            return
        for _ in range(self.backlog):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                if self.exhausted:
                    self._recovered()
                return
            except ConnectionAbortedError:
                # The client gave up while in the backlog: the next one.
                continue
            except OSError as exc:
                # EMFILE, ENFILE, ENOBUFS, ENOMEM, or anything that would
                # fail again at once: retrying now would only spin.
                self._pause(exc)
                return
            self.accepted(sock)

    def _recovered(self) -> None:
        """The backlog is empty again: the episode is over."""
        self.exhausted = False
        self.delay = RETRY_FIRST
        self.logger.warning(
            "accepting connections again: %d open connections", self.open_connections()
        )

    def _pause(self, exc: OSError) -> None:
        self._unwatch()
        if not self.exhausted:
            self.exhausted = True
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            self.logger.warning(
                "accept() failed (%s): %d open connections; accepting paused "
                "until a connection closes (retrying every %g s at most)",
                reason,
                self.open_connections(),
                RETRY_MAX,
            )
        self.retry = self.loop.call_later(self.delay, self._retry_later)

    def _retry_later(self) -> None:
        self.delay = min(2 * self.delay, RETRY_MAX)
        self.retry = None
        if not self.closed:
            self._watch()

    def connection_closed(self) -> None:
        """A connection closed: a descriptor may be free to accept with."""
        if self.retry is None or self.closed:
            return
        self.retry.cancel()
        # Soon, not now: the transport closes its socket after telling its
        # protocol the connection is lost.
        self.retry = self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        self.retry = None
        if not self.closed:
            self._watch()

    def close(self) -> None:
        """Stop accepting and close the listening sockets."""
        if self.closed:
            return
        self.closed = True
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        else:
            self._unwatch()
        for listener in self.listeners:
            listener.close()
