"""The subscriber side of bench/hub_fanout.py: a minimal ``ws13.hub.v1`` client.

Usage: python bench/hub_client.py '<json spec>'  (started by hub_fanout.py)

A subscriber process opens ``spec["count"]`` connections to ``spec["port"]``,
subscribes each to the bench channel, prints ``{"ready": N}``, then answers
``collect`` lines on stdin with a JSON line of its results until ``quit``.

Two kinds of connection, so that the Python client is not what limits a run of
10,000 subscribers at 100 messages/s (a million copies a second):

* **Sampled** (``spec["sample"]`` of them, spread evenly over the connection
  order, hence over the hub's subscription order): a ``HubPeer``
  (``asyncio.Protocol`` on uvloop) that reads at once and parses every frame
  for the publish timestamp: these give the latency histogram.
* **Counted** (the rest): a raw non-blocking socket that nobody reads until a
  sweep every ``spec["sweep"]`` seconds (0.2): one ``recv`` then takes every
  message that arrived meanwhile, and ``bytes.count()`` of each phase's marker
  counts them, without parsing frames or JSON. The kernel's socket buffers hold
  the messages meanwhile (a few KiB), so the hub sees a reader that keeps up.
  Server pings (``\\x89\\x04`` + 4 bytes: 0x89 can't occur in the ASCII JSON or
  in a length byte here) get their pong.

Both count copies per phase; only the sample measures latency.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import resource
import select
import socket
import sys
import time
from typing import Any

CHANNEL = "ticker.bench"
SUBPROTOCOL = "ws13.hub.v1"
#: Histogram bins: ``int(log1p(latency in µs) * BINS_PER_E)``, ~2.5 % wide.
BINS_PER_E = 40
BINS = 800
#: Seconds to open all connections.
CONNECT_TIMEOUT = 300.0
#: Counted sockets read per slice of a sweep before letting the sampled
#: connections run, so a sweep delays their reads by a millisecond or two.
SWEEP_SLICE = 200
PING = b"\x89\x04"


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


def marker(phase: str) -> bytes:
    """What identifies a copy of a message of ``phase`` (see ``Publisher``)."""
    return f'"data":{{"p":"{phase}",'.encode()


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

    def to_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "phases": {
                phase: {
                    "count": int(totals[0]),
                    "max": totals[1],
                    "bins": {str(i): n for i, n in enumerate(bins) if n},
                }
                for phase, (bins, totals) in self.phases.items()
            },
        }


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


# -- counted connections ------------------------------------------------------------


async def open_counted(port: int) -> tuple[socket.socket, bytes]:
    """A subscribed raw socket, and what arrived after the subscribe reply."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, handshake(port))
        data = b""
        state = 0  # as HubPeer's
        while state != 3:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                raise BenchError("connection lost during setup")
            data += chunk
            if state == 0:
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    continue
                if not data.startswith(b"HTTP/1.1 101"):
                    line = data[: data.find(b"\r\n")].decode(errors="replace")
                    raise BenchError(f"handshake refused: {line}")
                data, state = data[end + 4 :], 1
            frames, rest = split_frames(data)
            for opcode, payload, end in frames:
                op = json.loads(payload).get("op") if opcode == 1 else None
                if op == "error" or opcode == 8:
                    raise BenchError(f"subscribe failed: {payload[:200]!r}")
                if state == 1 and op == "welcome":
                    state = 2
                    subscribe = {"op": "subscribe", "id": 1, "channel": CHANNEL}
                    await loop.sock_sendall(sock, request_frame(subscribe))
                elif state == 2 and op == "reply":
                    state = 3
                    rest = data[end:]  # counted like what the sweeps read
                    break
            data = rest
    except BaseException:
        sock.close()
        raise
    return sock, data


class Counted:
    """The counted sockets of a process and their sweeps."""

    def __init__(self, stats: Stats, phases: list[str], interval: float) -> None:
        self.stats = stats
        self.markers = [(phase, marker(phase)) for phase in phases]
        self.interval = interval
        self.sockets: dict[int, socket.socket] = {}
        #: Per socket, the last bytes of the previous read: a marker or ping
        #: split between two reads is found in carry + next read.
        self.carry: dict[int, bytes] = {}
        self.keep = max(len(PING) + 4, *(len(m) for _, m in self.markers)) - 1
        self.epoll = select.epoll()
        self.buffer = bytearray(1 << 18)
        self.closed = 0

    def add(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        self.sockets[fd] = sock
        self.carry[fd] = b""
        self.epoll.register(fd, select.EPOLLIN)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            ready = self.epoll.poll(0, max(1, len(self.sockets)))  # default: 1023 at most
            for start in range(0, len(ready), SWEEP_SLICE):
                if start:
                    await asyncio.sleep(0)  # let the sampled connections read
                for fd, _ in ready[start : start + SWEEP_SLICE]:
                    self.read(fd)

    def read(self, fd: int) -> None:
        sock = self.sockets.get(fd)
        if sock is None:
            return
        buffer = self.buffer
        try:
            n = sock.recv_into(buffer)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if n == 0:
            self.epoll.unregister(fd)
            del self.sockets[fd], self.carry[fd]
            sock.close()
            self.closed += 1
            return
        self.feed(fd, sock, buffer[:n])

    def feed(self, fd: int, sock: socket.socket, new: bytes | bytearray) -> None:
        """Count the copies in ``new`` bytes from ``sock``; answer its pings."""
        carry = self.carry[fd]
        data = carry + new
        counts = self.stats.counts
        for phase, m in self.markers:
            # Occurrences wholly inside the carry were counted last time.
            found = data.count(m) - carry.count(m)
            if found:
                counts[phase] = counts.get(phase, 0) + found
        if PING in data:
            self.pong(sock, data, len(carry))
        self.carry[fd] = bytes(data[-self.keep :])

    def pong(self, sock: socket.socket, data: bytes | bytearray, carried: int) -> None:
        index = data.find(PING)
        while index >= 0:
            end = index + len(PING) + 4
            if end > len(data):
                break  # completed by the next read (the carry keeps it)
            if end > carried:  # not answered already
                try:
                    sock.send(client_frame(0xA, bytes(data[index + 2 : end])))
                except OSError:
                    pass
            index = data.find(PING, index + 1)


# -- the subscriber process ----------------------------------------------------------


def sampled(index: int, count: int, sample: int) -> bool:
    """Whether connection ``index`` of ``count`` is one of ``sample`` spread evenly."""
    return index * sample // count != (index + 1) * sample // count


async def subscriber_main(spec: dict[str, Any]) -> int:
    """Open the subscribers, say ready, answer ``collect`` until ``quit``."""
    stats = Stats()
    peers: list[HubPeer] = []
    count, sample, port = spec["count"], min(spec["sample"], spec["count"]), spec["port"]
    counted = Counted(stats, spec["phases"], spec.get("sweep", 0.2))
    sweeping = asyncio.get_running_loop().create_task(counted.run())
    semaphore = asyncio.Semaphore(spec.get("concurrency", 100))
    opened = 0

    async def one(index: int) -> None:
        nonlocal opened
        async with semaphore:
            if sampled(index, count, sample):
                peers.append(await open_peer(port, stats, subscribe=True))
            else:
                sock, rest = await open_counted(port)
                counted.add(sock)
                if rest:
                    counted.feed(sock.fileno(), sock, rest)
            opened += 1

    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            # Started in order, so the sample is spread over the subscription order.
            await asyncio.gather(*(one(index) for index in range(count)))
    except (OSError, BenchError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        print(json.dumps({"error": f"{opened} subscribers connected, then: {reason}"}))
        return 1
    print(json.dumps({"ready": opened, "sampled": len(peers)}), flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command = line.strip()
        if command == "collect":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            result = {
                **stats.to_json(),
                "closed": sum(peer.closed for peer in peers) + counted.closed,
                "cpu": usage.ru_utime + usage.ru_stime,
            }
            print(json.dumps(result), flush=True)
        else:  # "quit", or the orchestrator went away (EOF)
            break
    sweeping.cancel()
    for peer in peers:
        if peer.transport is not None:
            peer.transport.abort()
    for sock in counted.sockets.values():
        sock.close()
    return 0


def event_loop() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if spec.get("cpu") is not None:
        os.sched_setaffinity(0, {spec["cpu"]})
    with asyncio.Runner(loop_factory=event_loop()) as runner:
        return runner.run(subscriber_main(spec))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
