"""The echo servers that bench/run.py measures, one per process.

Usage: python bench/servers.py NAME [--port P] [--deflate] [--cpu N]

NAME is one of ws13, ws13-callback, ws13-metrics, ws13-callback-metrics (ws13 with
Prometheus metrics on), websockets, aiohttp, picows, raw-asyncio,
raw-asyncio-task, floor-callback, floor-task, floor-coro, floor-step, and
uvicorn-ws13, uvicorn-websockets, uvicorn-websockets-sansio, uvicorn-wsproto
(``uvicorn_echo.py``: a Starlette app under uvicorn, compression off). (Node's
``ws`` server is bench/node/server.js.) Every server listens on 127.0.0.1 (port 0
picks a free port), echoes each message back as it came on any path, runs on
uvloop, and prints ``READY <port>`` on stdout once it accepts connections.
Compression is off unless ``--deflate`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import resource
import socket
import sys
import types
from asyncio.tasks import _enter_task, _leave_task  # type: ignore[attr-defined]
from collections.abc import Generator
from typing import Any

HOST = "127.0.0.1"
MAX_SIZE = 64 * 2**20  # large enough for the 1 MiB case everywhere
BACKLOG = 1024
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ready(port: int) -> None:
    print(f"READY {port}", flush=True)


# -- ws13 ---------------------------------------------------------------------


async def run_ws13(port: int, deflate: bool) -> None:
    """ws13's headline API: async for message in ws: await ws.send(message)."""

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    await serve_ws13(echo, port, deflate)


async def run_ws13_callback(port: int, deflate: bool) -> None:
    """ws13's callback API: set_message_handler() + send_nowait(), no task per message."""

    async def echo(ws):  # type: ignore[no-untyped-def]
        ws.set_message_handler(ws.send_nowait)
        await ws.wait_closed()

    await serve_ws13(echo, port, deflate)


async def run_ws13_metrics(port: int, deflate: bool) -> None:
    """``ws13`` with Prometheus metrics on (``serve(metrics=Metrics())``): their cost."""

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    await serve_ws13(echo, port, deflate, metrics=True)


async def run_ws13_callback_metrics(port: int, deflate: bool) -> None:
    """``ws13-callback`` with Prometheus metrics on."""

    async def echo(ws):  # type: ignore[no-untyped-def]
        ws.set_message_handler(ws.send_nowait)
        await ws.wait_closed()

    await serve_ws13(echo, port, deflate, metrics=True)


async def serve_ws13(handler, port: int, deflate: bool, metrics: bool = False) -> None:  # type: ignore[no-untyped-def]
    from ws13.asyncio import serve

    extra = {}
    if metrics:
        from ws13.metrics import Metrics

        extra["metrics"] = Metrics()
    server = await serve(
        handler,
        HOST,
        port,
        compression="deflate" if deflate else None,
        max_size=MAX_SIZE,
        backlog=BACKLOG,
        **extra,
    )
    ready(server.port)
    await asyncio.Future()


# -- websockets ---------------------------------------------------------------


async def run_websockets(port: int, deflate: bool) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    server = await serve(
        echo,
        HOST,
        port,
        compression="deflate" if deflate else None,
        max_size=MAX_SIZE,
        backlog=BACKLOG,
    )
    ready(server.sockets[0].getsockname()[1])
    await asyncio.Future()


# -- aiohttp ------------------------------------------------------------------


async def run_aiohttp(port: int, deflate: bool) -> None:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=deflate, max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=BACKLOG)
    await site.start()
    server = site._server
    assert server is not None
    ready(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    await asyncio.Future()


# -- picows -------------------------------------------------------------------


async def run_picows(port: int, deflate: bool) -> None:
    if deflate:
        raise SystemExit("picows does not implement permessage-deflate")
    from picows import WSListener, WSMsgType, ws_create_server

    close_type = WSMsgType.CLOSE
    ping_type = WSMsgType.PING

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport, frame):  # type: ignore[no-untyped-def]
            msg_type = frame.msg_type
            if msg_type is close_type:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif msg_type is ping_type:
                transport.send_pong(frame.get_payload_as_bytes())
            else:
                transport.send(msg_type, frame.get_payload_as_memoryview(), frame.fin)

    server = await ws_create_server(
        lambda request: Echo(), HOST, port, max_frame_size=MAX_SIZE, backlog=BACKLOG
    )
    ready(server.sockets[0].getsockname()[1])
    await asyncio.Future()


# -- raw-asyncio: the ceiling -------------------------------------------------


def _load_mask():  # type: ignore[no-untyped-def]
    try:
        from ws13._speedups import apply_mask
    except ImportError:
        from ws13.utils import apply_mask
    return apply_mask


class RawEcho(asyncio.Protocol):
    """A minimal WebSocket echo: handshake, unfragmented frames, Close, Ping.

    No validation beyond what the benchmark needs: it is the ceiling, the cost
    of asyncio (uvloop) plus a frame header and an unmasking per message. Data
    frames are streamed: the header goes out as soon as it is parsed and each
    received piece of payload is unmasked and written back as it arrives, so a
    large message is never buffered whole.
    """

    __slots__ = (
        "apply_mask",
        "have",
        "mask",
        "need",
        "offset",
        "open",
        "parts",
        "remaining",
        "transport",
    )

    def __init__(self, apply_mask) -> None:  # type: ignore[no-untyped-def]
        self.apply_mask = apply_mask
        self.transport: asyncio.Transport | None = None
        # Bytes of an incomplete header or control frame: the chunks so far
        # (joined once complete), their total size, the size needed.
        self.parts: list[bytes] = []
        self.have = 0
        self.need = 0
        self.open = False
        # The data frame whose payload is being streamed.
        self.remaining = 0
        self.mask = b"\0\0\0\0"
        self.offset = 0

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _keep(self, rest: bytes, need: int) -> None:
        self.parts = [rest]
        self.have = len(rest)
        self.need = need

    def data_received(self, data: bytes) -> None:
        if self.parts:
            self.parts.append(data)
            self.have += len(data)
            if self.have < self.need:
                return
            data = b"".join(self.parts)
            self.parts = []
        if not self.open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._keep(data, len(data) + 1)
                return
            self._handshake(data[:end])
            data = data[end + 4 :]
        self._frames(data)

    def _handshake(self, head: bytes) -> None:
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.open = True

    def _frames(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        apply_mask = self.apply_mask
        view = memoryview(data)
        pos, n = 0, len(data)
        out: list[bytes] = []
        while pos < n:
            if self.remaining:  # the rest of a data frame's payload
                k = min(self.remaining, n - pos)
                mask, shift = self.mask, self.offset & 3
                if shift:
                    mask = mask[shift:] + mask[:shift]
                out.append(apply_mask(view[pos : pos + k], mask))
                pos += k
                self.remaining -= k
                self.offset += k
                continue
            if n - pos < 2:
                self._keep(data[pos:], 2)
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = 4 if length == 126 else 10 if length == 127 else 2
            if b1 & 0x80:
                head += 4
            if n - pos < head:
                self._keep(data[pos:], head)
                break
            if length >= 126:
                length = int.from_bytes(data[pos + 2 : pos + (4 if length == 126 else 10)], "big")
            mask = data[pos + head - 4 : pos + head] if b1 & 0x80 else b"\0\0\0\0"
            opcode = b0 & 0x0F
            if opcode >= 0x8:  # control frame: wait for all of it
                end = pos + head + length
                if end > n:
                    self._keep(data[pos:], end - pos)
                    break
                payload = apply_mask(view[pos + head : end], mask)
                pos = end
                if opcode == 0x9:  # Ping
                    out.append(bytes((0x8A, length)) + payload)
                elif opcode == 0x8:  # Close: echo it, close TCP first (server side)
                    out.append(bytes((0x88, length)) + payload)
                    self._finish(out)
                    return
                continue
            if length < 126:
                out.append(bytes((b0, length)))
            elif length < 65536:
                out.append(bytes((b0, 126)) + length.to_bytes(2, "big"))
            else:
                out.append(bytes((b0, 127)) + length.to_bytes(8, "big"))
            pos += head
            self.mask = mask
            self.offset = 0
            self.remaining = length
        if out:
            self._send(out)

    def _finish(self, out: list[bytes]) -> None:
        """Write the last echoes and the Close, then close TCP (server side)."""
        RawEcho._send(self, out)
        assert self.transport is not None
        self.transport.close()

    def _send(self, out: list[bytes]) -> None:
        assert self.transport is not None
        if len(out) <= 4 and len(out[-1]) < 4096:
            self.transport.write(b"".join(out))
        else:
            self.transport.writelines(out)


class RawTaskEcho(RawEcho):
    """RawEcho with the echo written by a task that is woken once per read.

    The same work as raw-asyncio plus what an ``await``-per-message API costs
    on asyncio and nothing else: a future per wake-up, its ``set_result``
    (a ``call_soon``) and a task step. No WebSocket library's ``async for``
    can be cheaper than this on the same loop, so it is the floor that the
    high-level API is compared with, beside picows's callback API. A Close
    writes what is pending first.
    """

    __slots__ = ("pending", "task", "waiter")

    def __init__(self, apply_mask) -> None:  # type: ignore[no-untyped-def]
        super().__init__(apply_mask)
        self.pending: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self.task = asyncio.get_running_loop().create_task(self._echo())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()

    def _finish(self, out: list[bytes]) -> None:
        out, self.pending = self.pending + out, []
        super()._finish(out)

    def _send(self, out: list[bytes]) -> None:
        self.pending += out
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.set_result(None)

    async def _echo(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                self.waiter = loop.create_future()
                await self.waiter
            out, self.pending = self.pending, []
            super()._send(out)


async def run_raw(port: int, deflate: bool) -> None:
    if deflate:
        raise SystemExit("raw-asyncio does not implement permessage-deflate")
    apply_mask = _load_mask()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RawEcho(apply_mask), HOST, port, backlog=BACKLOG)
    ready(server.sockets[0].getsockname()[1])
    await asyncio.Future()


async def run_raw_task(port: int, deflate: bool) -> None:
    if deflate:
        raise SystemExit("raw-asyncio-task does not implement permessage-deflate")
    apply_mask = _load_mask()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RawTaskEcho(apply_mask), HOST, port, backlog=BACKLOG)
    ready(server.sockets[0].getsockname()[1])
    await asyncio.Future()


# -- floors: ws13's C parser and framer under three ways of running the echo --


class FloorCallback(RawEcho):
    """The echo written from ``data_received`` itself, as a callback API does.

    Frames are parsed by ws13's C ``parse_messages`` and built by its C
    ``build_frame``; anything else (a partial frame, a control frame) goes to
    RawEcho's Python code. With the other floors, it tells what the
    way the application code is *run* costs per message, apart from parsing
    and framing: ``bench/instructions.py`` counts them.
    """

    __slots__ = ("events",)

    def __init__(self, apply_mask) -> None:  # type: ignore[no-untyped-def]
        super().__init__(apply_mask)
        self.events: list[str | bytes] = []

    def _frames(self, data: bytes) -> None:
        if self.remaining or self.parts:
            super()._frames(data)
            return
        events = self.events
        pos = _parse_messages(data, 0, 1, -1, events, None)
        if events:
            self.events = []
            for message in events:
                self._message(message)
        if pos < len(data):
            super()._frames(data[pos:])

    def _message(self, message: str | bytes) -> None:
        assert self.transport is not None
        if type(message) is str:
            self.transport.write(_build_frame(0x81, message.encode(), None))
        else:
            self.transport.write(_build_frame(0x82, message, None))


class FloorTask(FloorCallback):
    """FloorCallback with each message handed to a task through a future:
    what ``async for message in ws`` costs on asyncio at the least."""

    __slots__ = ("task", "waiter")

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self.waiter: asyncio.Future[str | bytes] | None = None
        self.task = asyncio.get_running_loop().create_task(self._echo())

    def connection_lost(self, exc: Exception | None) -> None:
        self.task.cancel()

    def _message(self, message: str | bytes) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is None:  # a second message in one read: the bench never sends one
            super()._message(message)
        else:
            waiter.set_result(message)

    async def _echo(self) -> None:
        loop = asyncio.get_running_loop()
        send = super()._message
        while True:
            waiter = self.waiter = loop.create_future()
            send(await waiter)


class FloorCoro(FloorCallback):
    """FloorCallback with each message sent into a coroutine from
    ``data_received``, no task or future per message: the least that any
    ``await``-style API that is stepped directly could cost."""

    __slots__ = ("coro",)

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self.coro = self._echo()
        self.coro.send(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.coro.close()

    def _message(self, message: str | bytes) -> None:
        self.coro.send(message)

    async def _echo(self) -> None:
        send = super()._message
        while True:
            send(await _next_message())


class FloorStep(FloorCallback):
    """FloorCallback with the echo in a task that ``data_received`` steps
    itself: the task parks on a future-like object once, and each message is
    sent into its coroutine inside the task (entered and left around the
    send, in the task's context). No future, handle or loop pass per
    message: the least a stepped ``async for message in ws`` can cost, and
    what ws13's ``Stepper`` did with more cases handled, until issue 22
    removed it (it relied on asyncio's private ``_enter_task``)."""

    __slots__ = ("coro", "parked", "task")

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)
        self.parked = _Parked()
        self.coro = self._echo()
        self.task = asyncio.get_running_loop().create_task(self.coro)

    def connection_lost(self, exc: Exception | None) -> None:
        self.parked.cancel()

    def _message(self, message: str | bytes) -> None:
        task = self.task
        parked = self.parked
        loop = parked.loop
        if loop is None:  # the task has not parked yet: the bench never sends this early
            super()._message(message)
            return
        _enter_task(loop, task)
        try:
            parked.context.run(self.coro.send, message)
        finally:
            _leave_task(loop, task)

    async def _echo(self) -> None:
        send = super()._message
        parked = self.parked
        while True:
            send(await parked)


class _Parked:
    """What FloorStep's task awaits: asyncio's Task sees a future that never
    completes, except by cancellation, and its coroutine receives messages
    sent from ``data_received`` instead."""

    __slots__ = ("_asyncio_future_blocking", "callbacks", "context", "loop")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.callbacks: list[Any] = []
        self.context: Any = None
        self._asyncio_future_blocking = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        assert self.loop is not None
        return self.loop

    def add_done_callback(self, callback: Any, *, context: Any = None) -> None:
        # The task passes its own context: the messages are sent in it.
        self.callbacks.append(callback)
        self.context = context

    def remove_done_callback(self, callback: Any) -> int:
        return 0

    def cancel(self, msg: Any = None) -> bool:
        if self.loop is not None:
            for callback in self.callbacks:
                self.loop.call_soon(callback, self)
        return True

    def cancelled(self) -> bool:
        return True

    def result(self) -> None:
        raise asyncio.CancelledError

    def __await__(self) -> Generator[Any, str | bytes, str | bytes]:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            self._asyncio_future_blocking = True
        return (yield self)


@types.coroutine
def _next_message() -> Generator[None, str | bytes, str | bytes]:
    return (yield)


_parse_messages: Any = None
_build_frame: Any = None


def floor_server(cls: type[RawEcho]):  # type: ignore[no-untyped-def]
    async def run(port: int, deflate: bool) -> None:
        global _parse_messages, _build_frame
        from ws13._accel import build_frame, parse_messages

        _parse_messages, _build_frame = parse_messages, build_frame
        if deflate:
            raise SystemExit("the floor servers do not implement permessage-deflate")
        apply_mask = _load_mask()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: cls(apply_mask), HOST, port, backlog=BACKLOG)
        ready(server.sockets[0].getsockname()[1])
        await asyncio.Future()

    return run


# -- uvicorn ------------------------------------------------------------------


def uvicorn_server(protocol: str):  # type: ignore[no-untyped-def]
    """uvicorn serving uvicorn_echo.py's Starlette echo app with ``--ws`` = ``protocol``."""

    bench = os.path.dirname(os.path.abspath(__file__))

    async def run(port: int, deflate: bool) -> None:
        sys.path.insert(0, bench)
        from uvicorn_echo import serve_uvicorn

        await serve_uvicorn(protocol, port, ready)

    return run


SERVERS = {
    "ws13": run_ws13,
    "ws13-callback": run_ws13_callback,
    "ws13-metrics": run_ws13_metrics,
    "ws13-callback-metrics": run_ws13_callback_metrics,
    "websockets": run_websockets,
    "aiohttp": run_aiohttp,
    "picows": run_picows,
    "raw-asyncio": run_raw,
    "raw-asyncio-task": run_raw_task,
    "floor-callback": floor_server(FloorCallback),
    "floor-task": floor_server(FloorTask),
    "floor-coro": floor_server(FloorCoro),
    "floor-step": floor_server(FloorStep),
    "uvicorn-ws13": uvicorn_server("ws13"),
    "uvicorn-websockets": uvicorn_server("websockets"),
    "uvicorn-websockets-sansio": uvicorn_server("websockets-sansio"),
    "uvicorn-wsproto": uvicorn_server("wsproto"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(SERVERS))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    coro = SERVERS[args.name](args.port, args.deflate)
    try:
        if args.no_uvloop:
            asyncio.run(coro)
        else:
            import uvloop

            uvloop.run(coro)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
