"""Pings, pongs and keepalive for ``Connection``.

``Pinger``, a base class of ``Connection``, sends Pings and matches their
Pongs: ``ping()`` returns a future for the round-trip time, a Pong answers its
Ping and every Ping sent before it (RFC 6455 section 5.5.3 lets a peer answer
only the latest), and ``latency`` keeps the last round trip. The keepalive
(``asyncio/timers.py``, one timer for all of a server's connections) sends
its pings through ``_send_keepalive_ping()`` and fails the connection with
1011 when a Pong doesn't come within ``ping_timeout``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ..exceptions import ConcurrencyError
from ..frames import CloseCode
from ..protocol import OPEN
from .messages import MessageQueue
from .sending import Sender
from .timers import Keepalive

__all__ = ["Pinger"]


class Pinger(Sender):
    """What ``Connection`` does with Ping and Pong (see the module docstring).

    Its own attributes are set by ``Connection.__init__``; the others
    annotated here are ``Connection``'s, in its ``__slots__``.
    """

    __slots__ = ("_keepalive", "_keepalive_ping", "_pings", "latency")

    _keepalive: Keepalive[Any] | None
    _keepalive_ping: bytes | None
    _pings: dict[bytes, tuple[asyncio.Future[float] | None, float]] | None
    latency: float
    _messages: MessageQueue
    _handler_paused: bool

    def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        """Send a Ping; return a future that resolves with the round-trip time in seconds.

        ``data`` defaults to 4 random bytes. A Pong answers its Ping and every
        Ping sent before it (RFC 6455 section 5.5.3 lets a peer answer only
        the latest). Raises ConnectionClosed if the connection is closing.
        """
        if self.protocol.state is not OPEN:
            raise self._closed_exc()
        if data is None:
            payload = self._new_ping_payload()
        else:
            payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            if self._pings is not None and payload in self._pings:
                raise ConcurrencyError("a ping with the same data is already waiting for its pong")
        waiter: asyncio.Future[float] = self.loop.create_future()
        self._send_ping(payload, waiter)
        return waiter

    def _new_ping_payload(self) -> bytes:
        payload = os.urandom(4)
        while self._pings is not None and payload in self._pings:
            payload = os.urandom(4)
        return payload

    def _send_ping(self, payload: bytes, waiter: asyncio.Future[float] | None) -> None:
        if self._pings is None:
            self._pings = {}
        self.protocol.send_ping(payload)
        self._pings[payload] = (waiter, self.loop.time())
        self._flush()

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat)."""
        if self.protocol.state is not OPEN:
            raise self._closed_exc()
        self.protocol.send_pong(data.encode("utf-8") if isinstance(data, str) else bytes(data))
        self._flush()

    def _acknowledge_pings(self, data: bytes) -> None:
        pings = self._pings
        if pings is None or data not in pings:
            return  # An unsolicited pong is fine (section 5.5.3).
        now = self.loop.time()
        for key in list(pings):
            waiter, sent_at = pings.pop(key)
            if waiter is not None and not waiter.done():
                waiter.set_result(now - sent_at)
            if key == self._keepalive_ping:
                self._keepalive_ping = None
                assert self._keepalive is not None
                self._keepalive.answered(self)
            if key == data:
                self.latency = now - sent_at
                break
        if not pings:
            self._pings = None

    def _start_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.start(self)

    def _send_keepalive_ping(self) -> bool | None:
        """Send a keepalive ping (``Keepalive`` calls this).

        Returns True when sent, False when skipped because reading is paused
        (a pong couldn't be read), None once the connection isn't OPEN.
        """
        if self.protocol.state is not OPEN:
            return None
        if self._messages.paused or self._handler_paused:
            return False
        # No future: nobody awaits a keepalive ping; its pong is matched by payload.
        payload = self._new_ping_payload()
        self._keepalive_ping = payload
        self._send_ping(payload, None)
        # Once per ping_interval is rare enough for a busy connection (one
        # message then compresses without history) and lets an idle one
        # drop its compression state (see permessage_deflate).
        self.protocol.free_idle_memory()
        return True

    def _keepalive_timed_out(self) -> None:
        """The keepalive ping's pong didn't come within ``ping_timeout``."""
        if self.protocol.state is OPEN:
            if self.debug:
                self.logger.debug("! keepalive ping timed out")
            self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self._flush()
        if self.transport is not None:
            self.transport.close()
