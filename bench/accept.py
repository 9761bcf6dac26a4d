"""The server's CPU per connection (accept + handshake + close), on both loops.

Usage: python bench/accept.py [--loop asyncio|uvloop] [--connections 4000] [--rounds 5]

Measures what ws13's own accept loop (``ws13.asyncio.accepting``) costs
against asyncio's ``create_server`` accept loop: run it once with this tree and
once with another ws13 first on ``PYTHONPATH`` (e.g. ``git archive <commit> src``)
and compare. The server runs in a child process pinned to CPU 1 and reports
its own CPU time (``resource.getrusage``) around each round, so load from
other processes changes the figure less than a throughput would; the client
(raw sockets, CPU 0) opens ``--connections`` connections per round, 50 at a
time, each sending a handshake, reading the 101 and closing. Prints the
best (least disturbed) round's server CPU µs per connection and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
#: A masked Close frame (code 1000) so that the server closes at once.
CLOSE = b"\x88\x82\0\0\0\0\x03\xe8"


def cpu() -> str:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return f"{usage.ru_utime} {usage.ru_stime}"


async def serve_main() -> None:
    from ws13.asyncio import serve

    async def handler(connection: object) -> None:
        await connection.wait_closed()  # type: ignore[attr-defined]

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        print(server.port, flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while await reader.readline():
            print(cpu(), flush=True)


async def one(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(CLOSE)
    await reader.read()  # the server's Close, then EOF
    writer.close()


async def round_of(port: int, connections: int) -> None:
    semaphore = asyncio.Semaphore(50)

    async def limited() -> None:
        async with semaphore:
            await one(port)

    await asyncio.gather(*(limited() for _ in range(connections)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--connections", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    if args.serve:
        os.sched_setaffinity(0, {1})
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve_main())
        return
    os.sched_setaffinity(0, {0})
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--loop", args.loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    port = int(server.stdout.readline())

    def server_cpu() -> tuple[float, float]:
        """The server's user and system CPU seconds so far."""
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.write("\n")
        server.stdin.flush()
        user, system = server.stdout.readline().split()
        return float(user), float(system)

    import ws13

    costs: list[float] = []
    users: list[float] = []
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(round_of(port, 500))  # warm-up
            for _ in range(args.rounds):
                before = server_cpu()
                runner.run(round_of(port, args.connections))
                after = server_cpu()
                users.append((after[0] - before[0]) / args.connections * 1e6)
                costs.append((sum(after) - sum(before)) / args.connections * 1e6)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    print(
        f"{os.path.dirname(ws13.__file__)} on {args.loop}: server CPU per connection "
        f"best {min(costs):.0f} µs, median {statistics.median(costs):.0f} µs "
        f"(user: best {min(users):.0f}, median {statistics.median(users):.0f}) "
        f"({args.rounds} rounds of {args.connections})"
    )


if __name__ == "__main__":
    main()
