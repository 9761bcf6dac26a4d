"""Connection and handshake-rate limits of a server, checked at the handshake.

``Limits`` is I/O-free bookkeeping: the server asks it, per handshake, whether
to answer it or refuse it, and tells it when an admitted connection closes.
Counts are per process (each worker of a multi-process server counts its own).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["RETRY_AFTER", "Limits"]

#: Seconds a client refused for too many connections is told to wait
#: (``Retry-After``): long enough not to hammer a full server, short enough
#: that a slot freed by a closing connection is soon used.
RETRY_AFTER = 5

#: Token buckets kept before idle ones (full again) are dropped; the bound
#: doubles with the live ones so a flood from many addresses prunes rarely.
PRUNE_AT = 1024


class Limits:
    """How many WebSocket connections a server holds, and how fast it opens them.

    Args:
        max_connections: WebSocket connections open at once, from all clients
            (``None``, the default: no limit). One more is refused with
            ``503 Service Unavailable`` and ``Retry-After: 5``.
        max_connections_per_ip: the same per source address (``None``, the
            default: no limit); also 503. The address is the TCP peer's: behind
            a reverse proxy every client shares the proxy's. All clients of a
            Unix socket share one address.
        max_handshake_rate: HTTP requests (WebSocket handshakes and plain HTTP
            alike) per second per source address (``None``, the default: no
            limit), a token bucket holding up to ``max(1, rate)`` requests, so a
            client may burst one second's worth. One more is refused with
            ``429 Too Many Requests`` and ``Retry-After`` (whole seconds until a
            token is back): 429 because the client, not the server, is over its
            share (RFC 6585, section 4).

    Only handshakes that pass ``process_request`` (that would get a 101) count
    against the connection limits: health checks and other plain HTTP answers
    never take a slot. A slot is taken before the 101 is built and freed when
    the connection closes.
    """

    __slots__ = (
        "buckets",
        "clock",
        "max_connections",
        "max_per_ip",
        "open",
        "per_ip",
        "prune_at",
        "rate",
    )

    def __init__(
        self,
        max_connections: int | None = None,
        max_connections_per_ip: int | None = None,
        max_handshake_rate: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("max_connections", max_connections),
            ("max_connections_per_ip", max_connections_per_ip),
            ("max_handshake_rate", max_handshake_rate),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be more than 0 or None, not {value!r}")
        self.max_connections = max_connections
        self.max_per_ip = max_connections_per_ip
        self.rate = max_handshake_rate
        self.clock = clock
        #: Connections admitted and not closed yet, in all and per address.
        self.open = 0
        self.per_ip: dict[str, int] = {}
        #: Per address: (tokens left, when they were counted).
        self.buckets: dict[str, tuple[float, float]] = {}
        self.prune_at = PRUNE_AT

    def wait_before_request(self, address: str) -> int | None:
        """Take a token for one request from ``address``; if there is none,
        the whole seconds until there is one (for ``Retry-After``)."""
        rate = self.rate
        if rate is None:
            return None
        burst = max(1.0, rate)
        now = self.clock()
        tokens, then = self.buckets.get(address, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        if tokens < 1:
            self.buckets[address] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / rate))
        self.buckets[address] = (tokens - 1, now)
        if len(self.buckets) >= self.prune_at:
            self._prune(now, rate, burst)
        return None

    def _prune(self, now: float, rate: float, burst: float) -> None:
        """Forget the addresses whose bucket is full again: same as new."""
        self.buckets = {
            address: (tokens, then)
            for address, (tokens, then) in self.buckets.items()
            if tokens + (now - then) * rate < burst
        }
        self.prune_at = max(PRUNE_AT, 2 * len(self.buckets))

    def admit(self, address: str) -> bool:
        """Take a connection slot for ``address``; False if a limit is reached."""
        if self.max_connections is not None and self.open >= self.max_connections:
            return False
        count = self.per_ip.get(address, 0)
        if self.max_per_ip is not None and count >= self.max_per_ip:
            return False
        self.open += 1
        self.per_ip[address] = count + 1
        return True

    def release(self, address: str) -> None:
        """Free the slot ``admit(address)`` took: its connection closed."""
        self.open -= 1
        count = self.per_ip[address] - 1
        if count:
            self.per_ip[address] = count
        else:
            del self.per_ip[address]
