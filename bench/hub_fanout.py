"""Fan-out benchmark of the ws13 hub: one publish to N subscribers, and a ticker.

Usage::

    python bench/hub_fanout.py --redis               # 10,000 subscribers, 60 s ticker
    python bench/hub_fanout.py --subscribers 2000 --duration 20 --redis
    python bench/hub_fanout.py --quick --redis       # tiny sizes, a few seconds (CI)

Scenarios (each a row of the table in docs/hub-performance.md):

(a) **fan-out**: N subscribers on one channel of one node, then single
    publishes (``--publishes``, 3, one second apart): the delivery latency of
    every copy — the publish timestamp carried in the message against the
    receive time, same machine clock — as p50 / p99 / max.
(b) **ticker**: ``--rate`` messages/s (100) to the same N subscribers for
    ``--duration`` s (60): delivery latency percentiles, the share of copies
    delivered, and the server's CPU time (utime + stime from /proc) and CPU %.
(c) with ``--redis``: (a) and (b) again through Redis: a ``redis-server`` and
    two ``ws13 serve --redis`` nodes, subscribers split between the nodes, the
    publisher on node 1.

Every server is a real ``ws13 serve --hub-ticker 0`` process (uvloop when
installed) on channel ``ticker.bench``, which ``ws13 serve`` configures like its
demo ticker (60 messages of history, drop-oldest for slow readers). Servers
and redis-server are pinned to CPU 1, subscriber processes (``--clients``, 2
when N > 1,000) and the publisher to CPU 0 with ``os.sched_setaffinity``. The
subscriber processes (``bench/hub_client.py``) run a minimal ``ws13.hub.v1``
client on uvloop: ``--sample`` connections (200), spread evenly over the
subscription order, parse every message for its timestamp and give the
latencies; the others are raw sockets read every ``--sweep`` s (0.2) that only
count copies (``bytes.count`` of a marker, no parsing), so 10,000 subscribers
at 100 messages/s don't make the client the bottleneck. Client CPU % is
reported too: near 100 % means the clients, not the server, set the latencies.

File descriptors: a process may hold at most the hard RLIMIT_NOFILE (often
20,000); every process raises its soft limit to it. One node holds all N
server sockets, the subscriber processes N / ``--clients`` each, so 10,000
subscribers fit; N + 100 above the hard limit is refused up front.

Writes docs/hub-performance.md (``--output``; ``--quick`` writes nothing unless
given one) and prints the table. Exit status 0, 1 with a one-line error, 2 for
bad arguments. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

from hub_client import BINS, BINS_PER_E, BenchError, Stats, event_loop, open_peer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "hub-performance.md")
HUB_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hub_client.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = 1, 0
#: Seconds: starting a process, a delivery to finish.
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0
#: Seconds without a new delivery after which a delivery counts as finished.
QUIET = 5.0


# -- processes ---------------------------------------------------------------------


def pinned(cpu: int | None) -> Any:
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


#: os.getloadavg() when the run started.
LOAD_BEFORE: list[float] = [0.0, 0.0, 0.0]
#: The CPUs this process may use at startup, before it pins itself.
AVAILABLE_CPUS = frozenset(os.sched_getaffinity(0))


def cpu_plan() -> tuple[int | None, int | None]:
    """(server CPU, client CPU): 1 and 0 when both are available, else no pinning."""
    if {SERVER_CPU, CLIENT_CPU} <= AVAILABLE_CPUS:
        return SERVER_CPU, CLIENT_CPU
    return None, None


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[Any], name: str, log: IO[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with status {process.returncode}: {tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{name} doesn't listen on 127.0.0.1:{port} after {START_TIMEOUT:.0f} s")


def tail(log: IO[str], size: int = 600) -> str:
    log.flush()
    log.seek(0)
    text = log.read()[-size:].strip()
    return text.replace("\n", " | ") or "(no output)"


class Processes:
    """Every process the benchmark starts; ``close()`` kills what still runs."""

    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen[Any], IO[str]]] = []

    def spawn(
        self, name: str, argv: list[str], cpu: int | None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by close)
        try:
            process = subprocess.Popen(argv, stderr=log, preexec_fn=pinned(cpu), **kwargs)
        except OSError as exc:
            log.close()
            raise BenchError(f"cannot start {name} ({argv[0]}): {exc.strerror}") from None
        self.processes.append((name, process, log))
        return process

    def log_of(self, process: subprocess.Popen[Any]) -> IO[str]:
        return next(log for _, p, log in self.processes if p is process)

    def close(self) -> None:
        for _, process, _ in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for _, process, log in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            log.close()
        self.processes.clear()


class Subscribers:
    """A subscriber process: ``python bench/hub_client.py SPEC``."""

    def __init__(self, procs: Processes, name: str, spec: dict[str, Any], cpu: int | None) -> None:
        self.name = name
        self.process = procs.spawn(
            name,
            [sys.executable, HUB_CLIENT, json.dumps(spec)],
            cpu,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.log = procs.log_of(self.process)

    def read(self, what: str) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"{self.name} exited while {what}: {tail(self.log)}")
        result: dict[str, Any] = json.loads(line)
        if "error" in result:
            raise BenchError(f"{self.name}: {result['error']}")
        return result

    def collect(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write("collect\n")
            self.process.stdin.flush()
        except OSError:
            raise BenchError(f"{self.name} exited: {tail(self.log)}") from None
        return self.read("collecting")


# -- statistics --------------------------------------------------------------------


def merge(results: list[dict[str, Any]], phases: list[str]) -> tuple[int, float, list[int]]:
    """(copies, max, bins) over the subscriber processes' results for ``phases``:
    copies counted on every connection, latencies from the sampled ones."""
    count, largest, bins = 0, 0.0, [0] * BINS
    for result in results:
        for phase in phases:
            count += result["counts"].get(phase, 0)
            data = result["phases"].get(phase)
            if data is None:
                continue
            largest = max(largest, data["max"])
            for index, n in data["bins"].items():
                bins[int(index)] += n
    return count, largest, bins


def percentile(bins: list[int], fraction: float) -> float:
    """Seconds: the upper edge of the bin holding the ``fraction`` quantile."""
    total = sum(bins)
    if total == 0:
        return math.nan
    rank = math.ceil(total * fraction)
    seen = 0
    for index, n in enumerate(bins):
        seen += n
        if seen >= rank:
            return math.expm1((index + 1) / BINS_PER_E) / 1e6
    return math.nan


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    value = seconds * 1000
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


# -- the scenarios -------------------------------------------------------------------


class Cluster:
    """One node, or a redis-server and two nodes, plus the subscriber processes."""

    def __init__(self, args: argparse.Namespace, redis: bool) -> None:
        self.args = args
        self.redis = redis
        self.procs = Processes()
        self.server_cpu, self.client_cpu = cpu_plan()
        self.servers: list[tuple[str, subprocess.Popen[Any], int]] = []  # name, process, port
        self.subscribers: list[Subscribers] = []
        #: Connections that measure latency (the others only count copies).
        self.sampled = 0

    def start(self) -> None:
        redis_url = None
        if self.redis:
            binary = shutil.which("redis-server")
            if binary is None:
                raise BenchError("--redis needs redis-server (apt-get install redis-server)")
            port = free_port()
            self.redis_dir = tempfile.mkdtemp(prefix="ws13-bench-redis-")
            process = self.procs.spawn(
                "redis-server",
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.redis_dir, "--daemonize", "no"],
                self.server_cpu,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for_port(port, process, "redis-server", self.procs.log_of(process))
            self.servers.append(("redis", process, port))
            redis_url = f"redis://127.0.0.1:{port}/0"
        for node in range(2 if self.redis else 1):
            port = free_port()
            # No publish rate limit: a lagging node would read a backlog of
            # the publisher's messages at once and refuse some.
            argv = [sys.executable, "-m", "ws13", "serve", "--port", str(port),
                    "--hub-ticker", "0", "--hub-publish-rate", "0"]  # fmt: skip
            if redis_url is not None:
                argv += ["--redis", redis_url]
            name = f"node {node + 1}"
            process = self.procs.spawn(name, argv, self.server_cpu, stdout=subprocess.DEVNULL)
            wait_for_port(port, process, f"ws13 serve ({name})", self.procs.log_of(process))
            self.servers.append((name, process, port))
        nodes = [port for name, _, port in self.servers if name != "redis"]
        total = self.args.subscribers
        clients = self.args.clients or (2 if total > 1000 or self.redis else 1)
        clients = min(clients, total)
        phases = [f"f{i}" for i in range(self.args.publishes)] + ["t"]
        for index in range(clients):
            count = total // clients + (1 if index < total % clients else 0)
            sample = self.args.sample // clients + (1 if index < self.args.sample % clients else 0)
            spec = {
                "port": nodes[index % len(nodes)], "count": count, "sample": sample,
                "phases": phases, "sweep": self.args.sweep,
            }  # fmt: skip
            self.subscribers.append(
                Subscribers(self.procs, f"subscriber process {index + 1}", spec, self.client_cpu)
            )
        for subscribers in self.subscribers:
            self.sampled += subscribers.read("connecting its subscribers")["sampled"]

    def publisher_failed(self, reason: str | None) -> BenchError:
        """The error for a lost publisher connection, with node 1's last log lines."""
        process = next(process for name, process, _ in self.servers if name == "node 1")
        log = tail(self.procs.log_of(process), 2000)
        return BenchError(f"publisher connection to node 1 failed: {reason}; node 1 log: {log}")

    @property
    def node1(self) -> int:
        return next(port for name, _, port in self.servers if name == "node 1")

    def server_cpu_time(self) -> dict[str, float]:
        return {name: proc_cpu(process.pid) for name, process, _ in self.servers}

    def collect(self) -> list[dict[str, Any]]:
        return [subscribers.collect() for subscribers in self.subscribers]

    def close(self) -> None:
        self.procs.close()
        if self.redis:
            shutil.rmtree(getattr(self, "redis_dir", ""), ignore_errors=True)


async def wait_delivered(
    cluster: Cluster, phases: list[str], expected: int
) -> tuple[list[dict[str, Any]], float, bool]:
    """Poll until ``expected`` copies arrived, or nothing new for ``QUIET`` s, or
    ``DRAIN_TIMEOUT`` s; return the results, the time of the last new delivery,
    and whether the drain was cut short while copies still arrived.
    """
    deadline = time.monotonic() + DRAIN_TIMEOUT
    last, last_change = -1, time.monotonic()
    while True:
        results = await asyncio.to_thread(cluster.collect)
        count = merge(results, phases)[0]
        now = time.monotonic()
        if count != last:
            last, last_change = count, now
        if count >= expected or now - last_change > QUIET:
            return results, last_change, False
        if now > deadline:
            return results, now, True
        await asyncio.sleep(0.1)


async def run_cluster(args: argparse.Namespace, redis: bool) -> list[dict[str, Any]]:
    cluster = Cluster(args, redis)
    rows: list[dict[str, Any]] = []
    label = "2 nodes + Redis" if redis else "1 node"
    try:
        await asyncio.to_thread(cluster.start)
        publisher = await asyncio.wait_for(
            open_peer(cluster.node1, Stats(), subscribe=False), START_TIMEOUT
        )
        n = args.subscribers
        await asyncio.sleep(0.5)

        # (a) Single publishes, one at a time.
        phases = [f"f{i}" for i in range(args.publishes)]
        for i, phase in enumerate(phases):
            if i:
                await asyncio.sleep(1.0)
            if publisher.closed:
                raise cluster.publisher_failed(publisher.failure)
            publisher.publish(phase, i)
            results, _, _ = await wait_delivered(cluster, [phase], n)
        count, largest, bins = merge(results, phases)
        rows.append({
            "scenario": f"fan-out, {label}", "subscribers": n, "messages": args.publishes,
            "delivered": count, "expected": n * args.publishes,
            "p50": min(percentile(bins, 0.5), largest),
            "p99": min(percentile(bins, 0.99), largest), "max": largest,
        })  # fmt: skip

        # (b) A ticker at --rate for --duration.
        total = max(1, round(args.rate * args.duration))
        loop = asyncio.get_running_loop()
        servers_before = cluster.server_cpu_time()
        clients_before = sum(r["cpu"] for r in results)
        started = loop.time()
        wall_start = time.monotonic()
        for seq in range(total):
            delay = started + seq / args.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if publisher.closed:
                raise cluster.publisher_failed(publisher.failure)
            publisher.publish("t", seq)
        results, wall_end, cut = await wait_delivered(cluster, ["t"], n * total)
        servers_after = cluster.server_cpu_time()
        wall = wall_end - wall_start
        count, largest, bins = merge(results, ["t"])
        cpu = {name: servers_after[name] - servers_before[name] for name in servers_after}
        client_cpu = sum(r["cpu"] for r in results) - clients_before
        rows.append({
            "scenario": f"ticker {args.rate:g}/s, {label}", "subscribers": n, "messages": total,
            "delivered": count, "expected": n * total,
            "p50": min(percentile(bins, 0.5), largest),
            "p99": min(percentile(bins, 0.99), largest), "max": largest,
            "server_cpu": sum(cpu.values()), "server_cpu_parts": cpu, "wall": wall,
            "client_cpu": client_cpu, "clients": len(cluster.subscribers),
            "sampled": cluster.sampled,
            "published_in": loop.time() - started, "cut": cut,
        })  # fmt: skip
        closed = sum(r["closed"] for r in results)
        if closed:
            rows[-1]["closed"] = closed
        if publisher.transport is not None:
            publisher.transport.abort()
    finally:
        await asyncio.to_thread(cluster.close)
    return rows


# -- the report ----------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio (uvloop not installed)"
    from ws13 import __version__

    return (
        f"{model}, {os.cpu_count()} CPUs ({len(AVAILABLE_CPUS)} usable), "
        f"Linux {platform.release()}, Python {platform.python_version()}, {loop}, "
        f"ws13 {__version__}"
    )


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | subscribers | messages | delivered | p50 ms | p99 ms | max ms "
        "| server CPU s | server CPU % | client CPU % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        share = row["delivered"] / row["expected"] * 100 if row["expected"] else 0.0
        delivered = f"{share:.1f} %" if row["delivered"] != row["expected"] else "100 %"
        if "server_cpu" in row:
            cpu_s = f"{row['server_cpu']:.2f}"
            cpu_pct = f"{row['server_cpu'] / row['wall'] * 100:.0f}"
            client_pct = f"{row['client_cpu'] / row['wall'] * 100:.0f}"
        else:
            cpu_s = cpu_pct = client_pct = "-"
        lines.append(
            f"| {row['scenario']} | {row['subscribers']:,} | {row['messages']:,} | {delivered} "
            f"| {ms(row['p50'])} | {ms(row['p99'])} | {ms(row['max'])} | {cpu_s} | {cpu_pct} "
            f"| {client_pct} |"
        )
    return "\n".join(lines)


def notes(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        if "server_cpu_parts" in row and len(row["server_cpu_parts"]) > 1:
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in row["server_cpu_parts"].items())
            out.append(f"* {row['scenario']}: server CPU split: {parts}.")
        if "wall" in row:
            out.append(
                f"* {row['scenario']}: {row['messages']:,} publishes sent in "
                f"{row['published_in']:.1f} s; {row['delivered']:,} copies delivered in "
                f"{row['wall']:.1f} s ({row['delivered'] / row['wall']:,.0f} copies/s)"
                + (
                    f"; stopped after {DRAIN_TIMEOUT:.0f} s of drain with copies still arriving"
                    if row.get("cut")
                    else ""
                )
                + "."
            )
        if row.get("closed"):
            out.append(f"* {row['scenario']}: {row['closed']:,} subscriber connections closed.")
    return out


def report(args: argparse.Namespace, rows: list[dict[str, Any]], command: str) -> str:
    pinning = (
        "servers and redis-server pinned to CPU 1, subscribers and publisher to CPU 0"
        if cpu_plan()[0] is not None
        else "no CPU pinning (fewer than 2 usable CPUs)"
    )
    clients = max((row.get("clients", 0) for row in rows), default=0)
    sampled = max((row.get("sampled", 0) for row in rows), default=0)
    load = ", ".join(f"{x:.2f}" for x in LOAD_BEFORE)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "# Hub fan-out performance",
        "",
        "Delivery latency of `ws13.hub` messages to many WebSocket subscribers, measured",
        "by [`bench/hub_fanout.py`](../bench/hub_fanout.py): the publish time carried in",
        "each message against its receive time (one machine, one clock), on a sample of",
        f"{sampled:,} subscriber connections spread over the subscription order; every",
        "connection counts the copies it gets (the delivered column). Fan-out: single",
        "publishes to all subscribers, one at a time; ticker: a steady rate to the same",
        "subscribers. Server CPU is utime + stime of the server processes (`/proc`) over",
        "the ticker run, % of one CPU; client CPU % near 100 means the subscriber",
        "processes, not the hub, set the latencies.",
        "",
        table(rows),
        "",
        *notes(rows),
        "",
        f"Machine: {machine()}; {pinning}. Run {when}; load average before the run",
        f"{load} (1, 5, 15 min): other work on the same CPUs distorts every figure.",
        "",
        "Command:",
        "",
        "```sh",
        command,
        "```",
        "",
        "Setup: every server is `ws13 serve --hub-ticker 0 --hub-publish-rate 0` (uvloop),",
        "channel `ticker.bench` (as the demo ticker: 60 messages of history, drop-oldest",
        f"for slow readers); {clients} subscriber processes (`bench/hub_client.py`): the",
        "sampled connections parse every message (`asyncio.Protocol`), the others are raw",
        f"sockets read every {args.sweep:g} s that count copies without parsing. With Redis,",
        "subscribers are split between the two nodes and the publisher is on node 1.",
        "Latency percentiles come from a histogram with bins about 2.5 % wide (the upper",
        "edge is shown); max is exact.",
        "",
    ])  # fmt: skip


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hub_fanout.py", description="Fan-out benchmark of the ws13 hub."
    )
    parser.add_argument("--subscribers", type=int, default=10_000, help="N (10000)")
    parser.add_argument("--duration", type=float, default=60.0, help="ticker seconds (60)")
    parser.add_argument("--rate", type=float, default=100.0, help="ticker messages/s (100)")
    parser.add_argument("--publishes", type=int, default=3, help="single fan-out publishes (3)")
    parser.add_argument("--clients", type=int, default=0, help="subscriber processes (auto)")
    parser.add_argument(
        "--sample", type=int, default=200, help="subscribers that measure latency (200)"
    )
    parser.add_argument(
        "--sweep", type=float, default=0.2, help="seconds between reads of the others (0.2)"
    )
    parser.add_argument("--redis", action="store_true", help="also through Redis and 2 nodes")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--output", help=f"the report's path ({os.path.relpath(OUTPUT, ROOT)})")
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.duration, args.rate, args.publishes = 20, 1.0, 50.0, 1
    if args.subscribers < 1:
        parser.error("--subscribers must be at least 1")
    if args.duration <= 0 or args.rate <= 0:
        parser.error("--duration and --rate must be positive")
    if args.publishes < 1 or args.clients < 0:
        parser.error("--publishes must be at least 1 and --clients at least 0")
    if args.sample < 1 or args.sweep <= 0:
        parser.error("--sample must be at least 1 and --sweep positive")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.subscribers + 100 > hard:
        print(
            f"hub_fanout.py: error: {args.subscribers:,} subscribers need more file "
            f"descriptors than the hard limit ({hard:,})",
            file=sys.stderr,
        )
        return 1
    client_cpu = cpu_plan()[1]
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})  # the publisher, beside the subscribers
    LOAD_BEFORE[:] = os.getloadavg()
    command = "python bench/hub_fanout.py " + " ".join(argv)
    rows: list[dict[str, Any]] = []
    try:
        with asyncio.Runner(loop_factory=event_loop()) as runner:
            rows += runner.run(run_cluster(args, redis=False))
            if args.redis:
                rows += runner.run(run_cluster(args, redis=True))
    except BenchError as exc:
        print(f"hub_fanout.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    text = report(args, rows, command.strip())
    print(table(rows))
    for line in notes(rows):
        print(line)
    print(f"load average before the run: {', '.join(f'{x:.2f}' for x in LOAD_BEFORE)}")
    output = args.output or (None if args.quick else OUTPUT)
    if output is not None:
        with open(output, "w") as f:
            f.write(text)
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
