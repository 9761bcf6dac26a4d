"""The local backplane: hub processes on one machine share one in-memory history.

One process, the owner, keeps the channels in an ``InMemoryBackplane`` and
serves them on a Unix socket (``ws13.hub.backplanes.localowner``);
``LocalBackplane`` is the client each hub process uses, through
``open_backplane("local:///path/to/socket")``. ``ws13 serve --workers N``
runs the owner in a process of its own, so that chat and history are one
across the workers without Redis.

The wire format: frames of a 4-byte big-endian length and a JSON array
(UTF-8), at most ``MAX_FRAME`` bytes. Requests are ``[op, id, args...]``
(``pub``, ``his``, ``sub``, ``uns``, ``evt``, ``padd``, ``prem``, ``pres``);
answers ``["r", id, result]`` or ``["x", id, error]``; ``uns`` has id 0 and
no answer. The owner pushes ``["m", channel, epoch, offset, time, data]``
and ``["e", channel, kind, member]`` to the connections subscribed to the
channel: one frame per process, whatever its number of subscribers, encoded
once for all of them. One connection carries everything in order, so a
message published after ``subscribe()`` returned always arrives.

When the owner is unreachable (it restarted), operations raise
``BackplaneUnavailable``, ``healthy`` is False, and a background task
reconnects with capped exponential backoff, resubscribes, then asks the hub
to catch up (``on_resync``). An owner that restarted lost its history: the
channels get new epochs, which the hub's clients see as such.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - a backplane does I/O
import contextlib
import itertools
import json
import logging
import struct
from typing import Any

from . import BackplaneListener, BackplaneUnavailable, Entry, HistoryPage, Member

__all__ = ["MAX_FRAME", "LocalBackplane", "encode", "read_frame"]

logger = logging.getLogger("ws13.hub.local")

#: The largest frame either side accepts, in bytes; a larger one is a broken
#: peer and ends the connection.
MAX_FRAME = 2**26
_LENGTH = struct.Struct(">I")


def encode(message: list[Any]) -> bytes:
    """One frame: the length and the compact JSON of ``message``."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> list[Any]:
    """The next frame's array; IncompleteReadError at the end, ValueError if malformed."""
    (length,) = _LENGTH.unpack(await reader.readexactly(4))
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes, more than {MAX_FRAME}")
    message = json.loads(await reader.readexactly(length))
    if not isinstance(message, list) or not message:
        raise ValueError("a frame must be a non-empty JSON array")
    return message


class LocalBackplane:
    """A hub's client of the owner at ``path``; see the module docstring.

    Args:
        path: the owner's Unix socket.
        timeout: seconds for connecting and for each request (5).
        retry_min, retry_max: first and largest delay between reconnection
            attempts, in seconds (0.05, 1).
    """

    name = "local"

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 5.0,
        retry_min: float = 0.05,
        retry_max: float = 1.0,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.reconnections = 0
        self._listener: BackplaneListener | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._wanted: set[str] = set()
        self._error: str | None = "not started"
        self._supervisor: asyncio.Task[None] | None = None
        self._connected: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------

    def attach(self, listener: BackplaneListener) -> None:
        self._listener = listener

    async def start(self) -> None:
        """Start the connection's supervisor; waits up to ``timeout`` for a first connection."""
        if self._supervisor is None:
            self._connected = asyncio.Event()
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._connected.wait()

    async def aclose(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._error = "closed"

    @property
    def healthy(self) -> bool:
        return self._writer is not None

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "backplane": "local",
            "healthy": self.healthy,
            "channels": len(self._wanted),
            "reconnections": self.reconnections,
        }
        if not self.healthy:
            status["error"] = self._error
        return status

    # -- requests ------------------------------------------------------------------

    async def _call(self, op: str, *args: Any) -> Any:
        writer = self._writer
        if writer is None:
            raise BackplaneUnavailable(f"local: {self._error}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            writer.write(encode([op, request_id, *args]))
            async with asyncio.timeout(self.timeout):
                return await future
        except TimeoutError:
            raise BackplaneUnavailable("local: the owner did not answer in time") from None
        finally:
            self._pending.pop(request_id, None)

    async def publish(self, channel: str, data: str, *, history_size: int, ttl: float) -> Entry:
        epoch, offset, stamp = await self._call("pub", channel, data, history_size, ttl)
        return Entry(channel, epoch, offset, stamp, data)

    async def history(
        self, channel: str, *, since: int | None = None, limit: int | None = None, ttl: float
    ) -> HistoryPage:
        epoch, top, rows = await self._call("his", channel, since, limit, ttl)
        entries = [Entry(channel, epoch, offset, stamp, data) for offset, stamp, data in rows]
        return HistoryPage(epoch, top, entries)

    async def subscribe(self, channel: str) -> None:
        self._wanted.add(channel)
        await self._call("sub", channel)

    def unsubscribe(self, channel: str) -> None:
        self._wanted.discard(channel)
        if self._writer is not None:
            self._writer.write(encode(["uns", 0, channel]))

    async def publish_event(self, channel: str, kind: str, member: Member) -> None:
        await self._call("evt", channel, kind, member.to_json())

    async def presence_add(self, channel: str, member: Member, ttl: float) -> None:
        await self._call("padd", channel, member.client, member.user, member.info, ttl)

    async def presence_remove(self, channel: str, client: str) -> None:
        await self._call("prem", channel, client)

    async def presence(self, channel: str) -> list[Member]:
        rows = await self._call("pres", channel)
        return [Member(client, user, info) for client, user, info in rows]

    # -- the connection ------------------------------------------------------------

    async def _supervise(self) -> None:
        """Keep a connection to the owner, subscribed to the wanted channels."""
        assert self._connected is not None
        delay = self.retry_min
        first = True
        while True:
            writer = None
            try:
                async with asyncio.timeout(self.timeout):
                    reader, writer = await asyncio.open_unix_connection(self.path)
                reading = asyncio.get_running_loop().create_task(self._read(reader))
                try:
                    self._writer = writer
                    self._error = None
                    for channel in list(self._wanted):
                        await self._call("sub", channel)
                    self._connected.set()
                    delay = self.retry_min
                    if not first:
                        self.reconnections += 1
                        logger.warning("local backplane reconnected to %s", self.path)
                        if self._listener is not None:
                            self._listener.on_resync()
                    first = False
                    await reading
                finally:
                    reading.cancel()
            except asyncio.CancelledError:
                self._lost("closed")
                if writer is not None:
                    writer.close()
                raise
            except (OSError, TimeoutError, BackplaneUnavailable, ValueError) as exc:
                if self._writer is not None:
                    logger.warning("local backplane degraded: %s", exc or type(exc).__name__)
                self._lost(str(exc) or type(exc).__name__)
            if writer is not None:
                writer.close()
            first = first and not self._connected.is_set()
            await asyncio.sleep(delay)
            delay = min(self.retry_max, delay * 2)

    def _lost(self, reason: str) -> None:
        self._writer = None
        self._error = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BackplaneUnavailable(f"local: {reason}"))
                future.exception()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Dispatch the owner's frames until the connection ends (then raise OSError)."""
        try:
            while True:
                message = await read_frame(reader)
                self._dispatch(message)
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the owner closed the connection") from None

    def _dispatch(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == "m":
            _, channel, epoch, offset, stamp, data = message
            if channel in self._wanted and self._listener is not None:
                self._listener.on_message(Entry(channel, epoch, offset, stamp, data))
        elif kind == "e":
            _, channel, event, member = message
            if channel in self._wanted and self._listener is not None:
                self._listener.on_event(channel, event, member)
        elif kind in ("r", "x"):
            future = self._pending.get(message[1])
            if future is not None and not future.done():
                if kind == "r":
                    future.set_result(message[2])
                else:
                    future.set_exception(BackplaneUnavailable(f"local: {message[2]}"))
        else:
            raise ValueError(f"unknown frame {kind!r}")
