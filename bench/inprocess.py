"""ws13's server-side Python cost without sockets: per handshake and per message.

Usage: python bench/inprocess.py [--profile handshake|echo] [--no-gc] [--asyncio] [--quick]

A fake transport stands in for the socket, so what is timed is ws13's own
Python (and C speedups) plus asyncio's task machinery on the chosen loop
(uvloop unless ``--asyncio``), none of the kernel's work:

* handshake: the ``serve()`` object's connection factory, ``connection_made``,
  the opening request, the handler task starting, a Close frame, the handler
  ending and ``connection_lost``, for 300 batches of 100 connections; the
  best batch, per connection.
* echo: one connection with ``async for message in ws: await ws.send(message)``;
  one 32-byte masked frame fed at a time from a loop callback, as a transport
  calls ``data_received()``, the next one once the echo is written; the best
  of 60 batches of 1,000, per message (the harness's own callback included).

On this 2-core VM the same code measures in two states, one about 1.5x
slower than the other, switching every few seconds; the best of many
batches over ~3 s finds the fast one (handshake ~65 us, echo ~4.0 us at
the end of session 3).

``--profile`` runs one of them under cProfile and prints the top functions.
This is where to look first when a change to the handshake or the hot path
is meant to save a few microseconds: the real benchmark (``run.py``) varies
more than that between runs on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from ws13.asyncio import serve  # noqa: E402
from ws13.asyncio.server import ServerConnection  # noqa: E402
from ws13.utils import build_frame  # noqa: E402

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
CLOSE = build_frame(0x88, (1000).to_bytes(2, "big"), b"\x01\x02\x03\x04")
MESSAGE = build_frame(0x82, b"x" * 32, b"\x01\x02\x03\x04")


class FakeTransport:
    """What ws13's glue calls on a transport; ``close()`` reports the loss next iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: Any) -> None:
        self.loop = loop
        self.protocol = protocol
        self.closing = False
        self.written = 0
        # Called after each write (the echo benchmark feeds the next message).
        self.on_write: Any = None

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.written += 1
        if self.on_write is not None:
            self.on_write()

    def writelines(self, data: Any) -> None:
        self.write(b"")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    abort = close


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def handshakes(batches: int) -> float:
    """Best microseconds per connection over ``batches`` batches of 100."""
    loop = asyncio.get_running_loop()
    factory = serve(echo, "127.0.0.1", 0).factory
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(100):
            connection = factory()
            connection.connection_made(FakeTransport(loop, connection))  # type: ignore[arg-type]
            connection.data_received(REQUEST)
            connection.data_received(CLOSE)
        for _ in range(6):  # handlers end, connections are lost
            await asyncio.sleep(0)
        best = min(best, (time.perf_counter() - start) / 100 * 1e6)
    return best


async def echoes(batches: int) -> float:
    """Best microseconds per echoed message over ``batches`` batches of 1,000."""
    loop = asyncio.get_running_loop()
    connection = serve(echo, "127.0.0.1", 0).factory()
    transport = FakeTransport(loop, connection)
    connection.connection_made(transport)  # type: ignore[arg-type]
    connection.data_received(REQUEST)
    await asyncio.sleep(0)
    best = float("inf")
    for _ in range(batches):
        done = loop.create_future()
        remaining = 1000

        def feed(done: asyncio.Future[None] = done) -> None:
            # Called by the loop, not from a task, as a transport calls
            # data_received(); the next message once the echo is written.
            nonlocal remaining
            if remaining:
                remaining -= 1
                connection.data_received(MESSAGE)
            else:
                done.set_result(None)

        transport.on_write = lambda: loop.call_soon(feed)
        start = time.perf_counter()
        loop.call_soon(feed)
        await done
        best = min(best, (time.perf_counter() - start) / 1000 * 1e6)
        transport.on_write = None
    connection.data_received(CLOSE)
    await asyncio.sleep(0)
    return best


async def main(args: argparse.Namespace) -> None:
    if args.no_gc:
        gc.disable()
    await handshakes(1 if args.quick else 10)  # warm up
    await echoes(1)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await (handshakes(100) if args.profile == "handshake" else echoes(20))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    rounds = (3, 2) if args.quick else (300, 60)
    print(f"server handshake + close: {await handshakes(rounds[0]):.1f} us per connection")
    print(f"echo, async for + send:   {await echoes(rounds[1]):.2f} us per message")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=["handshake", "echo"])
    parser.add_argument("--no-gc", action="store_true", help="gc.disable() first")
    parser.add_argument("--asyncio", action="store_true", help="asyncio's loop, not uvloop")
    parser.add_argument("--quick", action="store_true", help="a few batches: a smoke run")
    arguments = parser.parse_args()
    if arguments.asyncio:
        asyncio.run(main(arguments))
    else:
        import uvloop

        uvloop.run(main(arguments))
