"""How much memory `ws13 serve` needs per idle connection, at up to 100,000 of them.

Usage:
    python bench/connections.py --connections 19000 --workers 1 --clients 1
    python bench/connections.py --connections 100000 --workers 6 --clients 6 --deflate

Starts ``ws13 serve`` (``--workers W`` when W > 1; ``--server-cmd`` for any
other server, ``{port}`` in it replaced) on 127.0.0.1 and measures the sum
of the PSS and RSS of every server process (the parent and its workers, from
``/proc/PID/smaps_rollup``) with no connection. Then K load clients
(``bench/c/wsload.c``, built here with ``cc -O2``; each a C process on epoll
opening its share of the connections from its own source address
127.0.0.2, 127.0.0.3, ... so that ephemeral ports don't run out) open them:
each connection does the HTTP upgrade (the 101 and its Sec-WebSocket-Accept
checked) and one masked echo (checked), then stays idle, answering the
server's keepalive pings. Once all are open the bench holds them idle for
``--hold`` seconds (25: past ws13 serve's first keepalive ping, 20 s, when
an idle connection lets its compression state go), waits for the server's
memory to settle (PSS steady within 0.5 % over 2 s, at most ``--settle``
seconds) and measures again: the difference over the connections is the
marginal cost per connection. The kernel's socket memory
(``/proc/net/sockstat``: both ends' sockets, the whole machine) is shown
apart. Then every connection echoes once more (how many answered, how long
the round took; PSS right after it, and again after ``--rest`` idle seconds),
every connection is closed, and the server is stopped.

Nothing here waits without a bound: the clients give up opening after
``--open-timeout`` s and an echo round after ``--echo-timeout`` s, and
exit by themselves after an hour. Loopback only.

``--label NAME --output docs/connections.md`` keeps the run in
``bench/results/connections.json`` under that label and re-renders the
page's table from every run kept there, each with the command that
reproduces it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("WS13_BENCH_ROOT", HERE.parent))
RESULTS = ROOT / "bench" / "results" / "connections.json"
#: File descriptors a process needs besides its connections (listeners,
#: epoll, pipes, log files, the hub's sockets).
FD_MARGIN = 64


class BenchError(Exception):
    """A reason the run can't go on, printed as one line."""


# -- /proc --------------------------------------------------------------------


def memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of ``pid`` in bytes, from /proc/PID/smaps_rollup."""
    pss = rss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
            elif line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
    return pss, rss


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def server_memory(pid: int) -> dict[str, Any]:
    """The PSS and RSS of the server's processes, summed and one by one."""
    processes = []
    for each in descendants(pid):
        try:
            pss, rss = memory(each)
        except OSError:  # gone meanwhile
            continue
        processes.append({"pid": each, "pss": pss, "rss": rss})
    return {
        "pss": sum(p["pss"] for p in processes),
        "rss": sum(p["rss"] for p in processes),
        "processes": processes,
    }


def sockstat() -> dict[str, int]:
    """TCP sockets in use and their kernel memory (bytes), machine-wide."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                fields = line.split()[1:]
                values = dict(zip(fields[::2], map(int, fields[1::2]), strict=True))
                return {
                    "inuse": values["inuse"],
                    "tw": values["tw"],
                    "mem_bytes": values["mem"] * os.sysconf("SC_PAGE_SIZE"),
                }
    raise BenchError("/proc/net/sockstat has no TCP line")


def read_sysctl(name: str) -> str:
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return " ".join(f.read().split())


# -- what the run needs --------------------------------------------------------


def check_limits(args: argparse.Namespace) -> list[str]:
    """Print what the run needs against the machine's limits; raise BenchError if short."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per_worker = -(-args.connections // args.workers)
    per_client = -(-args.connections // args.clients)
    low, high = map(int, read_sysctl("net.ipv4.ip_local_port_range").split())
    file_max = int(read_sysctl("fs.file-max"))
    lines = [
        f"fds per process: hard limit {hard}; a worker needs ~{per_worker + FD_MARGIN} "
        f"(SO_REUSEPORT spreads by hash: a few % more on some), a client {per_client + 16}",
        f"ephemeral ports per source address: {high - low + 1}; a client needs {per_client}",
        f"fs.file-max {file_max}; the run needs ~{2 * args.connections + 1000}",
        f"net.core.somaxconn {read_sysctl('net.core.somaxconn')}, "
        f"net.ipv4.tcp_max_syn_backlog {read_sysctl('net.ipv4.tcp_max_syn_backlog')}, "
        f"net.ipv4.tcp_mem {read_sysctl('net.ipv4.tcp_mem')} (pages)",
    ]
    if os.path.exists("/proc/sys/net/netfilter/nf_conntrack_max"):
        lines.append(
            f"net.netfilter.nf_conntrack_max {read_sysctl('net.netfilter.nf_conntrack_max')} "
            f"(if loopback is tracked, the run needs {args.connections})"
        )
    problems = []
    if per_worker + FD_MARGIN > hard:
        problems.append(
            f"{per_worker} connections per worker exceed the fd limit ({hard}): "
            f"use --workers {-(-args.connections // (hard - 2 * FD_MARGIN))} or more"
        )
    if per_client + 16 > hard:
        problems.append(
            f"{per_client} connections per client exceed the fd limit ({hard}): "
            f"use --clients {-(-args.connections // (hard - 16))} or more"
        )
    if per_client > high - low + 1:
        problems.append(f"{per_client} per client exceed the ephemeral port range: more --clients")
    if 2 * args.connections + 1000 > file_max:
        problems.append(f"fs.file-max {file_max} is too low: sysctl -w fs.file-max=...")
    if args.clients > 250:
        problems.append("at most 250 clients (source addresses 127.0.0.2-127.0.0.251)")
    if problems:
        raise BenchError("; ".join(problems))
    return lines


# -- the load client -------------------------------------------------------------


def build_client(directory: Path) -> Path:
    """Compile bench/c/wsload.c; BenchError with the reason if that fails."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise BenchError("no C compiler (cc or gcc) to build bench/c/wsload.c: apt install gcc")
    binary = directory / "wsload"
    result = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(HERE / "c" / "wsload.c"), "-lz"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise BenchError(f"cannot build wsload.c (zlib1g-dev installed?): {result.stderr.strip()}")
    return binary


class Client:
    """One wsload process and its JSON reports."""

    def __init__(self, binary: Path, args: argparse.Namespace, port: int, index: int, count: int):
        self.source = f"127.0.0.{index + 2}"
        command = [
            str(binary),
            *("-a", "127.0.0.1", "-p", str(port), "-n", str(count), "-b", self.source),
            *("-P", args.path, "-c", str(args.concurrency), "-s", str(args.message_size)),
            *("-t", str(args.open_timeout), "-e", str(args.echo_timeout), "-T", "3600"),
        ]
        if args.rate:
            command += ["-r", str(args.rate / args.clients)]
        if args.deflate:
            command.append("-d")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def report(self, event: str, timeout: float) -> dict[str, Any]:
        """The next report of the client, which must be ``event``."""
        assert self.process.stdout is not None
        line = readline(self.process.stdout, timeout)
        if not line:
            raise BenchError(
                f"client {self.source} sent no {event!r} report (exit status {self.process.poll()})"
            )
        report: dict[str, Any] = json.loads(line)
        if report.get("event") != event:
            raise BenchError(f"client {self.source}: expected {event!r}, got {line.strip()}")
        return report

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def readline(stream: IO[str], timeout: float) -> str:
    """One line of ``stream`` within ``timeout`` seconds ("" at EOF or timeout)."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return stream.readline()


# -- the server ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(args: argparse.Namespace, port: int, snapshots: Path | None = None) -> list[str]:
    if args.server_cmd:
        return shlex.split(args.server_cmd.replace("{port}", str(port)))
    command = [sys.executable, "-m", "ws13", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if snapshots is not None:
        command[1:4] = [str(HERE / "memprofile.py"), "serve", str(snapshots)]
    if args.workers != 1:
        command += ["--workers", str(args.workers)]
    return command


def wait_listening(server: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Wait until /health answers (or, for another server, the port accepts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers HTTP: not ws13 serve's /health, but up
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"the server didn't listen on 127.0.0.1:{port} within {timeout:g} s")


def wait_processes(pid: int, count: int, timeout: float) -> None:
    """Wait until the server runs ``count`` processes (a parent and its workers)."""
    deadline = time.monotonic() + timeout
    while len(descendants(pid)) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"the server didn't start {count} processes in {timeout:g} s")
        time.sleep(0.2)


def snapshot(server: subprocess.Popen[bytes], path: Path) -> None:
    """Have the server (under memprofile.py) write its next tracemalloc snapshot."""
    server.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 300
    size = -1
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if path.exists() and path.stat().st_size == size:
            return  # written, and no longer growing
        size = path.stat().st_size if path.exists() else -1
    raise BenchError(f"the server wrote no tracemalloc snapshot {path.name}")


def settle(pid: int, limit: float) -> tuple[dict[str, Any], float]:
    """The server's memory once its PSS moved less than 0.5 % in 2 s (or after ``limit`` s)."""
    start = time.monotonic()
    previous = server_memory(pid)
    while time.monotonic() - start < limit:
        time.sleep(2)
        current = server_memory(pid)
        if abs(current["pss"] - previous["pss"]) <= 0.005 * previous["pss"]:
            return current, time.monotonic() - start
        previous = current
    return previous, time.monotonic() - start


# -- the run ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    limits = check_limits(args)
    for line in limits:
        print("  " + line, file=sys.stderr)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ws13-connections-") as tmp:
        binary = build_client(Path(tmp))
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 (closed below)
        snapshots = Path(tmp) if args.tracemalloc else None
        server = subprocess.Popen(
            server_command(args, port, snapshots), stdout=log, stderr=subprocess.STDOUT, cwd=tmp
        )
        clients: list[Client] = []
        try:
            wait_listening(server, port, 30)
            if not args.server_cmd:
                wait_processes(server.pid, args.workers + (args.workers > 1), 30)
            time.sleep(1)  # the workers' start-up allocations
            base = server_memory(server.pid)
            sockets_before = sockstat()
            if snapshots is not None:
                snapshot(server, snapshots / "0.snap")
            print(
                f"server up ({len(base['processes'])} processes), PSS "
                f"{base['pss'] / 2**20:.1f} MiB; opening {args.connections:,} connections",
                file=sys.stderr,
            )
            shares = [
                args.connections // args.clients + (i < args.connections % args.clients)
                for i in range(args.clients)
            ]
            started = time.monotonic()
            clients = [Client(binary, args, port, i, n) for i, n in enumerate(shares)]
            opens = [c.report("open", args.open_timeout + 30) for c in clients]
            open_seconds = time.monotonic() - started
            opened = sum(o["opened"] for o in opens)
            print(
                f"{opened:,} open in {open_seconds:.1f} s; holding {args.hold:g} s", file=sys.stderr
            )
            # Idle for a keepalive round: ws13 lets compression state go at
            # each ping (ws13 serve pings every 20 s).
            time.sleep(args.hold)
            loaded, settled_after = settle(server.pid, args.settle)
            sockets = sockstat()
            if snapshots is not None:
                snapshot(server, snapshots / "1.snap")
                profile = subprocess.run(
                    [sys.executable, str(HERE / "memprofile.py"), "report", tmp, str(opened)],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                ).stdout
                args.tracemalloc.write_text(profile)
                print(profile, file=sys.stderr)
            for client in clients:
                client.command("echo")
            echoes = [c.report("echo", args.echo_timeout + 30) for c in clients]
            after_echo = server_memory(server.pid)
            # Idle again: what the server gives back (FREE_IDLE_AFTER is 2 s).
            time.sleep(args.rest)
            rested, _ = settle(server.pid, args.settle)
            for client in clients:
                client.command("close")
            closes = [c.report("closed", args.echo_timeout + 30) for c in clients]
            for client in clients:
                client.process.wait(timeout=30)
        finally:
            for client in clients:
                client.stop()
            stop_server(server)
            log.close()
            tail = (Path(tmp) / "server.log").read_bytes()[-2000:].decode(errors="replace")
    marginal = (loaded["pss"] - base["pss"]) / opened if opened else None
    result: dict[str, Any] = {
        "connections": args.connections,
        "workers": args.workers,
        "clients": args.clients,
        "deflate": args.deflate,
        "deflate_negotiated": all(o["deflate"] for o in opens),
        "message_size": args.message_size,
        "server": server_command(args, 0) if args.server_cmd else "ws13 serve",
        "opened": opened,
        "open_failed": sum(o["failed"] for o in opens),
        "open_failures": merge(o["failures"] for o in opens),
        "open_seconds": round(open_seconds, 2),
        "settled_after_s": round(settled_after, 1),
        "base": strip(base),
        "loaded": strip(loaded),
        "after_echo": strip(after_echo),
        "after_echo_rest": strip(rested),
        "pss_per_connection": round(loaded["pss"] / opened) if opened else None,
        "marginal_pss_per_connection": round(marginal) if marginal is not None else None,
        "marginal_rss_per_connection": round((loaded["rss"] - base["rss"]) / opened)
        if opened
        else None,
        "kernel_tcp_sockets": sockets["inuse"] - sockets_before["inuse"],
        "kernel_tcp_mem_bytes": sockets["mem_bytes"] - sockets_before["mem_bytes"],
        "echo_sent": sum(e["sent"] for e in echoes),
        "echo_answered": sum(e["answered"] for e in echoes),
        "echo_seconds": max(e["seconds"] for e in echoes),
        "echo_p50_ms": max(e["p50_ms"] for e in echoes),
        "echo_p99_ms": max(e["p99_ms"] for e in echoes),
        "echo_failures": merge(e["failures"] for e in echoes),
        "closed_by_server": sum(c["closed_by_server"] for c in closes),
        "pings_answered": sum(c["pings"] for c in closes),
        "limits": limits,
        "load_average": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "server_log_tail": tail if opened < args.connections else "",
    }
    return result


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a ws13 server closes its connections and exits), then SIGKILL after 30 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for pid in descendants(server.pid):
                os.kill(pid, signal.SIGKILL)
            server.wait()


def merge(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for each in counts:
        for key, value in each.items():
            total[key] = total.get(key, 0) + value
    return total


def strip(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        "pss": snapshot["pss"],
        "rss": snapshot["rss"],
        "processes": len(snapshot["processes"]),
        "pss_each": [p["pss"] for p in snapshot["processes"]],
    }


# -- the report --------------------------------------------------------------------------


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def kib(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024:.2f}"


def render(runs: dict[str, dict[str, Any]]) -> str:
    """The results table of docs/connections.md, every kept run a row."""
    lines = [
        "| run | connections open | workers | deflate | server PSS: none → idle → after "
        "the echo round, idle again (MiB) | PSS per connection, all in (KiB) | marginal "
        "PSS (KiB) | marginal RSS (KiB) | kernel TCP memory (MiB) | echo round: answered, "
        "time, worst p99 | load average |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, r in runs.items():
        rest = r.get("after_echo_rest", r["after_echo"])
        lines.append(
            f"| {label} | {r['opened']:,} / {r['connections']:,} | {r['workers']} | "
            f"{'offered' if r['deflate'] else 'no'} | "
            f"{mib(r['base']['pss'])} → {mib(r['loaded']['pss'])} → {mib(rest['pss'])} | "
            f"{kib(r['pss_per_connection'])} | {kib(r['marginal_pss_per_connection'])} | "
            f"{kib(r['marginal_rss_per_connection'])} | "
            f"{mib(max(0, r['kernel_tcp_mem_bytes']))} | "
            f"{r['echo_answered']:,} / {r['echo_sent']:,} in {r['echo_seconds']:.2f} s, "
            f"{r['echo_p99_ms']:.0f} ms | {' '.join(f'{x:.1f}' for x in r['load_average'])} |"
        )
    lines.append("")
    lines.append("Commands (each row, from the repository's root; the date it ran):")
    lines.append("")
    for label, r in runs.items():
        lines.append(f"* {label} ({r['date']}): `{r['command']}`")
    return "\n".join(lines) + "\n"


BEGIN = "<!-- connections.py: results begin -->"
END = "<!-- connections.py: results end -->"


def write_page(page: Path, runs: dict[str, dict[str, Any]]) -> None:
    """Replace the results between the markers of ``page`` (appended if absent)."""
    text = page.read_text() if page.exists() else "# Connections\n\n"
    table = f"{BEGIN}\n{render(runs)}{END}"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        text = head + table + rest.partition(END)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    page.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10000, help="(10000)")
    parser.add_argument("--workers", type=int, default=1, help="ws13 serve --workers (1)")
    parser.add_argument("--clients", type=int, default=1, help="wsload processes (1)")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--message-size", type=int, default=48, help="echo bytes (48, 40-448)")
    parser.add_argument("--path", default="/echo", help="the WebSocket path (/echo)")
    parser.add_argument("--concurrency", type=int, default=64, help="handshakes at once per client")
    parser.add_argument("--rate", type=float, default=0, help="new connections/s, all clients")
    parser.add_argument("--server-cmd", help="another server: a command line, {port} for the port")
    parser.add_argument("--open-timeout", type=float, default=300, help="(300 s)")
    parser.add_argument("--echo-timeout", type=float, default=60, help="(60 s)")
    parser.add_argument(
        "--hold",
        type=float,
        default=25,
        help="idle seconds before measuring, past one keepalive ping (25)",
    )
    parser.add_argument(
        "--rest", type=float, default=5, help="idle seconds after the echo round (5)"
    )
    parser.add_argument("--settle", type=float, default=30, help="at most, seconds (30)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--tracemalloc",
        type=Path,
        metavar="OUT",
        help="run ws13 serve under tracemalloc (bench/memprofile.py), write where the "
        "connections' memory goes to OUT (one worker only; slow)",
    )
    parser.add_argument("--label", help="keep the run under this name in results/connections.json")
    parser.add_argument("--output", type=Path, help="re-render this page's results table")
    args = parser.parse_args()
    if args.connections < 1 or args.workers < 1 or args.clients < 1:
        parser.error("--connections, --workers and --clients must be at least 1")
    if args.clients > args.connections:
        parser.error("more --clients than --connections")
    if args.tracemalloc and (args.workers != 1 or args.server_cmd):
        parser.error("--tracemalloc profiles ws13 serve with one worker")
    if not 40 <= args.message_size <= 448:
        parser.error("--message-size must be between 40 and 448")
    try:
        result = run(args)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"connections.py: {exc}", file=sys.stderr)
        return 1
    result["command"] = "python bench/connections.py " + shlex.join(sys.argv[1:])
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.label:
        runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        runs[args.label] = result
        RESULTS.write_text(json.dumps(runs, indent=2) + "\n")
        if args.output:
            write_page(args.output, runs)
    elif args.output:
        write_page(args.output, {"this run": result})
    return 0 if result["opened"] == args.connections else 1


if __name__ == "__main__":
    sys.exit(main())
