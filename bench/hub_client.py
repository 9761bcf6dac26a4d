"""The publisher side of bench/hub_fanout.py: a minimal ``ws13.hub.v1`` client.

``open_peer()`` opens a ``HubPeer`` (an ``asyncio.Protocol``, uvloop when
installed) that speaks just enough ``ws13.hub.v1`` to publish messages stamped
with the publish time (or to subscribe and histogram their latency, ``Stats``).
The subscribers of the benchmark are C (``bench/c/hub_sub.c``): a Python
client saturates a core long before 10,000 subscribers at 100 messages/s.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import time
from typing import Any

CHANNEL = "ticker.bench"
SUBPROTOCOL = "ws13.hub.v1"
#: Histogram bins: ``int(log1p(latency in µs) * BINS_PER_E)``, ~2.5 % wide.
BINS_PER_E = 40
BINS = 800


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 5.2)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return header + key + mask(payload, key)


def handshake(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /hub HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    ).encode()


def request_frame(request: dict[str, Any]) -> bytes:
    return client_frame(1, json.dumps(request, separators=(",", ":")).encode())


def split_frames(data: bytes) -> tuple[list[tuple[int, bytes, int]], bytes]:
    """Complete frames in ``data`` as (opcode, payload, end offset), and the incomplete rest."""
    frames = []
    pos, size = 0, len(data)
    while size - pos >= 2:
        length = data[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            if size - pos < 4:
                break
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            start = pos + 4
        elif length == 127:
            if size - pos < 10:
                break
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            start = pos + 10
        if start + length > size:
            break
        frames.append((data[pos] & 0x0F, data[start : start + length], start + length))
        pos = start + length
    return frames, data[pos:]


class Stats:
    """Per phase: copies counted; for the sample, a latency histogram and the maximum."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.phases: dict[str, tuple[list[int], list[float]]] = {}

    def add(self, phase: str, latency: float) -> None:
        entry = self.phases.get(phase)
        if entry is None:
            entry = self.phases[phase] = ([0] * BINS, [0.0, 0.0])  # bins, [count, max]
        micros = latency * 1e6
        index = int(math.log1p(micros) * BINS_PER_E) if micros > 0 else 0
        entry[0][index if index < BINS else BINS - 1] += 1
        totals = entry[1]
        totals[0] += 1
        if latency > totals[1]:
            totals[1] = latency
        self.counts[phase] = self.counts.get(phase, 0) + 1


class HubPeer(asyncio.Protocol):
    """One connection speaking just enough ``ws13.hub.v1``: subscribe, or publish.

    States: 0 HTTP response, 1 welcome, 2 subscribe reply, 3 live.
    """

    def __init__(self, port: int, stats: Stats, subscribe: bool) -> None:
        self.port = port
        self.stats = stats
        self.subscribe = subscribe
        self.state = 0
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        #: Why the connection failed, once it did (for the bench's error message).
        self.failure: str | None = None

    def connection_made(self, transport: Any) -> None:  # uvloop's isn't an asyncio.Transport
        self.transport = transport
        transport.write(handshake(self.port))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.failure is None:
            self.failure = f"connection lost: {exc or 'closed by the server'}"
        if not self.ready.done():
            self.ready.set_exception(BenchError(f"connection lost during setup: {exc}"))

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        if not self.ready.done():
            self.ready.set_exception(BenchError(reason))
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.buffer:
            data = self.buffer + data
        if self.state == 0:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self.fail(
                    "handshake refused: " + data[: data.find(b"\r\n")].decode(errors="replace")
                )
                return
            self.state = 1
            data = data[end + 4 :]
        frames, self.buffer = split_frames(data)
        for opcode, payload, _ in frames:
            if opcode == 1:
                if self.state != 3:
                    self.on_setup(payload)
                elif payload.startswith(b'{"op":"message"'):
                    # "data":{"p":"PHASE","t":SECONDS,...}
                    i = payload.find(b'"data":{"p":"') + 13
                    j = payload.find(b'"', i)
                    k = payload.find(b'"t":', j) + 4
                    m = payload.find(b",", k)
                    self.stats.add(payload[i:j].decode(), now - float(payload[k:m]))
                elif payload.startswith(b'{"op":"error"'):
                    self.fail(payload.decode(errors="replace"))
            elif opcode == 9 and self.transport is not None:
                self.transport.write(client_frame(0xA, payload))
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                reason = payload[2:].decode(errors="replace")
                self.fail(f"the server closed the connection with code {code} {reason}".rstrip())
                return

    def on_setup(self, payload: bytes) -> None:
        message = json.loads(payload)
        op = message.get("op")
        if self.state == 1 and op == "welcome":
            if not self.subscribe:
                self.state = 3
                self.ready.set_result(None)
                return
            self.state = 2
            assert self.transport is not None
            self.transport.write(request_frame({"op": "subscribe", "id": 1, "channel": CHANNEL}))
        elif self.state == 2 and op == "reply":
            self.state = 3
            self.ready.set_result(None)
        elif op == "error":
            self.fail(f"subscribe failed: {message.get('code')} {message.get('message')}")

    def publish(self, phase: str, seq: int) -> None:
        """Publish a ticker-like message stamped with the current time."""
        assert self.transport is not None
        data = (
            f'{{"p":"{phase}","t":{time.time():.6f},"s":{seq},'
            f'"WS13":100.25,"RFC":64.55,"ASYNC":42.01,"JSON":7.5}}'
        )
        request = f'{{"op":"publish","channel":"{CHANNEL}","data":{data}}}'
        self.transport.write(client_frame(1, request.encode()))


async def open_peer(port: int, stats: Stats, subscribe: bool) -> HubPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(
        lambda: HubPeer(port, stats, subscribe), "127.0.0.1", port
    )
    await peer.ready
    return peer


def event_loop() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
