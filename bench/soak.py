"""Soak ``ws13 serve --workers N``: mixed traffic for a while, RSS and fds sampled.

    python bench/soak.py --duration 1800 --workers 2 --clients 200

It starts ``ws13 serve --workers N --hub-ticker 0.01`` on a free loopback
port and runs ``--clients`` client tasks until ``--duration`` seconds have
passed. Each client task loops over sessions of a random kind:

* **echo**: messages of 1 B to 64 KiB, checked, at random intervals;
* **chat**: a hub connection that subscribes to one of a few chat channels
  (so sessions land on different workers but share channels), publishes and
  reads what others publish;
* **slow reader**: a hub subscriber of the 100 msg/s ticker that stops
  reading for seconds at a time, so that the server's per-subscriber queue
  overflows (the ticker drops the oldest for it);
* **close**: every session ends after a random 0.2-5 s, cleanly (1000) or
  by aborting the TCP connection (one in four), then the task reconnects.

Every ``--interval`` seconds it samples each worker's RSS, PSS
(``/proc/PID/smaps_rollup``) and open file descriptors, and prints a line
(the lowest pid is the backplane process, started first).
At the end: the first and last sample per worker, the sessions of each
kind, and the errors counted (a failed echo check is an error; connections
refused or reset while the server is busy are counted apart, as ``resets``).
``--json FILE`` writes every sample. Exit status: 0, or 1 if an echo came
back wrong or the server died. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from ws13.asyncio import connect
from ws13.exceptions import ConnectionClosed, InvalidHandshake

CHANNELS = [f"chat:soak{i}" for i in range(4)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        return [int(child) for child in file.read().split()]


def sample(pid: int) -> dict[str, int]:
    """RSS and PSS in KiB and the open fds of ``pid``."""
    with open(f"/proc/{pid}/status") as file:
        rss = next(int(line.split()[1]) for line in file if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/smaps_rollup") as file:
        pss = next(int(line.split()[1]) for line in file if line.startswith("Pss:"))
    return {"rss_kib": rss, "pss_kib": pss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Soak:
    def __init__(self, url: str, deadline: float, kinds: list[str]) -> None:
        self.url = url
        self.kinds = kinds
        self.deadline = deadline
        self.sessions: collections.Counter[str] = collections.Counter()
        self.errors = 0
        self.resets = 0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    async def client(self, seed: int) -> None:
        rng = random.Random(seed)
        while self.left() > 0:
            kind = rng.choice(self.kinds)
            lifetime = min(rng.uniform(0.2, 5.0), max(0.0, self.left()))
            try:
                async with asyncio.timeout(lifetime + 10):
                    await getattr(self, kind)(rng, lifetime)
                self.sessions[kind] += 1
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                self.resets += 1
                await asyncio.sleep(0.1)

    async def end(self, connection: Any, rng: random.Random) -> None:
        if rng.random() < 0.25:
            connection.transport.abort()  # a client that vanishes
        else:
            await connection.close()

    async def echo(self, rng: random.Random, lifetime: float) -> None:
        connection = await connect(f"{self.url}/echo")
        stop = time.monotonic() + lifetime
        while time.monotonic() < stop:
            message = rng.randbytes(rng.choice([1, 100, 1000, 65536]))
            await connection.send(message)
            if await connection.recv() != message:
                self.errors += 1
            await asyncio.sleep(rng.uniform(0, 0.2))
        await self.end(connection, rng)

    async def chat(self, rng: random.Random, lifetime: float) -> None:
        connection = await connect(f"{self.url}/hub?nick=soak", subprotocols=["ws13.hub.v1"])
        channel = rng.choice(CHANNELS)
        await connection.send(json.dumps({"op": "subscribe", "channel": channel, "history": 5}))
        stop = time.monotonic() + lifetime
        while time.monotonic() < stop:
            request = {"op": "publish", "channel": channel, "data": {"t": rng.random()}}
            await connection.send(json.dumps(request))
            try:
                async with asyncio.timeout(rng.uniform(0.05, 0.5)):
                    while True:
                        await connection.recv()
            except TimeoutError:
                pass
        await self.end(connection, rng)

    async def slow(self, rng: random.Random, lifetime: float) -> None:
        connection = await connect(f"{self.url}/hub", subprotocols=["ws13.hub.v1"], max_queue=4)
        await connection.send(json.dumps({"op": "subscribe", "channel": "ticker"}))
        stop = time.monotonic() + lifetime
        while time.monotonic() < stop:
            await asyncio.sleep(rng.uniform(0.5, 2.0))  # not reading
            for _ in range(rng.randrange(1, 20)):
                await connection.recv()
        await self.end(connection, rng)


async def monitor(
    server: subprocess.Popen[bytes], soak: Soak, interval: float, samples: list[dict[str, Any]]
) -> None:
    started = time.monotonic()
    while soak.left() > 0 and server.poll() is None:
        now = round(time.monotonic() - started, 1)
        pids = children(server.pid)
        row = {"time": now, "processes": {str(pid): sample(pid) for pid in pids}}
        samples.append(row)
        figures = "  ".join(
            f"{pid}: {s['rss_kib'] / 1024:.1f}/{s['pss_kib'] / 1024:.1f} MiB {s['fds']} fds"
            for pid, s in row["processes"].items()
        )
        print(f"{now:7.1f} s  rss/pss  {figures}", flush=True)
        await asyncio.sleep(min(interval, max(0.0, soak.left())))


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    """``ws13 serve --workers N``, once the backplane and every worker run."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "ws13", "serve", "--port", str(port),
            "--workers", str(args.workers), "--hub-ticker", "0.01",
            "--hub-publish-rate", "0", "--loop", args.loop,
        ],
        stderr=subprocess.DEVNULL if not args.verbose else None,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start (status {server.poll()})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                if len(children(server.pid)) == args.workers + 1:
                    return server, port
        except OSError:
            pass
        time.sleep(0.02)


async def soak_for(
    args: argparse.Namespace, server: subprocess.Popen[bytes], port: int
) -> tuple[Soak, list[dict[str, Any]]]:
    soak = Soak(f"ws://127.0.0.1:{port}", time.monotonic() + args.duration, args.kinds)
    samples: list[dict[str, Any]] = []
    watcher = asyncio.create_task(monitor(server, soak, args.interval, samples))
    await asyncio.gather(*(soak.client(i) for i in range(args.clients)))
    await watcher
    return soak, samples


def report(soak: Soak, samples: list[dict[str, Any]], status: int) -> None:
    print(f"sessions: {dict(soak.sessions)}; echo errors: {soak.errors}; resets: {soak.resets}")
    if samples:
        first, last = samples[0]["processes"], samples[-1]["processes"]
        for pid in last:
            if pid in first:
                a, b = first[pid], last[pid]
                print(
                    f"process {pid}: "
                    f"RSS {a['rss_kib'] / 1024:.1f} → {b['rss_kib'] / 1024:.1f} MiB, "
                    f"PSS {a['pss_kib'] / 1024:.1f} → {b['pss_kib'] / 1024:.1f} MiB, "
                    f"fds {a['fds']} → {b['fds']}"
                )
    print(f"server exit status: {status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (1800)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (2)")
    parser.add_argument("--clients", type=int, default=200, help="client tasks (200)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per sample (10)")
    parser.add_argument(
        "--kinds",
        type=lambda text: text.split(","),
        default=["echo", "echo", "chat", "slow"],
        help="the sessions to draw from, comma-separated (echo,echo,chat,slow)",
    )
    parser.add_argument("--loop", default="auto", help="the server's --loop (auto)")
    parser.add_argument("--json", metavar="FILE", help="write the samples as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the server's log")
    args = parser.parse_args()
    if args.duration <= 0 or args.clients < 1 or args.workers < 2:
        parser.error("--duration must be > 0, --clients >= 1, --workers >= 2")
    if not set(args.kinds) <= {"echo", "chat", "slow"}:
        parser.error("--kinds: echo, chat or slow")
    server, port = start_server(args)
    try:
        soak, samples = asyncio.run(soak_for(args, server, port))
    finally:
        server.send_signal(signal.SIGTERM)
        status = server.wait(timeout=60)
    report(soak, samples, status)
    if args.json:
        with open(args.json, "w") as file:
            data = {"sessions": soak.sessions, "errors": soak.errors, "samples": samples}
            json.dump(data, file)
    return 0 if soak.errors == 0 and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
