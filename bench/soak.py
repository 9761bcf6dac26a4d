"""Soak: mixed traffic against ``ws13 serve`` for a long time; memory and fds must stay flat.

Usage::

    python bench/soak.py                              # 30 minutes, 1 worker
    python bench/soak.py --duration 120 --workers 2 --output docs/soak.md
    python bench/soak.py --quick                      # a few seconds (the test)

Starts a real ``ws13 serve`` on 127.0.0.1 (``--workers N`` passed on when N >
1) and runs, in this process, until ``--duration`` seconds have passed:

* **echo** connections (``--echo``, 24) sending messages of random sizes (most
  up to 125 bytes, some up to 64 KiB, a few up to 1 MB), checking every echo,
  and ending each connection after a random number of messages in one of three
  ways: a clean close, a dropped TCP connection, or half a frame and then a
  dropped connection;
* **slow readers** (``--slow``, 4) sending 256 KiB messages without reading
  the echoes, so the server's writes back up and it has to stop reading them,
  then dropping the connection;
* **hub subscribers** (``--subscribers``, 24) on channel ``chat:soak``, each
  checking that offsets follow one another (a ``Gap`` is counted, a skipped or
  repeated offset is an error), and leaving every few seconds to come back
  with ``since=`` the last offset seen: recovery must hand them exactly what
  they missed;
* one **publisher** on ``chat:soak`` at ``--rate`` messages/s (20).

Every ``--interval`` seconds (10) it samples each server process (the parent
and its workers): RSS and PSS (``/proc/PID/smaps_rollup``) and open fds. At
the end it stops the load, waits for the connections to go, samples once more,
and prints (and with ``--output``, writes as markdown) the samples, the first
and last figures after the warm-up, the RSS slope over the second half (KiB
per minute), and the traffic's counts and errors. Exit status: 0, or 1 when
an echo came back wrong, an offset was skipped or repeated, or the server
died. Loopback only; every wait is bounded; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ws13.asyncio.client import connect
from ws13.exceptions import ConnectionClosed, InvalidHandshake
from ws13.hub import Client, Gap

START_TIMEOUT = 30.0
CHANNEL = "chat:soak"


@dataclass
class Counts:
    echoes: int = 0
    echo_bytes: int = 0
    echo_errors: list[str] = field(default_factory=list)
    connections: int = 0
    #: Echo connections that ended on an exception, by its class name.
    failures: dict[str, int] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=lambda: {"clean": 0, "drop": 0, "half": 0})
    slow_sent: int = 0
    published: int = 0
    received: int = 0
    resubscribes: int = 0
    gaps: int = 0
    order_errors: list[str] = field(default_factory=list)


@dataclass
class Sample:
    at: float
    rss_kib: int
    pss_kib: int
    fds: int
    processes: int
    echoes: int
    received: int


# -- the server and its processes ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, workers: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "ws13", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--hub-ticker", "0", "--hub-publish-rate", "0"]
    if workers > 1:
        command += ["--workers", str(workers)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            error = server.stderr.read().decode(errors="replace") if server.stderr else ""
            raise SystemExit(f"soak: ws13 serve exited with {server.returncode}: {error.strip()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1),
        ):
            return server
        time.sleep(0.1)
    server.kill()
    raise SystemExit(f"soak: ws13 serve did not answer /health within {START_TIMEOUT:.0f} s")


def processes(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc's children lists."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(child) for child in children.read().split())
    return found


def measure(pid: int) -> tuple[int, int, int, int]:
    """(RSS KiB, PSS KiB, fds, processes) summed over ``pid`` and its descendants."""
    rss = pss = fds = count = 0
    for process in processes(pid):
        with contextlib.suppress(OSError):
            with open(f"/proc/{process}/smaps_rollup") as rollup:
                for line in rollup:
                    name, _, rest = line.partition(":")
                    if name == "Rss":
                        rss += int(rest.split()[0])
                    elif name == "Pss":
                        pss += int(rest.split()[0])
            fds += len(os.listdir(f"/proc/{process}/fd"))
            count += 1
    return rss, pss, fds, count


# -- the load ----------------------------------------------------------------------------


def message_size(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.80:
        return rng.randint(0, 125)
    if draw < 0.98:
        return rng.randint(126, 65536)
    # Below ws13 serve's 1 MiB max_size with room to spare: random bytes grow a
    # little under permessage-deflate, and the server checks a frame's size on
    # the wire before inflating it.
    return rng.randint(65537, 1_000_000)


async def echo_actor(url: str, deadline: float, counts: Counts, rng: random.Random) -> None:
    while time.monotonic() < deadline:
        try:
            async with connect(url, open_timeout=10, max_size=2 << 20) as ws:
                counts.connections += 1
                for _ in range(rng.randint(1, 200)):
                    if time.monotonic() >= deadline:
                        break
                    payload = rng.randbytes(message_size(rng))
                    # A third as text (hex: twice the size, so only up to 64 KiB:
                    # ws13 serve's max_size is 1 MiB).
                    text = len(payload) <= 65536 and rng.random() < 0.3
                    message: str | bytes = payload.hex() if text else payload
                    await ws.send(message)
                    echo = await asyncio.wait_for(ws.recv(), 30)
                    if echo != message:
                        counts.echo_errors.append(f"echo of {len(message)} bytes differed")
                    counts.echoes += 1
                    counts.echo_bytes += len(message)
                ending = rng.choice(("clean", "drop", "half"))
                counts.closes[ending] += 1
                if ending == "half" and ws.transport is not None:
                    # A masked binary frame announcing 1,000 bytes, cut after 10 of them.
                    ws.transport.write(b"\x82\xfe\x03\xe8" + rng.randbytes(4) + b"x" * 10)
                if ending != "clean" and ws.transport is not None:
                    ws.transport.abort()
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
            name = type(exc).__name__
            if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
                name += f" {exc.rcvd.code}"
            counts.failures[name] = counts.failures.get(name, 0) + 1
            await asyncio.sleep(0.2)


async def slow_actor(url: str, deadline: float, counts: Counts, rng: random.Random) -> None:
    while time.monotonic() < deadline:
        try:
            async with connect(url, open_timeout=10, max_size=2 << 20) as ws:
                counts.connections += 1
                for _ in range(rng.randint(5, 40)):
                    # Never read: the echoes pile up until the server stops reading.
                    await asyncio.wait_for(ws.send(rng.randbytes(256 * 1024)), 2)
                    counts.slow_sent += 1
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
            pass
        counts.closes["drop"] += 1
        await asyncio.sleep(rng.uniform(0.5, 2.0))


async def publisher(url: str, deadline: float, rate: float, counts: Counts) -> None:
    async with Client(url) as client:
        sequence = 0
        start = time.monotonic()
        while time.monotonic() < deadline:
            sequence += 1
            await client.publish(CHANNEL, {"n": sequence})
            counts.published += 1
            await asyncio.sleep(max(0.0, start + sequence / rate - time.monotonic()))


async def subscriber(url: str, deadline: float, counts: Counts, rng: random.Random) -> None:
    epoch: str | None = None
    offset: int | None = None
    while time.monotonic() < deadline:
        stay = time.monotonic() + rng.uniform(2.0, 10.0)
        try:
            async with Client(url, reconnect=False) as client:
                subscription = await client.subscribe(CHANNEL, since=offset, epoch=epoch)
                if offset is not None:
                    counts.resubscribes += 1
                while time.monotonic() < min(stay, deadline):
                    try:
                        item = await asyncio.wait_for(subscription.get(), 1.0)
                    except TimeoutError:
                        continue
                    if isinstance(item, Gap):
                        counts.gaps += 1
                        epoch, offset = item.epoch, item.offset - 1
                        continue
                    if offset is not None and item.epoch == epoch and item.offset != offset + 1:
                        counts.order_errors.append(f"offset {item.offset} after {offset}")
                    epoch, offset = item.epoch, item.offset
                    counts.received += 1
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
            await asyncio.sleep(0.2)


async def run_load(args: argparse.Namespace, port: int, pid: int) -> tuple[Counts, list[Sample]]:
    counts = Counts()
    samples: list[Sample] = []
    rng = random.Random(args.seed)
    base = f"ws://127.0.0.1:{port}"
    deadline = time.monotonic() + args.duration
    start = time.monotonic()

    def sample() -> None:
        rss, pss, fds, count = measure(pid)
        at = time.monotonic() - start
        samples.append(Sample(at, rss, pss, fds, count, counts.echoes, counts.received))

    sample()
    actors = [publisher(f"{base}/hub", deadline, args.rate, counts)]
    actors += [
        echo_actor(f"{base}/echo", deadline, counts, random.Random(rng.random()))
        for _ in range(args.echo)
    ]
    actors += [
        slow_actor(f"{base}/echo", deadline, counts, random.Random(rng.random()))
        for _ in range(args.slow)
    ]
    actors += [
        subscriber(f"{base}/hub", deadline, counts, random.Random(rng.random()))
        for _ in range(args.subscribers)
    ]
    tasks = [asyncio.ensure_future(actor) for actor in actors]
    while time.monotonic() < deadline:
        await asyncio.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
        sample()
    # Every actor checks the deadline at least once a second or so; a send
    # blocked on a slow reader times out after 2 s.
    _, pending = await asyncio.wait(tasks, timeout=60)
    for task in pending:
        task.cancel()
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            counts.echo_errors.append(f"actor failed: {task.exception()!r}")
    # The server closes what the clients dropped; give it a moment, then the
    # final sample: fds back to where they started.
    await asyncio.sleep(2.0)
    sample()
    return counts, samples


# -- the report ----------------------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (per second)."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def report(args: argparse.Namespace, counts: Counts, samples: list[Sample]) -> str:
    load = os.getloadavg()
    under_load = samples[1:-1] or samples
    warm = [s for s in under_load if s.at >= args.duration * 0.1] or under_load
    second_half = [(s.at, float(s.rss_kib)) for s in under_load if s.at >= args.duration / 2]
    rows = [
        "| t (s) | processes | RSS MiB | PSS MiB | fds | echoes | hub messages received |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in samples:
        rows.append(
            f"| {s.at:.0f} | {s.processes} | {s.rss_kib / 1024:.1f} | {s.pss_kib / 1024:.1f} "
            f"| {s.fds} | {s.echoes:,} | {s.received:,} |"
        )
    first, last, final = warm[0], warm[-1], samples[-1]
    lines = [
        "# Soak",
        "",
        f"`python bench/soak.py --duration {args.duration:g} --workers {args.workers}` "
        f"({args.echo} echo connections, {args.slow} slow readers, {args.subscribers} hub "
        f"subscribers, {args.rate:g} publishes/s), "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
        "",
        *rows,
        "",
        f"* RSS after the warm-up {first.rss_kib / 1024:.1f} MiB, at the end of the load "
        f"{last.rss_kib / 1024:.1f} MiB, max {max(s.rss_kib for s in under_load) / 1024:.1f} MiB; "
        f"slope over the second half {slope(second_half) * 60:+.0f} KiB/min.",
        f"* fds: {samples[0].fds} before the load, {first.fds}-{max(s.fds for s in under_load)} "
        f"under it, {final.fds} once the clients were gone.",
        f"* echo: {counts.echoes:,} messages ({counts.echo_bytes / 2**20:,.0f} MiB) on "
        f"{counts.connections:,} connections; ended {counts.closes['clean']:,} clean, "
        f"{counts.closes['drop']:,} dropped, {counts.closes['half']:,} mid-frame; "
        f"{counts.slow_sent:,} slow-reader messages; echo connections ended by an exception: "
        f"{json.dumps(counts.failures) if counts.failures else 'none'}; "
        f"{len(counts.echo_errors)} wrong echoes or failed actors.",
        f"* hub: {counts.published:,} published, {counts.received:,} received, "
        f"{counts.resubscribes:,} resubscriptions with since=, {counts.gaps} gaps, "
        f"{len(counts.order_errors)} offsets skipped or repeated.",
    ]
    for error in (counts.echo_errors + counts.order_errors)[:10]:
        lines.append(f"  * error: {error}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load (1800)")
    parser.add_argument("--workers", type=int, default=1, help="ws13 serve --workers (1)")
    parser.add_argument("--echo", type=int, default=24, help="echo connections (24)")
    parser.add_argument("--slow", type=int, default=4, help="slow readers (4)")
    parser.add_argument("--subscribers", type=int, default=24, help="hub subscribers (24)")
    parser.add_argument("--rate", type=float, default=20.0, help="publishes per second (20)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--output", type=Path, help="write the report (markdown) here")
    parser.add_argument("--quick", action="store_true", help="5 s, small counts (the test)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.interval = 5.0, 1.0
        args.echo, args.slow, args.subscribers, args.rate = 4, 1, 4, 10.0
    if args.duration <= 0 or args.interval <= 0 or args.rate <= 0 or args.workers < 1:
        parser.error("--duration, --interval, --rate and --workers must be positive")
    port = free_port()
    server = start_server(port, args.workers)
    try:
        counts, samples = asyncio.run(run_load(args, port, server.pid))
        died = server.poll() is not None
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    text = report(args, counts, samples)
    if died:
        text += "* error: the server exited during the run\n"
    print(text, end="")
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    summary = {"errors": len(counts.echo_errors) + len(counts.order_errors) + died}
    print(json.dumps(summary))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
