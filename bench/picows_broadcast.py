"""The reference of bench/hub_fanout.py: picows's bare C-level broadcast loop.

Usage: python bench/picows_broadcast.py [--port PORT]   (prints ``READY <port>``)

A picows server (Cython, uvloop) speaking just enough ``ws13.hub.v1`` that the
benchmark's subscribers and publisher drive it unchanged: every connection
gets a ``welcome``; a ``subscribe`` request adds the connection to the one
subscriber list and gets a ``reply``; a ``publish`` request's ``data`` is
wrapped in a ``message`` push of the same shape and size as the hub's and
sent to every subscriber by the broadcast loop, ``transport.send()`` per
connection. No queue, no history, no flow control, no slow-consumer policy:
the floor a Python-driven fan-out can't go under on one core. Pings get
picows's automatic pong; a Close frame disconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from typing import Any

CHANNEL = b'"channel":"ticker.bench"'


def run(port: int) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    text = WSMsgType.TEXT
    subscribers: dict[Any, None] = {}  # insertion-ordered, O(1) removal
    offset = 0

    class Peer(WSListener):  # type: ignore[misc]
        subscribed = False

        def on_ws_connected(self, transport: Any) -> None:
            transport.send(text, b'{"op":"welcome","protocol":"ws13.hub.v1"}')

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            nonlocal offset
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
                return
            if frame.msg_type is not text:
                return
            payload = frame.get_payload_as_bytes()
            if payload.startswith(b'{"op":"publish"'):
                data = payload[payload.index(b'"data":') + 7 : -1]
                offset += 1
                message = (
                    b'{"op":"message",' + CHANNEL + b',"epoch":"picows00",'
                    b'"offset":%d,"time":%d,"data":%s}' % (offset, round(time.time() * 1000), data)
                )
                # The broadcast loop: the reference.
                for subscriber in subscribers:
                    subscriber.send(text, message)
            elif payload.startswith(b'{"op":"subscribe"'):
                self.subscribed = True
                subscribers[transport] = None
                transport.send(text, b'{"op":"reply","id":1,"result":{' + CHANNEL + b"}}")

        def on_ws_disconnected(self, transport: Any) -> None:
            if self.subscribed:
                del subscribers[transport]

    async def serve() -> None:
        server = await ws_create_server(lambda request: Peer(), "127.0.0.1", port, backlog=1024)
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Future()

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="picows_broadcast.py", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        run(args.port)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
