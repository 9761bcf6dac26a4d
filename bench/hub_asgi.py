"""The hub's fan-out cost under ``ws13 serve`` against inside an ASGI app under uvicorn.

Usage::

    python bench/hub_asgi.py                         # 100 subscribers, 6 s per server
    python bench/hub_asgi.py --subscribers 200 --seconds 10 --deflate

One server process at a time (this script run with ``--serve MODE``), on
uvloop: a hub publishing a 100-byte message every 10 ms on one channel, served
either by ``ws13.asyncio.serve`` (``Hub.handler``, what ``ws13 serve`` runs)
or by uvicorn (its default ``websockets-sansio`` protocol; permessage-deflate
off unless ``--deflate``) running a Starlette app with ``HubEndpoint``. The
subscribers are ws13 client connections in this process. After every
subscriber got its first messages, the server's CPU time (utime + stime from
/proc) is read over ``--seconds``: printed as CPU microseconds per delivered
copy, the figure that compares the two front-ends (the publish rate itself
drifts with load, so copies/s is printed for information). Loopback only;
every wait is bounded; exit status 0, or 1 with a one-line error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time

from ws13.asyncio import connect
from ws13.hub import SUBPROTOCOL, Hub
from ws13.hub.asgi import HubEndpoint

#: Seconds to wait for the server, and for every subscriber's first messages.
STARTUP = 30.0


async def publish_forever(hub: Hub) -> None:
    n = 0
    payload = "x" * 100
    while True:
        n += 1
        await hub.publish("t", {"n": n, "p": payload})
        await asyncio.sleep(0.01)


async def serve(mode: str, port: int, deflate: bool) -> None:
    hub = Hub(publish_rate=None)
    async with hub:
        publisher = asyncio.create_task(publish_forever(hub))
        try:
            if mode == "ws13":
                from ws13.asyncio import serve as ws13_serve

                async with ws13_serve(
                    hub.handler,
                    "127.0.0.1",
                    port,
                    process_request=hub.process_request,
                    subprotocols=[SUBPROTOCOL],
                    compression="deflate" if deflate else None,
                ) as server:
                    print("ready", flush=True)
                    await server.serve_forever()
            else:
                import uvicorn
                from starlette.applications import Starlette
                from starlette.routing import WebSocketRoute

                app = Starlette(routes=[WebSocketRoute("/hub", HubEndpoint(hub))])
                config = uvicorn.Config(
                    app,
                    host="127.0.0.1",
                    port=port,
                    lifespan="off",
                    log_level="warning",
                    ws="websockets-sansio",
                    ws_per_message_deflate=deflate,
                    loop="none",
                )
                print("ready", flush=True)
                await uvicorn.Server(config).serve()
        finally:
            publisher.cancel()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def measure(mode: str, subscribers: int, seconds: float, deflate: bool) -> str:
    port = free_port()
    args = [sys.executable, __file__, "--serve", mode, "--port", str(port)]
    server = await asyncio.create_subprocess_exec(
        *args, *(["--deflate"] if deflate else []), stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    tasks: list[asyncio.Task[None]] = []
    try:
        line = await asyncio.wait_for(server.stdout.readline(), STARTUP)
        if line.strip() != b"ready":
            raise RuntimeError(f"the {mode} server didn't start")
        counts = [0] * subscribers

        async def subscribe(index: int) -> None:
            async with asyncio.timeout(STARTUP):
                while True:
                    try:
                        ws = await connect(
                            f"ws://127.0.0.1:{port}/hub",
                            subprotocols=[SUBPROTOCOL],
                            compression="deflate" if deflate else None,
                            ping_interval=None,
                        )
                        break
                    except OSError:  # uvicorn prints "ready" before it listens
                        await asyncio.sleep(0.1)
            await ws.send(json.dumps({"op": "subscribe", "id": 1, "channel": "t"}))
            async for _ in ws:
                counts[index] += 1

        tasks = [asyncio.create_task(subscribe(i)) for i in range(subscribers)]
        async with asyncio.timeout(STARTUP):
            while min(counts) < 3:
                failed = [task for task in tasks if task.done()]
                if failed:
                    raise RuntimeError(f"a subscriber failed: {failed[0].exception()!r}")
                await asyncio.sleep(0.1)
        cpu0, t0, copies0 = cpu_seconds(server.pid), time.monotonic(), sum(counts)
        await asyncio.sleep(seconds)
        cpu1, t1, copies1 = cpu_seconds(server.pid), time.monotonic(), sum(counts)
        copies = copies1 - copies0
        label = "ws13 serve" if mode == "ws13" else "uvicorn + HubEndpoint"
        return (
            f"{label:22} {subscribers} subscribers: {copies / (t1 - t0):7.0f} copies/s, "
            f"server CPU {100 * (cpu1 - cpu0) / (t1 - t0):3.0f} %, "
            f"{1e6 * (cpu1 - cpu0) / max(copies, 1):5.1f} us per copy"
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.terminate()
        await asyncio.wait_for(server.wait(), STARTUP)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100, help="connections (100)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured time (6)")
    parser.add_argument("--deflate", action="store_true", help="negotiate permessage-deflate")
    parser.add_argument("--serve", choices=["ws13", "asgi"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        print("hub_asgi: error: uvloop is missing: pip install -e '.[speed]'", file=sys.stderr)
        return 1
    if args.serve is not None:
        uvloop.run(serve(args.serve, args.port, args.deflate))
        return 0
    if args.subscribers < 1 or args.seconds <= 0:
        parser.error("--subscribers and --seconds must be positive")
    try:
        for mode in ("ws13", "asgi"):
            print(uvloop.run(measure(mode, args.subscribers, args.seconds, args.deflate)))
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"hub_asgi: error: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
