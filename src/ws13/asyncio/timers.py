"""Timeouts shared by many connections: one event-loop timer for all of them.

Every connection of a server waits for the same delays: the opening
handshake's ``open_timeout``, the keepalive's ``ping_interval`` and
``ping_timeout``. A loop timer per connection and per delay is the largest
part of an idle connection (about 600 bytes each on uvloop) and costs a
timer set-up and cancellation per handshake. ``Deadlines`` keeps, for one
delay, the connections waiting on it in the order they started waiting:
with a fixed delay that is also the order in which they expire, so an
``OrderedDict`` is the priority queue (add, cancel, expire: O(1) each) and a
single loop timer, set for the earliest deadline, serves them all.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["Deadlines", "Keepalive", "KeptAlive"]

K = TypeVar("K")


class Deadlines(Generic[K]):
    """Call ``expired(key)`` ``delay`` seconds after ``add(key)``, unless discarded first.

    Args:
        delay: seconds from ``add()`` to ``expired()``.
        expired: called once per expired key, on the loop; it may ``add()``
            the key again (e.g. for the next keepalive ping).

    The loop is the one running at the first ``add()``. A key is any
    hashable object, typically a connection; it is held (strongly) only
    while it waits, so ``discard()`` it when it goes away early.
    """

    __slots__ = ("_entries", "_expired", "_loop", "_timer", "delay")

    def __init__(self, delay: float, expired: Callable[[K], object]) -> None:
        if delay <= 0:
            # A key re-added by its own callback would expire again at once.
            raise ValueError(f"delay must be positive, not {delay}")
        self.delay = delay
        self._expired = expired
        self._entries: OrderedDict[K, float] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def add(self, key: K) -> None:
        """(Re)start ``key``'s wait: it expires ``delay`` seconds from now."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        entries = self._entries
        deadline = loop.time() + self.delay
        if key in entries:
            entries.move_to_end(key)
        entries[key] = deadline
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire)

    def discard(self, key: K) -> None:
        """Stop ``key``'s wait, if it is waiting.

        The loop timer is left to fire: it finds the next deadline then (or
        nothing), which is cheaper than re-arming it on every discard.
        """
        self._entries.pop(key, None)

    def _fire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        entries = self._entries
        now = loop.time()
        while entries:
            key = next(iter(entries))
            deadline = entries[key]
            if deadline > now:
                self._timer = loop.call_at(deadline, self._fire)
                return
            del entries[key]
            try:
                self._expired(key)
            except Exception as exc:
                # One connection's failure must not stop the others' timeouts.
                loop.call_exception_handler(
                    {"message": "timeout callback failed", "exception": exc, "key": key}
                )


class KeptAlive(Protocol):
    """What ``Keepalive`` needs from a connection."""

    def _send_keepalive_ping(self) -> bool | None: ...

    def _keepalive_timed_out(self) -> None: ...


C = TypeVar("C", bound=KeptAlive)


class Keepalive(Generic[C]):
    """Keepalive pings for every connection of a server (or for one client).

    Each connection started with ``start()`` gets a ping every ``interval``
    seconds; if ``timeout`` is set and the pong isn't back within it (the
    connection calls ``answered()`` when it is), the connection's
    ``_keepalive_timed_out()`` runs. A ping isn't sent while the previous
    one still waits for its pong. Two ``Deadlines`` serve all connections.

    The connection's ``_send_keepalive_ping()`` returns True when it sent a
    ping, False when it skipped this one (e.g. it isn't reading), None when
    it is closing: then its pings stop.
    """

    __slots__ = ("_pings", "_pongs", "interval", "timeout")

    def __init__(self, interval: float, timeout: float | None) -> None:
        if interval <= 0 or (timeout is not None and timeout <= 0):
            raise ValueError("ping_interval and ping_timeout must be positive (or None)")
        self.interval = interval
        self.timeout = timeout
        self._pings: Deadlines[C] = Deadlines(interval, self._ping_due)
        self._pongs: Deadlines[C] | None = (
            None if timeout is None else Deadlines(timeout, self._pong_due)
        )

    def start(self, connection: C) -> None:
        """Send ``connection`` its first ping ``interval`` seconds from now."""
        self._pings.add(connection)

    def stop(self, connection: C) -> None:
        """No more pings or pong deadline for ``connection`` (it closed)."""
        self._pings.discard(connection)
        if self._pongs is not None:
            self._pongs.discard(connection)

    def answered(self, connection: C) -> None:
        """The pong of ``connection``'s keepalive ping arrived."""
        if self._pongs is not None:
            self._pongs.discard(connection)

    def _ping_due(self, connection: C) -> None:
        pongs = self._pongs
        if pongs is not None and connection in pongs:
            # The last ping is still unanswered: its own deadline decides.
            self._pings.add(connection)
        else:
            sent = connection._send_keepalive_ping()
            if sent is None:
                return
            self._pings.add(connection)
            if sent and pongs is not None:
                pongs.add(connection)

    def _pong_due(self, connection: C) -> None:
        connection._keepalive_timed_out()
