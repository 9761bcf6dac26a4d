"""Fan-out benchmark of the ws13 hub against picows's bare broadcast loop.

Usage::

    python bench/hub_fanout.py                      # 10,000 subscribers, 60 s ticker
    python bench/hub_fanout.py --workers 2          # ws13 serve --workers 2
    python bench/hub_fanout.py --subscribers 2000 --duration 20 --redis
    python bench/hub_fanout.py --quick --redis      # tiny sizes, a few seconds (CI)

Servers (each a target of the same subscriber processes, in the same run):

* **picows**: ``bench/picows_broadcast.py``, a bare picows server whose
  broadcast loop calls ``transport.send()`` for each of its subscribers: the
  reference of issue 26.
* **ws13**: ``ws13 serve --hub-ticker 0 --hub-publish-rate 0`` (uvloop when
  installed), with ``--workers N`` when ``--workers`` is above 1, on channel
  ``ticker.bench``, which ``ws13 serve`` configures like its demo ticker (60
  messages of history, drop-oldest for slow readers).
* with ``--redis``, afterwards with their own subscriber processes: a
  ``redis-server`` and two ``ws13 serve --redis`` nodes, subscribers split
  between the nodes, the publisher on node 1.

Scenarios (each a row of the table in docs/hub-performance.md):

(a) **fan-out**: N subscribers on each server, then ``--publishes`` (3) single
    publishes per server, one second apart, the servers taking turns (picows,
    ws13, picows, ...) so that other work on the machine weighs on both alike:
    the delivery latency of every copy (the publish timestamp carried in the
    message against the receive time, same machine clock) as p50 / p99 / max.
(b) **ticker** (ws13 only: picows has no coalescing and falls behind at once):
    ``--rate`` messages/s (100) to the same N subscribers for ``--duration`` s
    (60): latency percentiles, the share of copies delivered, the server's CPU
    time (utime + stime from /proc, the workers included) and the lag (p50 /
    p99) in each 10 s, which says whether it is steady.

Subscribers are C (``bench/c/hub_sub.c``, compiled with ``cc`` at start):
``--clients`` processes (2), each holding its share of every server's
subscribers in one epoll loop that reads every socket as soon as it has data,
counts every copy and takes the latency of every copy on ``--sample``
connections (0: all). They don't offer permessage-deflate unless ``--deflate``
is given (ws13 then negotiates it, and its pushes stay shared uncompressed
frames, which RFC 7692 allows; picows has no deflate). They report their own
CPU time (client CPU %): near 100 would mean they, not the servers, set the
latencies. Pinning with
``os.sched_setaffinity``: subscribers and the publisher on CPU 0; picows, a
one-worker ws13 and redis-server on CPU 1; ``--workers`` above 1 unpinned, on
both CPUs (the point of workers). The subscribers run under
``SCHED_BATCH``: on a CPU they share with a worker, a subscriber woken by
each write would otherwise preempt the worker at once (thousands of
context switches per publish, measured), which is the clients starving the
server; with ``SCHED_BATCH`` they keep their share of the CPU but wait for
the scheduler's next turn. picows, alone on its CPU, is not affected.

File descriptors: a process may hold at most the hard RLIMIT_NOFILE (often
20,000); every process raises its soft limit to it. A server holds N
sockets, a subscriber process 2 N / ``--clients``; more than the hard limit
is refused up front.

Writes docs/hub-performance.md (``--output``; ``--quick`` writes nothing unless
given one) and prints the table. Exit status 0, 1 with a one-line error, 2 for
bad arguments. Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
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
from loadclient import system_busy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(ROOT, "docs", "hub-performance.md")
C_CLIENT = os.path.join(BENCH, "c", "hub_sub.c")
PICOWS_SERVER = os.path.join(BENCH, "picows_broadcast.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = 1, 0
#: Seconds: starting a process, a delivery to finish.
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0
#: Seconds without a new delivery after which a delivery counts as finished.
QUIET = 5.0
#: Seconds per ticker window: the lag is reported for the first and the last.
WINDOW = 10.0


# -- processes ---------------------------------------------------------------------


def pinned(cpu: int | None, *, batch: bool = False) -> Any:
    """A ``preexec_fn`` running the child on ``cpu``, or on every CPU this process
    could use at startup when None: a child inherits the affinity of this
    process, which pins itself beside the subscribers, so "unpinned" has to
    be said (until 2026-12-07 the ``--workers`` servers ran on CPU 0 only).
    ``batch``: ``SCHED_BATCH``, for the subscribers (see the module docstring).
    """
    cpus = set(AVAILABLE_CPUS) if cpu is None else {cpu}

    def pin() -> None:
        os.sched_setaffinity(0, cpus)
        if batch:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))

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


def descendants(pid: int) -> list[int]:
    """``pid``'s live child processes and theirs (a ``--workers`` server's workers)."""
    found = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    found += [int(child), *descendants(int(child))]
    return found


def tree_cpu(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants, in seconds."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):  # a process that just exited
            total += proc_cpu(each)
    return total


def sockets_per_process(pid: int) -> list[int]:
    """Open sockets of each of ``pid``'s descendants that holds any (a ``--workers``
    server's workers; its backplane owner's few count too)."""
    counts = []
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{child}/fd")
            n = 0
            for fd in fds:
                with contextlib.suppress(OSError):
                    n += os.readlink(f"/proc/{child}/fd/{fd}").startswith("socket:")
            if n > 5:  # the backplane owner holds a few
                counts.append(n)
    return counts


def build_client(directory: str) -> str:
    """Compile bench/c/hub_sub.c into ``directory``; return the binary's path."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise BenchError("the C subscribers need a C compiler (apt-get install gcc)")
    binary = os.path.join(directory, "hub_sub")
    result = subprocess.run(
        [compiler, "-O2", "-o", binary, C_CLIENT, "-lm"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise BenchError(f"cannot compile {C_CLIENT}: {result.stderr.strip()[-400:]}")
    return binary


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
        self, name: str, argv: list[str], cpu: int | None, batch: bool = False, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by close)
        try:
            preexec = pinned(cpu, batch=batch)
            process = subprocess.Popen(argv, stderr=log, preexec_fn=preexec, **kwargs)
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
    """A C subscriber process: ``hub_sub PHASES PORT:COUNT:SAMPLE ...``."""

    def __init__(self, procs: Processes, name: str, argv: list[str], cpu: int | None) -> None:
        self.name = name
        self.process = procs.spawn(
            name, argv, cpu, batch=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
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


@dataclasses.dataclass
class Target:
    """A server (or a set of nodes) that the subscriber processes subscribe to."""

    #: "picows", "ws13, 1 node", "ws13, --workers 2", "ws13, 2 nodes + Redis".
    label: str
    #: Phase names of this target start with it (phases are per target).
    prefix: str
    #: Where subscribers connect (split evenly), where the publisher does.
    ports: list[int]
    publish_port: int
    #: Whether the ticker runs on it.
    ticker: bool
    #: The processes whose CPU time is the server's, by name.
    processes: dict[str, subprocess.Popen[Any]]

    def fanout_phases(self, publishes: int) -> list[str]:
        return [f"{self.prefix}f{i}" for i in range(publishes)]

    def ticker_phases(self, duration: float) -> list[str]:
        if not self.ticker:
            return []
        return [f"{self.prefix}t{w}" for w in range(max(1, math.ceil(duration / WINDOW)))]

    def server_cpu_time(self) -> dict[str, float]:
        return {name: tree_cpu(process.pid) for name, process in self.processes.items()}


class Cluster:
    """Servers, the subscriber processes holding N subscribers on each, a publisher each."""

    def __init__(self, args: argparse.Namespace, client: str) -> None:
        self.args = args
        self.client = client
        self.procs = Processes()
        self.server_cpu, self.client_cpu = cpu_plan()
        self.targets: list[Target] = []
        self.subscribers: list[Subscribers] = []
        #: Connections that measure latency (the others only count copies).
        self.sampled = 0
        self.redis_dir: str | None = None
        #: Sockets held by each of ``--workers`` (how the kernel split the subscribers).
        self.split: list[int] = []

    def spawn_server(self, name: str, argv: list[str], cpu: int | None, port: int) -> Any:
        process = self.procs.spawn(name, argv, cpu, stdout=subprocess.DEVNULL)
        wait_for_port(port, process, name, self.procs.log_of(process))
        return process

    def start_picows(self) -> None:
        port = free_port()
        argv = [sys.executable, PICOWS_SERVER, "--port", str(port)]
        process = self.spawn_server("picows", argv, self.server_cpu, port)
        self.targets.append(Target("picows", "p", [port], port, False, {"picows": process}))

    def ws13_argv(self, port: int) -> list[str]:
        # No publish rate limit: a lagging node would read a backlog of the
        # publisher's messages at once and refuse some.
        return [sys.executable, "-m", "ws13", "serve", "--port", str(port),
                "--hub-ticker", "0", "--hub-publish-rate", "0"]  # fmt: skip

    def start_ws13(self) -> None:
        port = free_port()
        workers = self.args.workers
        argv = self.ws13_argv(port)
        if workers > 1:
            argv += ["--workers", str(workers)]
        # Workers use every CPU: pinning them to one would defeat them.
        cpu = self.server_cpu if workers == 1 else None
        process = self.spawn_server("ws13", argv, cpu, port)
        label = "ws13, 1 node" if workers == 1 else f"ws13, --workers {workers}"
        self.targets.append(Target(label, "w", [port], port, True, {"ws13": process}))

    def start_redis_nodes(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("--redis needs redis-server (apt-get install redis-server)")
        port = free_port()
        self.redis_dir = tempfile.mkdtemp(prefix="ws13-bench-redis-")
        redis = self.spawn_server(
            "redis-server",
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.redis_dir, "--daemonize", "no"],
            self.server_cpu,
            port,
        )  # fmt: skip
        processes = {"redis": redis}
        ports = []
        for node in (1, 2):
            node_port = free_port()
            argv = [*self.ws13_argv(node_port), "--redis", f"redis://127.0.0.1:{port}/0"]
            processes[f"node {node}"] = self.spawn_server(
                f"ws13 serve (node {node})", argv, self.server_cpu, node_port
            )
            ports.append(node_port)
        self.targets.append(Target("ws13, 2 nodes + Redis", "r", ports, ports[0], True, processes))

    def start_subscribers(self) -> None:
        args = self.args
        n = args.subscribers
        phases = [
            phase
            for target in self.targets
            for phase in target.fanout_phases(args.publishes) + target.ticker_phases(args.duration)
        ]
        clients = min(args.clients, n)
        sample = args.sample or n
        for index in range(clients):
            specs = []
            for target in self.targets:
                count = share(n, clients, index)
                part = share(sample, clients, index)
                for j, port in enumerate(target.ports):
                    k = len(target.ports)
                    specs.append(f"{port}:{share(count, k, j)}:{share(part, k, j)}")
            deflate = ["--deflate"] if args.deflate else []
            argv = [self.client, *deflate, ",".join(phases), *specs]
            self.subscribers.append(
                Subscribers(self.procs, f"subscriber process {index + 1}", argv, self.client_cpu)
            )
        for subscribers in self.subscribers:
            self.sampled += subscribers.read("connecting its subscribers")["sampled"]
        if args.workers > 1:
            ws13 = next(t for t in self.targets if t.prefix == "w")
            self.split = sockets_per_process(ws13.processes["ws13"].pid)

    def collect(self) -> list[dict[str, Any]]:
        return [subscribers.collect() for subscribers in self.subscribers]

    def log_tail(self, target: Target) -> str:
        process = next(iter(target.processes.values()))
        if len(target.processes) > 1:
            process = target.processes["node 1"]
        return tail(self.procs.log_of(process), 2000)

    def close(self) -> None:
        self.procs.close()
        if self.redis_dir is not None:
            shutil.rmtree(self.redis_dir, ignore_errors=True)


def share(total: int, parts: int, index: int) -> int:
    """Part ``index`` of ``total`` split into ``parts`` as evenly as integers allow."""
    return total // parts + (1 if index < total % parts else 0)


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
        await asyncio.sleep(0.05)


def latency_row(
    scenario: str, n: int, messages: int, results: list[dict[str, Any]], phases: list[str]
) -> dict[str, Any]:
    count, largest, bins = merge(results, phases)
    return {
        "scenario": scenario, "subscribers": n, "messages": messages,
        "delivered": count, "expected": n * messages,
        "p50": min(percentile(bins, 0.5), largest),
        "p99": min(percentile(bins, 0.99), largest), "max": largest,
    }  # fmt: skip


async def run_cluster(args: argparse.Namespace, client: str, redis: bool) -> list[dict[str, Any]]:
    cluster = Cluster(args, client)
    rows: list[dict[str, Any]] = []
    n = args.subscribers
    publishers: list[Any] = []
    try:
        if redis:
            await asyncio.to_thread(cluster.start_redis_nodes)
        else:
            await asyncio.to_thread(cluster.start_picows)
            await asyncio.to_thread(cluster.start_ws13)
        await asyncio.to_thread(cluster.start_subscribers)
        for target in cluster.targets:
            publishers.append(
                await asyncio.wait_for(
                    open_peer(target.publish_port, Stats(), subscribe=False), START_TIMEOUT
                )
            )
        await asyncio.sleep(0.5)

        def check(target: Target, publisher: Any) -> None:
            if publisher.closed:
                raise BenchError(
                    f"publisher connection to {target.label} failed: {publisher.failure}; "
                    f"its log: {cluster.log_tail(target)}"
                )

        # (a) Single publishes, one at a time, the targets taking turns.
        results: list[dict[str, Any]] = []
        fanout_cpu = [0.0] * len(cluster.targets)
        fanout_busy = [0.0] * len(cluster.targets)
        fanout_client = [0.0] * len(cluster.targets)
        for i in range(args.publishes):
            for t, (target, publisher) in enumerate(zip(cluster.targets, publishers, strict=True)):
                await asyncio.sleep(1.0)
                check(target, publisher)
                phase = target.fanout_phases(args.publishes)[i]
                clients_before = sum(r["cpu"] for r in await asyncio.to_thread(cluster.collect))
                before = sum(target.server_cpu_time().values())
                busy_before = system_busy(steal=False)
                publisher.publish(phase, i)
                results, _, _ = await wait_delivered(cluster, [phase], n)
                fanout_busy[t] += system_busy(steal=False) - busy_before
                fanout_client[t] += sum(r["cpu"] for r in results) - clients_before
                fanout_cpu[t] += sum(target.server_cpu_time().values()) - before
        for t, target in enumerate(cluster.targets):
            row = latency_row(
                f"fan-out, {target.label}", n, args.publishes, results,
                target.fanout_phases(args.publishes),
            )  # fmt: skip
            row["server_cpu"] = fanout_cpu[t]
            row["machine_busy"] = fanout_busy[t] / args.publishes
            row["fanout_client_cpu"] = fanout_client[t]
            rows.append(row)

        # (b) A ticker at --rate for --duration, on each target that has one.
        total = max(1, round(args.rate * args.duration))
        loop = asyncio.get_running_loop()
        for target, publisher in zip(cluster.targets, publishers, strict=True):
            if not target.ticker:
                continue
            phases = target.ticker_phases(args.duration)
            servers_before = target.server_cpu_time()
            clients_before = sum(r["cpu"] for r in results)
            started = loop.time()
            wall_start = time.monotonic()
            for seq in range(total):
                delay = started + seq / args.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                check(target, publisher)
                publisher.publish(phases[min(int(seq / args.rate / WINDOW), len(phases) - 1)], seq)
            results, wall_end, cut = await wait_delivered(cluster, phases, n * total)
            servers_after = target.server_cpu_time()
            wall = wall_end - wall_start
            cpu = {name: servers_after[name] - servers_before[name] for name in servers_after}
            row = latency_row(f"ticker {args.rate:g}/s, {target.label}", n, total, results, phases)
            windows = [latency_row("", n, 1, results, [phase]) for phase in phases]
            row.update({
                "server_cpu": sum(cpu.values()), "server_cpu_parts": cpu, "wall": wall,
                "client_cpu": sum(r["cpu"] for r in results) - clients_before,
                "published_in": loop.time() - started, "cut": cut,
                "windows": windows,
            })  # fmt: skip
            rows.append(row)
        if cluster.split:
            rows[0]["split"] = cluster.split
        rows[0]["clients"] = len(cluster.subscribers)
        rows[0]["sampled"] = cluster.sampled // len(cluster.targets)
        closed = sum(r["closed"] for r in results)
        if closed:
            rows[-1]["closed"] = closed
        for publisher in publishers:
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
        cpu_s = f"{row['server_cpu']:.2f}" if "server_cpu" in row else "-"
        if "wall" in row:
            cpu_pct = f"{row['server_cpu'] / row['wall'] * 100:.0f}"
            client_pct = f"{row['client_cpu'] / row['wall'] * 100:.0f}"
        else:
            cpu_pct = client_pct = "-"
        lines.append(
            f"| {row['scenario']} | {row['subscribers']:,} | {row['messages']:,} | {delivered} "
            f"| {ms(row['p50'])} | {ms(row['p99'])} | {ms(row['max'])} | {cpu_s} | {cpu_pct} "
            f"| {client_pct} |"
        )
    return "\n".join(lines)


def notes(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    fanout = {row["scenario"]: row for row in rows if row["scenario"].startswith("fan-out")}
    picows = fanout.get("fan-out, picows")
    for name, row in fanout.items():
        if picows is not None and row is not picows and picows["p99"] > 0:
            out.append(
                f"* {name}: p99 {ms(row['p99'])} ms = {row['p99'] / picows['p99']:.2f}x "
                f"picows's {ms(picows['p99'])} ms in the same run."
            )
    for row in rows:
        if "split" in row:
            split = " + ".join(f"{n:,}" for n in row["split"])
            out.append(f"* ws13 workers: sockets held by each after connecting: {split}.")
        if row.get("server_cpu") and row["delivered"]:
            out.append(
                f"* {row['scenario']}: {row['server_cpu'] / row['delivered'] * 1e6:.2f} µs of "
                "server CPU per copy delivered (/proc ticks: 10 ms resolution)."
            )
        if "fanout_client_cpu" in row and row["delivered"]:
            out.append(
                f"* {row['scenario']}: {row['fanout_client_cpu'] / row['delivered'] * 1e6:.2f} µs "
                "of subscriber-process CPU per copy delivered."
            )
        if "machine_busy" in row:
            busy = row["machine_busy"] * 1000
            out.append(
                f"* {row['scenario']}: {busy:.0f} ms of CPU busy per publish on all "
                f"{len(AVAILABLE_CPUS)} CPUs together (/proc/stat, softirq included, from the "
                f"publish to the last copy): no schedule on {len(AVAILABLE_CPUS)} CPUs does that "
                f"work in under {busy / len(AVAILABLE_CPUS):.0f} ms."
            )
        if len(row.get("windows", ())) > 1:

            def lag(window: dict[str, Any]) -> str:
                if not window["delivered"]:
                    return "none"
                return f"{ms(window['p50'])} / {ms(window['p99'])}"

            out.append(
                f"* {row['scenario']}: lag p50 / p99 ms in each {WINDOW:g} s, first to last: "
                + ", ".join(lag(window) for window in row["windows"])
                + " (steady when alike)."
            )
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
        "picows, a one-worker ws13 and redis-server pinned to CPU 1, `--workers` above 1 "
        "on every CPU (unpinned), "
        "subscribers (`SCHED_BATCH`) and publisher on CPU 0"
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
        "Delivery latency of `ws13.hub` messages to many WebSocket subscribers against",
        "picows's bare broadcast loop, measured by",
        "[`bench/hub_fanout.py`](../bench/hub_fanout.py): the publish time carried in",
        "each message against its receive time (one machine, one clock), on",
        f"{sampled:,} subscriber connections per server; every connection counts the",
        "copies it gets (the delivered column). Fan-out: single publishes to all",
        "subscribers, one at a time, the servers taking turns; ticker: a steady rate to",
        "the same subscribers. Server CPU is utime + stime of the server processes",
        "(`/proc`, workers included) over the ticker run, % of one CPU; client CPU % near",
        "100 would mean the subscriber processes, not the server, set the latencies.",
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
        "Setup: picows is `bench/picows_broadcast.py` (its broadcast loop: one",
        "`transport.send()` per subscriber); ws13 is `ws13 serve --hub-ticker 0",
        "--hub-publish-rate 0` (uvloop), channel `ticker.bench` (as the demo ticker: 60",
        f"messages of history, drop-oldest for slow readers); {clients} C subscriber",
        "processes (`bench/c/hub_sub.c`, epoll) hold every server's subscribers and read",
        "each socket as soon as it has data; they "
        + (
            "offer permessage-deflate (`--deflate`: ws13 accepts it and still sends its"
            " pushes as shared uncompressed frames; picows ignores it)."
            if args.deflate
            else "don't offer permessage-deflate (`--deflate` makes them)."
        ),
        "With Redis, subscribers are split between",
        "the two nodes and the publisher is on node 1. Latency percentiles come from a",
        "histogram with bins about 2.5 % wide (the upper edge is shown); max is exact.",
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
    parser.add_argument("--clients", type=int, default=2, help="subscriber processes (2)")
    parser.add_argument(
        "--sample", type=int, default=0, help="subscribers that measure latency (0: all)"
    )
    parser.add_argument("--workers", type=int, default=1, help="ws13 serve --workers (1)")

    parser.add_argument("--redis", action="store_true", help="also through Redis and 2 nodes")
    parser.add_argument(
        "--deflate", action="store_true", help="subscribers offer permessage-deflate"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--output", help=f"the report's path ({os.path.relpath(OUTPUT, ROOT)})")
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.duration, args.rate, args.publishes = 20, 1.0, 50.0, 1
    if args.subscribers < 1:
        parser.error("--subscribers must be at least 1")
    if args.duration <= 0 or args.rate <= 0:
        parser.error("--duration and --rate must be positive")
    if args.publishes < 1 or args.clients < 1:
        parser.error("--publishes and --clients must be at least 1")
    if args.sample < 0 or args.workers < 1:
        parser.error("--sample must be at least 0 and --workers at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_client = 2 * math.ceil(args.subscribers / args.clients)
    if max(args.subscribers, per_client) + 100 > hard:
        print(
            f"hub_fanout.py: error: {args.subscribers:,} subscribers per server need more "
            f"file descriptors than the hard limit ({hard:,}); more --clients may help",
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
        with tempfile.TemporaryDirectory(prefix="ws13-bench-") as directory:
            client = build_client(directory)
            with asyncio.Runner(loop_factory=event_loop()) as runner:
                rows += runner.run(run_cluster(args, client, redis=False))
                if args.redis:
                    rows += runner.run(run_cluster(args, client, redis=True))
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
