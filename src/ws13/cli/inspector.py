"""The live frame inspector behind the demo page of ``ws13 serve``.

The page opens ``/inspect`` first; the server answers with a ``hello`` record
carrying an id. The page then opens its echo connection on
``/echo?inspect=<id>``: that connection's ``protocol.tracer`` dissects every
frame (``trace.Dissector``) and hands the records to the inspector, which
streams them to the page as JSON text messages, with the opening handshake and
the connection's open and close.

A slow inspector never slows down the connection it watches: records wait in
a bounded queue (``QUEUE_LIMIT``) and, when it is full, new ones are dropped
and counted; the next record sent says how many were lost. The inspector's
own frames are not inspected.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import secrets
import time
from typing import Any

from ..asyncio.server import ServerConnection
from ..exceptions import ConnectionClosed
from ..pcap import PcapWriter
from .trace import PREVIEW, Dissector, handshake_record

__all__ = ["CAPTURE_LIMIT", "QUEUE_LIMIT", "Inspector", "InspectorHub", "Watch", "format_peer"]

#: Records waiting for a slow inspector before new ones are dropped.
QUEUE_LIMIT = 512
#: The bytes of an inspector's capture (``/capture``): past it, capture stops.
CAPTURE_LIMIT = 4 * 2**20


class Inspector:
    """One inspector WebSocket: a bounded queue of records and the loop that sends them."""

    def __init__(self, inspector_id: str, limit: int = QUEUE_LIMIT) -> None:
        self.id = inspector_id
        self.limit = limit
        self.dropped = 0
        self.closed = False
        #: Connections watched so far; each gets the next number (conn 1, 2, ...).
        self.watched = 0
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._unreported = 0
        # The pcapng of the connections it watches, made by the first one.
        self._capture: io.BytesIO | None = None
        self._writer: PcapWriter | None = None

    def capture(self) -> PcapWriter:
        """The pcapng writer of the watched connections (``CAPTURE_LIMIT`` bytes at most)."""
        if self._writer is None:
            self._capture = io.BytesIO()
            self._writer = PcapWriter(self._capture, max_size=CAPTURE_LIMIT)
        return self._writer

    def pcapng(self) -> bytes:
        """The capture so far: a pcapng file with no packets before the first watch."""
        self.capture()
        assert self._capture is not None
        return self._capture.getvalue()

    def push(self, record: dict[str, Any]) -> None:
        """Queue ``record`` for the page, or drop and count it if the queue is full."""
        if self.closed:
            return
        if len(self._queue) >= self.limit:
            self.drop()
            return
        self._queue.append(record)
        self._wakeup.set()

    def full(self) -> bool:
        return len(self._queue) >= self.limit

    def drop(self) -> None:
        """Count a record dropped because the queue is full."""
        self.dropped += 1
        self._unreported += 1

    async def run(self, connection: ServerConnection) -> None:
        """Send the hello record, then queued records until the connection closes."""
        hello = {
            "type": "hello",
            "id": self.id,
            "preview": PREVIEW,
            "queue_limit": self.limit,
        }
        try:
            await connection.send(json.dumps(hello))
            while True:
                while not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                record = self._queue.popleft()
                if self._unreported:
                    record["dropped"] = self.dropped
                    self._unreported = 0
                await connection.send(json.dumps(record))
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._queue.clear()


class Watch:
    """One connection watched by an inspector: its frames, handshake, open and close.

    ``trace`` is the connection's ``protocol.tracer``. The handshake goes to
    the inspector before the first frame, or when the handler starts.
    """

    def __init__(self, inspector: Inspector, connection: ServerConnection) -> None:
        inspector.watched += 1
        self.inspector = inspector
        self.connection = connection
        self.conn = inspector.watched
        self.started = time.monotonic()
        self._dissector = Dissector()
        self._announced = False

    def announce(self) -> None:
        """Send the open record and the handshake, once."""
        if self._announced:
            return
        self._announced = True
        connection = self.connection
        extensions = (
            connection.response.headers.get("Sec-WebSocket-Extensions")
            if (connection.response is not None)
            else None
        )
        self.inspector.push(
            {
                "type": "open",
                "conn": self.conn,
                "peer": format_peer(connection),
                "path": connection.request.path if connection.request else None,
                "subprotocol": connection.subprotocol,
                "extensions": extensions,
                "time": time.time(),
            }
        )
        record = handshake_record(connection.request, connection.response)
        record["conn"] = self.conn
        self.inspector.push(record)

    def trace(self, outgoing: bool, header: bytes, payload: bytes) -> None:
        inspector = self.inspector
        if inspector.closed:
            return
        self.announce()
        # Cheap when the queue is full: nothing is dissected only to be dropped.
        if inspector.full():
            inspector.drop()
            self._dissector.skip(not outgoing, header)
            return
        record = self._dissector.frame(not outgoing, header, payload)
        record["conn"] = self.conn
        record["time"] = time.time()
        inspector.push(record)

    def closed(self) -> None:
        """Send the close record."""
        connection = self.connection
        self.inspector.push(
            {
                "type": "close",
                "conn": self.conn,
                "code": connection.close_code,
                "reason": connection.close_reason,
                "duration": round(time.monotonic() - self.started, 3),
                "time": time.time(),
            }
        )


def format_peer(connection: ServerConnection) -> str:
    """The peer's address as ``host:port`` (``[host]:port`` for IPv6)."""
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


class InspectorHub:
    """The open inspectors, by id."""

    def __init__(self) -> None:
        self.inspectors: dict[str, Inspector] = {}

    def create(self) -> Inspector:
        inspector_id = secrets.token_hex(4)
        while inspector_id in self.inspectors:
            inspector_id = secrets.token_hex(4)
        inspector = Inspector(inspector_id)
        self.inspectors[inspector_id] = inspector
        return inspector

    def get(self, inspector_id: str) -> Inspector | None:
        return self.inspectors.get(inspector_id)

    async def serve(self, connection: ServerConnection) -> None:
        """The handler of ``/inspect``: runs one inspector until the page goes away."""
        inspector = self.create()
        try:
            # Read (and ignore) what the page sends, so its Close is seen.
            reader = asyncio.ensure_future(_drain(connection))
            sender = asyncio.ensure_future(inspector.run(connection))
            await asyncio.wait([reader, sender], return_when=asyncio.FIRST_COMPLETED)
            for task in (reader, sender):
                task.cancel()
            await asyncio.gather(reader, sender, return_exceptions=True)
        finally:
            inspector.closed = True
            del self.inspectors[inspector.id]


async def _drain(connection: ServerConnection) -> None:
    try:
        async for _ in connection:
            pass
    except ConnectionClosed:
        pass
